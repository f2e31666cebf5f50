"""BM25Search against bm25s itself, save/load, corpus files, the tool message, backend specs."""

from __future__ import annotations

import json
import subprocess
import sys

import bm25s
import numpy as np
import pytest

from arft_envs.tasks.base import DatasetError
from arft_envs.tools.search import (
    BM25Search,
    Document,
    SearchBackend,
    SearchError,
    SearchResult,
    SerperSearch,
    as_document,
    format_results,
    format_search_error,
    load_corpus,
    make_backend,
    write_corpus,
)

WORDS = [f"w{i}x" for i in range(300)]


def random_corpus(n: int, seed: int = 0, length: int = 30) -> list[str]:
    """Documents of Zipf-distributed words, so some terms are rare and some very common."""
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, len(WORDS) + 1) ** 1.1
    p /= p.sum()
    lengths = rng.integers(3, length, size=n)
    return [" ".join(rng.choice(WORDS, size=m, p=p)) for m in lengths]


def random_queries(n: int, seed: int = 1) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(1, 5)))) for _ in range(n)]


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    return random_corpus(5000)


@pytest.fixture(scope="module")
def index(corpus) -> BM25Search:
    return BM25Search(corpus)


def test_scores_match_bm25s_on_every_query(corpus, index):
    """Same tokeniser, same Lucene BM25: the top-k scores equal bm25s's exact full scoring."""
    reference = bm25s.BM25(method="lucene")
    reference.index(
        bm25s.tokenize(corpus, stopwords="en", show_progress=False), show_progress=False
    )
    queries = random_queries(200)
    tokens = bm25s.tokenize(queries, stopwords="en", show_progress=False, return_ids=False)
    for query, query_tokens in zip(queries, tokens, strict=True):
        full = reference.get_scores(query_tokens) if query_tokens else np.zeros(len(corpus))
        ours = index.search(query, 10)
        expected = np.sort(full[full > 0])[::-1][:10]
        got = np.array([r.score for r in ours])
        np.testing.assert_allclose(got, expected, rtol=2e-5, err_msg=query)
        for r in ours:  # each result really has the score it claims
            assert full[corpus.index(r.text)] == pytest.approx(r.score, rel=2e-5)


@pytest.fixture(scope="module")
def big():
    """12k documents whose common words occur in most of them, with bm25s as the reference."""
    docs = random_corpus(12_000, seed=3)
    reference = bm25s.BM25(method="lucene")
    reference.index(bm25s.tokenize(docs, stopwords="en", show_progress=False), show_progress=False)
    return docs, BM25Search(docs), reference


def test_common_term_queries_take_the_exhaustive_path_and_agree(big, monkeypatch):
    """Queries made only of the most common words score every document (dense path)."""
    docs, index, reference = big
    dense_calls = []
    original = index._dense_top_k
    monkeypatch.setattr(index, "_dense_top_k", lambda *a: dense_calls.append(1) or original(*a))
    for query in ("w0x w1x", "w0x w1x w2x", "w0x"):
        full = reference.get_scores(query.split())
        got = [r.score for r in index.search(query, 5)]
        np.testing.assert_allclose(got, np.sort(full)[::-1][:5], rtol=2e-5)
    assert dense_calls, "the common-term queries should have scored every document"


def test_mixed_frequency_queries_agree_on_every_path(big):
    """Zipf-drawn query words exercise the leaders bound, pruning, both lookup strategies and
    both union strategies; every answer must equal exhaustive scoring."""
    docs, index, reference = big
    rng = np.random.default_rng(11)
    p = 1.0 / np.arange(1, len(WORDS) + 1) ** 0.8
    p /= p.sum()
    for _ in range(300):
        words = rng.choice(WORDS, size=int(rng.integers(1, 5)), p=p).tolist()
        k = int(rng.integers(1, 12))
        full = reference.get_scores(words)
        got = [r.score for r in index.search(" ".join(words), k)]
        expected = np.sort(full[full > 0])[::-1][:k]
        np.testing.assert_allclose(got, expected, rtol=3e-5, err_msg=" ".join(words))


def test_results_are_documents_best_first_and_bounded_by_k(index):
    results = index.search("w5x w40x", 4)
    assert 1 <= len(results) <= 4
    assert all(isinstance(r, SearchResult) for r in results)
    scores = [r.score for r in results]
    assert scores == sorted(scores, reverse=True)


def test_no_matching_term_returns_nothing():
    index = BM25Search(["alpha beta", "gamma delta"])
    assert index.search("zeta", 3) == []
    assert index.search("the of and", 3) == []  # only stopwords
    assert index.search("", 3) == []
    assert [r.text for r in index.search("alpha", 10)] == ["alpha beta"]  # fewer than k


def test_ties_break_by_document_order_deterministically():
    index = BM25Search([f"doc {i} shared" for i in range(50)])
    first = [r.text for r in index.search("shared", 5)]
    assert first == [f"doc {i} shared" for i in range(5)]
    assert first == [r.text for r in index.search("shared", 5)]


def test_titles_urls_and_mappings_are_kept():
    docs = [
        {"title": "Quorvane", "text": "A robotics company.", "url": "world://q"},
        Document("Telmoria", "A city on a river.", "world://t"),
        "untitled plain text",
    ]
    index = BM25Search(docs)
    (hit,) = index.search("quorvane", 1)
    assert (hit.title, hit.text, hit.url) == ("Quorvane", "A robotics company.", "world://q")
    assert index.search("river", 1)[0].title == "Telmoria"


def test_bad_arguments_are_explained():
    with pytest.raises(ValueError, match="at least one document"):
        BM25Search([])
    index = BM25Search(["a doc"])
    for k in (0, -1, 1.5, "3", True):
        with pytest.raises(ValueError, match="positive integer"):
            index.search("doc", k)
    with pytest.raises(ValueError, match="corpus entry 1"):
        BM25Search(["ok", 42])


