"""BM25Search speed: index build time, query latency (p50/p95), queries/s and memory, against
rank-bm25 (the common pure-Python baseline) and bm25s's own numpy retriever, on the same
synthetic corpus and queries, measured in the same run.

The corpus imitates the env's encyclopaedia: each document is one made-up entity (a unique
rare name), a templated sentence about its kind, industry, founding year and two related
entities, then 15–35 filler words drawn from a Zipf law over a 30,000-word vocabulary, so
some terms are rare and some occur in most documents (about 45 indexed tokens per document).
The queries mix the two shapes a search agent sends: 60% "entity" queries like the env's gold
queries (a name plus relation words, e.g. "Quorvane founder year") and 40% "keyword" queries
(2–4 words drawn from a random document, often very common ones).

Every engine is measured in its own child process (so peak memory is its own), one query at a
time on one thread, top k = 4 (the paper's). rank-bm25 scores every document in Python per
query term, so at large sizes it is timed on a sample of the queries (the table says how
many); its build is timed in full. The agreement column is the share of sampled queries whose
top-1 document is the same as BM25Search's (rank-bm25 uses a different idf, so it can differ).

Usage: ``python benchmarks/search_latency.py [--sizes 10000 1000000] [--queries 2000]``.
Prints a table and writes ``benchmarks/results/search_latency.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # single-threaded, before numpy loads

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "search_latency.json"
K = 4
ENGINES = ("bm25search", "rank_bm25", "bm25s")

_ONSETS = "b br c cr d dr f fl g gr h k kr l m n p pr qu r s sk st t th tr v vr w z zh".split()
_VOWELS = "a e i o u ae ei ou y".split()
_KINDS = "company city person product festival university river museum".split()
_INDUSTRIES = (
    "robotics textile shipping pharmaceutical aerospace coffee solar publishing semiconductor "
    "furniture cosmetics insurance toy mining fishing banking railway software brewing glass"
).split()
_RELATIONS = ("founder", "headquarters", "founded year", "industry", "chief executive", "mayor")
_FUNCTION = "the of and in a to is was by for on with as at from its".split()


def _syllables(n: int) -> list[str]:
    return [o + v for o in _ONSETS for v in _VOWELS][:n]


def make_corpus(n_docs: int, seed: int = 0) -> tuple[list[dict], list[str]]:
    """``n_docs`` synthetic documents (title, text, url) and the entity names."""
    rng = np.random.default_rng(seed)
    syl = _syllables(240)
    # Unique names: 4 syllables from a permuted index in base 240 (240**4 >> 1M).
    codes = rng.permutation(max(n_docs, 1) * 7)[:n_docs] + 240**3
    digits = [(codes // 240**p) % 240 for p in range(4)]
    names = [
        (syl[a] + syl[b] + syl[c] + syl[d]).capitalize()
        for a, b, c, d in zip(*(x.tolist() for x in digits), strict=True)
    ]
    vocab = _syllables(240)
    words = [vocab[i % 240] + vocab[(i // 240) % 240] + "n" for i in range(30_000)]
    p = 1.0 / np.arange(1, len(words) + 1) ** 1.05
    p /= p.sum()
    lengths = rng.integers(15, 36, size=n_docs)
    filler = rng.choice(len(words), size=int(lengths.sum()), p=p).tolist()
    function = rng.integers(len(_FUNCTION), size=int(lengths.sum())).tolist()
    kinds = rng.integers(len(_KINDS), size=n_docs).tolist()
    industries = rng.integers(len(_INDUSTRIES), size=n_docs).tolist()
    years = rng.integers(1800, 2024, size=n_docs).tolist()
    refs = rng.integers(n_docs, size=(n_docs, 2)).tolist()
    docs, start = [], 0
    for i in range(n_docs):
        end = start + int(lengths[i])
        body = " ".join(
            words[w] if j % 3 else _FUNCTION[f]
            for j, (w, f) in enumerate(zip(filler[start:end], function[start:end], strict=True))
        )
        start = end
        name = names[i]
        text = (
            f"{name} is a {_KINDS[kinds[i]]} in the {_INDUSTRIES[industries[i]]} industry, "
            f"founded in {years[i]} by {names[refs[i][0]]}. Its headquarters are in "
            f"{names[refs[i][1]]}. {body}."
        )
        docs.append({"title": name, "text": text, "url": f"bench://{i}"})
    return docs, names


def make_queries(docs: list[dict], names: list[str], n: int, seed: int = 1) -> list[str]:
    rng = np.random.default_rng(seed)
    queries = []
    for _ in range(n):
        i = int(rng.integers(len(docs)))
        if rng.random() < 0.6:
            queries.append(f"{names[i]} {_RELATIONS[int(rng.integers(len(_RELATIONS)))]}")
        else:
            words = docs[i]["text"].rstrip(".").split(". ")[-1].split()
            m = min(len(words), int(rng.integers(2, 5)))
            queries.append(" ".join(rng.choice(words, size=m, replace=False).tolist()))
    return queries


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def worker(engine: str, n_docs: int, n_queries: int, sample: int, seed: int) -> dict:
    """Build one engine over the corpus, time its queries; returns the measurements."""
    from arft_envs.tools.search.bm25 import BM25Search, tokenize

    docs, names = make_corpus(n_docs, seed)
    queries = make_queries(docs, names, n_queries)
    if engine != "bm25search":
        queries = queries[:sample]
    reference = None
    before = _rss_mb()
    t0 = time.perf_counter()
    if engine == "bm25search":
        index = BM25Search(docs)

        def run(query):
            return [r.url for r in index.search(query, K)]

    elif engine == "rank_bm25":
        from rank_bm25 import BM25Okapi

        index = BM25Okapi(tokenize(f"{d['title']} {d['text']}") for d in docs)

        def run(query):
            scores = index.get_scores(tokenize(query))
            top = np.argpartition(-scores, K)[:K]
            return [docs[i]["url"] for i in top[np.argsort(-scores[top], kind="stable")]]

    else:
        import bm25s

        texts = [f"{d['title']} {d['text']}" for d in docs]
        index = bm25s.BM25(method="lucene")
        index.index(bm25s.tokenize(texts, stopwords="en", show_progress=False), show_progress=False)
        del texts

        def run(query):
            tokens = [t for t in tokenize(query) if t in index.vocab_dict]
            if not tokens:  # bm25s fails on a query with no known term
                return []
            found, _ = index.retrieve([tokens], k=K, show_progress=False)
            return [docs[i]["url"] for i in found[0].tolist()]

    build_s = time.perf_counter() - t0
    index_mb = _rss_mb() - before
    if engine != "bm25search":
        reference = BM25Search(docs)  # for the agreement column, built after the measurement
    run(queries[0])  # warm-up
    latencies, agree = [], 0
    start = time.perf_counter()
    for query in queries:
        t = time.perf_counter()
        top = run(query)
        latencies.append(time.perf_counter() - t)
        if reference is not None:
            best = reference.search(query, 1)
            agree += bool(top and best and top[0] == best[0].url)
    total = time.perf_counter() - start
    if reference is not None:  # the reference searches ran inside the timed loop: remove them
        total = float(np.sum(latencies))
    lat = np.asarray(latencies) * 1000
    return {
        "engine": engine,
        "docs": n_docs,
        "queries_timed": len(queries),
        "build_s": build_s,
        "p50_ms": float(np.percentile(lat, 50)),
        "p95_ms": float(np.percentile(lat, 95)),
        "qps": len(queries) / total,
        "index_mb": index_mb,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "top1_agreement": agree / len(queries) if reference is not None else None,
    }


def run_child(engine: str, n_docs: int, args) -> dict:
    sample = args.sample_queries if n_docs > 100_000 else args.queries
    if engine == "bm25s" and n_docs > 100_000:
        sample = min(args.queries, 10 * args.sample_queries)
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        engine,
        "--docs",
        str(n_docs),
        "--queries",
        str(args.queries),
        "--sample-queries",
        str(sample),
        "--seed",
        str(args.seed),
    ]
    print(f"  {engine} over {n_docs:,} documents ...", flush=True)
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument(
        "--sample-queries",
        type=int,
        default=30,
        help="queries timed for rank-bm25 above 100k documents (bm25s gets 10x as many)",
    )
    parser.add_argument("--engines", nargs="+", default=list(ENGINES), choices=ENGINES)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--worker", choices=ENGINES, help=argparse.SUPPRESS)
    parser.add_argument("--docs", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(
            json.dumps(worker(args.worker, args.docs, args.queries, args.sample_queries, args.seed))
        )
        return 0

    rows = []
    for n_docs in args.sizes:
        for engine in args.engines:
            rows.append(run_child(engine, n_docs, args))
    ours = {r["docs"]: r for r in rows if r["engine"] == "bm25search"}
    for r in rows:
        base = ours.get(r["docs"])
        r["bm25search_speedup_qps"] = base["qps"] / r["qps"] if base else None
        r["bm25search_speedup_build"] = r["build_s"] / base["build_s"] if base else None

    header = (
        f"{'engine':<11} {'docs':>9} {'build s':>8} {'p50 ms':>8} {'p95 ms':>8} {'q/s':>9} "
        f"{'timed':>6} {'index MB':>9} {'peak MB':>8} {'top1 agree':>10} {'ours x q/s':>10}"
    )
    print("\n" + header + "\n" + "-" * len(header))
    for r in rows:
        agree = "" if r["top1_agreement"] is None else f"{100 * r['top1_agreement']:.0f}%"
        speed = "" if r["engine"] == "bm25search" else f"{r['bm25search_speedup_qps']:.0f}x"
        print(
            f"{r['engine']:<11} {r['docs']:>9,} {r['build_s']:>8.1f} {r['p50_ms']:>8.3f} "
            f"{r['p95_ms']:>8.3f} {r['qps']:>9,.0f} {r['queries_timed']:>6} "
            f"{r['index_mb']:>9.0f} {r['peak_rss_mb']:>8.0f} {agree:>10} {speed:>10}"
        )
    result = {
        "benchmark": "search_latency",
        "k": K,
        "machine": {
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
        },
        "notes": (
            "single-threaded, one query at a time; rank-bm25 and bm25s timed on a query "
            "sample above 100k documents (queries_timed); index_mb is the RSS growth during "
            "the build, peak_rss_mb the child's peak (corpus included)"
        ),
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
