"""The wrappers: deltas rebuild the conversation; a classic RL library can drive an arft env."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import arft_envs  # noqa: F401
from arft_envs.experts import ScriptedExpert
from arft_envs.wrappers import DeltaObservation, DiscreteActions, ImageObservation

DIAGNOSES = [
    f"<think>look</think><problem> {{'{p}'}} </problem>"
    for p in ("rotation90", "rotation180", "dark", "overexposure", "blur", "noise", "none")
]


def test_deltas_concatenate_to_the_full_conversation():
    full = gym.make("MATCoding-v0")
    delta = DeltaObservation(gym.make("MATCoding-v0"))
    expert = ScriptedExpert()
    f_obs, _ = full.reset(seed=4)
    d_obs, _ = delta.reset(seed=4)
    messages, images = list(d_obs["messages"]), list(d_obs["images"])
    done = False
    while not done:
        action = expert(f_obs, full)
        f_obs, _, terminated, truncated, _ = full.step(action)
        d_obs, _, _, _, _ = delta.step(action)
        offset = len(images)
        assert d_obs["messages"][0]["role"] == "assistant"
        for m in d_obs["messages"]:
            content = tuple(
                {"type": "image", "index": p["index"] + offset} if p["type"] == "image" else p
                for p in m["content"]
            )
            messages.append({"role": m["role"], "content": content})
        images.extend(d_obs["images"])
        done = terminated or truncated
    assert tuple(messages) == f_obs["messages"]
    assert len(images) == len(f_obs["images"])
    assert all(np.array_equal(a, b) for a, b in zip(images, f_obs["images"], strict=True))


def test_discrete_image_view_passes_check_env_and_rejects_out_of_range():
    env = ImageObservation(DiscreteActions(gym.make("MATCoding-v0"), DIAGNOSES), size=32)
    check_env(env.unwrapped, skip_render_check=True)
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    obs, reward, *_ = env.step(2)
    assert env.observation_space.contains(obs) and obs["turn"] == 1
    with pytest.raises(ValueError, match="outside Discrete"):
        env.step(99)


def test_stable_baselines3_ppo_trains_on_the_discrete_view():
    sb3 = pytest.importorskip("stable_baselines3", reason="install arft[sb3]")
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    def make():
        return ImageObservation(
            DiscreteActions(gym.make("MATCoding-v0", max_turns=1), DIAGNOSES), size=48
        )

    sb3_check_env(make(), warn=True)
    model = sb3.PPO("MultiInputPolicy", make(), n_steps=32, batch_size=16, n_epochs=1, seed=0)
    model.learn(total_timesteps=64)
    action, _ = model.predict(make().reset(seed=0)[0], deterministic=True)
    assert 0 <= int(action) < len(DIAGNOSES)
