"""The demo's noisy annotator, its success measure, its plot, its one source of settings, and a
miniature end-to-end run. (The easy setting itself is tested in tests/tasks/coding.)"""

from __future__ import annotations

import dataclasses
import json

import gymnasium as gym
import numpy as np
import pytest

from agents.demo import (
    CONFIG,
    DemoSettings,
    Evaluation,
    MislabellingExpert,
    episode_success,
    gold_kind,
    load_config,
    main,
    paired_gain,
    plot_rewards,
)
from agents.training.warm_start import expert_episode
from arft_envs.report import play_episode
from arft_envs.tasks.coding.easy import ENV_ID, EasyCoding


def _bad_episode(policy, env, seed):
    return expert_episode(
        policy,
        env,
        seed=seed,
        expert=lambda obs, e: [
            "<think> too bright </think>\n<problem> {'overexposure'} </problem>",
            "no tags at all",
            "<think> x </think>\n<answer> B </answer>",
        ][sum(m["role"] == "assistant" for m in e.unwrapped.messages)],
    )


def test_mislabelling_expert_names_a_wrong_degradation_on_a_fixed_share_of_tasks():
    from arft_envs.experts import ScriptedExpert

    kinds = ["dark", "overexposure", "noise", "none"]
    expert = MislabellingExpert(kinds, 0.3)
    tasks = EasyCoding(kinds, holdout=1)
    rng = np.random.default_rng(0)
    drawn = [tasks.sample(rng) for _ in range(400)]
    wrong = [expert.wrong_label(t) for t in drawn]
    repairable = [
        w for t, w in zip(drawn, wrong, strict=True) if t.meta["degradations"][0] != "none"
    ]
    assert 0.22 < np.mean([w is not None for w in repairable]) < 0.38  # ~0.3 of them
    for task, label in zip(drawn, wrong, strict=True):
        kind = task.meta["degradations"][0]
        assert label != kind and label != "none"
        assert label is None or kind != "none"
        assert expert.wrong_label(task) == label  # the same task is always shown the same way
    assert MislabellingExpert(kinds, 0.0).wrong_label(drawn[0]) is None

    env = gym.make(ENV_ID, degradations=kinds[:3], holdout=1)
    seed = next(s for s in range(100) if expert.wrong_label(_task_at(env, s)))
    label = expert.wrong_label(_task_at(env, seed))
    record = play_episode(env, expert, seed=seed)
    assert f"{{'{label}'}}" in record.observation["messages"][2]["content"][0]["text"]
    assert record.components[0]["problem"] == 0.0  # the env still scores the true label
    assert record.components[1]["code"] == 1.0  # the wrong repair is real, running code
    assert sum(record.rewards) == 5.0
    right = next(s for s in range(100) if not expert.wrong_label(_task_at(env, s)))
    assert (
        play_episode(env, expert, seed=right).rewards
        == play_episode(env, ScriptedExpert(), seed=right).rewards
    )
    env.close()
    with pytest.raises(ValueError, match="error"):
        MislabellingExpert(kinds, 1.0)


def _task_at(env, seed):
    env.reset(seed=seed)
    return env.unwrapped.task


def test_success_needs_the_diagnosis_well_formed_turns_and_working_code(tiny_policy):
    env = gym.make(ENV_ID, degradations=["dark"], holdout=1)
    good = expert_episode(tiny_policy, env, seed=1)
    task = env.unwrapped.tasks.get(good.task_id)
    assert gold_kind(task) == "dark"
    assert episode_success(good, task) == {
        "diagnosis": True,
        "well_formed": True,
        "code_ran": True,
        "success": True,
        "repaired": True,
    }
    # The env's own report of the degradation (final info; never at reset, where it would leak
    # the diagnosis) is read first; the record is the fallback, and without either the measure
    # says what it needs.
    assert "degradations" not in good.info["reset"]
    assert good.info["degradations"] == ["dark"]
    unreported = dataclasses.replace(
        good, info={k: v for k, v in good.info.items() if k != "degradations"}
    )
    assert episode_success(unreported, task)["success"] is True
    with pytest.raises(ValueError, match="pass the task's record"):
        episode_success(unreported)
    bad = _bad_episode(tiny_policy, env, seed=1)
    flags = episode_success(bad, env.unwrapped.tasks.get(bad.task_id))
    assert flags == {
        "diagnosis": False,
        "well_formed": False,
        "code_ran": False,
        "success": False,
        "repaired": False,
    }
    for kinds, ran in ((["none"], True), (["dark"], False)):  # no repair needed / not run
        info = {**bad.info, "degradations": kinds}
        assert episode_success(dataclasses.replace(bad, info=info))["code_ran"] is ran
    env.close()


