"""The KL coefficient over a run: the controller's and the schedules' maths on hand-computed
values, their validation, and tiny-model runs in which beta moves the way the target asks,
reaches the algorithm, and survives a resume."""

from __future__ import annotations

import json
import math

import pytest
from accelerate_train import fresh, small_config

from agents.training import ConfigError, TrainConfig, Trainer
from agents.training.kl_control import adaptive_update, kl_weight_field, scheduled_beta

# ---------------------------------------------------------------------- the maths


def test_adaptive_update_is_ziegler_proportional_control():
    # e = clip(0.011 / 0.01 - 1, ±0.2) = 0.1; beta * (1 + 0.1 * 16 / 160) = 0.04 * 1.01
    assert adaptive_update(0.04, 0.011, 0.01, 16, 160) == pytest.approx(0.0404)
    # KL twice the target: the error is clipped at +0.2
    assert adaptive_update(0.04, 0.02, 0.01, 16, 160) == pytest.approx(0.04 * 1.02)
    # no KL at all: clipped at -0.2
    assert adaptive_update(0.04, 0.0, 0.01, 16, 160) == pytest.approx(0.04 * 0.98)
    # on target: unchanged
    assert adaptive_update(0.04, 0.01, 0.01, 16, 160) == pytest.approx(0.04)


def test_schedules_run_from_beta_to_the_final_value():
    linear = [scheduled_beta(s, 5, 0.04, 0.0, "linear") for s in range(1, 6)]
    assert linear == pytest.approx([0.04, 0.03, 0.02, 0.01, 0.0])
    # cosine at a quarter of the way: 0.04 - 0.04 * (1 - cos(pi/4)) / 2
    assert scheduled_beta(2, 5, 0.04, 0.0, "cosine") == pytest.approx(
        0.04 - 0.04 * (1 - math.cos(math.pi / 4)) / 2
    )
    assert scheduled_beta(3, 5, 0.04, 0.0, "cosine") == pytest.approx(0.02)
    assert scheduled_beta(5, 5, 0.01, 0.05, "cosine") == pytest.approx(0.05)
    assert scheduled_beta(1, 1, 0.04, 0.0, "linear") == 0.04


