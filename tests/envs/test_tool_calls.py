"""action_format="tool_calls": native function calls, as messages or Qwen/Hermes text, with
the rewards of tag mode for the same behaviour."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest

import arft_envs
import arft_envs.tools.base
from arft_envs.experts import ScriptedExpert
from arft_envs.tool_calls import parse_tool_call_turn

IDS = sorted(arft_envs.ENV_SPECS)


def _episode(env_id, seed, action_format, raw=False, **kwargs):
    env = gym.make(env_id, action_format=action_format, **kwargs)
    expert = ScriptedExpert(raw=raw)
    obs, _ = env.reset(seed=seed)
    components, done = [], False
    while not done:
        obs, _, terminated, truncated, info = env.step(expert(obs, env))
        components.append(info["reward_components"])
        done = terminated or truncated
    assert env.observation_space.contains(obs)
    return components, obs, info, env


@pytest.mark.parametrize("raw", [False, True], ids=["message", "hermes-text"])
@pytest.mark.parametrize("env_id", IDS)
def test_expert_earns_the_tag_rewards_in_both_action_forms(env_id, raw):
    for seed in (0, 5):
        tags, _, tag_info, _ = _episode(env_id, seed, "tags")
        calls, obs, info, env = _episode(env_id, seed, "tool_calls", raw=raw)
        assert calls == tags
        assert info["f1"] == tag_info["f1"] == 1.0 and info["format_errors"] == 0
        assistant = [m for m in obs["messages"] if m["role"] == "assistant"]
        assert all(len(m["tool_calls"]) == 1 for m in assistant)
        assert assistant[-1]["tool_calls"][0]["function"]["name"] == "answer"
        tool_names = [m["name"] for m in obs["messages"] if m["role"] == "tool"]
        assert tool_names == [m["tool_calls"][0]["function"]["name"] for m in assistant[:-1]]


@pytest.mark.parametrize("env_id", IDS)
def test_paper_mode_rewards_match_too(env_id):
    if env_id != "MATCoding-v0" and env_id != "EasyMATCoding-v0":
        pytest.importorskip("sentence_transformers", reason="paper search needs arft[semantic]")
    tags, *_ = _episode(env_id, 2, "tags", reward_mode="paper")
    calls, *_ = _episode(env_id, 2, "tool_calls", reward_mode="paper")
    assert calls == tags


def test_schemas_publish_every_tool_and_the_answer_is_one():
    env = gym.make("MATCoding-v0", action_format="tool_calls")
    schemas = env.unwrapped.tool_schemas
    assert [s["function"]["name"] for s in schemas] == ["problem", "code", "answer"]
    for schema in schemas:
        assert schema["type"] == "function"
        assert schema["function"]["parameters"]["type"] == "object"
        assert schema["function"]["description"]
    obs, _ = env.reset(seed=0)
    system = obs["messages"][0]["content"][0]["text"]
    assert "function" in system and "<problem>" not in system


def _coding_task_with_code(env):
    for seed in range(40):
        env.reset(seed=seed)
        if "code" in env.unwrapped.task.meta.get("gold_plan", ()):
            return seed
    raise AssertionError("no coding task with a code step in 40 seeds")


def test_images_come_back_as_image_parts_of_the_tool_message():
    env = gym.make("MATCoding-v0", action_format="tool_calls")
    seed = _coding_task_with_code(env)
    expert = ScriptedExpert()
    obs, _ = env.reset(seed=seed)
    obs, *_ = env.step(expert(obs, env))  # the diagnosis
    obs, _, _, _, info = env.step(expert(obs, env))  # the code
    reply = obs["messages"][-1]
    assert reply["role"] == "tool" and reply["name"] == "code"
    assert info["reward_components"] == {"format": 1.0, "code": 1.0}
    (image,) = [p for p in reply["content"] if p["type"] == "image"]
    assert image["index"] == len(obs["images"]) - 1 == 1
    assert not np.array_equal(obs["images"][0], obs["images"][1])


SEARCH_TOOLS = gym.make("MATSearch-v0").unwrapped._tools


def _call(name, arguments, content="I think so."):
    return {
        "role": "assistant",
        "content": content,
        "tool_calls": [{"type": "function", "function": {"name": name, "arguments": arguments}}],
    }


@pytest.mark.parametrize(
    "action,message",
    [
        ("I will just answer: Paris", "No tool call found"),
        ('<tool_call>{"name": "search", "arguments": {"query": "x"</tool_call>', "not valid JSON"),
        ('<tool_call>{"name": "search"', "not closed"),
        (_call("search", '{"query": '), "not valid JSON"),
        (_call("browse", {"url": "x"}), "no tool named 'browse'"),
        (_call("search", {}), "lacks the required argument 'query'"),
        (_call("search", {"query": "x", "k": 3}), "unknown argument 'k'"),
        (_call("search", {"query": 3}), "must be of type string"),
        (
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [_call("search", {"query": "a"})["tool_calls"][0]] * 2,
            },
            "Exactly one tool call",
        ),
        (
            '<tool_call>{"name": "answer", "arguments": {"answer": "a"}}</tool_call> and more',
            "Only whitespace may follow",
        ),
        ({"role": "user", "content": "hi"}, "role must be 'assistant'"),
        ({"role": "assistant", "content": 5}, "'content' must be a string"),
        (42, "must be an assistant message"),
        (None, "must be an assistant message"),
        (_call("search", {"query": "x" * 20000}), "characters long"),
    ],
)
def test_malformed_calls_get_a_readable_message_and_format_zero(action, message):
    env = gym.make("MATSearch-v0", action_format="tool_calls")
    env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(action)
    assert reward == 0.0 and info["reward_components"] == {"format": 0.0}
    assert not terminated and info["format_errors"] == 1
    assert message in info["format_error"], info["format_error"]
    reply = obs["messages"][-1]
    assert reply["role"] == "tool" and message in reply["content"][-1]["text"]
    assert env.observation_space.contains(obs)


def test_schema_enum_and_min_items_bound_a_diagnosis():
    env = gym.make("MATCoding-v0", action_format="tool_calls")
    env.reset(seed=0)
    for arguments, message in (
        ({"problems": ["sepia"]}, "must be one of"),
        ({"problems": []}, "at least 1 item"),
        ({"problems": "dark"}, "must be of type array"),
    ):
        _, reward, _, _, info = env.step(_call("problem", arguments))
        assert reward == 0.0 and message in info["format_error"]


@pytest.mark.parametrize(
    "content,fmt",
    [("<think> it is dark </think>", 1.0), ("it is dark", 1.0), ("", 0.0), (None, 0.0)],
)
def test_the_reasoning_plays_the_think_block(content, fmt):
    env = gym.make("MATCoding-v0", action_format="tool_calls")
    env.reset(seed=0)
    gold = env.unwrapped.task.meta["degradations"]
    _, _, _, _, info = env.step(_call("problem", {"problems": list(gold)}, content))
    assert info["reward_components"] == {"format": fmt, "problem": 1.0}


def test_arguments_may_be_json_text_and_the_turn_is_recorded_for_a_template():
    env = gym.make("MATSearch-v0", action_format="tool_calls")
    env.reset(seed=0)
    query = env.unwrapped.task.meta["gold_queries"][0]
    obs, reward, *_ = env.step(_call("search", json.dumps({"query": query}), "<think>a</think>"))
    assert reward > 0
    turn = obs["messages"][-2]
    assert turn["content"] == ({"type": "text", "text": "<think>a</think>"},)
    assert turn["tool_calls"] == (
        {"type": "function", "function": {"name": "search", "arguments": {"query": query}}},
    )


def test_parser_is_total_on_odd_input():
    for action in ("", "<tool_call></tool_call>", "<tool_call>[1, 2]</tool_call>", {}, [], b"x"):
        turn = parse_tool_call_turn(action, SEARCH_TOOLS, 1000)
        assert type(turn.action).__name__ == "FormatError"


def test_stepwise_needs_tags_and_unknown_formats_are_refused():
    with pytest.raises(ValueError, match="stepwise"):
        gym.make("MATCoding-v0", mode="stepwise", action_format="tool_calls")
    with pytest.raises(ValueError, match="action_format must be one of"):
        gym.make("MATCoding-v0", action_format="xml")


class _Echo(arft_envs.tools.base.Tool):
    """A user's tool with the default schema (one string, ``input``)."""

    name = "echo"
    description = "Repeat the input."
    timeout_s = None

    def run(self, call, env):
        from arft_envs.tools.base import ToolOutcome

        return ToolOutcome(f"echo: {call.argument}", reward_components={"echo": 0.5})


