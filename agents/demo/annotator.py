"""The demo's noisy annotator: the scripted expert with a fixed share of mislabelled tasks."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from arft_envs.tasks.base import Task
from arft_envs.tasks.coding.easy import _short
from arft_envs.tasks.coding.synthetic import SyntheticCoding


class MislabellingExpert:
    """The scripted expert with an annotator's noise: on a fraction ``error`` of tasks it
    names another of ``kinds`` and writes that degradation's repair, then answers as the gold
    does. The tasks are chosen by a hash of the task id, so a task is always demonstrated the
    same way, as in a fixed, noisily labelled dataset. Tasks without a repair (``none``) keep
    their gold turns, and ``none`` is never the wrong label, so every episode keeps its shape.

    Use as the warm start's demonstrator: ``GRPOTrainer(config, expert=MislabellingExpert(…))``.
    """

    def __init__(self, kinds: Sequence[str], error: float):
        if not 0.0 <= error < 1.0:
            raise ValueError(f"error must be in [0, 1), got {error}")
        self.kinds = tuple(k for k in kinds if k != "none")
        if error and len(self.kinds) < 2:
            raise ValueError(f"mislabelling needs two degradations with a repair, got {kinds}")
        self.error = error
        from arft_envs.experts import ScriptedExpert

        self._gold = ScriptedExpert()
        self._turns: dict[str, list[str]] = {}  # kind -> short gold turns of one example task
        rng = np.random.default_rng(0)
        source = SyntheticCoding("simple", (128, 128), "glyph")
        while len(self._turns) < len(self.kinds):
            task = source.make(int(rng.integers(2**32)))
            kind = task.meta["degradations"][0]
            if kind in self.kinds and kind not in self._turns:
                self._turns[kind] = _short(task).meta["gold_steps"]

    def wrong_label(self, task: Task) -> str | None:
        """The degradation this expert names for ``task`` instead of the true one, or None."""
        kind = task.meta["degradations"][0]
        if kind not in self.kinds or not self.error:
            return None
        digest = zlib.crc32(task.id.encode())
        if (digest & 0xFFFF) / 0x10000 >= self.error:
            return None
        others = [k for k in self.kinds if k != kind]
        return others[(digest >> 16) % len(others)]

    def __call__(self, obs: Any, env: Any) -> str:
        turn = self._gold(obs, env)
        task = env.unwrapped.task
        wrong = self.wrong_label(task)
        index = task.meta["gold_steps"].index(turn)
        if wrong is None or index >= 2:  # the answer turn stays the gold one
            return turn
        return self._turns[wrong][index]
