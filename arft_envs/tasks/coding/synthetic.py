"""The synthetic MAT-Coding generator, and its one-step (stepwise) view.

:class:`SyntheticCoding` renders unlimited tasks from a seed, offline, with the full gold
trajectory in ``meta["gold_steps"]``; :class:`StepwiseSynthetic` serves one random gold step
of such a task at a time, as the paper's one-row-per-step training data does.
"""

from __future__ import annotations

import re
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from arft_envs.rewards import step_kind
from arft_envs.tasks.base import StepwiseTaskSource, Task
from arft_envs.tasks.coding import export
from arft_envs.tasks.coding.degrade import Degradation
from arft_envs.tasks.coding.gold import gold_plan, gold_steps
from arft_envs.tasks.coding.official import SPLIT_CLASSES, SPLITS
from arft_envs.tasks.coding.scenes import (
    _CROP_QUESTION,
    _QUESTIONS,
    CONTENT_KINDS,
    _content_scene,
    _crop_scene,
    _draw_degradation,
    _pick,
    _render_input,
    _scene_of,
)
from arft_envs.tasks.render import TextBlock, render_scene

# split="all" draws classes as the paper's training data is made: each single-degradation
# class (crop and none included) twice as often as each rotation+X class (100 vs 50 items).
_ALL_CLASSES = SPLIT_CLASSES["simple"] + SPLIT_CLASSES["hard"]
_ALL_WEIGHTS = np.array([1.0 if len(c) == 2 else 2.0 for c in _ALL_CLASSES])

_ID_RE = re.compile(r"synth-coding-(all|simple|hard)-(\d+)")


