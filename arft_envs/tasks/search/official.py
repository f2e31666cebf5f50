"""The official MAT-Search files: the benchmark JSON and the paper's one-row-per-step search rows.

- :func:`load_mat_search`: the official MAT-Search benchmark (``id``, ``question``,
  ``answer``, ``image_path``); items are split by position, first half ``simple`` and second
  half ``hard`` (75/75 for the 150 official items) unless a row has ``split``.
- :func:`load_search_rows`: the paper's one-row-per-step training file
  (``rft_agent_search_20.json``: ``image_path``, ``problem``, ``solution``) for stepwise replay.

Both read JSON lists or JSON Lines, and a bad file fails with a
:class:`~arft_envs.errors.DatasetError` naming the file, the row and the field.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from arft_envs.errors import DatasetError
from arft_envs.rewards import step_kind
from arft_envs.tasks.base import Task
from arft_envs.tasks.rows import Row, read_rows


def load_mat_search(
    path: str | Path,
    split: str | None = None,
    image_root: str | Path | None = None,
    check_images: bool = True,
) -> list[Task]:
    """The official MAT-Search benchmark (or a file :func:`~arft_envs.tasks.search.
    export.write_mat_search` wrote). ``split``: ``"simple"``, ``"hard"`` or ``None`` (all). Optional
    ``gold_queries``/``gold_steps`` fields are kept in ``meta``."""
    if split not in (None, "simple", "hard"):
        raise ValueError(f"split must be 'simple', 'hard' or None, got {split!r}")
    path = Path(path)
    root = Path(image_root) if image_root is not None else path.parent
    rows = list(read_rows(path))
    tasks = []
    for position, (number, raw) in enumerate(rows):
        row = Row(path, number, raw, kind="an object")
        image = root / row.find_text("image_path")
        if check_images and not image.is_file():
            row.fail(
                f"image file not found: {image} (paths are relative to {root}; pass "
                "image_root=... to look elsewhere, or check_images=False)",
                "image_path",
            )
        _, row_split = row.find("split")
        item_split = row_split or ("simple" if position < len(rows) // 2 else "hard")
        if item_split not in ("simple", "hard"):
            row.fail(f"unknown split {item_split!r}; expected 'simple' or 'hard'", "split")
        meta: dict[str, Any] = {"source": "mat-search", "gold_plan": ["search", "answer"]}
        for name in ("gold_queries", "gold_steps"):
            _, value = row.find(name)
            if value is not None:
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    row.fail("expected a list of strings", name)
                meta[name] = list(value)
        if "gold_steps" in meta:
            meta["gold_plan"] = [step_kind(s) or "answer" for s in meta["gold_steps"]]
        tasks.append(
            Task(
                row.find_ident(position + 1),
                row.find_text("question"),
                row.answers(),
                [image],
                item_split,
                meta,
                origins=[(str(path), number, "image_path")],
            )
        )
    selected = [t for t in tasks if split is None or t.split == split]
    if not selected:
        raise DatasetError(path, f"no items in split {split!r}" if split else "no items")
    return selected


def load_search_rows(path: str | Path, image_root: str | Path | None = None) -> list[Task]:
    """The paper's stepwise search rows (``rft_agent_search_20.json`` format).

    Each row becomes a one-step task: ``meta["prompt_text"]`` is the row's ``problem`` (the
    query and the reasoning chain so far), ``meta["gold_step"]`` its ``solution`` (and
    ``meta["gt"]`` an optional ``gt``, the full turn with its ``<think>``). The
    question is the text inside ``<query>…</query>`` when present; an answer row's gold
    answer is its ``<answer>`` span (a search row has none).
    """
    path = Path(path)
    root = Path(image_root) if image_root is not None else path.parent
    tasks = []
    for number, raw in read_rows(path):
        row = Row(path, number, raw, kind="an object")
        problem, solution = row.find_text("problem"), row.find_text("solution")
        kind = step_kind(solution)
        if kind not in ("search", "answer"):
            row.fail("expected a <search>…</search> or <answer>…</answer> step", "solution")
        match = re.search(r"<query>(.*?)</query>", problem, re.DOTALL)
        question = match.group(1).strip() if match else problem
        answers = []
        if kind == "answer":
            span = re.search(r"<answer>(.*?)</answer>", solution, re.DOTALL)
            answers = [span.group(1).strip()] if span else []
        image_field, image = row.find("image_path", "image")
        images = [root / str(image)] if image else []
        origins = [(str(path), number, str(image_field))] if image else []
        meta = {"gold_step": solution, "prompt_text": problem, "source": "search-rows"}
        _, full_turn = row.find("gt")
        if isinstance(full_turn, str):
            meta["gt"] = full_turn  # the full reference turn, with its <think>
        task = Task(row.find_ident(number), question, answers, images, "train", meta, origins)
        tasks.append(task)
    if not tasks:
        raise DatasetError(path, "no rows")
    return tasks
