"""The ``tool_calls`` action format through the adapters: the env's public conversation
accessor, the delta and discrete wrappers (the OpenEnv server's is in test_openenv.py)."""

import gymnasium as gym
import numpy as np

import arft_envs  # noqa: F401
from arft_envs.experts import ScriptedExpert
from arft_envs.wrappers import DeltaObservation, DiscreteActions

DIAGNOSIS = {
    "role": "assistant",
    "content": "look",
    "tool_calls": [
        {"type": "function", "function": {"name": "problem", "arguments": {"problems": ["dark"]}}}
    ],
}


def test_messages_is_a_copy_of_the_conversation():
    env = gym.make("MATCoding-v0", action_format="tool_calls")
    env.reset(seed=0)
    env.step(DIAGNOSIS)
    u = env.unwrapped
    messages = u.messages
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "tool"]
    assert messages[2]["tool_calls"][0]["function"]["name"] == "problem"
    assert messages[3]["name"] == "problem"
    messages[2]["tool_calls"][0]["function"]["arguments"]["problems"].append("blur")
    messages[3]["content"][0]["text"] = "changed"
    messages[1]["role"] = "assistant"
    again = u.messages
    assert again[2]["tool_calls"][0]["function"]["arguments"]["problems"] == ["dark"]
    assert again[3]["content"][0]["text"] != "changed" and again[1]["role"] == "user"


def test_deltas_carry_tool_calls_and_tool_names():
    full = gym.make("MATCoding-v0", action_format="tool_calls")
    delta = DeltaObservation(gym.make("MATCoding-v0", action_format="tool_calls"))
    expert = ScriptedExpert()
    f_obs, _ = full.reset(seed=4)
    d_obs, _ = delta.reset(seed=4)
    messages, images = list(d_obs["messages"]), list(d_obs["images"])
    done = False
    while not done:
        action = expert(f_obs, full)
        assert isinstance(action, dict) and action["tool_calls"]
        f_obs, _, terminated, truncated, _ = full.step(action)
        d_obs, *_ = delta.step(action)
        offset = len(images)
        for m in d_obs["messages"]:
            content = tuple(
                {"type": "image", "index": p["index"] + offset} if p["type"] == "image" else p
                for p in m["content"]
            )
            messages.append({**m, "content": content})
        images.extend(d_obs["images"])
        done = terminated or truncated
    assert tuple(messages) == f_obs["messages"]
    assert sum(1 for m in messages if m.get("tool_calls")) >= 2
    assert any(m.get("name") == "code" for m in messages)
    assert all(np.array_equal(a, b) for a, b in zip(images, f_obs["images"], strict=True))


def test_discrete_choices_may_be_native_calls():
    hermes = '<tool_call>\n{"name": "problem", "arguments": {"problems": ["none"]}}\n</tool_call>'
    env = DiscreteActions(gym.make("MATCoding-v0", action_format="tool_calls"), [DIAGNOSIS, hermes])
    for choice, problems in ((0, ["dark"]), (1, ["none"])):
        env.reset(seed=0)
        _, _, _, _, info = env.step(choice)
        assert info["action_kind"] == "problem"
        call = env.unwrapped.messages[-2]["tool_calls"][0]["function"]
        assert call["arguments"] == {"problems": problems}
