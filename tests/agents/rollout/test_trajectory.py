"""A trajectory's record is written from the dataclass's own field list: every field survives a
round trip through the JSONL file, and the record holds nothing else but the image file names
and the episode return."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import torch

import arft_envs  # noqa: F401
from agents.rollout import (
    RolloutConfig,
    Trajectory,
    collect,
    load_trajectories,
    make_envs,
    save_trajectories,
)


def _episodes(policy) -> list[Trajectory]:
    envs = make_envs("ToyImageTool-v0", 2, max_turns=2)
    try:
        return collect(policy, envs, RolloutConfig(max_new_tokens=6, seed=5), groups=2)
    finally:
        envs.close()


def test_every_field_survives_the_round_trip(policy, tmp_path):
    trajs = _episodes(policy)
    loaded = load_trajectories(save_trajectories(trajs, tmp_path / "e.jsonl"), policy=policy)
    for a, b in zip(trajs, loaded, strict=True):
        for f in dataclasses.fields(Trajectory):
            x, y = getattr(a, f.name), getattr(b, f.name)
            if f.name == "old_logprobs":
                np.testing.assert_allclose(x, y, atol=1e-6)
            elif isinstance(x, torch.Tensor):
                torch.testing.assert_close(x, y)
            elif f.name in ("images", "env_images"):
                assert all(np.array_equal(p, q) for p, q in zip(x, y, strict=True))
            elif f.name == "info":
                assert json.loads(json.dumps(x)) == y
            else:
                assert x == y, f.name


def test_the_record_holds_the_fields_and_nothing_else(tiny_policy, tmp_path):
    [t, _] = _episodes(tiny_policy)
    record = t.to_record(tmp_path / "images")
    names = {f.name for f in dataclasses.fields(Trajectory)}
    rebuilt = {"pixel_values", "image_grid_thw", "images", "env_images"}
    assert set(record) == (names - rebuilt) | {"image_files", "episode_return"}
    assert record["episode_return"] == t.episode_return
    assert len(record["image_files"]) == len(t.env_images) > 0
    assert all((tmp_path / "images" / name).is_file() for name in record["image_files"])
    json.dumps(record)  # JSON-safe as it is
