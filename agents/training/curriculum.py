"""A curriculum over task difficulty: which tasks a step's groups play, easy to hard.

The difficulty of a task (:func:`task_difficulty`) is read from what the env's tasks already
say about themselves: MAT-Search's hop count (``meta["hops"]``, 1 simple, 2–3 hard), the
number of MAT-Coding degradations (``meta["degradations"]``: 1 for the simple split's single
problem, ``none`` and ``crop`` included, 2 for the hard split's rotation + X), else the split
(``simple`` 1, ``hard`` 2; the stepwise search rows say only that). A curriculum is a list of
levels (``curriculum_levels``); a stage trains on tasks of exactly its level. When the stage
changes is the schedule's:

- ``step``: stage k for steps ``k·S + 1 … (k+1)·S`` (``S = curriculum_stage_steps``), the last
  stage to the end;
- ``success``: start at the first level and move on once the success rate, averaged over the
  last ``curriculum_window`` steps of the current stage, reaches ``curriculum_threshold``
  (success: :func:`agents.training.filtering.episode_success`).

The tasks are picked on the agents side, with no help from the env: :class:`TaskPicker`
draws candidate tasks from a private copy of the env's own task source (its ``sample``, with
an RNG seeded by the group's seed) until one has the stage's difficulty, and the rollout
resets each group on that task id (``collect(task_ids=...)``, i.e. ``reset(options=
{"task_id": ...})``), which every arft env supports, vectorised sync or async. Held-out tasks
stay held out (the source's ``sample`` never returns them).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

CURRICULA = ("off", "step", "success")
MAX_DRAWS = 4096  # candidate tasks drawn per group before giving up on a level
SPLIT_LEVELS = {"simple": 1, "hard": 2}


def task_difficulty(task: Any) -> int | None:
    """The difficulty of an arft :class:`~arft_envs.tasks.base.Task`: its hop count, else
    its number of degradations, else 1 for the simple split and 2 for the hard one; None when
    the task says none of these."""
    meta = getattr(task, "meta", {}) or {}
    if meta.get("hops") is not None:
        return int(meta["hops"])
    if meta.get("degradations"):
        return len(meta["degradations"])
    return SPLIT_LEVELS.get(getattr(task, "split", None))


def stage_for_step(step: int, stage_steps: int, n_levels: int) -> int:
    """The stage of ``step`` (1-based) under the ``step`` schedule."""
    return min((step - 1) // stage_steps, n_levels - 1)


class Curriculum:
    """The current stage and its history (:meth:`before_step`, :meth:`observe`), and the
    tasks of a step's groups (:meth:`task_ids`)."""

    def __init__(self, config: Any, picker: TaskPicker | None = None):
        self.config = config
        self.levels = [int(v) for v in config.curriculum_levels]
        self.mode = config.curriculum
        self.stage = 0
        self.recent: list[float] = []  # success rates of the current stage's steps
        self.picker = picker

    @property
    def level(self) -> int:
        return self.levels[self.stage]

    def before_step(self, step: int) -> None:
        if self.mode == "step":
            self.stage = stage_for_step(step, self.config.curriculum_stage_steps, len(self.levels))

    def task_ids(self, seed: int | None, groups: int) -> list[str]:
        """One task id of the current level per group, drawn from ``seed`` (the rollout's)."""
        if self.picker is None:
            raise RuntimeError("the curriculum has no task picker; call Curriculum.bind first")
        return [self.picker.pick(self.level, [seed or 0, g]) for g in range(groups)]

    def observe(self, success_rate: float) -> dict[str, float]:
        """Take the step's success rate (over every process); under ``success``, move on when
        the window's mean reaches the threshold. Returns the metrics to log."""
        cfg = self.config
        out = {"curriculum/level": float(self.level), "curriculum/stage": float(self.stage)}
        self.recent.append(float(success_rate))
        self.recent = self.recent[-cfg.curriculum_window :]
        if self.mode == "success":
            mean = float(np.mean(self.recent))
            out["curriculum/window_success"] = mean
            full = len(self.recent) >= cfg.curriculum_window
            if full and mean >= cfg.curriculum_threshold and self.stage < len(self.levels) - 1:
                self.stage += 1
                self.recent = []
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"stage": self.stage, "recent": list(self.recent)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.stage = int(state["stage"])
        self.recent = [float(v) for v in state["recent"]]


class TaskPicker:
    """Draws tasks of a given difficulty from an env's task source (``sample(rng)``, and each
    task's :func:`task_difficulty`); ``source`` is e.g. ``env.unwrapped.tasks``."""

    def __init__(self, source: Any, name: str = "the env"):
        if not (hasattr(source, "sample") and hasattr(source, "get")):
            raise TypeError(
                f"{name}: a curriculum needs the env's task source (an object with sample(rng) "
                "and get(task_id), as arft envs have in env.unwrapped.tasks); this env has "
                f"{type(source).__name__}. Set curriculum='off' for it"
            )
        self.source = source
        self.name = name

    def pick(self, level: int, seed: Sequence[int] | int) -> str:
        """The id of the first task of difficulty ``level`` drawn with ``seed``."""
        rng = np.random.default_rng(seed)
        seen: set[int | None] = set()
        for _ in range(MAX_DRAWS):
            task = self.source.sample(rng)
            difficulty = task_difficulty(task)
            if difficulty == level:
                return str(task.id)
            seen.add(difficulty)
        raise RuntimeError(
            f"{self.name}: no task of difficulty {level} in {MAX_DRAWS} draws (difficulties "
            f"seen: {sorted(seen, key=str)}); set curriculum_levels to levels the env's tasks "
            "have (e.g. MATCoding: 1 simple, 2 hard; MATSearch: hop counts 1-3), or widen the "
            "env's split"
        )


def config_problems(cfg: Any) -> list[str]:
    """What is wrong with the curriculum fields of ``cfg``, each with its fix."""
    p: list[str] = []
    if cfg.curriculum == "off":
        return p
    try:
        levels = [int(v) for v in cfg.curriculum_levels]
    except (TypeError, ValueError):
        p.append(
            f"curriculum_levels must be integers (task difficulties, easy to hard), got "
            f"{list(cfg.curriculum_levels)}"
        )
        levels = []
    if not p and not levels:
        p.append("curriculum_levels must name at least one difficulty, e.g. 1,2")
    if cfg.curriculum_stage_steps < 1:
        p.append(f"curriculum_stage_steps must be >= 1, got {cfg.curriculum_stage_steps}")
    if cfg.curriculum_window < 1:
        p.append(f"curriculum_window must be >= 1, got {cfg.curriculum_window}")
    if not 0 <= cfg.curriculum_threshold <= 1:
        p.append(f"curriculum_threshold must be in [0, 1], got {cfg.curriculum_threshold}")
    return p
