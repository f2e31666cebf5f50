"""The easy MAT-Coding setting (``EasyMATCoding-v0``): a task source a tiny model can learn
the agentic loop on in minutes.

:class:`EasyCoding` restricts :class:`~arft_envs.tasks.coding.synthetic.SyntheticCoding` to a
few single degradations whose look differs (by default dark, overexposure and noise) on 128-px
images of one large glyph, sets a fixed held-out set apart, and shortens the gold turns to a
cue word, the repair code and the answer (:func:`_short`), so that an episode is ~110 model
tokens. ``make demo`` trains on it; the env is :func:`arft_envs.envs.mat_coding.make_easy_env`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from arft_envs.tasks.base import Task
from arft_envs.tasks.coding.degrade import restore_code
from arft_envs.tasks.coding.synthetic import SyntheticCoding

ENV_ID = "EasyMATCoding-v0"
DEFAULT_DEGRADATIONS = ("dark", "overexposure", "noise")
_CUES = {
    "dark": "too dark",
    "overexposure": "too bright",
    "blur": "blurred",
    "noise": "noisy",
    "none": "looks fine",
    "rotation90": "turned sideways",
    "rotation180": "upside down",
}


class EasyCoding:
    """A :class:`~arft_envs.tasks.coding.synthetic.SyntheticCoding` source restricted to some
    single degradations, with short gold turns.

    ``degradations``: the kinds kept (each a simple-split class). ``holdout``: how many tasks
    are set aside as the held-out set (drawn from ``holdout_seed``); :meth:`sample` never
    returns them. Task ids are the generator's, so ``get`` rebuilds any task.
    """

    def __init__(
        self,
        degradations: Sequence[str] = DEFAULT_DEGRADATIONS,
        image_size: Sequence[int] = (128, 128),
        content: str = "glyph",
        holdout: int = 48,
        holdout_seed: int = 2024,
    ):
        unknown = [d for d in degradations if d not in _CUES]
        if unknown or not degradations:
            raise ValueError(f"degradations must be among {sorted(_CUES)}, got {degradations}")
        self.kinds = tuple(degradations)
        self.source = SyntheticCoding("simple", tuple(int(v) for v in image_size), content)
        self._holdout: list[str] = []
        rng = np.random.default_rng(holdout_seed)
        while len(self._holdout) < holdout:
            task = self._draw(rng)
            if task.id not in self._holdout:
                self._holdout.append(task.id)
        self._excluded = set(self._holdout)

    @property
    def holdout_ids(self) -> list[str]:
        """The held-out task ids: the same ones for the same arguments, every run."""
        return list(self._holdout)

    def _draw(self, rng: np.random.Generator) -> Task:
        while True:
            task = self.source.make(int(rng.integers(2**32)))
            if tuple(task.meta["degradations"])[0] in self.kinds:
                return task

    def sample(self, rng: np.random.Generator) -> Task:
        while True:
            task = self._draw(rng)
            if task.id not in self._excluded:
                return _short(task)

    def get(self, task_id: str) -> Task:
        return _short(self.source.get(task_id))


def _short(task: Task) -> Task:
    """The task with short gold turns: a cue word, the repair code, the answer."""
    kind = task.meta["degradations"][0]
    answer = task.answers[0]
    steps = [f"<think> {_CUES[kind]} </think>\n<problem> {{'{kind}'}} </problem>"]
    if kind != "none":
        lines = restore_code(task.meta["degradation"]).splitlines()
        code = "\n".join(line.split("  #")[0] for line in lines)  # comments cost tokens
        steps.append(f"<think> fix it </think>\n<code>\n```python\n{code}\n```\n</code>")
    steps.append(f"<think> it reads {answer} </think>\n<answer> {answer} </answer>")
    meta = dict(task.meta, gold_steps=steps)
    return Task(task.id, task.question, task.answers, task.images, task.split, meta)