@pytest.mark.parametrize(
    "values, message",
    [
        ({"kl_control": "adaptive", "beta": 0.0}, "builds no reference model"),
        ({"kl_control": "adaptive", "kl_target": 0.0}, "kl_target must be > 0"),
        ({"kl_control": "adaptive", "kl_horizon": 0}, "kl_horizon must be > 0"),
        ({"kl_control": "linear", "kl_beta_final": -1.0}, "kl_beta_final must be >= 0"),
        # PPO's KL weight is kl_coef, 0 by default: the message names PPO's field
        ({"kl_control": "adaptive", "algo": "ppo"}, "starts from kl_coef, which is 0.0"),
        ({"kl_control": "pid"}, "kl_control must be one of fixed, adaptive, linear, cosine"),
    ],
)
def test_bad_kl_settings_name_the_fix(values, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig.from_dict(values)


def test_every_algorithm_with_a_reference_is_controlled_through_its_own_field():
    from agents.algorithms import ALGORITHMS

    for name, algo in ALGORITHMS.items():
        field = algo.kl_weight_field
        assert field is not None, name  # every algorithm today has a KL to the reference
        assert kl_weight_field(TrainConfig.from_dict({"algo": name})) == field
        cfg = TrainConfig.from_dict({"algo": name, field: 0.05, "kl_control": "linear"})
        assert getattr(cfg, field) == 0.05
    assert kl_weight_field(TrainConfig.from_dict({"algo": "ppo"})) == "kl_coef"


# ---------------------------------------------------------------------- tiny runs


def _coefs(output) -> list[dict]:
    lines = (output / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


@pytest.mark.parametrize("target, direction", [(1e-9, "up"), (10.0, "down")])
def test_adaptive_coefficient_moves_toward_the_target(tiny_policy, tmp_path, target, direction):
    cfg = small_config(tmp_path, 3, kl_control="adaptive", kl_target=target, kl_horizon=8.0)
    seen = []
    trainer = Trainer(cfg, policy=fresh(tiny_policy))
    loss = trainer.algorithm.loss

    def spy(micro, logprobs):  # the beta the algorithm's loss reads
        seen.append(trainer.algorithm.config.beta)
        return loss(micro, logprobs)

    trainer.algorithm.loss = spy
    trainer.train()
    rows = _coefs(tmp_path)
    coefs = [r["kl_coef"] for r in rows]
    assert coefs[0] == cfg.beta == 0.04  # the caller's config is not moved
    assert sorted(set(seen)) == sorted(set(coefs))  # the loss used each step's coefficient
    for row, nxt in zip(rows, coefs[1:], strict=False):
        assert row["kl_coef_next"] == pytest.approx(nxt)
        kl = row["kl"]
        error = min(max(kl / target - 1, -0.2), 0.2)
        assert nxt == pytest.approx(row["kl_coef"] * (1 + error * row["episodes"] / 8.0))
    if direction == "down":  # a KL far under target: beta falls every step
        assert coefs[0] > coefs[1] > coefs[2]
    else:  # step 1's KL is 0 (the reference is the policy), then above the tiny target
        assert rows[1]["kl"] > 0 and coefs[2] > coefs[1]


def test_resume_keeps_the_coefficient_and_a_linear_schedule_is_followed(tiny_policy, tmp_path):
    values = dict(kl_control="adaptive", kl_target=1e-9, kl_horizon=8.0, save_every=1)
    whole = tmp_path / "whole"
    Trainer(small_config(whole, 3, **values), policy=fresh(tiny_policy)).train()
    cut = tmp_path / "cut"
    Trainer(small_config(cut, 2, **values), policy=fresh(tiny_policy)).train()
    resumed = Trainer(small_config(cut, 3, **values), policy=fresh(tiny_policy), resume=True)
    resumed.train()
    # the third step starts from the coefficient the second step left, not from beta again
    assert _coefs(cut)[-1]["kl_coef"] == pytest.approx(_coefs(whole)[-1]["kl_coef"])
    assert _coefs(cut)[-1]["kl_coef"] != pytest.approx(0.04)

    sched = tmp_path / "sched"
    Trainer(
        small_config(sched, 3, kl_control="linear", kl_beta_final=0.01), policy=fresh(tiny_policy)
    ).train()
    assert [r["kl_coef"] for r in _coefs(sched)] == pytest.approx([0.04, 0.025, 0.01])


def _ppo_config(output, steps, **overrides):
    """:func:`small_config`'s run as PPO with a KL to the reference in its reward."""
    from agents.algorithms.ppo import PPOConfig

    base = small_config(output, steps, save_every=0)
    values = {k: getattr(base, k) for k in TrainConfig.field_names()}
    values.update(algo="ppo", kl_coef=0.04, **overrides)
    return PPOConfig(**values)


@pytest.mark.parametrize("mode", ["linear", "adaptive"])
def test_ppo_kl_coef_is_scheduled_and_adapted(tiny_policy, tmp_path, mode):
    """PPO names its KL weight kl_coef (not beta): the schedule and the controller move that
    field, its advantages read the moved value, and the k1 KL it puts in the reward is the
    step's ``kl`` the controller adapts to."""
    extra = dict(kl_beta_final=0.01) if mode == "linear" else dict(kl_target=1e-9, kl_horizon=8.0)
    cfg = _ppo_config(tmp_path, 3, kl_control=mode, **extra)
    trainer = Trainer(cfg, policy=fresh(tiny_policy))
    seen = []
    advantages = trainer.algorithm.advantages

    def spy(trajectories, scores=None):  # the weight PPO's reward shaping reads
        seen.append(trainer.algorithm.config.kl_coef)
        assert scores is not None and scores.reference is not None
        return advantages(trajectories, scores)

    trainer.algorithm.advantages = spy
    trainer.train()
    rows = _coefs(tmp_path)
    coefs = [r["kl_coef"] for r in rows]
    assert cfg.kl_coef == 0.04 and not hasattr(trainer.algorithm.config, "beta")
    assert seen == pytest.approx(coefs)
    assert all("kl" in r for r in rows)  # PPO logs the KL it puts in the reward
    if mode == "linear":
        assert coefs == pytest.approx([0.04, 0.025, 0.01])
    else:
        for row, nxt in zip(rows, coefs[1:], strict=False):
            error = min(max(row["kl"] / 1e-9 - 1, -0.2), 0.2)
            assert nxt == pytest.approx(row["kl_coef"] * (1 + error * row["episodes"] / 8.0))
        assert coefs[0] == 0.04 and len(set(coefs)) == 3  # it moved every step
