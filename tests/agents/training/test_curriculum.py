"""The curriculum: task difficulties read from real tasks, the step and success schedules on
hand-computed values, the task picker on the real MAT-Coding and MAT-Search sources, and a
tiny-model run whose groups play the stage's difficulty."""

from __future__ import annotations

import json

import gymnasium as gym
import pytest
from accelerate_train import fresh, small_config

from agents.training import ConfigError, TrainConfig, Trainer
from agents.training.curriculum import Curriculum, TaskPicker, stage_for_step, task_difficulty
from arft_envs.tasks.base import Task


def test_task_difficulty_reads_hops_then_degradations_then_the_split():
    assert task_difficulty(Task("a", "q", [], meta={"hops": 3, "degradations": ["x"]})) == 3
    assert task_difficulty(Task("b", "q", [], meta={"degradations": ["rotation90", "dark"]})) == 2
    assert task_difficulty(Task("c", "q", [], meta={"degradations": ["none"]})) == 1
    assert task_difficulty(Task("d", "q", [], split="hard")) == 2
    assert task_difficulty(Task("e", "q", [], split="simple")) == 1
    assert task_difficulty(Task("f", "q", [], split="train")) is None


def test_step_schedule():
    assert [stage_for_step(s, 3, 2) for s in range(1, 8)] == [0, 0, 0, 1, 1, 1, 1]
    assert [stage_for_step(s, 1, 3) for s in range(1, 5)] == [0, 1, 2, 2]


def _config(**values) -> TrainConfig:
    return TrainConfig.from_dict({"curriculum": "success", **values})


def test_success_schedule_moves_on_when_the_window_mean_reaches_the_threshold():
    cfg = _config(curriculum_levels=["1", "2", "3"], curriculum_window=2, curriculum_threshold=0.5)
    c = Curriculum(cfg)
    assert c.observe(0.4)["curriculum/level"] == 1  # window [0.4]: not full
    logged = c.observe(0.7)  # window [0.4, 0.7], mean 0.55 >= 0.5: next stage
    assert logged["curriculum/window_success"] == pytest.approx(0.55)
    assert c.stage == 1 and c.recent == []
    c.observe(1.0)
    assert c.stage == 1  # a new stage waits for a full window
    c.observe(0.0)  # mean 0.5: on to the last stage
    assert c.level == 3
    state = c.state_dict()
    for _ in range(3):
        c.observe(1.0)
    assert c.level == 3  # the last stage stays
    again = Curriculum(cfg)
    again.load_state_dict(state)
    assert (again.stage, again.recent) == (2, [])


@pytest.mark.parametrize(
    "values, message",
    [
        ({"curriculum_levels": ["easy"]}, "curriculum_levels must be integers"),
        ({"curriculum_window": 0}, "curriculum_window must be >= 1"),
        ({"curriculum_threshold": 1.5}, r"curriculum_threshold must be in \[0, 1\]"),
        ({"curriculum": "random"}, "curriculum must be one of off, step, success"),
    ],
)
def test_bad_curriculum_settings_name_the_fix(values, message):
    with pytest.raises(ConfigError, match=message):
        _config(**values)


def test_picker_draws_tasks_of_the_level_from_the_real_sources():
    coding = gym.make("MATCoding-v0", disable_env_checker=True)
    picker = TaskPicker(coding.unwrapped.tasks)
    for level in (1, 2):
        ids = {picker.pick(level, [7, g]) for g in range(4)}
        assert len(ids) == 4
        for task_id in ids:  # the env rebuilds the same task from its id
            coding.reset(options={"task_id": task_id})
            assert len(coding.unwrapped.task.meta["degradations"]) == level
    assert picker.pick(2, [7, 0]) == picker.pick(2, [7, 0])  # seeded
    with pytest.raises(RuntimeError, match="no task of difficulty 5"):
        picker.pick(5, 0)
    coding.close()

    search = gym.make("MATSearch-v0", disable_env_checker=True)
    picker = TaskPicker(search.unwrapped.tasks)
    for hops in (1, 2, 3):
        task_id = picker.pick(hops, [3, 0])
        search.reset(options={"task_id": task_id})
        assert search.unwrapped.task.meta["hops"] == hops
    search.close()


def test_an_env_without_a_task_source_is_refused():
    with pytest.raises(TypeError, match="Set curriculum='off'"):
        TaskPicker(None, name="ArftTestLength-v0")


def test_groups_play_the_stage_of_the_step(tiny_policy, tmp_path):
    cfg = small_config(
        tmp_path,
        2,
        env="MATCoding-v0",
        env_kwargs={"mode": "stepwise", "reward_mode": "paper"},
        curriculum="step",
        curriculum_levels=("2", "1"),  # hard first, to show the order is the config's
        curriculum_stage_steps=1,
        max_new_tokens=4,
        group_size=2,
    )
    trainer = Trainer(cfg, policy=fresh(tiny_policy))
    trainer.setup()
    trainer._prepare_rl()
    for step, level in ((1, 2), (2, 1)):
        trainer.enhancements.before_step(step)
        batch = trainer.rollout(step)
        assert [len(t.info["degradations"]) for t in batch] == [level] * 4
        assert batch[0].task_id == batch[1].task_id != batch[2].task_id  # groups share a task
    trainer.close()

    out = tmp_path / "run"
    cfg = small_config(
        out,
        3,
        env="MATCoding-v0",
        env_kwargs={"mode": "stepwise", "reward_mode": "paper"},
        curriculum="success",
        curriculum_window=1,
        curriculum_threshold=0.5,
        success_return=0.0,  # every episode succeeds: a stage per step
        max_new_tokens=4,
        group_size=2,
    )
    Trainer(cfg, policy=fresh(tiny_policy)).train()
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["curriculum/level"] for r in rows] == [1.0, 2.0, 2.0]
    assert [r["curriculum/success_rate"] for r in rows] == [1.0, 1.0, 1.0]
