"""Writing a MAT-Coding task source out in the official file formats, images beside the rows.

:func:`write` writes the benchmark format (which :func:`~arft_envs.tasks.coding.official.
load_mat_coding` reads back), :func:`stepwise_rows` and :func:`write_stepwise` the paper's
one-row-per-step training format (read back by :func:`~arft_envs.tasks.coding.official.
load_coding_rows`). Each works over any source with ``tasks(n, seed)`` whose tasks were made
by :class:`~arft_envs.tasks.coding.synthetic.SyntheticCoding`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol

from PIL import Image

from arft_envs.tasks.base import Task
from arft_envs.tasks.coding.degrade import degrade
from arft_envs.tasks.coding.official import input_image_field
from arft_envs.tasks.coding.scenes import _scene_of
from arft_envs.tasks.render import render_scene


class CodingTasks(Protocol):
    """What the writers need of a source: ``n`` distinct tasks drawn from ``seed``."""

    def tasks(self, n: int, seed: int = 0) -> list[Task]: ...


def write(source: CodingTasks, directory: str | Path, n: int, seed: int = 0) -> Path:
    """Write ``n`` tasks of ``source`` in the official benchmark format: ``mat_coding.json``
    plus PNG images under ``images/``. Returns the JSON path, which :func:`load_mat_coding`
    reads.

    Rows carry one extra field, ``gold_steps``, which the loader keeps in ``meta``.
    """
    directory = Path(directory)
    rows = []
    for task in source.tasks(n, seed):
        ori, proc = _write_images(task, directory)
        rows.append(
            {
                "id": task.id,
                "question": task.question,
                "answers": list(task.answers),
                "ori_image_path": ori,
                "processed_image_path": proc,
                "type": list(task.meta["degradations"]),
                "split": task.split,
                "gold_steps": list(task.meta["gold_steps"]),
            }
        )
    path = directory / "mat_coding.json"
    path.write_text(json.dumps(rows, ensure_ascii=False, indent=1), encoding="utf-8")
    return path


def stepwise_rows(source: CodingTasks, n: int, seed: int = 0) -> list[dict]:
    """The stepwise training rows (``rft_agent_code_1_2k.json`` format) of ``n`` tasks.

    One row per gold step: ``pre_problem``, ``pre_code`` (not for ``none`` items),
    ``pre_answer``. ``context`` holds the earlier gold steps, ``solution`` the step's
    action, ``gt`` the full step with its ``<think>``. As in the paper's data, the answer
    row shows the clean image (``*_ori.png``) and the others the input image. Image paths
    are those :func:`write` and :func:`write_stepwise` create (``images/{id}_….png``).
    """
    return [row for task in source.tasks(n, seed) for row in _stepwise_rows(task)]


def write_stepwise(source: CodingTasks, path: str | Path, n: int, seed: int = 0) -> Path:
    """Write :func:`stepwise_rows` to ``path`` and their images beside it (``images/``);
    returns ``path``, which :func:`load_coding_rows` reads."""
    path = Path(path)
    rows = []
    for task in source.tasks(n, seed):
        _write_images(task, path.parent)
        rows.extend(_stepwise_rows(task))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows, ensure_ascii=False, indent=1), encoding="utf-8")
    return path


def _image_names(task: Task) -> tuple[str, str]:
    return f"images/{task.id}_ori.png", f"images/{task.id}_proc.png"


def _write_images(task: Task, directory: Path) -> tuple[str, str]:
    """Write a task's clean (``_ori``) and input-or-degraded (``_proc``) images as PNG."""
    ori, proc = _image_names(task)
    (directory / "images").mkdir(parents=True, exist_ok=True)
    clean = render_scene(_scene_of(task))
    Image.fromarray(clean).save(directory / ori)
    degraded = degrade(clean, task.meta["degradation"])
    Image.fromarray(degraded).save(directory / proc)
    return ori, proc


def _stepwise_rows(task: Task) -> list[dict]:
    ori, proc = _image_names(task)
    field = input_image_field(task.meta["degradations"])
    input_image = ori if field == "ori_image_path" else proc
    steps = task.meta["gold_steps"]
    rows = []
    for index, (kind, step) in enumerate(zip(task.meta["gold_plan"], steps, strict=True)):
        action = step[step.index("</think>") + len("</think>") :].strip()
        rows.append(
            {
                "id": f"{task.id}-{kind}",
                "type": f"pre_{kind}",
                "image_path": ori if kind == "answer" else input_image,
                "problem": f"<query> {task.question} </query>",
                "context": "\n".join(steps[:index]),
                "solution": action,
                "gt": step,
            }
        )
    return rows
