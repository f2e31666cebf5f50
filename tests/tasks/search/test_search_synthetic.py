"""The synthetic search task source: deterministic tasks, rebuilt from their ids."""

from __future__ import annotations

import numpy as np
import pytest

from arft_envs.tasks.search.synthetic import SyntheticSearch


def test_tasks_are_deterministic_and_rebuilt_from_their_ids():
    source = SyntheticSearch()
    rng1, rng2 = np.random.default_rng(3), np.random.default_rng(3)
    t1, t2 = source.sample(rng1), source.sample(rng2)
    assert (t1.id, t1.question, t1.answers) == (t2.id, t2.question, t2.answers)
    again = source.get(t1.id)
    assert again.meta["gold_steps"] == t1.meta["gold_steps"]
    assert np.array_equal(again.load_images()[0], t1.load_images()[0])
    with pytest.raises(KeyError, match="synth-search-all-123"):
        source.get("nonsense")
