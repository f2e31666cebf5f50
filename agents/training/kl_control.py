"""The KL coefficient over a run: fixed, adapted to a target KL, or scheduled.

Every algorithm with a KL to the reference names the config field that weighs it, its
:attr:`~agents.algorithms.base.Algorithm.kl_weight_field` (``beta`` for the GRPO family and
REINFORCE++, ``kl_coef`` for PPO), and reads it live; so the loop sets that field before each
step from a :class:`KLController` (:func:`kl_weight_field` finds it from ``config.algo``):

- ``fixed``: ``beta`` as configured (the default; nothing changes);
- ``adaptive``: the proportional controller of Ziegler et al. (2019, "Fine-Tuning Language
  Models from Human Preferences", §2.2), as TRL's ``AdaptiveKLController`` writes it::

      e      = clip(KL / KL_target - 1, -0.2, 0.2)
      beta  <- beta * (1 + e * n / horizon)

  with KL the step's measured mean per-token KL (the ``kl`` metric, over every process), n
  the step's episodes and ``horizon`` in episodes: a KL above target raises beta, below
  lowers it, by at most 20 % of ``n / horizon`` per step;
- ``linear`` / ``cosine``: from the configured weight at step 1 to ``kl_beta_final`` at the
  last step.

Below, "beta" is the value of the algorithm's KL-weight field, whatever its name.

The controller's state (the current beta) is saved in step checkpoints, so a resumed run
continues with the coefficient it had.
"""

from __future__ import annotations

import math
from typing import Any

KL_CONTROLS = ("fixed", "adaptive", "linear", "cosine")
ERROR_CLIP = 0.2  # Ziegler et al.'s bound on the proportional error


def kl_weight_field(cfg: Any) -> str | None:
    """The config field holding the KL weight of ``cfg.algo``'s algorithm (its
    ``kl_weight_field``: ``"beta"``, ``"kl_coef"``, ...), None for one without a KL term."""
    # imported here: agents.algorithms builds its config sections on agents.training.config,
    # which imports this module
    from agents.training.config import algorithm_class

    return algorithm_class(str(cfg.algo)).kl_weight_field


def adaptive_update(beta: float, kl: float, target: float, episodes: int, horizon: float) -> float:
    """One step of the target-KL controller: ``beta * (1 + clip(kl/target - 1, ±0.2) *
    episodes / horizon)``."""
    error = min(max(kl / target - 1.0, -ERROR_CLIP), ERROR_CLIP)
    return beta * (1.0 + error * episodes / horizon)


def scheduled_beta(step: int, total: int, start: float, end: float, shape: str) -> float:
    """The scheduled beta of ``step`` (1-based) of ``total``: ``start`` at step 1, ``end`` at
    ``total``, linearly or along a half cosine."""
    frac = 0.0 if total <= 1 else (step - 1) / (total - 1)
    frac = min(max(frac, 0.0), 1.0)
    if shape == "linear":
        weight = frac
    elif shape == "cosine":
        weight = 0.5 * (1.0 - math.cos(math.pi * frac))
    else:
        raise ValueError(f"a KL schedule is 'linear' or 'cosine', got {shape!r}")
    return start + (end - start) * weight


class KLController:
    """The run's KL coefficient: :meth:`before_step` sets the step's on the config (in the
    algorithm's :attr:`field`), and :meth:`observe` takes the step's measured KL (only
    ``adaptive`` uses it)."""

    def __init__(self, config: Any):
        self.mode = config.kl_control
        self.config = config
        self.field = kl_weight_field(config)
        if self.field is None:
            raise ValueError(
                f"kl_control={self.mode!r}: algo {config.algo!r} has no KL weight to control"
            )
        # the configured weight; the config's field then moves
        self.start = float(getattr(config, self.field))
        self.beta = self.start

    @property
    def active(self) -> bool:
        return self.mode != "fixed"

    def before_step(self, step: int) -> float:
        """Set the KL weight to train ``step`` with on the config (the algorithm's field, which
        its loss or advantages read live) and return it."""
        cfg = self.config
        if self.mode in ("linear", "cosine"):
            self.beta = scheduled_beta(step, cfg.steps, self.start, cfg.kl_beta_final, self.mode)
        setattr(cfg, self.field, self.beta)
        return self.beta

    def observe(self, metrics: dict[str, Any]) -> dict[str, float]:
        """Adapt to the step's ``kl`` (adaptive mode); returns the metrics to log: the beta
        the step used (``kl_coef``) and, adaptive, the next step's (``kl_coef_next``)."""
        out = {"kl_coef": self.beta}
        if self.mode == "adaptive" and "kl" in metrics:
            cfg = self.config
            self.beta = adaptive_update(
                self.beta, float(metrics["kl"]), cfg.kl_target, int(metrics["episodes"]),
                cfg.kl_horizon,
            )  # fmt: skip
            out["kl_coef_next"] = self.beta
        return out

    def state_dict(self) -> dict[str, float]:
        return {"beta": self.beta}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.beta = float(state["beta"])


def config_problems(cfg: Any) -> list[str]:
    """What is wrong with the KL-control fields of ``cfg``, each with its fix."""
    p: list[str] = []
    if cfg.kl_control == "fixed":
        return p
    field = kl_weight_field(cfg)
    if field is None:
        p.append(
            f"kl_control={cfg.kl_control!r} needs an algorithm with a KL weight; "
            f"algo {cfg.algo!r} has none: use kl_control='fixed'"
        )
        return p
    if not hasattr(cfg, field):  # a bare TrainConfig: checked once it is the algorithm's
        return p
    weight = getattr(cfg, field)
    if weight <= 0:
        p.append(
            f"kl_control={cfg.kl_control!r} starts from {field}, which is {weight}: the run "
            f"then builds no reference model; set {field} > 0 (the starting coefficient)"
        )
    if cfg.kl_control == "adaptive":
        if cfg.kl_target <= 0:
            p.append(f"kl_target must be > 0 (the per-token KL aimed at), got {cfg.kl_target}")
        if cfg.kl_horizon <= 0:
            p.append(f"kl_horizon must be > 0 (episodes), got {cfg.kl_horizon}")
    if cfg.kl_beta_final < 0:
        p.append(f"kl_beta_final must be >= 0, got {cfg.kl_beta_final}")
    return p
