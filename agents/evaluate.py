"""Evaluate a policy on an env id: run episodes, score answers with the paper's metric, and
write a prediction file in the paper's format.

A prediction is ``{"id", "pred_answer", "gt", "query", "split"}``: the format of the
released Visual-ARFT predictions plus the split of the task (``id`` is its task id), so
``arft score FILE --benchmark ...`` (``arft_envs.scoring``) reads the file back and scores it
by the same splits as ``arft eval`` did. On a finite dataset (``data=...``) the tasks run once
each, in file order; on a generator the tasks come from seeds.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym

from agents.policy import Policy
from agents.rollout import RolloutConfig, Trajectory, collect, make_envs

BENCHMARK_OF_ENV = {"MATCoding-v0": "mat-coding", "MATSearch-v0": "mat-search"}


@dataclass
class EvalResult:
    """Predictions and their score, overall and by the split each prediction records (the
    score ``arft score`` gives the written file)."""

    env_id: str
    benchmark: str
    predictions: list[dict]
    score: Any  # arft_envs.scoring.Score
    by_split: dict[str, Any] = field(default_factory=dict)  # split -> SplitScore
    trajectories: list[Trajectory] = field(default_factory=list)

    def format(self) -> str:
        lines = [f"{self.env_id} ({self.benchmark}, {len(self.predictions)} episodes, ×100)"]
        lines.append(f"{'split':<10} {'n':>6} {'F1':>7} {'EM':>7}")
        rows = [("all", self.score.overall), *self.by_split.items()]
        lines += [f"{name:<10} {s.n:>6} {s.f1:>7.2f} {s.em:>7.2f}" for name, s in rows]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "env_id": self.env_id,
            "benchmark": self.benchmark,
            "overall": vars(self.score.overall),
            "by_split": {k: vars(v) for k, v in self.by_split.items()},
        }


def evaluate(
    policy: Policy,
    env_id: str,
    *,
    episodes: int | None = None,
    env_kwargs: dict | None = None,
    config: RolloutConfig | None = None,
    num_envs: int = 8,
    vectorization_mode: str = "sync",
    progress: bool | None = None,
) -> EvalResult:
    """Run ``episodes`` episodes of ``env_id`` (all of a finite dataset when None) and score
    them. ``progress``: a bar of finished episodes on stderr (None: only on a terminal)."""
    from arft_envs.scoring import score_predictions

    config = config or RolloutConfig(temperature=0.0)
    env_kwargs = dict(env_kwargs or {})
    probe = gym.make(env_id, **env_kwargs)
    try:
        benchmark = benchmark_for(env_id, probe)
        task_ids = dataset_task_ids(probe)
        if task_ids is not None:
            task_ids = task_ids[:episodes] if episodes is not None else task_ids
            groups = len(task_ids)
        else:
            if episodes is None:
                raise ValueError(f"{env_id} generates tasks without end; pass episodes=")
            groups = episodes
        if groups == 0:
            raise ValueError(f"{env_id}: no episodes to run")
        envs = make_envs(
            env_id,
            max(1, min(num_envs, groups * config.group_size)),
            vectorization_mode,
            **env_kwargs,
        )
        bar = _progress_bar(groups * config.group_size, env_id, progress)
        _count_episodes(envs, bar)
        try:
            trajectories = collect(
                policy, envs, config, groups=groups, task_ids=task_ids, env_id=env_id
            )
            bar.update(bar.total - bar.n)  # the episodes that were still running
        finally:
            bar.close()
            envs.close()
        predictions = [prediction(t, probe) for t in trajectories]
    finally:
        probe.close()
    score = score_predictions(predictions, benchmark)
    return EvalResult(env_id, benchmark, predictions, score, dict(score.splits), trajectories)


def _progress_bar(total: int, env_id: str, enabled: bool | None):
    """A tqdm bar of finished episodes on stderr; ``enabled=None`` shows it on a terminal
    only."""
    import sys

    from tqdm.auto import tqdm

    disable = (not sys.stderr.isatty()) if enabled is None else not enabled
    # mininterval=0: an episode takes seconds, so every finished one is worth a redraw (tqdm's
    # default 0.1 s throttle would skip the counts of episodes that end close together).
    return tqdm(
        total=total,
        desc=f"eval {env_id}",
        unit="episode",
        file=sys.stderr,
        disable=disable,
        mininterval=0,
    )


def _count_episodes(envs, bar) -> None:
    """Advance ``bar`` by each episode that ends: one the env ends (terminated or truncated)
    or one the rollout abandons (its turn cap), seen when its sub-env is reset for the next
    one. ``step`` and ``reset`` are wrapped on the instance, so the env keeps its type for the
    rollout's checks."""
    running = [False] * envs.num_envs
    step, reset = envs.step, envs.reset

    def advance(n: int) -> None:
        if n:
            bar.update(min(n, bar.total - bar.n))

    def counting_step(actions):
        result = step(actions)
        ended = 0
        for i, (t, u) in enumerate(zip(result[2], result[3], strict=True)):
            if (t or u) and running[i]:
                running[i] = False
                ended += 1
        advance(ended)
        return result

    def counting_reset(*, seed=None, options=None):
        options = dict(options or {})
        mask = options.get("reset_mask")
        slots = range(envs.num_envs) if mask is None else [i for i, m in enumerate(mask) if m]
        seeds = seed if isinstance(seed, (list, tuple)) else [seed] * envs.num_envs
        starts = seeds is not None and any(s is not None for s in seeds)
        starts = starts or any(k != "reset_mask" for k in options)
        ended = 0
        for i in slots:
            ended += running[i]
            running[i] = starts
        advance(ended)
        return reset(seed=seed, options=options or None)

    envs.step, envs.reset = counting_step, counting_reset


