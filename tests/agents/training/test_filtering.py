"""Online data filtering: group accuracies and the filter's verdict on hand-computed values,
the advantages it scales, and tiny-model runs in which filtered groups are skipped (refilled,
logged) or down-weighted."""

from __future__ import annotations

import json

import pytest
import torch
from accelerate_train import fresh, small_config

from agents.rollout import Trajectory
from agents.training import ConfigError, TrainConfig, Trainer
from agents.training.filtering import (
    DataFilter,
    episode_success,
    filtered_groups,
    group_accuracy,
    scale_advantages,
)


def _episode(reward: float, em: float = 0.0) -> Trajectory:
    return Trajectory(
        env_id="x", task_id="t", group=0, index=0, seed=0, input_ids=[1], assistant_mask=[1],
        old_logprobs=[0.0], turn_spans=[(0, 1)], pixel_values=None, image_grid_thw=None,
        images=[], rewards=[reward], reward_components=[{}], actions=["a"],
        finish_reasons=["eos"], terminated=True, truncated=False, info={"em": em},
        messages=[], env_images=[], image_slots=[],
    )  # fmt: skip


def test_success_accuracy_and_verdict_by_hand():
    assert episode_success(_episode(0.3, em=1.0), None)  # the env's exact match
    assert not episode_success(_episode(2.0, em=0.0), None)
    assert episode_success(_episode(2.0), 2.0) and not episode_success(_episode(1.9), 2.0)
    accuracy = group_accuracy([1, 1, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0], 4)
    assert accuracy.tolist() == [0.5, 1.0, 0.0]
    assert filtered_groups(accuracy, 0.0, 1.0).tolist() == [False, True, True]
    assert filtered_groups(accuracy, 0.0, 0.5).tolist() == [True, True, True]
    assert filtered_groups(accuracy, -1.0, 1.0).tolist() == [False, True, False]


def test_scaling_per_episode_and_per_token_advantages():
    adv = torch.tensor([1.0, -1.0, 2.0, -2.0])
    assert scale_advantages(adv, [1, 1, 0.5, 0.5]).tolist() == [1.0, -1.0, 1.0, -1.0]
    rows = [torch.tensor([0.0, 1.0]), torch.tensor([2.0]), torch.tensor([3.0, 3.0, 3.0])]
    out = scale_advantages(rows, [0.0, 1.0, 0.1])
    assert [r.tolist() for r in out] == [[0.0, 0.0], [2.0], pytest.approx([0.3, 0.3, 0.3])]


@pytest.mark.parametrize("mode, weight", [("skip", 0.0), ("downweight", 0.25)])
def test_filter_weighs_the_filtered_groups(mode, weight):
    cfg = TrainConfig.from_dict(
        {"data_filter": mode, "filter_weight": 0.25, "success_return": 1.0, "group_size": 2}
    )
    batch = [_episode(r) for r in (1.0, 0.0, 1.0, 1.0, 0.0, 0.0)]  # mixed, all right, all wrong
    f = DataFilter(cfg)
    assert f.keep(batch) == ([True, False, False] if mode == "skip" else None)
    out = f.weigh(batch, torch.tensor([1.0, -1.0, 0.5, 0.5, -0.5, -0.5]))
    assert out.tolist() == [1.0, -1.0, 0.5 * weight, 0.5 * weight, -0.5 * weight, -0.5 * weight]
    assert f.stats == {
        "filter/groups_filtered": 2.0,
        "filter/all_correct": 1.0,
        "filter/all_wrong": 1.0,
        "filter/group_accuracy": pytest.approx(0.5),
    }


@pytest.mark.parametrize(
    "values, message",
    [
        ({"filter_low": 0.6, "filter_high": 0.5}, "need 0 <= filter_low < filter_high <= 1"),
        ({"filter_weight": 2.0}, r"filter_weight must be in \[0, 1\]"),
        ({"filter_max_refills": -1}, "filter_max_refills must be >= 0"),
        ({"data_filter": "drop"}, "data_filter must be one of off, skip, downweight"),
    ],
)
def test_bad_filter_settings_name_the_fix(values, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig.from_dict({"data_filter": "skip", **values})


def test_success_return_alone_is_refused():
    with pytest.raises(ConfigError, match="success_return is read only by"):
        TrainConfig.from_dict({"success_return": 1.0})


def test_skipped_groups_are_refilled_zeroed_and_logged(tiny_policy, tmp_path):
    # every reply of ArftTestLength-v0 earns > 0: with success_return 0 every group is
    # all-correct, so every group is filtered, one refill is tried, and the batch is
    # completed with filtered groups whose advantages are then 0
    cfg = small_config(
        tmp_path, 1, data_filter="skip", success_return=0.0, filter_max_refills=1, beta=0.0
    )
    trainer = Trainer(cfg, policy=fresh(tiny_policy))
    metrics = trainer.train()
    assert metrics["filter/groups_filtered"] == 2.0
    assert metrics["filter/all_correct"] == 2.0
    assert metrics["sampling/dropped_groups"] == 4.0  # two of the step, two of the refill
    assert metrics["sampling/refill_rollouts"] == 1.0
    assert metrics["sampling/filled_with_dropped"] == 2.0
    assert metrics["loss"] == 0.0 and metrics["grad_norm"] == 0.0  # nothing to learn from
    row = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])
    assert row["filter/groups_filtered"] == 2.0


def test_downweighted_groups_keep_a_share_of_their_advantages(tiny_policy, tmp_path):
    cfg = small_config(tmp_path, 1, data_filter="downweight", success_return=0.0, filter_weight=0.5)
    trainer = Trainer(cfg, policy=fresh(tiny_policy))
    trainer.setup()
    trainer._prepare_rl()
    batch = trainer.rollout(1)
    advantages = trainer.advantages(batch)
    assert advantages.abs().sum() > 0  # the length reward differs within groups
    weighted = trainer.enhancements.weigh(batch, advantages)
    assert weighted.tolist() == pytest.approx((0.5 * advantages).tolist())
    assert trainer.enhancements.step_stats(batch)["filter/groups_filtered"] == 2.0
    trainer.close()
