"""Writing synthetic search tasks in the official files: MAT-Search, its corpus, and stepwise rows.

:func:`benchmark_tasks` draws distinct questions from one world, as the benchmark's items
share one corpus; :func:`write_mat_search` writes them in the MAT-Search format (read back by
:func:`~arft_envs.tasks.search.official.load_mat_search`) with the world's documents as a
corpus file, and :func:`write_search_rows` writes the paper's one-row-per-step training format
(read back by :func:`~arft_envs.tasks.search.official.load_search_rows`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from arft_envs.tasks.search.questions import DEFAULT_K, question
from arft_envs.tasks.search.synthetic import stepwise_rows
from arft_envs.tasks.search.world import SearchWorld


def benchmark_tasks(n: int, seed: int = 0, text_only: bool = False, k: int = DEFAULT_K):
    """``n`` distinct questions from one world (first half simple, then hard, as MAT-Search
    orders its 150 items) and that world. Questions are distinct in what they ask (start
    entity and relation chain; two images may share a question's wording). The world grows
    with ``n`` so there are enough of them."""
    world = SearchWorld(seed, scale=max(1, -(-n // 40)))
    rng = np.random.default_rng([seed, 2])
    tasks, seen = [], set()
    n_simple = n // 2
    for i in range(n):
        split = "simple" if i < n_simple else "hard"
        for _ in range(1000):
            hops = 1 if split == "simple" else int(rng.integers(2, 4))
            draw = question(world, rng, hops, text_only, k)
            if draw is not None and tuple(draw["chain"]) not in seen:
                break
        else:  # pragma: no cover
            raise RuntimeError(f"could not draw {n} distinct questions from world {seed}")
        seen.add(tuple(draw["chain"]))
        tasks.append(world.task(str(i + 1), draw, split, source="synthetic-search-benchmark"))
    return tasks, world


def write_mat_search(directory: str | Path, n: int = 150, seed: int = 0) -> Path:
    """Write ``n`` synthetic tasks in the official MAT-Search format and return the JSON path.

    ``directory/MAT-Search.json`` holds rows ``{"id", "question", "answer", "image_path"}``
    (plus ``gold_queries`` and ``gold_steps``, which the loader keeps in ``meta``); the
    images go to ``directory/images/`` and the world's documents to
    ``directory/corpus.jsonl`` (search it with ``backend="bm25:…/corpus.jsonl"``).
    """
    from PIL import Image

    from arft_envs.tools.search.base import write_corpus

    directory = Path(directory)
    (directory / "images").mkdir(parents=True, exist_ok=True)
    tasks, world = benchmark_tasks(n, seed)
    rows = []
    for task in tasks:
        image_path = f"images/{task.id}.png"
        Image.fromarray(task.load_images()[0]).save(directory / image_path)
        rows.append(
            {
                "id": int(task.id),
                "question": task.question,
                "answer": task.answers[0],
                "image_path": image_path,
                "gold_queries": task.meta["gold_queries"],
                "gold_steps": task.meta["gold_steps"],
            }
        )
    write_corpus(world.documents, directory / "corpus.jsonl")
    path = directory / "MAT-Search.json"
    path.write_text(json.dumps(rows, ensure_ascii=False, indent=1), encoding="utf-8")
    return path


def write_search_rows(path: str | Path, n: int = 20, seed: int = 0) -> Path:
    """Write the stepwise rows of ``n`` synthetic tasks in the ``rft_agent_search_20.json``
    format (``image_path``, ``problem``, ``solution``, plus ``gt``, the full turn) with the
    images beside it; returns ``path``."""
    from PIL import Image

    path = Path(path)
    (path.parent / "images").mkdir(parents=True, exist_ok=True)
    tasks, world = benchmark_tasks(n, seed)
    rows = []
    for task in tasks:
        image_path = f"images/{task.id}.png"
        Image.fromarray(task.load_images()[0]).save(path.parent / image_path)
        for row in stepwise_rows(task, world.bm25()):
            rows.append({"image_path": image_path, **row})
    path.write_text(json.dumps(rows, ensure_ascii=False, indent=1), encoding="utf-8")
    return path
