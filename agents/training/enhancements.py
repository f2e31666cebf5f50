"""The training enhancements any algorithm can use, as the loop applies them.

The RFT survey (arXiv 2505.18536) names four beside the algorithm itself; each lives in its
own module, and :class:`Enhancements` is the one object the loop
(:class:`agents.training.trainer.Trainer`) calls at fixed points of a step:

========================  ===================================  ===============================
option                    module                               where it acts
========================  ===================================  ===============================
``curriculum``            :mod:`~agents.training.curriculum`    the groups' tasks (rollout)
``kl_control``            :mod:`~agents.training.kl_control`    the KL weight before a step
``augment``               :mod:`~agents.training.augment`       what the rollout's model sees
``data_filter``           :mod:`~agents.training.filtering`     which groups train, and how
``inject_gold``           :mod:`~agents.training.paper`         the authors' gt injection
========================  ===================================  ===============================

Every option is off by default, and then every hook returns its input unchanged: a default
run computes exactly what it did before these options existed. The state that must survive a
resume (the KL coefficient, the curriculum's stage and window) is saved in each step
checkpoint through accelerate (``register_for_checkpointing``), only when such an option is on.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from agents.training.augment import NoisyEnvs, annealed_strength
from agents.training.curriculum import Curriculum, TaskPicker
from agents.training.filtering import DataFilter, episode_success
from agents.training.kl_control import KLController
from agents.training.paper import GoldInjector


def config_problems(cfg: Any) -> list[str]:
    """Every problem of the enhancement fields of a config (called by its validation)."""
    from agents.training import augment, curriculum, filtering, kl_control, paper

    p: list[str] = []
    for module in (curriculum, kl_control, augment, filtering, paper):
        p += module.config_problems(cfg)
    if cfg.success_return is not None and cfg.curriculum == "off" and cfg.data_filter == "off":
        p.append(
            "success_return is read only by curriculum='success' and data_filter; set one of "
            "them or leave success_return unset"
        )
    return p


class Enhancements:
    """The run's enhancements (module docstring). ``config`` is the run's, read live;
    ``make_env()`` builds one plain env like the rollout's (for the curriculum's task source
    and the gold injection's scoring), called at most once and only when needed."""

    def __init__(self, config: Any, make_env: Any = None):
        self.config = config
        self._make_env = make_env
        self._env = None
        self.kl = KLController(config) if config.kl_control != "fixed" else None
        self.curriculum = Curriculum(config) if config.curriculum != "off" else None
        self.filter = DataFilter(config) if config.data_filter != "off" else None
        self.injector: GoldInjector | None = None
        self.strength = 0.0
        self._stats: dict[str, float] = {}

    # ------------------------------------------------------------------ state

    @property
    def stateful(self) -> bool:
        """Whether some option has state a resume needs (then the loop checkpoints it)."""
        return self.kl is not None or self.curriculum is not None

    def state_dict(self) -> dict[str, Any]:
        return {
            "kl": None if self.kl is None else self.kl.state_dict(),
            "curriculum": None if self.curriculum is None else self.curriculum.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.kl is not None and state.get("kl") is not None:
            self.kl.load_state_dict(state["kl"])
        if self.curriculum is not None and state.get("curriculum") is not None:
            self.curriculum.load_state_dict(state["curriculum"])

    def _plain_env(self):
        if self._env is None:
            if self._make_env is None:
                raise RuntimeError("these options need an env of the run; pass make_env")
            self._env = self._make_env()
        return self._env

    # ------------------------------------------------------------------ a step

    def before_step(self, step: int) -> None:
        """Set the step's KL coefficient, curriculum stage and augmentation strength."""
        cfg = self.config
        self._stats = {}
        if self.kl is not None:
            self.kl.before_step(step)  # sets the algorithm's KL-weight field
        if self.curriculum is not None:
            self.curriculum.before_step(step)
        if cfg.augment != "off":
            self.strength = annealed_strength(cfg.augment_strength, step, cfg.augment_anneal_steps)

    def task_ids(self, seed: int | None, groups: int) -> list[str] | None:
        """The groups' task ids under a curriculum; None (the env picks) without one."""
        if self.curriculum is None:
            return None
        if self.curriculum.picker is None:
            env = self._plain_env()
            self.curriculum.picker = TaskPicker(
                getattr(env.unwrapped, "tasks", None), name=str(self.config.env)
            )
        return self.curriculum.task_ids(seed, groups)

    def wrap_envs(self, envs: Any, seed: int | None) -> Any:
        """The rollout's vector env, perturbing a share of each group when ``augment`` is on."""
        if self.config.augment == "off":
            return envs
        return NoisyEnvs(envs, self.config, seed or 0, self.strength)

    def after_collect(
        self, trajectories: list[Any], envs: Any, seed: int | None, policy: Any
    ) -> list[Any]:
        """Clean images back into perturbed episodes, then the gold injection."""
        cfg = self.config
        if isinstance(envs, NoisyEnvs):
            n = envs.restore(trajectories, policy)
            self._add("augment/episodes", n)
        if cfg.inject_gold:
            if self.injector is None:
                self.injector = GoldInjector(self._plain_env(), cfg.group_size)
            self._add("inject/episodes", self.injector.inject(trajectories, seed))
        return trajectories

    def keep_groups(
        self, trajectories: Sequence[Any], algorithm_keep: list[bool] | None
    ) -> list[bool] | None:
        """The groups to train on: the algorithm's verdict and the data filter's (``skip``),
        both required; None when neither filters."""
        mine = None if self.filter is None else self.filter.keep(trajectories)
        if mine is None:
            return algorithm_keep
        if algorithm_keep is None:
            return mine
        return [a and b for a, b in zip(algorithm_keep, mine, strict=True)]

    def max_refills(self, algorithm_refills: int) -> int:
        mine = 0 if self.filter is None else self.filter.max_refills
        return max(algorithm_refills, mine)

    def weigh(self, trajectories: Sequence[Any], advantages: Any) -> Any:
        """The advantages after the data filter (unchanged without one)."""
        if self.filter is None:
            return advantages
        out = self.filter.weigh(trajectories, advantages)
        self._stats.update(self.filter.stats)
        return out

    def step_stats(self, trajectories: Sequence[Any]) -> dict[str, float]:
        """This process's statistics of the step, averaged over processes by the loop."""
        cfg = self.config
        if self.curriculum is not None:
            success = [episode_success(t, cfg.success_return) for t in trajectories]
            self._stats["curriculum/success_rate"] = sum(success) / max(len(success), 1)
        if cfg.augment != "off":
            self._stats["augment/strength"] = self.strength
            self._stats.setdefault("augment/episodes", 0.0)
            perturbed = [t for t in trajectories if "augment" in t.info]
            clean = [t for t in trajectories if "augment" not in t.info]
            for name, part in (("perturbed", perturbed), ("clean", clean)):
                # every process logs the same keys (NaN for an empty side, e.g. strength 0)
                mean = sum(t.episode_return for t in part) / len(part) if part else math.nan
                self._stats[f"augment/reward_{name}"] = mean
        return dict(self._stats)

    def after_step(self, metrics: dict[str, Any]) -> dict[str, float]:
        """Feed the step's metrics (over every process) to the KL controller and the
        curriculum; returns what they log."""
        out: dict[str, float] = {}
        if self.kl is not None:
            out.update(self.kl.observe(metrics))
        if self.curriculum is not None:
            out.update(self.curriculum.observe(float(metrics["curriculum/success_rate"])))
        return out

    def _add(self, key: str, value: float) -> None:
        self._stats[key] = self._stats.get(key, 0.0) + float(value)

    def close(self) -> None:
        if self._env is not None:
            self._env.close()
            self._env = None
        self.injector = None
