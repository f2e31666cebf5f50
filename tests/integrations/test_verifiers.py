"""arft envs as verifiers (0.4) environments: verifiers' own env, agent and interception server
run the episode; the model is a loopback chat endpoint (a scripted policy here, a real tiny
model in the example). The reward on the verifiers trace must be the env's own return."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

vf = pytest.importorskip("verifiers.v1", reason="install arft[verifiers]")

import arft_envs  # noqa: E402, F401
from arft_envs.experts import ScriptedExpert  # noqa: E402
from arft_envs.integrations.verifiers import (  # noqa: E402
    chat_server,
    env_config,
    from_wire,
    to_wire,
)

ROOT = Path(__file__).resolve().parents[2]


def _local(env_id: str, seed: int, actions=None, **env_kwargs) -> dict:
    """The same episode in process: the expert's (or the given) turns, the env's rewards."""
    env = gym.make(env_id, **env_kwargs)
    expert = ScriptedExpert()
    obs, _ = env.reset(seed=seed)
    total, done, turn, info = 0.0, False, 0, {}
    while not done:
        action = actions[turn] if actions else expert(obs, env)
        obs, reward, terminated, truncated, info = env.step(action)
        total += reward
        done, turn = terminated or truncated, turn + 1
    env.close()
    return {"return": total, "info": info, "turns": turn}


class Mirror:
    """A scripted policy behind the chat endpoint: a twin env, reset with the same seed, is
    stepped with each turn it sends, so the expert always knows where the episode is. With
    ``actions`` it sends those turns instead. It keeps every request it received."""

    def __init__(self, env_id: str, seed: int, actions=None, **env_kwargs):
        self.env = gym.make(env_id, **env_kwargs)
        self.obs, _ = self.env.reset(seed=seed)
        self.expert, self.actions, self.requests = ScriptedExpert(), actions, []

    def __call__(self, body: dict) -> dict:
        self.requests.append(body)
        turn = len(self.requests) - 1
        action = self.actions[turn] if self.actions else self.expert(self.obs, self.env)
        self.obs, *_ = self.env.step(action)
        if isinstance(action, str):
            return {"content": action}
        return {"content": action["content"], "tool_calls": list(action["tool_calls"])}


def _rollout(mirror: Mirror, env_id: str, seed: int, **env_kwargs):
    async def run(url):
        env = vf.load_environment(env_config(env_id, seeds=[seed], **env_kwargs))
        client = vf.EvalClientConfig(base_url=url, api_key_var="ARFT_TEST_NO_KEY")
        ctx = vf.ModelContext(model="mirror", client=client)
        async with env.serving():
            (slot,) = env.slots(next(iter(env.taskset)))
            return await env.run_slot(slot, ctx)

    with chat_server(mirror) as url:
        episode = asyncio.run(run(url))
    mirror.env.close()
    assert episode.ok, episode.errors
    (trace,) = episode.traces
    return trace


def _parts(request: dict, kind: str) -> list:
    return [
        p
        for m in request["messages"]
        if isinstance(m.get("content"), list)
        for p in m["content"]
        if p["type"] == kind
    ]


def test_tag_format_episode_earns_the_in_process_return_with_images_both_ways():
    # MATCoding: the task image goes out, the code tool really runs in the sandbox and the
    # image it writes comes back to the model in the next request.
    mirror = Mirror("MATCoding-v0", 0)
    trace = _rollout(mirror, "MATCoding-v0", 0)
    local = _local("MATCoding-v0", 0)
    assert trace.reward == pytest.approx(local["return"])
    assert trace.rewards["env_return"].score == pytest.approx(local["return"])
    assert trace.metrics["f1"] == 1.0 and trace.metrics["tool_failures"] == 0.0
    assert trace.metrics["turns"] == local["turns"] == len(mirror.requests)
    images = [len(_parts(r, "image_url")) for r in mirror.requests]
    assert images[0] >= 1 and images[-1] > images[0], images
    assert "tools" not in mirror.requests[0]
    # the request carries the conversation the env holds, turn after turn
    assert [len(r["messages"]) for r in mirror.requests] == [2, 4, 6]


def test_tool_call_episode_sends_schemas_and_answers_each_call_by_id():
    mirror = Mirror("HotpotQA-v0", 3, action_format="tool_calls")
    trace = _rollout(mirror, "HotpotQA-v0", 3, action_format="tool_calls")
    local = _local("HotpotQA-v0", 3, action_format="tool_calls")
    assert trace.reward == pytest.approx(local["return"]) and local["return"] > 0
    assert trace.metrics["em"] == 1.0
    env = gym.make("HotpotQA-v0", action_format="tool_calls")
    assert mirror.requests[0]["tools"] == list(env.unwrapped.tool_schemas)
    env.close()
    later = mirror.requests[1]["messages"]
    call, reply = later[-2], later[-1]
    assert call["role"] == "assistant" and call["tool_calls"][0]["function"]["name"] == "search"
    assert reply["role"] == "tool" and reply["tool_call_id"] == call["tool_calls"][0]["id"]
    assert "<information>" in reply["content"][0]["text"]  # the search really ran


def test_hostile_turns_are_the_env_feedback_not_a_failed_rollout():
    actions = [
        "no tags at all",
        "<think>x</think><code>\n```python\nraise ValueError('boom')\n```\n</code>",
        "<think>x</think><answer> nope </answer>",
    ]
    mirror = Mirror("MATCoding-v0", 1, actions=actions)
    trace = _rollout(mirror, "MATCoding-v0", 1)
    local = _local("MATCoding-v0", 1, actions=actions)
    assert trace.reward == pytest.approx(local["return"])
    assert trace.metrics["format_errors"] == local["info"]["format_errors"] == 1.0
    assert trace.metrics["tool_failures"] == local["info"]["tool_failures"] == 1.0
    told = json.dumps(mirror.requests[1]["messages"][-1])
    assert "Format error" in told
    assert "ValueError" in json.dumps(mirror.requests[2]["messages"][-1])


def test_a_failing_model_server_fails_the_rollout_and_says_why():
    def broken(body: dict) -> dict:
        raise RuntimeError("the model is down")

    async def run(url):
        env = vf.load_environment(env_config("MATCoding-v0", seeds=[0]))
        client = vf.EvalClientConfig(base_url=url, api_key_var="ARFT_TEST_NO_KEY")
        async with env.serving():
            (slot,) = env.slots(next(iter(env.taskset)))
            return await env.run_slot(slot, vf.ModelContext(model="broken", client=client))

    with chat_server(broken) as url:
        episode = asyncio.run(run(url))
    (trace,) = episode.traces
    assert not episode.ok and not trace.ok
    assert any("the model is down" in e.message for e in trace.errors), trace.errors


def test_wire_messages_round_trip_with_images_bit_for_bit():
    env = gym.make("MATCoding-v0")
    obs, _ = env.reset(seed=2)
    env.close()
    messages, images = from_wire(to_wire(obs["messages"], obs["images"]))
    assert [m["role"] for m in messages] == [m["role"] for m in obs["messages"]]
    assert [p["type"] for m in messages for p in m["content"]] == [
        p["type"] for m in obs["messages"] for p in m["content"]
    ]
    assert len(images) == len(obs["images"])
    for got, sent in zip(images, obs["images"], strict=True):
        assert got.dtype == np.uint8 and np.array_equal(got, sent)


def test_the_example_runs_one_rollout_with_a_real_tiny_model():
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "verifiers_eval.py"),
         "--model", "tiny", "--max-new-tokens", "8"],
        capture_output=True, text=True, env=env, timeout=600, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    assert re.search(r"^turn 1: ", done.stdout, re.M), done.stdout[-2000:]
    reward = re.search(r"^verifiers reward \(the env's episode return\): (\S+)$", done.stdout, re.M)
    assert reward is not None, done.stdout[-2000:]
    assert float(reward[1]) >= 0.0


def test_importing_arft_envs_pulls_no_verifiers():
    code = "import sys, arft_envs; assert 'verifiers' not in sys.modules, 'verifiers pulled'"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_a_fresh_process_loads_the_plug_in_by_its_id(tmp_path):
    """What ``vf-eval arft_verifiers`` does: verifiers imports the id as a top-level module
    (``arft_verifiers.py``, installed with arft), with no arft import beforehand."""
    code = (
        "import sys, verifiers.v1 as vf\n"
        "assert 'arft_envs' not in sys.modules\n"
        "config = vf.resolve_env_config({'taskset': {'id': 'arft_verifiers',"
        " 'env_id': 'HotpotQA-v0', 'seeds': [3, 4]}})\n"
        "env = vf.load_environment(config)\n"
        "from arft_envs.integrations.verifiers import ArftEnv\n"
        "assert isinstance(env, ArftEnv), type(env)\n"
        "print(len(list(env.taskset)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["2"]
