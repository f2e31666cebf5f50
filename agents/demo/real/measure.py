"""How the real-model demo measures a policy on the held-out questions: answer F1 and the
search behaviour of each episode (:func:`evaluate`, played by the main demo's
:func:`agents.demo.measure.play`), and GRPO − SFT across seeds (:func:`across_seeds`;
per seed, the main demo's :func:`~agents.demo.measure.paired_task_gain` gives the bootstrap
over tasks)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agents.demo.measure import play

ENV_ID = "HotpotQA-v0"


@dataclass
class Evaluation:
    """Held-out results of one policy in one mode: means over episodes, and the episodes.
    ``two_search_f1`` is the mean F1 of the episodes that searched at least twice (None when
    none did): whether the second hop, the one RL is meant to pay, finds the answer."""

    f1: float
    em: float
    well_formed: float
    two_searches: float
    two_search_f1: float | None
    mean_return: float
    episodes: int
    trajectories: list = field(default_factory=list, repr=False)

    def row(self) -> dict[str, float | None]:
        return {
            "f1": self.f1,
            "em": self.em,
            "well_formed": self.well_formed,
            "two_searches": self.two_searches,
            "two_search_f1": self.two_search_f1,
            "mean_return": self.mean_return,
        }

    def per_task(self) -> dict[str, float]:
        """Mean F1 per task id (the unit the bootstrap resamples)."""
        hits: dict[str, list[float]] = {}
        for t in self.trajectories:
            hits.setdefault(t.task_id, []).append(f1(t))
        return {task: float(np.mean(v)) for task, v in hits.items()}


def f1(trajectory) -> float:
    """The episode's answer F1 (0 without an answer)."""
    return float(trajectory.info.get("f1", 0.0) or 0.0)


def searches(trajectory) -> int:
    """The searches the episode ran (planned and extra)."""
    return sum(1 for c in trajectory.reward_components if "query" in c or "extra" in c)


def well_formed(trajectory) -> bool:
    """Every turn well-formed, and an answer given."""
    formats = [float(c.get("format", 0.0)) > 0 for c in trajectory.reward_components]
    return bool(formats) and all(formats) and trajectory.info.get("answer") is not None


def summarize(trajectories: Sequence) -> Evaluation:
    """The :class:`Evaluation` of played episodes."""
    twice = [f1(t) for t in trajectories if searches(t) >= 2]
    return Evaluation(
        f1=float(np.mean([f1(t) for t in trajectories])),
        em=float(np.mean([float(t.info.get("em", 0.0) or 0.0) for t in trajectories])),
        well_formed=float(np.mean([well_formed(t) for t in trajectories])),
        two_searches=len(twice) / len(trajectories),
        two_search_f1=float(np.mean(twice)) if twice else None,
        mean_return=float(np.mean([t.episode_return for t in trajectories])),
        episodes=len(trajectories),
        trajectories=list(trajectories),
    )


def evaluate(
    policy,
    task_ids: list[str],
    *,
    env_kwargs: dict,
    temperature: float,
    samples: int,
    max_new_tokens: int,
    max_turns: int,
    seed: int,
    num_envs: int = 16,
) -> Evaluation:
    """Play ``samples`` episodes on each held-out task (greedy at ``temperature`` 0) in bf16
    autocast, as the main demo's held-out evaluations play them (:func:`play`)."""
    import torch

    trajectories = play(
        policy,
        task_ids,
        env_id=ENV_ID,
        env_kwargs=env_kwargs,
        temperature=temperature,
        samples=samples,
        max_new_tokens=max_new_tokens,
        max_turns=max_turns,
        seed=seed,
        num_envs=num_envs,
        progress=False,
        autocast=torch.bfloat16,
    )
    return summarize(trajectories)


# Two-sided 95 % quantiles of Student's t for 1..9 degrees of freedom (a t interval of a few
# seed means; scipy is not a dependency).
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262)


def across_seeds(per_seed: list[dict[str, dict[str, float]]]) -> dict[str, Any]:
    """GRPO − SFT over seeds: the pooled bootstrap over (seed, task) pairs, resampling tasks
    within each seed, and the t interval of the seed means (``per_seed``: each seed's
    ``{"sft": per-task F1, "grpo": per-task F1}``)."""
    diffs = []
    for s in per_seed:
        if set(s["sft"]) != set(s["grpo"]) or not s["sft"]:
            raise ValueError("each seed's two evaluations must cover the same, non-empty tasks")
        diffs.append(np.array([s["grpo"][t] - s["sft"][t] for t in sorted(s["sft"])]))
    gains = np.array([d.mean() for d in diffs])
    rng = np.random.default_rng(0)
    pooled = np.mean(
        [d[rng.integers(len(d), size=(10_000, len(d)))].mean(axis=1) for d in diffs], axis=0
    )
    out: dict[str, Any] = {
        "gain": float(gains.mean()),
        "seeds": len(gains),
        "pooled_ci95": [float(q) for q in np.quantile(pooled, [0.025, 0.975])],
    }
    if len(gains) >= 2:
        half = (
            _T975[min(len(gains) - 1, len(_T975)) - 1] * gains.std(ddof=1) / math.sqrt(len(gains))
        )
        out["t_ci95"] = [float(gains.mean() - half), float(gains.mean() + half)]
    return out
