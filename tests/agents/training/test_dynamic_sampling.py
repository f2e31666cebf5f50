"""Dynamic sampling's batch: dropped groups replaced by refills, the batch size kept, and the
statistics it logs (:func:`agents.training.sampling.refill_groups`, on plain records)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from agents.training.sampling import REFILL_SEED_STRIDE, refill_groups


@dataclass
class Episode:
    name: str
    reward: float
    group: int = -1


def _groups(prefix: str, rewards: list[list[float]]) -> list[Episode]:
    return [Episode(f"{prefix}{g}", r, g) for g, group in enumerate(rewards) for r in group]


def _differ(episodes, size=2):  # DAPO's rule: keep a group whose rewards differ
    groups = [episodes[i : i + size] for i in range(0, len(episodes), size)]
    return [len({e.reward for e in g}) > 1 for g in groups]


@pytest.mark.parametrize(
    ("first", "refills", "max_refills", "names", "stats"),
    [
        # nothing dropped: no refill, the rollout as it was
        ([[0, 1], [1, 0]], [], 3, ["a0", "a1"], (0, 0, 0, 1.0)),
        # one equal group, replaced by the first refill's differing group
        ([[1, 1], [0, 1]], [[[0, 1]]], 3, ["a1", "r0"], (1, 1, 0, 1.0)),
        # the refills run out: the batch is completed with a dropped group
        ([[1, 1], [0, 0]], [[[1, 1], [0, 1]], [[0, 0]]], 2, ["r1", "a0"], (4, 2, 1, 0.5)),
    ],
)
def test_refills_replace_dropped_groups_and_keep_the_batch_size(
    first, refills, max_refills, names, stats
):
    asked = []

    def collect_more(seed, groups):
        asked.append((seed, groups))
        return _groups("r", refills[len(asked) - 1])

    out, got = refill_groups(
        _groups("a", first),
        group_size=2,
        groups=2,
        keep=_differ,
        collect_more=collect_more,
        max_refills=max_refills,
        seed=100,
    )
    assert len(out) == 4
    assert [out[i].name for i in (0, 2)] == names
    assert [e.group for e in out] == [0, 0, 1, 1]  # renumbered to the place in the batch
    assert got == {
        "sampling/dropped_groups": stats[0],
        "sampling/refill_rollouts": stats[1],
        "sampling/filled_with_dropped": stats[2],
        "sampling/kept_share": stats[3],
    }
    # refill r rolls out from its own seed, the first one as many groups as were dropped
    assert [s for s, _ in asked] == [100 + (r + 1) * REFILL_SEED_STRIDE for r in range(len(asked))]
    if asked:
        assert asked[0][1] == sum(not ok for ok in _differ(_groups("a", first)))


def test_without_a_filter_the_rollout_passes_through_unlogged():
    episodes = _groups("a", [[1, 1], [0, 0]])

    def never(seed, groups):
        raise AssertionError("no refill without a filter")

    out, stats = refill_groups(
        episodes, group_size=2, groups=2, keep=lambda e: None, collect_more=never,
        max_refills=5, seed=0,
    )  # fmt: skip
    assert out == episodes and stats == {}
