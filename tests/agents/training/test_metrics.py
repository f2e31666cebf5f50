"""Tool-health telemetry: the step's tools/* rates, grouped tensorboard tags, and the
collapse and no-signal warnings (each once)."""

from types import SimpleNamespace

import gymnasium as gym

import arft_envs  # noqa: F401
from agents.training.metrics import (
    Clock,
    TrainingHealth,
    episode_summary,
    step_metrics,
    tensorboard_tag,
)
from agents.training.warm_start import expert_episode


def test_a_steps_metrics_hold_tool_call_and_status_rates(tiny_policy):
    env = gym.make("EasyMATCoding-v0", degradations=["dark"], holdout=1)
    good = expert_episode(tiny_policy, env, seed=1)  # problem, code, answer: 2 tool calls
    env.close()
    assert episode_summary(good)["tool_calls"] == 2.0
    metrics = step_metrics(1, [good], {"loss": 0.5}, Clock(), SimpleNamespace(num_processes=1))
    assert metrics["tools/calls_per_turn"] == 2 / 3
    assert metrics["tools/ok_rate"] == 1.0
    assert metrics["tools/error_rate"] == 0.0 and metrics["tools/timeout_rate"] == 0.0
    assert (
        metrics["reward/code"] == 1.0 and metrics["reward/format"] == 3.0
    )  # each reward component's mean is there too
    assert metrics["reward_mean"] == good.episode_return  # metrics.jsonl keys keep their names


def test_tensorboard_tags_are_grouped():
    assert tensorboard_tag("reward_mean") == "rollout/reward_mean"
    assert tensorboard_tag("reward/code") == "rollout/reward/code"
    assert tensorboard_tag("tokens/model") == "rollout/tokens/model"
    assert tensorboard_tag("time/generation") == "time/generation"
    assert tensorboard_tag("tools/ok_rate") == "tools/ok_rate"
    assert tensorboard_tag("loss") == "train/loss" and tensorboard_tag("kl") == "train/kl"


def test_the_collapse_warning_fires_once_when_the_rate_falls_below_the_fraction():
    health = TrainingHealth(collapse_fraction=0.5)
    rates = [1.0, 0.9, 0.6, 0.45, 0.2, 0.1]
    fired = [health.check({"step": i, "tools/calls_per_turn": r}) for i, r in enumerate(rates)]
    assert [bool(w) for w in fired] == [False, False, False, True, False, False]
    assert "tool-use collapse" in fired[3][0] and "warm start" in fired[3][0]
    off = TrainingHealth(collapse_fraction=0.0)
    assert not any(off.check({"tools/calls_per_turn": r}) for r in rates)


def test_the_no_signal_warning_fires_once():
    health = TrainingHealth()
    stds = [0.3, 0.0, 0.2, 0.0]
    fired = [health.check({"step": i, "reward_std": s}) for i, s in enumerate(stds)]
    assert [bool(w) for w in fired] == [False, True, False, False]
    assert "reward std 0" in fired[1][0] and "easier env" in fired[1][0]
