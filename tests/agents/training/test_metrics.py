"""Tool-health telemetry: the step's tools/* rates, grouped tensorboard tags, and the
collapse and no-signal warnings (each once)."""

import dataclasses
from types import SimpleNamespace

import gymnasium as gym

import arft_envs  # noqa: F401
from agents.training.metrics import (
    Clock,
    TrainingHealth,
    episode_summary,
    groups_with_signal,
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
    stds = [0.3, 0.0, 0.2, 0.0]  # a metrics line without groups_with_signal: the step's std
    fired = [health.check({"step": i, "reward_std": s}) for i, s in enumerate(stds)]
    assert [bool(w) for w in fired] == [False, True, False, False]
    assert "reward std 0" in fired[1][0] and "easier env" in fired[1][0]


def test_groups_with_signal_is_the_share_of_groups_whose_rewards_differ():
    cases = [  # (process, group, per-turn rewards) of each episode -> share with a signal
        ([(0, 0, [1, 0]), (0, 0, [1, 0]), (0, 1, [1, 1]), (0, 1, [1, 1])], 0.0),
        ([(0, 0, [1, 0]), (0, 0, [1, 1]), (0, 1, [1, 1]), (0, 1, [1, 1])], 0.5),
        # the same return, credited differently turn by turn: a per-turn signal
        ([(0, 0, [1, 0]), (0, 0, [0, 1])], 1.0),
        # group 0 of two processes is two groups
        ([(0, 0, [1]), (0, 0, [1]), (1, 0, [0]), (1, 0, [1])], 0.5),
        ([(0, 0, [2])], 0.0),  # a group of one has no one to compare with
        ([], 0.0),
    ]
    for episodes, share in cases:
        assert groups_with_signal(episodes) == share, episodes


def test_a_step_of_groups_each_with_std_0_warns_though_its_overall_std_is_not_0(tiny_policy):
    env = gym.make("EasyMATCoding-v0", degradations=["dark"], holdout=1)
    base = expert_episode(tiny_policy, env, seed=1)
    env.close()

    def episode(group, rewards):
        return dataclasses.replace(base, group=group, rewards=list(rewards))

    accelerator = SimpleNamespace(num_processes=1)
    # every group's episodes earned the same rewards, but the groups differ from each other
    flat = [episode(0, [1, 1, 1]), episode(0, [1, 1, 1]), episode(1, [0, 0, 1])]
    flat.append(episode(1, [0, 0, 1]))
    metrics = step_metrics(3, flat, {}, Clock(), accelerator)
    assert metrics["reward_std"] > 0 and metrics["groups_with_signal"] == 0.0
    health = TrainingHealth()
    warnings = health.check(metrics)
    assert len(warnings) == 1 and warnings[0].startswith("step 3: every group has reward std 0")
    assert "warm start" in warnings[0] and "temperature" in warnings[0]
    assert health.check(metrics) == []  # once
    # one group with different rewards: a signal, no warning
    mixed = [*flat[:3], episode(1, [0, 1, 1])]
    metrics = step_metrics(4, mixed, {}, Clock(), accelerator)
    assert metrics["groups_with_signal"] == 0.5
    assert TrainingHealth().check(metrics) == []
    assert tensorboard_tag("groups_with_signal") == "rollout/groups_with_signal"
