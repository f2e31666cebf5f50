"""`arft serve` over OpenEnv: a real server on a free loopback port, OpenEnv's own client."""

import json
import threading

import gymnasium as gym
import numpy as np
import pytest
import requests

pytest.importorskip("openenv", reason="install arft[serve]")

import arft_envs  # noqa: E402, F401
from arft_envs.experts import ScriptedExpert  # noqa: E402
from arft_envs.integrations.openenv import (  # noqa: E402
    ArftEnvClient,
    decode_image,
    encode_image,
    spawn_server,
    to_gym_observation,
)

HOSTILE = [
    "no tags at all",
    "<think>x</think><code>\n```python\nraise ValueError('boom')\n```\n</code>",
    "<think>x</think><answer> nope </answer>",
]


@pytest.fixture(scope="module")
def url():
    with spawn_server("MATCoding-v0", expert_hints=True, max_sessions=4) as server_url:
        yield server_url


def _remote(url: str, seed: int, actions: list[str] | None = None, barrier=None) -> dict:
    client = ArftEnvClient(base_url=url, message_timeout_s=300).sync()
    rewards, infos = [], []
    with client:
        result = client.reset(seed=seed)
        task_id = result.observation.info["task_id"]
        turn = 0
        while not result.done:
            if barrier is not None:
                barrier.wait(timeout=120)  # both clients mid-episode at the same time
            action = actions[turn] if actions else result.observation.expert_action
            result = client.step(action)
            rewards.append(result.reward)
            infos.append(result.observation.info)
            turn += 1
    return {"task_id": task_id, "rewards": rewards, "infos": infos,
            "obs": to_gym_observation(result.observation)}  # fmt: skip


def _local(seed: int, actions: list | None = None, **env_kwargs) -> dict:
    env = gym.make("MATCoding-v0", **env_kwargs)
    expert = ScriptedExpert()
    obs, info = env.reset(seed=seed)
    task_id, rewards, infos, done, turn = info["task_id"], [], [], False, 0
    while not done:
        action = actions[turn] if actions else expert(obs, env)
        obs, reward, terminated, truncated, info = env.step(action)
        rewards.append(reward)
        infos.append(json.loads(json.dumps(info)))
        done, turn = terminated or truncated, turn + 1
    env.close()
    return {"task_id": task_id, "rewards": rewards, "infos": infos, "obs": obs}


def _assert_same(remote: dict, local: dict) -> None:
    assert remote["task_id"] == local["task_id"]
    assert remote["rewards"] == local["rewards"]
    assert remote["infos"] == local["infos"]
    assert remote["obs"]["messages"] == local["obs"]["messages"]
    assert len(remote["obs"]["images"]) == len(local["obs"]["images"])
    for a, b in zip(remote["obs"]["images"], local["obs"]["images"], strict=True):
        assert a.dtype == b.dtype and np.array_equal(a, b)


def test_an_expert_episode_over_openenv_equals_the_in_process_one(url):
    remote = _remote(url, seed=0)
    _assert_same(remote, _local(seed=0))
    assert remote["infos"][-1]["f1"] == 1.0 and len(remote["obs"]["images"]) >= 2