class SyntheticCoding:
    """Unlimited MAT-Coding tasks rendered offline, reproducible from a seed.

    Each task is a picture of text (a large glyph, a number, a word, a phrase, a few lines of
    a note, a sign; or, for crop, a grid of labelled boxes) with one of the paper's
    degradations, a question whose gold answer is the rendered text, and the gold trajectory
    in ``meta``: ``degradations``, ``gold_plan``, ``gold_steps`` (strict-format turns whose
    code really restores the image), ``content``, ``degradation`` (the parameters) and, for
    crop, ``bbox``. Images are ``H×W×3`` ``uint8`` RGB, rendered only when
    ``Task.load_images`` is called.

    ``split``: ``"simple"`` (one degradation, or none), ``"hard"`` (a rotation with dark,
    overexposure, blur or noise; and crop), or ``"all"`` (the paper's training mix).
    ``content``: ``"mixed"`` or one of :data:`CONTENT_KINDS`. Task ids are
    ``synth-coding-{split}-{seed}``; :meth:`get` rebuilds a task from its id.
    """

    def __init__(
        self,
        split: str = "all",
        image_size: tuple[int, int] = (384, 512),
        content: str = "mixed",
    ):
        if split not in ("all", *SPLITS):
            raise ValueError(f"split must be 'all', 'simple' or 'hard', got {split!r}")
        if content not in ("mixed", *CONTENT_KINDS):
            raise ValueError(f"content must be 'mixed' or one of {CONTENT_KINDS}, got {content!r}")
        height, width = (int(v) for v in image_size)
        if min(height, width) < 128 or max(height, width) > 4096:
            raise ValueError(f"image_size (H, W) sides must be in 128..4096, got {image_size}")
        self.split, self.content, self.image_size = split, content, (height, width)

    # ---------------------------------------------------------------- TaskSource protocol

    def sample(self, rng: np.random.Generator) -> Task:
        """A task from a seed drawn with ``rng``."""
        return self.make(int(rng.integers(2**32)))

    def get(self, task_id: str) -> Task:
        """Rebuild the task ``synth-coding-{split}-{seed}`` (any split, this generator's
        content and image size)."""
        match = _ID_RE.fullmatch(str(task_id))
        if match is None:
            raise KeyError(
                f"synthetic coding ids look like 'synth-coding-{self.split}-123', got {task_id!r}"
            )
        return self._make(int(match[2]), match[1])

    def make(self, seed: int) -> Task:
        """The task for ``seed`` in this generator's split."""
        return self._make(int(seed), self.split)

    def _make(self, seed: int, split: str) -> Task:
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        rng = np.random.default_rng(seed)
        if split == "all":
            names = _ALL_CLASSES[
                int(rng.choice(len(_ALL_CLASSES), p=_ALL_WEIGHTS / _ALL_WEIGHTS.sum()))
            ]
        else:
            names = _pick(rng, SPLIT_CLASSES[split])
        kind = self.content if self.content != "mixed" else _pick(rng, CONTENT_KINDS)
        height, width = self.image_size
        meta: dict[str, Any] = {}
        if names == ("crop",):
            scene, answer, bbox = _crop_scene(rng, kind, height, width)
            d = Degradation(names, bbox=bbox)
            question = _CROP_QUESTION.format(x1=bbox[0], y1=bbox[1], x2=bbox[2], y2=bbox[3])
            meta["bbox"] = list(bbox)
        else:
            scene, answer = _content_scene(rng, kind, height, width)
            question = _pick(rng, _QUESTIONS[kind])
            text_px = min(item.size for item in scene.items if isinstance(item, TextBlock))
            d = _draw_degradation(rng, names, text_px)
        meta.update(
            {
                "degradations": list(names),
                "source": "synthetic-coding",
                "gold_plan": gold_plan(names),
                "gold_steps": gold_steps(d, answer),
                "content": kind,
                "degradation": d,
            }
        )
        source = (
            partial(render_scene, scene)
            if names in (("crop",), ("none",))
            else partial(_render_input, scene, d)
        )
        task_split = "hard" if names in SPLIT_CLASSES["hard"] else "simple"
        return Task(f"synth-coding-{split}-{seed}", question, [answer], [source], task_split, meta)

    def clean_image(self, task: Task) -> np.ndarray:
        """The undegraded render of one of this generator's tasks (built on demand)."""
        return render_scene(_scene_of(task))

    # ---------------------------------------------------------------- writing files

    def tasks(self, n: int, seed: int = 0) -> list[Task]:
        """``n`` distinct tasks drawn from ``seed``, simple items first (benchmark order)."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        rng, tasks, ids = np.random.default_rng(seed), [], set()
        while len(tasks) < n:
            task = self.sample(rng)
            if task.id not in ids:
                ids.add(task.id)
                tasks.append(task)
        return sorted(tasks, key=lambda t: SPLITS.index(t.split))

    def write(self, directory: str | Path, n: int, seed: int = 0) -> Path:
        """Write ``n`` tasks in the official benchmark format; see :func:`export.write`."""
        return export.write(self, directory, n, seed)

    def stepwise_rows(self, n: int, seed: int = 0) -> list[dict]:
        """The stepwise training rows of ``n`` tasks; see :func:`export.stepwise_rows`."""
        return export.stepwise_rows(self, n, seed)

    def write_stepwise(self, path: str | Path, n: int, seed: int = 0) -> Path:
        """Write the stepwise rows and their images; see :func:`export.write_stepwise`."""
        return export.write_stepwise(self, path, n, seed)


class StepwiseSynthetic(StepwiseTaskSource):
    """Synthetic stepwise rows: each sampled task is one random step of a synthetic item."""

    def _row(self, task: Task, index: int) -> Task:
        steps = task.meta["gold_steps"]
        index = index % len(steps)
        context = "\n".join(steps[:index])
        prompt = f"<query> {task.question} </query>" + (f"\n{context}" if context else "")
        meta = dict(task.meta, gold_step=steps[index], context=context, prompt_text=prompt)
        images = task.images
        if step_kind(steps[index]) == "answer" and "code" in task.meta.get("gold_plan", ()):
            # as in the paper's pre_answer rows, the answer step sees the repaired image
            images = [lambda task=task: self.source.clean_image(task)]
        return Task(f"{task.id}:{index}", task.question, task.answers, images, task.split, meta)