def test_paired_gain_compares_the_same_tasks_and_resamples_tasks(tiny_policy):
    env = gym.make(ENV_ID, degradations=["dark"], holdout=1)
    good_a, bad_a = expert_episode(tiny_policy, env, seed=1), _bad_episode(tiny_policy, env, 1)
    good_b, bad_b = expert_episode(tiny_policy, env, seed=2), _bad_episode(tiny_policy, env, 2)
    tasks = env.unwrapped.tasks
    env.close()
    assert good_a.task_id != good_b.task_id

    def ev(*trajectories):
        flags = [episode_success(t, tasks.get(t.task_id)) for t in trajectories]
        return Evaluation(0, 0, 0, 0, 0, 0, len(trajectories), list(trajectories), flags)

    # task A: 0/2 -> 2/2 (+1); task B: 1/2 -> 1/2 (0); the mean over tasks is +0.5.
    before = ev(bad_a, bad_a, good_b, bad_b)
    after = ev(good_a, good_a, bad_b, good_b)
    gain = paired_gain(before, after)
    assert gain["gain"] == 0.5 and gain["tasks"] == 2
    assert gain["ci95"] == [0.0, 1.0]  # a two-task bootstrap: means of 0, 0.5 or 1
    assert paired_gain(after, before)["gain"] == -0.5
    assert paired_gain(before, before) == {"gain": 0.0, "ci95": [0.0, 0.0], "tasks": 2}
    with pytest.raises(ValueError, match="same"):
        paired_gain(before, ev(good_a))


def test_plot_rewards_writes_a_png(tmp_path):
    rows = [{"step": i, "reward_mean": i / 10, "reward/problem": i / 20} for i in range(1, 11)]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    path = plot_rewards(tmp_path, tmp_path / "curve.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_miniature_demo_writes_its_outputs(tmp_path):
    small = dict(
        holdout=2, eval_samples=1, sft_steps=2, sft_episodes=2, sft_batch_size=2, steps=2,
        group_size=2, groups_per_step=1, max_new_tokens=96, max_turns=2,
    )  # fmt: skip
    assert main(["--output", str(tmp_path), *_flags(small)]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert list(summary["heldout"]) == ["untrained", "sft", "grpo"]
    assert summary["episodes_per_eval"] == {"sampled": 2, "greedy": 2}
    assert set(summary["grpo_minus_sft"]) == {"sampled", "greedy"}
    assert summary["grpo_minus_sft"]["sampled"]["tasks"] == 2
    final = summary["heldout"]["grpo"]["sampled"]
    assert "repaired" in final and sum(final["tool_status"].values()) >= 0
    assert (tmp_path / "reward_curve.png").is_file()
    assert "data:image/png" in (tmp_path / "heldout.html").read_text()
    assert (tmp_path / "train" / "metrics.jsonl").is_file()
    assert DemoSettings().steps > small["steps"]  # the real demo is bigger


def _flags(values: dict) -> list[str]:
    out = []
    for key, value in values.items():
        out += ["--" + key.replace("_", "-"), str(value)]
    return out


# ============================================================================ one source


# The knobs the demo sets over the config file, and why: its own run folder and seed, no
# checkpoints (it is one uninterrupted run), four sample pages whatever the step count, a bar.
DEMO_OWN = {"output", "seed", "save_every", "sample_every", "progress_bar"}


def test_the_demo_runs_the_config_file_but_for_its_own_knobs():
    from agents.training.config import TrainConfig

    from_file = TrainConfig.from_dict(load_config(CONFIG))
    demo = DemoSettings().train_config()
    names = set(demo.field_names())
    assert DEMO_OWN <= names
    differ = {n for n in names if getattr(demo, n) != getattr(from_file, n)}
    assert differ <= DEMO_OWN, f"the demo re-declares {sorted(differ - DEMO_OWN)}"
    assert demo.env == "arft_envs:EasyMATCoding-v0" and demo.save_every == 0


def test_demo_settings_default_to_the_file_and_override_it_where_given(tmp_path):
    values = load_config(CONFIG)
    settings = DemoSettings()
    assert (settings.steps, settings.temperature, settings.credit) == (
        values["steps"],
        values["temperature"],
        values["credit"],
    )
    assert list(settings.degradations) == values["env_kwargs"]["degradations"]
    small = DemoSettings(output=str(tmp_path), steps=3, holdout=5, degradations=("dark",))
    config = small.train_config()
    assert config.steps == 3 and config.sample_every == 1
    assert config.env_kwargs == {**values["env_kwargs"], "holdout": 5, "degradations": ["dark"]}
    assert config.output == str(tmp_path / "train")