def test_save_load_roundtrip_and_bm25s_reads_the_same_index(tmp_path, corpus, index):
    path = index.save(tmp_path / "idx")
    loaded = BM25Search.load(path)
    for query in random_queries(30, seed=5):
        assert loaded.search(query, 5) == index.search(query, 5)
    assert loaded.cache_namespace == index.cache_namespace
    other = bm25s.BM25.load(path, load_corpus=True, show_progress=False)
    docs, scores = other.retrieve([["w7x", "w90x"]], k=3, show_progress=False)
    ours = index.search("w7x w90x", 3)
    assert [d["text"] for d in docs[0]] == [r.text for r in ours]
    np.testing.assert_allclose(scores[0], [r.score for r in ours], rtol=2e-5)


def test_load_explains_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a saved BM25 index"):
        BM25Search.load(tmp_path)
    path = BM25Search(["some text"]).save(tmp_path / "idx")
    (path / "corpus.jsonl").unlink()
    with pytest.raises(FileNotFoundError, match="no corpus.jsonl"):
        BM25Search.load(path)


def test_cache_namespaces_identify_the_corpus():
    a, b = BM25Search(["alpha beta", "gamma"]), BM25Search(["alpha beta", "gamma"])
    assert a.cache_namespace == b.cache_namespace
    assert a.cache_namespace != BM25Search(["delta epsilon", "zeta"]).cache_namespace
    assert a.cache_namespace.startswith("bm25:")


def test_format_results_is_numbered_stable_and_bounded():
    results = [
        SearchResult("Quorvane", "Line one.\n\nLine   two.", "u1", 2.0),
        SearchResult("", "x" * 50, "u2", 1.0),
    ]
    text = format_results(results, max_chars=20)
    assert text == (
        "<information>\n"
        "1. Title: Quorvane\n"
        "Content: Line one. Line two.\n"
        "2. Title: (untitled)\n"
        f"Content: {'x' * 19}…\n"
        "</information>"
    )
    assert format_results([]) == "<information>\nNo results for this query.\n</information>"
    error = format_search_error(SearchError("the engine answered HTTP 500.", "http_error"))
    assert error.startswith(
        "<information>\nSearch failed (http_error): the engine answered HTTP 500."
    )
    assert error.endswith("</information>")


def test_corpus_files_roundtrip_and_errors_name_the_line(tmp_path):
    docs = [Document("A", "alpha text", "u:a"), Document("B", "beta text", "u:b")]
    path = write_corpus(docs, tmp_path / "corpus.jsonl")
    assert load_corpus(path) == docs
    flashrag = tmp_path / "wiki.jsonl"
    flashrag.write_text(json.dumps({"id": "7", "contents": '"Title Here"\nBody text.'}) + "\n")
    assert load_corpus(flashrag) == [Document("Title Here", "Body text.", "7")]
    listed = tmp_path / "list.json"
    listed.write_text(json.dumps(["just text", {"title": "T", "text": "body"}]))
    assert [d.text for d in load_corpus(listed)] == ["just text", "body"]
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"text": "ok"}\n{"text": \n')
    with pytest.raises(DatasetError, match=r"broken.jsonl: row 2"):
        load_corpus(broken)
    missing = tmp_path / "nofield.jsonl"
    missing.write_text('{"title": "only a title"}\n')
    with pytest.raises(DatasetError, match=r"row 1.*'text'"):
        load_corpus(missing)
    with pytest.raises(DatasetError, match="not found"):
        load_corpus(tmp_path / "absent.jsonl")
    assert as_document("plain") == Document("", "plain", "")


def test_make_backend_specs(tmp_path):
    corpus = write_corpus([Document("A", "alpha text")], tmp_path / "c.jsonl")
    assert isinstance(make_backend(f"bm25:{corpus}"), BM25Search)
    saved = BM25Search(["beta text"]).save(tmp_path / "idx")
    assert make_backend(f"bm25:{saved}").search("beta", 1)[0].text == "beta text"
    assert isinstance(make_backend("bm25", docs=["x y"]), BM25Search)
    assert isinstance(make_backend("serper"), SerperSearch)
    custom = BM25Search(["gamma"])
    assert make_backend(custom) is custom
    assert isinstance(custom, SearchBackend)
    with pytest.raises(ValueError, match="'serper'"):
        make_backend("google")
    with pytest.raises(ValueError, match="own corpus"):
        make_backend("bm25")
    with pytest.raises(TypeError):
        make_backend(42)


def test_importing_the_package_loads_no_heavy_dependency():
    code = (
        "import sys, arft_envs, arft_envs.tools.search, arft_envs.envs.mat_search, "
        "arft_envs.envs.multihop_qa, arft_envs.tasks.search_world, arft_envs.tasks.multihop\n"
        "heavy = [m for m in ('torch', 'sentence_transformers', 'transformers') if m in sys.modules]\n"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_dense_search_ranks_by_meaning():
    from arft_envs.tools.search import DenseSearch

    docs = [
        Document("Cooking", "How to bake sourdough bread at home with a starter."),
        Document("Astronomy", "Telescopes let us observe distant galaxies and nebulae."),
        Document("Football", "The striker scored twice in the cup final."),
    ]
    index = DenseSearch(docs)
    top = index.search("stargazing equipment for looking at the night sky", 2)
    assert top[0].title == "Astronomy"
    assert len(top) == 2 and top[0].score >= top[1].score
    assert len(index.search("bread", 10)) == 3
    other = DenseSearch(docs[:2])
    assert other.cache_namespace != index.cache_namespace