def test_a_users_tool_is_called_natively_with_its_schema():
    env = gym.make("HotpotQA-v0", action_format="tool_calls", extra_tools=[_Echo()])
    assert [s["function"]["name"] for s in env.unwrapped.tool_schemas] == [
        "search",
        "answer",
        "echo",
    ]
    env.reset(seed=0)
    obs, reward, _, _, info = env.step(_call("echo", {"input": " hello "}))
    assert obs["messages"][-1]["name"] == "echo"
    assert obs["messages"][-1]["content"][-1]["text"] == "echo: hello"
    assert info["action_kind"] == "echo" and reward == 0.5
    _, _, _, _, info = env.step(_call("echo", {"text": "hello"}))
    assert "lacks the required argument 'input'" in info["format_error"]


def test_async_vector_envs_take_both_action_forms():
    envs = gym.make_vec(
        "MATSearch-v0", num_envs=2, vectorization_mode="async", action_format="tool_calls"
    )
    try:
        envs.reset(seed=0)
        hermes = '<think>b</think><tool_call>{"name": "search", "arguments": {"query": "x"}}'
        obs, rewards, _, _, _ = envs.step(
            [_call("search", {"query": "anything"}), hermes + "</tool_call>"]
        )
        assert all(r > 0 for r in rewards)  # both well-formed: the format share at least
        assert obs[0]["messages"][-2]["tool_calls"][0]["function"]["name"] == "search"
        assert obs[1]["messages"][-2]["tool_calls"][0]["function"]["arguments"] == {"query": "x"}
    finally:
        envs.close()
