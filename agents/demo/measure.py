"""How the demo measures a policy on the held-out tasks: what one episode achieved
(:func:`episode_success`, :func:`repaired`), the rates over many (:func:`evaluate_success`,
with the tool calls by status, :func:`tool_status_counts`), and the change
between two evaluations of the same tasks with a bootstrap interval (:func:`paired_gain`).

What a task is (its degradation, so whether it needs a repair) is read from its
:class:`~arft_envs.tasks.base.Task` record, from the task source the env draws from; nothing
is rebuilt from a task id or read out of the prompt.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from arft_envs.tasks.base import Task
from arft_envs.tasks.coding.easy import ENV_ID


class TaskLookup(Protocol):
    """Anything that returns the :class:`Task` record of an id (a task source)."""

    def get(self, task_id: str) -> Task: ...


@dataclass
class Evaluation:
    """Held-out results of one policy: rates over episodes, and the episodes themselves with
    each one's :func:`episode_success` flags (in the same order)."""

    success: float
    diagnosis: float
    well_formed: float
    code_ran: float
    answer_f1: float
    mean_return: float
    episodes: int
    trajectories: list = field(default_factory=list, repr=False)
    flags: list[dict[str, bool]] = field(default_factory=list, repr=False)
    repaired: float | None = None
    tool_status: dict[str, int] = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        """The rates of :meth:`summary.json <agents.demo.__main__.run_demo>`'s held-out table;
        ``repaired`` is None where the env measured no repair, and ``tool_status`` counts
        the tool calls by status (``ok``, ``error``, ``timeout``, ``bad_result``, ...)."""
        return {
            "success": self.success,
            "diagnosis": self.diagnosis,
            "well_formed": self.well_formed,
            "code_ran": self.code_ran,
            "repaired": self.repaired,
            "answer_f1": self.answer_f1,
            "mean_return": self.mean_return,
            "tool_status": dict(self.tool_status),
        }


def gold_kind(task: Task) -> str:
    """The degradation of a MAT-Coding task, from its record (``"none"``: nothing to repair)."""
    return task.meta["degradations"][0]


def _needs_code(trajectory, task: Task | None) -> bool:
    """Whether the episode's task has a degradation to repair: from the ``degradations`` the
    env reports in its final info (never at reset: it is the diagnosis's gold), else from the
    task's record."""
    reported = trajectory.info.get("degradations")
    if reported is not None:
        return list(reported) != ["none"]
    if task is None:
        raise ValueError(
            f"task {trajectory.task_id!r}: the env reports no 'degradations' in its final info; "
            "pass the task's record (task=tasks.get(task_id))"
        )
    return gold_kind(task) != "none"


def episode_success(trajectory, task: Task | None = None) -> dict[str, bool | None]:
    """What one MAT-Coding episode achieved: exact diagnosis, all turns well-formed, the
    repair ran (when the task has a degradation), an answer given; ``success`` is all of them.
    Whether there was something to repair is read from the env's final info, or from ``task``
    (the episode's :class:`Task` record) for an env that does not report it.

    ``repaired`` (not part of ``success``): a code turn measurably restored the image
    (:func:`repaired`); True where there was nothing to repair, None where the env measured
    no repair (a task without a clean image)."""
    totals: dict[str, float] = {}
    formats = []
    for turn in trajectory.reward_components:
        for name, value in turn.items():
            totals[name] = totals.get(name, 0.0) + float(value)
        formats.append(float(turn.get("format", 0.0)))
    answered = trajectory.info.get("answer") is not None
    diagnosis = totals.get("problem", 0.0) == 1.0
    needs_code = _needs_code(trajectory, task)
    code_ran = totals.get("code", 0.0) >= 1.0 if needs_code else True
    well_formed = bool(formats) and all(f == 1.0 for f in formats) and answered
    return {
        "diagnosis": diagnosis,
        "well_formed": well_formed,
        "code_ran": code_ran,
        "success": diagnosis and well_formed and code_ran,
        "repaired": repaired(trajectory) if needs_code else True,
    }


def repaired(trajectory) -> bool | None:
    """Whether one of the episode's code turns measurably restored its image
    (``info["repair"]["improved"]`` of a turn, :mod:`arft_envs.repair`): False when no code
    turn ran or none improved it, None when the code ran but the env had no clean image to
    measure it against."""
    reports = [i["repair"] for i in trajectory.turn_infos if "repair" in i]
    if any(r is not None and r.get("improved") for r in reports):
        return True
    if reports and all(r is None for r in reports):
        return None
    return False


