"""Gymnasium's own conventions: async vector envs with their defaults, and check_env on the
one-turn discrete view (ended ``terminated``, not ``truncated``)."""

import copy
import os
import pickle
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import arft_envs  # noqa: F401
from arft_envs.experts import ScriptedExpert
from arft_envs.spaces import SharedObservations, SharedSlots
from arft_envs.wrappers import DiscreteActions, ImageObservation, SingleTurn

DIAGNOSES = [
    f"<think>look</think><problem> {{'{p}'}} </problem>"
    for p in ("rotation90", "rotation180", "dark", "overexposure", "blur", "noise", "none")
]


def _one_turn_view(single_turn: bool = True) -> gym.Env:
    env = ImageObservation(
        DiscreteActions(gym.make("MATCoding-v0", max_turns=1), DIAGNOSES), size=32
    )
    return SingleTurn(env) if single_turn else env


def _same_observation(a: dict, b: dict) -> bool:
    return a["messages"] == b["messages"] and all(
        np.array_equal(x, y) for x, y in zip(a["images"], b["images"], strict=True)
    )


def test_one_turn_view_ends_terminated_and_passes_gymnasiums_check_env():
    bare = _one_turn_view(single_turn=False)
    bare.reset(seed=0)
    *_, terminated, truncated, _ = bare.step(0)
    assert (terminated, truncated) == (False, True)  # why SingleTurn exists: the cap truncates

    env = _one_turn_view()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any complaint of check_env fails the test, except
        warnings.filterwarnings("ignore", message=".*different from the unwrapped version")
        check_env(env, skip_render_check=True)
    env.reset(seed=0)
    _, reward, terminated, truncated, info = env.step(1)
    assert (terminated, truncated) == (True, False)
    assert "episode_return" in info and info["episode_return"] == reward


def test_async_vector_env_works_with_its_defaults_and_matches_sync():
    expert = ScriptedExpert()
    reference = [gym.make("MATCoding-v0") for _ in range(2)]
    vec = gym.make_vec("MATCoding-v0", num_envs=2, vectorization_mode="async")
    try:
        assert vec.shared_memory  # the default this test is about
        obs, _ = vec.reset(seed=[3, 4])
        ref_obs = [env.reset(seed=s)[0] for env, s in zip(reference, (3, 4), strict=True)]
        assert isinstance(obs, tuple) and len(obs) == 2
        assert all(_same_observation(o, r) for o, r in zip(obs, ref_obs, strict=True))
        for _ in range(3):
            actions = [expert(o, env) for o, env in zip(ref_obs, reference, strict=True)]
            obs, rewards, terminated, truncated, _ = vec.step(actions)
            steps = [env.step(a) for env, a in zip(reference, actions, strict=True)]
            ref_obs = [s[0] for s in steps]
            assert rewards.tolist() == [s[1] for s in steps]
            assert terminated.tolist() == [s[2] for s in steps]
            if terminated.any() or truncated.any():
                break
            assert all(_same_observation(o, r) for o, r in zip(obs, ref_obs, strict=True))
    finally:
        vec.close()
        for env in reference:
            env.close()


def test_async_vector_env_without_copy_returns_a_live_view():
    vec = gym.make_vec(
        "MATCoding-v0", num_envs=2, vectorization_mode="async", vector_kwargs={"copy": False}
    )
    try:
        first, _ = vec.reset(seed=[0, 1])
        assert isinstance(first, SharedObservations)
        opening = len(first[0]["messages"])
        vec.step(["<think>t</think><answer>x</answer>"] * 2)
        # the view reads the newest write: the answer turn (an answer gets no tool reply)
        assert len(first[0]["messages"]) == opening + 1
        assert first[0]["messages"][-1]["role"] == "assistant"
        assert isinstance(copy.deepcopy(first), tuple)
    finally:
        vec.close()


def test_shared_slots_round_trip_exactly_and_only_the_creator_removes_them():
    slots = SharedSlots(2)
    image = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    slots.write(1, {"images": (image,), "messages": ()})
    worker_copy = pickle.loads(pickle.dumps(slots))
    assert np.array_equal(worker_copy.read(1)["images"][0], image)
    with pytest.raises(RuntimeError, match="call reset"):
        slots.read(0)
    with pytest.raises(IndexError, match="outside"):
        slots.read(2)
    path = slots.path
    del worker_copy
    assert os.path.isdir(path)  # a worker dropping its copy leaves the directory alone
    del slots
    assert not os.path.exists(path)