def benchmark_for(env_id: str, env: gym.Env) -> str:
    """The ``arft_envs.scoring`` benchmark whose metric fits ``env_id``."""
    base = env_id.split(":")[-1]
    if base in BENCHMARK_OF_ENV:
        return BENCHMARK_OF_ENV[base]
    return "mat-coding" if getattr(env.unwrapped, "chinese_metric", False) else "multihop"


def dataset_task_ids(env: gym.Env) -> list[str] | None:
    """The ids of a finite task list, in order, or None for a generator or unknown env."""
    source = getattr(env.unwrapped, "tasks", None)
    tasks = getattr(source, "tasks", None)
    if isinstance(tasks, Sequence) and tasks and hasattr(tasks[0], "id"):
        return [str(t.id) for t in tasks]
    return None


def prediction(t: Trajectory, env: gym.Env) -> dict:
    """The paper's prediction record of one episode."""
    task = _task_record(env, t.task_id)
    golds = t.info.get("golds")
    if golds is None:  # the agent ended the episode before the env reported its golds
        golds = [] if task is None else [str(a) for a in task.answers]
    split = t.info.get("reset", {}).get("split")
    if split is None and task is not None:
        split = task.split
    record = {
        "id": t.task_id,
        "pred_answer": t.info.get("answer"),
        "gt": list(golds),
        "query": "" if task is None else str(task.question).strip(),
    }
    if split is not None:
        record["split"] = str(split)
    return record


def write_predictions(predictions: list[dict], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(predictions, ensure_ascii=False, indent=1), encoding="utf-8")
    return path


def _task_record(env: gym.Env, task_id: str | None):
    """The :class:`~arft_envs.tasks.base.Task` record of ``task_id`` from the env's task
    source, or None for an env without one (a third-party env) or an id it does not know."""
    source = getattr(env.unwrapped, "tasks", None)
    if source is None or task_id is None:
        return None
    try:
        return source.get(task_id)
    except Exception:  # a source raises its own error type for an unknown id
        return None