def tool_status_counts(trajectories: Sequence) -> dict[str, int]:
    """Tool calls by status over the episodes' turns (``info["tool_status"]``; turns that
    called no tool, an answer or a format error, are not counted), most frequent first."""
    counts: dict[str, int] = {}
    for t in trajectories:
        for info in t.turn_infos:
            status = info.get("tool_status")
            if status is not None:
                counts[status] = counts.get(status, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def play(
    policy,
    task_ids: Sequence[str],
    *,
    env_id: str = ENV_ID,
    env_kwargs: dict | None = None,
    temperature: float = 1.0,
    samples: int = 1,
    max_new_tokens: int = 128,
    max_turns: int = 4,
    seed: int = 0,
    num_envs: int = 16,
    progress: bool | None = None,
    desc: str = "held-out",
    autocast: Any = None,
) -> list:
    """The trajectories of ``samples`` episodes on each of ``task_ids`` (sampled at
    ``temperature``, 0 for greedy, seeded), played without gradients; what every held-out
    evaluation of the demos plays. ``progress``: a bar of finished episodes named ``desc`` on
    stderr, as ``arft eval`` draws it (None: on a terminal only). ``autocast``: a CPU autocast
    dtype to play in (None: the model's own precision)."""
    import contextlib

    import torch

    from agents.evaluate import _count_episodes, _progress_bar
    from agents.rollout import RolloutConfig, collect, make_envs

    envs = make_envs(env_id, min(num_envs, len(task_ids) * samples), **(env_kwargs or {}))
    bar = _progress_bar(len(task_ids) * samples, desc, progress)
    bar.set_description(desc)
    _count_episodes(envs, bar)
    config = RolloutConfig(
        group_size=samples,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        max_turns=max_turns,
        seed=seed,
    )
    precision = (
        contextlib.nullcontext() if autocast is None else torch.autocast("cpu", dtype=autocast)
    )
    try:
        policy.model.eval()
        with torch.no_grad(), precision:
            trajectories = collect(policy, envs, config, task_ids=list(task_ids), env_id=env_id)
        bar.update(bar.total - bar.n)  # the episodes that were still running
    finally:
        bar.close()
        envs.close()
    return trajectories


def evaluate_success(policy, tasks: TaskLookup, task_ids: Sequence[str], **how: Any) -> Evaluation:
    """Play episodes on each of ``task_ids`` with :func:`play` (``how``: its keywords —
    ``env_id``, ``temperature``, ``samples``, ``max_new_tokens``, ``max_turns``, ``seed``, …)
    and measure them with :func:`episode_success`; ``tasks`` is the task source the env draws
    from (for each task's record)."""
    trajectories = play(policy, task_ids, **how)
    flags = [episode_success(t, tasks.get(t.task_id)) for t in trajectories]

    def rate(key: str) -> float | None:
        known = [f[key] for f in flags if f[key] is not None]
        return float(np.mean(known)) if known else None

    return Evaluation(
        success=rate("success"),
        diagnosis=rate("diagnosis"),
        well_formed=rate("well_formed"),
        code_ran=rate("code_ran"),
        answer_f1=float(np.mean([float(t.info.get("f1", 0.0) or 0.0) for t in trajectories])),
        mean_return=float(np.mean([t.episode_return for t in trajectories])),
        episodes=len(trajectories),
        trajectories=trajectories,
        flags=flags,
        repaired=rate("repaired"),
        tool_status=tool_status_counts(trajectories),
    )


def paired_gain(
    before: Evaluation, after: Evaluation, resamples: int = 10_000, seed: int = 0
) -> dict[str, Any]:
    """Success after minus before on the same held-out tasks, with a 95% interval from a
    bootstrap over tasks (episodes of one task are not independent, so tasks are resampled).

    Returns ``{"gain", "ci95": [low, high], "tasks"}``; the interval excluding 0 is what the
    demo calls a measurable change.
    """

    def per_task(evaluation: Evaluation) -> dict[str, float]:
        hits: dict[str, list[bool]] = {}
        for t, f in zip(evaluation.trajectories, evaluation.flags, strict=True):
            hits.setdefault(t.task_id, []).append(f["success"])
        return {task: float(np.mean(v)) for task, v in hits.items()}

    return paired_task_gain(per_task(before), per_task(after), resamples, seed)


def paired_task_gain(
    before: dict[str, float], after: dict[str, float], resamples: int = 10_000, seed: int = 0
) -> dict[str, Any]:
    """A per-task score after minus before (``{task id: mean over its episodes}``, the same
    tasks in both), with a 95% percentile-bootstrap interval over tasks: what
    :func:`paired_gain` computes for success, for any per-task score.

    Returns ``{"gain", "ci95": [low, high], "tasks"}``.
    """
    if set(before) != set(after) or not before:
        raise ValueError("paired_gain needs evaluations of the same, non-empty set of tasks")
    diffs = np.array([after[task] - before[task] for task in sorted(before)])  # (tasks,)
    rng = np.random.default_rng(seed)
    means = diffs[rng.integers(len(diffs), size=(resamples, len(diffs)))].mean(axis=1)
    low, high = np.quantile(means, [0.025, 0.975])
    return {"gain": float(diffs.mean()), "ci95": [float(low), float(high)], "tasks": len(diffs)}
