"""Search backends behind one protocol: ``search(query, k) -> list[SearchResult]``.

- :class:`BM25Search` — exact BM25 over a local corpus (a bm25s index; save/load).
- :class:`DenseSearch` — sentence-embedding search (MiniLM, offline; ``arft[semantic]``).
- :class:`SerperSearch` — the web through the Serper API (``SERPER_API_KEY``).
- :class:`CachedSearch` — a persistent sqlite record/replay cache over any backend.

:func:`format_results` turns results into the tool message the model reads, and
:func:`make_backend` builds a backend from a short spec string. Heavy dependencies (torch,
sentence-transformers, requests) are imported only when a backend that needs them is used.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from arft_envs.tools.search.base import (
    Document,
    SearchBackend,
    SearchError,
    SearchResult,
    as_document,
    as_documents,
    format_results,
    format_search_error,
    load_corpus,
    write_corpus,
)
from arft_envs.tools.search.bm25 import BM25Search
from arft_envs.tools.search.cache import CachedSearch
from arft_envs.tools.search.dense import DenseSearch
from arft_envs.tools.search.serper import SerperSearch

BACKEND_SPECS = (
    "'bm25' (BM25 over the tasks' own corpus)",
    "'dense' (MiniLM over the tasks' own corpus)",
    "'bm25:PATH' (a saved BM25 index directory, or a corpus .jsonl/.json file)",
    "'dense:PATH' (a corpus .jsonl/.json file)",
    "'serper' (the web; needs SERPER_API_KEY)",
    "a SearchBackend instance (anything with search(query, k))",
)


def make_backend(spec: Any, docs: Iterable[Any] | None = None) -> SearchBackend:
    """A backend from ``spec`` (see :data:`BACKEND_SPECS`); ``docs`` is the corpus that the
    bare ``'bm25'`` and ``'dense'`` specs index."""
    if not isinstance(spec, str):
        if hasattr(spec, "search"):
            return spec
        raise TypeError(f"backend must be a spec string or a SearchBackend, got {spec!r}")
    kind, _, arg = spec.partition(":")
    kind = kind.strip().lower()
    if kind == "serper" and not arg:
        return SerperSearch()
    if kind in ("bm25", "dense"):
        if arg:
            path = Path(arg).expanduser()
            if kind == "bm25" and path.is_dir():
                return BM25Search.load(path)
            docs = load_corpus(path)
        elif docs is None:
            raise ValueError(
                f"backend {spec!r} indexes the tasks' own corpus, and these tasks have none; "
                f"use '{kind}:PATH' with a corpus file"
            )
        return BM25Search(docs) if kind == "bm25" else DenseSearch(docs)
    raise ValueError(f"unknown search backend {spec!r}; use one of: " + "; ".join(BACKEND_SPECS))


__all__ = [
    "BACKEND_SPECS",
    "BM25Search",
    "CachedSearch",
    "DenseSearch",
    "Document",
    "SearchBackend",
    "SearchError",
    "SearchResult",
    "SerperSearch",
    "as_document",
    "as_documents",
    "format_results",
    "format_search_error",
    "load_corpus",
    "make_backend",
    "write_corpus",
]
