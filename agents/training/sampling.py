"""Dynamic sampling: the step's groups that the algorithm and the data filter keep, refilled
by extra rollouts of the missing number of groups, so that every process still trains on
exactly ``groups_per_step`` groups (the same micro-batches on every process, or DDP waits
forever). DAPO's all-equal-rewards filter and the data filter's ``skip`` both use it.

Logged in the step's metrics: ``sampling/dropped_groups`` (groups left out, refills
included), ``sampling/refill_rollouts``, ``sampling/filled_with_dropped`` (dropped groups put
back because the refills ran out) and ``sampling/kept_share``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

# A refill rollout r of a step resets its groups from rollout_seed(step) + r * REFILL_SEED_STRIDE:
# far from every step's and process's own seeds, so a refill never replays a task of the run's
# regular stream by construction of the seeds (only by chance of the env's task sampling).
REFILL_SEED_STRIDE = 7_919_000_003


def refill_groups(
    trajectories: Sequence[Any],
    *,
    group_size: int,
    groups: int,
    keep: Callable[[Sequence[Any]], list[bool] | None],
    collect_more: Callable[[int, int], list[Any]],
    max_refills: int,
    seed: int,
) -> tuple[list[Any], dict[str, float]]:
    """The batch of ``groups`` groups (``trajectories``: the step's rollout, groups contiguous)
    and its ``sampling/*`` statistics.

    ``keep(episodes)`` says which groups of ``episodes`` to keep (None: no filter, the rollout
    passes through with no statistics); ``collect_more(seed, n)`` rolls out ``n`` more groups
    from ``seed``. Up to ``max_refills`` refills replace the dropped groups; a batch still short
    after them is completed with dropped groups. Each episode's ``group`` is renumbered to its
    place in the batch.
    """
    verdict = keep(trajectories)
    if verdict is None:
        return list(trajectories), {}
    split = [list(trajectories[g * group_size : (g + 1) * group_size]) for g in range(groups)]
    kept = [g for g, ok in zip(split, verdict, strict=True) if ok]
    dropped = [g for g, ok in zip(split, verdict, strict=True) if not ok]
    n_dropped = len(dropped)
    refills = 0
    while len(kept) < groups and refills < max_refills:
        refills += 1
        missing = groups - len(kept)
        more = collect_more(seed + refills * REFILL_SEED_STRIDE, missing)
        more_groups = [more[g * group_size : (g + 1) * group_size] for g in range(missing)]
        for group, ok in zip(more_groups, keep(more), strict=True):
            (kept if ok else dropped).append(group)
            n_dropped += not ok
    filled = max(groups - len(kept), 0)
    out = []
    for g, group in enumerate((kept + dropped[:filled])[:groups]):
        for t in group:
            t.group = g
            out.append(t)
    stats = {
        "sampling/dropped_groups": float(n_dropped),
        "sampling/refill_rollouts": float(refills),
        "sampling/filled_with_dropped": float(filled),
        "sampling/kept_share": 1.0 - filled / groups,
    }
    return out, stats
