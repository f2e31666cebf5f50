"""The official MAT-Coding files: the benchmark JSON and the paper's one-row-per-step training rows.

- :func:`load_mat_coding` reads the benchmark (``MAT-Coding.json``);
- :func:`load_coding_rows` reads the stepwise training file (``rft_agent_code_1_2k.json``).

Both validate every row now and fail with a :class:`~arft_envs.errors.DatasetError` that names
the file, the row and the field. Splits follow the benchmark, whose items carry ``split``:
``simple`` is one degradation (or none); ``hard`` is a rotation combined with another
degradation, and crop (the benchmark files its crop items as hard).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from arft_envs.rewards import PROBLEM_TYPES
from arft_envs.tasks.base import Task
from arft_envs.tasks.coding.degrade import PHOTOMETRIC, ROTATIONS
from arft_envs.tasks.coding.gold import gold_plan
from arft_envs.tasks.rows import Row, read_json_list

SPLITS = ("simple", "hard")
ROW_TYPES = ("pre_problem", "pre_code", "pre_answer")

# The degradation classes of each benchmark split, as type lists.
SPLIT_CLASSES: dict[str, tuple[tuple[str, ...], ...]] = {
    "simple": (
        ("rotation90",),
        ("rotation180",),
        ("dark",),
        ("overexposure",),
        ("blur",),
        ("noise",),
        ("none",),
    ),
    "hard": tuple((r, x) for r in ROTATIONS for x in PHOTOMETRIC) + (("crop",),),
}


def input_image_field(degradations: Sequence[str]) -> str:
    """Which benchmark field holds the model's input image (paper §4.3): the undegraded
    ``ori_image_path`` for crop items, else ``processed_image_path``."""
    return (
        "ori_image_path" if degradations and degradations[0] == "crop" else "processed_image_path"
    )


def load_mat_coding(
    path: str | Path,
    split: str | None = None,
    image_root: str | Path | None = None,
    check_images: bool = True,
) -> list[Task]:
    """The official MAT-Coding benchmark (``MAT-Coding.json``) as tasks, in file order.

    Every row is validated now, and a bad one raises :class:`DatasetError` naming the file,
    the row (0-based) and the field. Image paths are relative to ``image_root`` (default: the
    JSON file's folder); with ``check_images`` the image each kept row uses must exist (the
    original for crop items, else the processed image: a row ships only the one it uses). ``split`` keeps ``"simple"`` or ``"hard"`` rows (``None``: all).
    The task's image is the undegraded original for crop items, else the processed image
    (paper §4.3); it is decoded only when ``Task.load_images`` is called.

    An optional ``gold_steps`` list per row (written by :meth:`SyntheticCoding.write`) is kept
    in ``meta["gold_steps"]``.
    """
    if split not in (None, *SPLITS):
        raise ValueError(f"split must be 'simple', 'hard' or None (all), got {split!r}")
    path, rows = read_json_list(path)
    root = Path(image_root) if image_root is not None else path.parent
    tasks, seen = [], {}
    for index, raw in enumerate(rows):
        row = Row(path, index, raw)
        task_id = row.ident("id")
        if task_id in seen:
            row.fail(f"duplicate id {task_id!r} (first used in row {seen[task_id]})", "id")
        seen[task_id] = index
        question = row.text("question")
        answers = row.strings("answers", allow_numbers=True)
        degradations = row.strings("type")
        unknown = [d for d in degradations if d not in PROBLEM_TYPES]
        if unknown:
            row.fail(f"unknown degradation {unknown[0]!r}; expected {list(PROBLEM_TYPES)}", "type")
        row_split = row.choice("split", SPLITS)
        for name in ("ori_image_path", "processed_image_path"):
            row.text(name)
        meta = {
            "degradations": degradations,
            "source": "mat-coding",
            "gold_plan": gold_plan(degradations),
        }
        if "gold_steps" in row.row:
            meta["gold_steps"] = row.strings("gold_steps")
        if split is not None and row_split != split:
            continue
        used = input_image_field(degradations)
        image = row.image(used, root, check_images)
        tasks.append(
            Task(
                id=task_id,
                question=question,
                answers=answers,
                images=[image],
                split=row_split,
                meta=meta,
                origins=[(str(path), index, used)],
            )
        )
    return tasks


_SPAN_RE = {
    tag: re.compile(rf"<{tag}>(.*?)</{tag}>", re.DOTALL) for tag in ("problem", "code", "answer")
}
_ROW_TAG = {"pre_problem": "problem", "pre_code": "code", "pre_answer": "answer"}


def load_coding_rows(
    path: str | Path, image_root: str | Path | None = None, check_images: bool = True
) -> list[Task]:
    """The paper's stepwise coding rows (``rft_agent_code_1_2k.json`` format) as tasks.

    Each row is one step of a gold trajectory: ``type`` (``pre_problem``, ``pre_code`` or
    ``pre_answer``), ``image_path``, ``problem`` (the query), ``context`` (the earlier gold
    steps; optional, default empty), ``solution`` (the gold step) and ``gt`` (the full
    reference completion; optional, default ``solution``). The task's ``meta`` holds
    ``gold_step``, ``context``, ``row_type``, ``gt`` and ``prompt_text`` (the problem, then the
    context on a new line when there is one); ``answers`` is the answer span of a
    ``pre_answer`` row, else empty. Errors name the file, the row and the field.
    """
    path, rows = read_json_list(path)
    root = Path(image_root) if image_root is not None else path.parent
    tasks = []
    for index, raw in enumerate(rows):
        row = Row(path, index, raw)
        task_id = row.ident("id", str(index))
        row_type = row.choice("type", ROW_TYPES)
        problem = row.text("problem")
        context = row.text("context", default="", allow_empty=True)
        solution = row.text("solution")
        gt = row.text("gt", default=solution)
        span = _SPAN_RE[_ROW_TAG[row_type]].search(solution)
        if span is None:
            tag = _ROW_TAG[row_type]
            row.fail(f"a {row_type} row's solution must hold <{tag}>…</{tag}>", "solution")
        image = row.image("image_path", root, check_images)
        prompt = problem + ("\n" + context if context.strip() else "")
        tasks.append(
            Task(
                id=task_id,
                question=problem,
                answers=[span.group(1).strip()] if row_type == "pre_answer" else [],
                images=[image],
                split="train",
                meta={
                    "gold_step": solution,
                    "context": context,
                    "row_type": row_type,
                    "gt": gt,
                    "prompt_text": prompt,
                    "source": "mat-coding-rows",
                },
                origins=[(str(path), index, "image_path")],
            )
        )
    return tasks