def test_concurrent_clients_each_get_their_own_episode(url):
    barrier = threading.Barrier(2)
    results: dict[int, dict] = {}
    errors: list[BaseException] = []

    def run(seed: int) -> None:
        try:
            results[seed] = _remote(url, seed, barrier=barrier)
        except BaseException as err:  # surfaced below, in the test's thread
            errors.append(err)
            barrier.abort()

    threads = [threading.Thread(target=run, args=(seed,)) for seed in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert not errors, errors
    assert results[1]["task_id"] != results[2]["task_id"]
    for seed in (1, 2):
        _assert_same(results[seed], _local(seed))


def test_bad_turns_sandbox_errors_and_format_errors_behave_as_in_process(url):
    remote = _remote(url, seed=5, actions=HOSTILE)
    _assert_same(remote, _local(seed=5, actions=HOSTILE))
    assert remote["infos"][0]["action_kind"] == "format_error"
    assert remote["infos"][1]["tool_failures"] == 1


def test_malformed_requests_get_clear_errors_and_the_session_survives(url):
    from websockets.sync.client import connect

    ws_url = url.replace("http://", "ws://") + "/ws"
    with connect(ws_url, max_size=None, open_timeout=60) as ws:

        def send(raw: str) -> dict:
            ws.send(raw)
            return json.loads(ws.recv(timeout=300))

        cases = [
            ("not json", "Invalid JSON"),
            (json.dumps({"type": "fly"}), "Unknown message type"),
            (json.dumps({"type": "step", "data": {"text": "hi"}}), "send a reset"),
            (json.dumps({"type": "reset", "data": {"seed": "x"}}), "must be an integer"),
            (json.dumps({"type": "reset", "data": {"colour": 1}}), "unknown reset field"),
            (json.dumps({"type": "reset", "data": {"options": {"bogus": 1}}}), "bogus"),
        ]
        for raw, expected in cases:
            reply = send(raw)
            assert reply["type"] == "error", raw
            assert expected in reply["data"]["message"], (raw, reply)
        reply = send(json.dumps({"type": "step", "data": {"txt": "hi"}}))
        assert reply["data"]["code"] == "VALIDATION_ERROR"
        assert "text" in json.dumps(reply["data"]["errors"])
        reply = send(json.dumps({"type": "reset", "data": {"seed": 0}}))
        assert reply["type"] == "observation" and not reply["data"]["done"]
        reply = send(json.dumps({"type": "step", "data": {"text": "\udcff garbage"}}))
        assert reply["type"] in ("observation", "error")  # JSON cannot carry a lone surrogate
    # the stateless HTTP route answers a step with no episode with a 400 that says why
    response = requests.post(f"{url}/step", json={"action": {"text": "x"}}, timeout=120)
    assert response.status_code == 400 and "send a reset" in response.json()["detail"]
    assert requests.get(f"{url}/health", timeout=60).status_code == 200


def test_a_tool_calls_episode_over_openenv_equals_the_in_process_one():
    """``--env-arg action_format=tool_calls``: native calls go over the wire both as an
    assistant message with ``tool_calls`` and as Hermes text, and come back recorded."""
    with spawn_server(
        "MATCoding-v0", ["action_format=tool_calls"], expert_hints=True, max_sessions=2
    ) as server_url:
        remote = _remote(server_url, seed=0)  # the expert's hints: messages with tool_calls
        raw_turns = [
            '<think>look</think>\n<tool_call>\n{"name": "problem", "arguments": '
            '{"problems": ["dark"]}}\n</tool_call>',
            "no call at all",
            {"role": "assistant", "content": "", "tool_calls": [
                {"type": "function", "function": {"name": "answer", "arguments": {"answer": "x"}}}
            ]},
        ]  # fmt: skip
        raw = _remote(server_url, seed=3, actions=raw_turns)
    local = _local(seed=0, action_format="tool_calls")
    _assert_same(remote, local)
    assert remote["infos"][-1]["f1"] == 1.0
    calls = [m for m in remote["obs"]["messages"] if m.get("tool_calls")]
    assert len(calls) == len(remote["rewards"]) >= 2
    assert calls[0]["tool_calls"][0]["function"]["name"] == "problem"
    assert any(m.get("name") == "code" for m in remote["obs"]["messages"])
    _assert_same(raw, _local(seed=3, actions=raw_turns, action_format="tool_calls"))
    assert [i["action_kind"] for i in raw["infos"]][:2] == ["problem", "format_error"]


def test_images_round_trip_bit_for_bit():
    rng = np.random.default_rng(0)
    for shape in [(1, 1, 3), (7, 5, 3), (480, 640, 3)]:
        image = rng.integers(0, 256, shape, dtype=np.uint8)
        back = decode_image(json.loads(json.dumps(encode_image(image))))
        assert back.dtype == np.uint8 and np.array_equal(back, image)
    with pytest.raises(ValueError, match="could not be decoded"):
        decode_image({"shape": [2, 2, 3], "dtype": "uint8", "data": "!!"})


def test_serve_refuses_an_unknown_env_id_with_the_fix():
    with pytest.raises(RuntimeError, match="not a registered env id"):
        with spawn_server("NoSuchEnv-v0", start_timeout_s=120):
            pass
