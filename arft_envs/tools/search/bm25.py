"""BM25Search: lexical search over a local corpus, on a bm25s index.

The index *is* a bm25s index: the same tokeniser (lower-case, ``\\w\\w+`` words, bm25s's
English stopword list), the same scoring (bm25s's ``"lucene"`` variant, ``k1=1.5``,
``b=0.75``: ``idf = ln(1 + (N - df + .5) / (df + .5))``, ``tf / (tf + k1·(1 - b + b·|d|/avgdl))``),
the same precomputed term-by-document CSC matrix, and the same files on disk, so an index
saved here loads in ``bm25s.BM25.load`` and ranks the same (tests check the scores against
bm25s's exhaustive scoring). Two things are done here instead of inside bm25s, because its
NumPy path scores every document per query and its build loops over documents in Python
(at a million documents: ≈6 queries/s and a build over a minute, without numba; see
``benchmarks/search_latency.py``):

- **Build**: the corpus is tokenised a chunk at a time with one regex pass over the joined
  chunk, and the matrix is assembled with one sort of (term, document) keys.
- **Query**: exact top-k with MaxScore-style bounds. Query terms are taken from rarest to
  most common. Each common term keeps its 32 best documents ("leaders"); the documents of
  the rarest terms plus the leaders are scored in full (the other terms' scores looked up
  in their sorted postings, skipping documents that cannot reach the k-th score), and a
  common term's postings are walked only while a document outside the candidates could
  still beat the current k-th score. Queries made only of terms found in over half the
  corpus score every document. Ties break by document order, so results are deterministic.

Documents that share no term with the query are never returned, so a search may return
fewer than ``k`` results (or none).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from arft_envs.tools.search.base import Document, SearchResult, as_document, as_documents, check_k

_SEP = "\x1e"  # joins the documents of a chunk; never part of a word
_WORD_RE = re.compile(r"\w\w+")
_CHUNK_RE = re.compile(r"\w\w+|\x1e")
_MARKER = "arft_search.json"
_LEADERS = 32  # best documents kept per common term, for the query-time bound


def _stopwords() -> frozenset[str]:
    from bm25s.stopwords import STOPWORDS_EN

    return frozenset(STOPWORDS_EN)


STOPWORDS = _stopwords()


def tokenize(text: str) -> list[str]:
    """The index's tokens of ``text`` (bm25s's default English tokeniser, without stemming)."""
    return [t for t in _WORD_RE.findall(text.lower()) if t not in STOPWORDS]


class BM25Search:
    """Exact BM25 top-k over a list of documents (strings, mappings or :class:`Document`).

    ``search(query, k)`` returns at most ``k`` :class:`SearchResult` (title, text, url, BM25
    score), best first. ``save(path)`` writes a bm25s index directory plus the corpus;
    ``BM25Search.load(path)`` reads it back.
    """

    def __init__(
        self,
        docs: Iterable[Any],
        *,
        k1: float = 1.5,
        b: float = 0.75,
        chunk_size: int = 10_000,
    ):
        if k1 < 0 or not 0 <= b <= 1:
            raise ValueError(f"need k1 >= 0 and 0 <= b <= 1, got k1={k1}, b={b}")
        self.docs: list[Document] = as_documents(docs)
        if not self.docs:
            raise ValueError("BM25Search needs at least one document")
        self.k1, self.b = float(k1), float(b)
        self._build(max(int(chunk_size), 1))
        self._finish()

    # ------------------------------------------------------------------ building

    def _build(self, chunk_size: int) -> None:
        n = len(self.docs)
        vocab: dict[str, int] = {_SEP: 0}
        terms, owners = [], []
        for start in range(0, n, chunk_size):
            texts = [f"{d.title} {d.text}" for d in self.docs[start : start + chunk_size]]
            joined = _SEP.join(texts).lower()
            if joined.count(_SEP) != len(texts) - 1:  # a document held the separator
                joined = _SEP.join(t.replace(_SEP, " ") for t in texts).lower()
            tokens = _CHUNK_RE.findall(joined)
            for token in dict.fromkeys(tokens):
                if token not in vocab:
                    vocab[token] = len(vocab)
            ids = np.fromiter(map(vocab.__getitem__, tokens), dtype=np.int32, count=len(tokens))
            is_sep = ids == 0
            owner = np.cumsum(is_sep, dtype=np.int32) + np.int32(start)
            terms.append(ids[~is_sep])
            owners.append(owner[~is_sep])
        term = np.concatenate(terms)
        owner = np.concatenate(owners)
        del terms, owners

        # Drop stopwords and the separator; renumber the kept words by first appearance.
        words = list(vocab)
        drop = np.zeros(len(words), dtype=bool)
        drop[0] = True
        for word in STOPWORDS:
            if word in vocab:
                drop[vocab[word]] = True
        kept = np.flatnonzero(~drop)
        renumber = np.full(len(words), -1, dtype=np.int64)
        renumber[kept] = np.arange(len(kept))
        keep = ~drop[term]
        term, owner = renumber[term[keep]], owner[keep]
        self.vocab: dict[str, int] = {words[i]: j for j, i in enumerate(kept.tolist())}

        # One sort of (term, doc) keys gives the CSC layout and the term frequencies.
        doc_len = np.bincount(owner, minlength=n).astype(np.float64)
        key = (term << 32) | owner.astype(np.int64)
        del term, owner
        key.sort()
        first = np.flatnonzero(np.diff(key)) + 1
        starts = np.concatenate(([0], first)) if len(key) else first
        tf = np.diff(np.concatenate((starts, [len(key)]))).astype(np.float64)
        key = key[starts]
        u_term = (key >> 32).astype(np.int64)
        u_doc = (key & 0xFFFFFFFF).astype(np.int32)
        del key, starts, first
        df = np.bincount(u_term, minlength=len(self.vocab))
        idf = np.log1p((n - df + 0.5) / (df + 0.5))
        avg_len = doc_len.mean() if doc_len.mean() > 0 else 1.0
        norm = self.k1 * (1.0 - self.b + self.b * doc_len / avg_len)
        self.data = (idf[u_term] * tf / (tf + norm[u_doc])).astype(np.float32)
        self.indices = u_doc
        self.indptr = np.concatenate(([0], np.cumsum(df))).astype(np.int64)

    def _finish(self) -> None:
        """Per-term best scores (for the MaxScore bound) and the cache namespace."""
        self.num_docs = len(self.docs)
        if len(self.vocab):
            self._max_score = np.maximum.reduceat(self.data, self.indptr[:-1]).astype(np.float32)
        else:
            self._max_score = np.zeros(0, dtype=np.float32)
        self._dense_limit = max(self.num_docs // 2, 4096)
        self._leader_docs: dict[int, tuple[np.ndarray, float]] = {}
        df = np.diff(self.indptr)
        for term in np.flatnonzero(df > _LEADERS).tolist():
            index, data = self._postings(term)
            top = np.argpartition(data, len(data) - _LEADERS)[-_LEADERS:]
            self._leader_docs[term] = (np.sort(index[top]), float(data[top].min()))
        digest = hashlib.sha1(self.indptr.tobytes())  # document frequencies, in vocab order
        digest.update("\x1e".join(self.vocab).encode("utf-8", "replace"))
        digest.update(f"{self.num_docs}:{self.k1}:{self.b}".encode())
        self.cache_namespace = f"bm25:{digest.hexdigest()[:16]}"

    # ------------------------------------------------------------------ searching

    def search(self, query: str, k: int) -> list[SearchResult]:
        """The top ``k`` documents for ``query`` by BM25 score (fewer when fewer match)."""
        k = check_k(k)
        counts = Counter(self.vocab[t] for t in tokenize(str(query)) if t in self.vocab)
        if not counts:
            return []
        terms = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
        weights = np.fromiter(counts.values(), dtype=np.float32, count=len(counts))
        docs, scores = self._top_k(terms, weights, k)
        return [
            SearchResult(self.docs[d].title, self.docs[d].text, self.docs[d].url, float(s))
            for d, s in zip(docs.tolist(), scores.tolist(), strict=True)
        ]

    def _postings(self, term: int) -> tuple[np.ndarray, np.ndarray]:
        start, end = self.indptr[term], self.indptr[term + 1]
        return self.indices[start:end], self.data[start:end]

    def _lookup(self, term: int, docs: np.ndarray) -> np.ndarray:
        """The term's score in each of ``docs`` (sorted), 0 where it does not occur."""
        index, data = self._postings(term)
        if len(docs) * 16 > len(index) > 4096:  # many lookups: scatter then gather
            dense = np.zeros(self.num_docs, dtype=np.float32)
            dense[index] = data
            return dense[docs]
        pos = np.searchsorted(index, docs)
        np.minimum(pos, len(index) - 1, out=pos)
        return np.where(index[pos] == docs, data[pos], np.float32(0))

    def _top_k(self, terms: np.ndarray, weights: np.ndarray, k: int):
        """Exact top-k (up to ties) with MaxScore-style bounds.

        The first ``walked`` terms (rarest first) are walked: every document in their
        postings is a candidate. Each remaining (tail) term only contributes its leaders
        (its best-scoring documents), and a document that is in no walked posting and no
        leader list scores at most ``bound``, the sum of those terms' last-leader scores.
        Once the k-th best candidate reaches ``bound``, nothing outside the candidates can
        beat it. ``theta``, the best k-th score seen so far, only grows from stage to stage,
        so walked documents that cannot reach it even with the tail's best scores are
        dropped before their tail scores are looked up.
        """
        lengths = self.indptr[terms + 1] - self.indptr[terms]
        order = np.argsort(lengths, kind="stable")
        terms, weights, lengths = terms[order], weights[order], lengths[order]
        theta = None
        for walked in range(len(terms) + 1):
            if lengths[:walked].sum() > self._dense_limit:
                return self._dense_top_k(terms, weights, k)
            tail = list(zip(terms[walked:].tolist(), weights[walked:].tolist(), strict=True))
            if walked:
                docs, scores = self._union(terms[:walked], weights[:walked])
                if tail and len(docs) > k:
                    reach = sum(w * float(self._max_score[t]) for t, w in tail)
                    floor = theta if theta is not None else _kth(scores, k)
                    keep = scores + np.float32(reach * (1 + 1e-6) + 1e-6) >= floor
                    docs, scores = docs[keep], scores[keep]
                for term, weight in tail:
                    scores += np.float32(weight) * self._lookup(term, docs)
            else:
                docs, scores = np.zeros(0, np.int32), np.zeros(0, np.float32)
            bound = 0.0
            if tail:
                leaders = []
                for term, weight in tail:
                    top, floor = self._leaders(term)
                    leaders.append(top)
                    bound += weight * floor
                extra = np.unique(np.concatenate(leaders))
                if len(docs):
                    pos = np.minimum(np.searchsorted(docs, extra), len(docs) - 1)
                    extra = extra[docs[pos] != extra]
                extra_scores = np.zeros(len(extra), dtype=np.float32)
                for term, weight in tail:
                    extra_scores += np.float32(weight) * self._lookup(term, extra)
                docs = np.concatenate((docs, extra))
                scores = np.concatenate((scores, extra_scores))
            kth = _kth(scores, k) if len(scores) >= k else None
            if kth is not None:
                theta = kth if theta is None else max(theta, kth)
            if bound == 0.0 or (kth is not None and kth >= bound):
                return _select(docs, scores, k, kth)
        raise AssertionError("unreachable: the last stage walks every term")  # pragma: no cover

    def _leaders(self, term: int) -> tuple[np.ndarray, float]:
        """A term's best documents (sorted) and a bound on its score in any other document."""
        found = self._leader_docs.get(term)
        if found is None:
            return self._postings(term)[0], 0.0  # short posting: all of it, nothing outside
        return found

    def _union(self, terms: np.ndarray, weights: np.ndarray):
        """Documents holding any of ``terms`` (sorted) and their summed scores over them."""
        if len(terms) == 1:
            index, data = self._postings(int(terms[0]))
            return index, data * weights[0]
        parts = [self._postings(int(t)) for t in terms]
        index = np.concatenate([p[0] for p in parts])
        data = np.concatenate([p[1] * w for p, w in zip(parts, weights, strict=True)])
        if len(index) * 16 > self.num_docs:  # large: accumulate over all documents
            summed = np.bincount(index, weights=data, minlength=self.num_docs)
            docs = np.flatnonzero(summed).astype(np.int32)
            return docs, summed[docs].astype(np.float32)
        order = np.argsort(index, kind="stable")
        index, data = index[order], data[order]
        first = np.concatenate(([0], np.flatnonzero(np.diff(index)) + 1))
        return index[first], np.add.reduceat(data, first)

    def _dense_top_k(self, terms: np.ndarray, weights: np.ndarray, k: int):
        """Score every document (queries made only of very common terms)."""
        parts = [self._postings(t) for t in terms.tolist()]
        index = np.concatenate([p[0] for p in parts])
        values = np.concatenate([p[1] * w for p, w in zip(parts, weights, strict=True)])
        scores = np.bincount(index, weights=values, minlength=self.num_docs).astype(np.float32)
        kth = _kth(scores, k) if self.num_docs > k else 0
        docs = np.flatnonzero(scores >= max(kth, np.float32(1e-30)))
        return _select(docs, scores[docs], k)

    # ------------------------------------------------------------------ persistence

    def save(self, path: str | Path) -> Path:
        """Write the index as a bm25s index directory (``bm25s.BM25.load`` reads it) with the
        corpus in ``corpus.jsonl``; returns the directory."""
        import bm25s

        path = Path(path)
        retriever = bm25s.BM25(k1=self.k1, b=self.b, method="lucene")
        retriever.scores = {
            "data": self.data,
            "indices": self.indices,
            "indptr": self.indptr,
            "num_docs": self.num_docs,
        }
        vocab = dict(self.vocab)
        vocab.setdefault("", len(vocab))  # bm25s's empty-query token, as bm25s.index adds it
        retriever.vocab_dict = vocab
        retriever.nonoccurrence_array = None
        retriever.save(
            path,
            corpus=[d.to_dict() for d in self.docs],
            show_progress=False,
            raise_on_serialization_error=True,
        )
        marker = {"format": 1, "tokenizer": "bm25s-en-nostem", "num_docs": self.num_docs}
        (path / _MARKER).write_text(json.dumps(marker), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> BM25Search:
        """Read an index written by :meth:`save`."""
        import bm25s

        path = Path(path)
        if not (path / "params.index.json").is_file():
            raise FileNotFoundError(f"{path} is not a saved BM25 index (no params.index.json)")
        if not (path / "corpus.jsonl").is_file():
            raise FileNotFoundError(
                f"{path} has no corpus.jsonl; BM25Search needs the documents to show results "
                "(save the index with BM25Search.save, or bm25s's save(corpus=...))"
            )
        retriever = bm25s.BM25.load(path, load_corpus=True, show_progress=False)
        if retriever.method != "lucene":
            raise ValueError(f"{path}: BM25Search reads 'lucene' indexes, got {retriever.method!r}")
        self = cls.__new__(cls)
        self.docs = [as_document(row, i) for i, row in enumerate(retriever.corpus)]
        self.k1, self.b = float(retriever.k1), float(retriever.b)
        scores = retriever.scores
        self.data = np.asarray(scores["data"], dtype=np.float32)
        self.indices = np.asarray(scores["indices"], dtype=np.int32)
        self.indptr = np.asarray(scores["indptr"], dtype=np.int64)
        n_terms = len(self.indptr) - 1
        self.vocab = {t: int(i) for t, i in retriever.vocab_dict.items() if 0 <= int(i) < n_terms}
        if len(self.docs) != int(scores["num_docs"]):
            raise ValueError(
                f"{path}: corpus.jsonl has {len(self.docs)} documents but the index "
                f"{scores['num_docs']}"
            )
        self._finish()
        return self

    def __len__(self) -> int:
        return self.num_docs

    def __repr__(self) -> str:
        return f"BM25Search({self.num_docs} documents, {len(self.vocab)} terms)"


def _kth(scores: np.ndarray, k: int):
    """The k-th largest value of ``scores`` (which holds at least ``k`` values)."""
    return np.partition(scores, len(scores) - k)[len(scores) - k]


def _select(docs: np.ndarray, scores: np.ndarray, k: int, kth=None):
    """The best ``k`` of (docs, scores) by score, ties by document order; zero scores dropped.
    ``kth`` is the k-th largest score when the caller already knows it."""
    positive = scores > 0
    if not positive.all():
        docs, scores = docs[positive], scores[positive]
        kth = None
    if len(docs) > k:
        kth = _kth(scores, k) if kth is None else kth
        above = np.flatnonzero(scores > kth)
        ties = np.flatnonzero(scores == kth)
        ties = ties[np.argsort(docs[ties], kind="stable")][: k - len(above)]
        chosen = np.concatenate((above, ties))
        docs, scores = docs[chosen], scores[chosen]
    order = np.lexsort((docs, -scores))
    return docs[order], scores[order]
