"""MATCoding-v0 end to end: expert returns, failures as tool messages, fuzzing, vector envs."""

import json

import cv2
import gymnasium as gym
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import arft_envs  # noqa: F401
from arft_envs.experts import ScriptedExpert
from arft_envs.spaces import conversation_text
from arft_envs.tasks.base import DatasetError

CODE = "<think>fix</think>\n<code>\n```python\n{}\n```\n</code>"


def max_return(task, mode="live"):
    code = {"live": 2.0, "paper": 1.9}[mode] if "code" in task.meta["gold_plan"] else 0.0
    return 4.0 + code


def run_expert(env, seed=None, options=None):
    expert = ScriptedExpert()
    obs, info = env.reset(seed=seed, options=options)
    total, done, steps = 0.0, False, 0
    while not done:
        obs, reward, terminated, truncated, info = env.step(expert(obs, env))
        total += reward
        steps += 1
        done = terminated or truncated
    return total, terminated, info, obs


def test_expert_solves_200_synthetic_items_at_maximum_return():
    env = gym.make("MATCoding-v0")
    failures = []
    for seed in range(200):
        total, terminated, info, _ = run_expert(env, seed=seed)
        task = env.unwrapped.task
        if not (terminated and info["em"] == 1.0 and total == pytest.approx(max_return(task))):
            failures.append((task.id, total, info["answer"], info["golds"]))
        assert info["tool_failures"] == 0 and info["format_errors"] == 0
    assert not failures, failures[:5]


def test_observations_are_fresh_by_default_and_shared_on_request():
    env = gym.make("MATCoding-v0")
    first, _ = env.reset(seed=0)
    second, *_ = env.step("<think>a</think><problem> {'none'} </problem>")
    assert not np.shares_memory(first["images"][0], second["images"][0])
    second["images"][0][:] = 0  # the user owns it; the env's state is untouched
    assert env.unwrapped._images[0].any()
    shared = gym.make("MATCoding-v0", share_images=True)
    a, _ = shared.reset(seed=0)
    b, *_ = shared.step("<think>a</think><problem> {'none'} </problem>")
    assert a["images"][0] is b["images"][0] and not a["images"][0].flags.writeable


def test_paper_reward_mode_gives_the_papers_total():
    env = gym.make("MATCoding-v0", reward_mode="paper")
    for seed in range(10):
        total, _, info, _ = run_expert(env, seed=seed)
        assert total == pytest.approx(max_return(env.unwrapped.task, "paper"))


def test_gold_answers_appear_only_at_the_end():
    env = gym.make("MATCoding-v0")
    expert = ScriptedExpert()
    obs, info = env.reset(seed=3)
    golds = env.unwrapped.task.answers
    assert "golds" not in info and "answer" not in info
    done = False
    while not done:
        obs, _, terminated, truncated, info = env.step(expert(obs, env))
        done = terminated or truncated
        if not done:
            assert "golds" not in info
            tool_text = conversation_text([m for m in obs["messages"] if m["role"] != "assistant"])
            assert not any(g in tool_text for g in golds if len(g) > 3)
    assert info["golds"] == golds


def test_code_turn_returns_the_written_image_as_newest():
    env = gym.make("MATCoding-v0", share_images=True)
    obs, _ = env.reset(seed=0)
    first = obs["images"][0]
    action = CODE.format(
        "import cv2\nimg = cv2.imread('path_to_input_image.jpg')\n"
        "cv2.imwrite('path_to_output_image.jpg', cv2.flip(img, 1))\nprint('flipped')"
    )
    obs, reward, terminated, truncated, info = env.step(action)
    assert len(obs["images"]) == 2 and obs["images"][0] is first
    # cv2.imwrite picks JPEG from the '.jpg' name (the paper's convention): same codec here
    ok, jpeg = cv2.imencode(".jpg", np.ascontiguousarray(first[:, ::-1, ::-1]))
    expected = cv2.imdecode(jpeg, cv2.IMREAD_COLOR)[:, :, ::-1]
    np.testing.assert_array_equal(obs["images"][1], expected)
    tool = obs["messages"][-1]
    assert tool["role"] == "tool" and tool["content"][0] == {"type": "image", "index": 1}
    assert "flipped" in tool["content"][-1]["text"]
    assert info["tool_status"] == "ok" and info["tool_failures"] == 0


@pytest.mark.parametrize(
    "code,status,fragment",
    [
        ("raise ValueError('boom')", "error", "ValueError: boom"),
        ("print('no image')", "no_image", "No image was written"),
        ("import time\ntime.sleep(30)", "timeout", "timed out"),
        ("x = (", "error", "SyntaxError"),
    ],
)
def test_failing_code_goes_back_to_the_model_as_text(code, status, fragment):
    env = gym.make("MATCoding-v0", timeout_s=1.0)
    obs, _ = env.reset(seed=1)
    obs, reward, terminated, truncated, info = env.step(CODE.format(code))
    assert not terminated and not truncated
    assert info["tool_status"] == status
    assert info["tool_failures"] == 1
    assert info["reward_components"].get("code", 0.0) == 0.0
    assert fragment.lower() in obs["messages"][-1]["content"][-1]["text"].lower()
    assert len(obs["images"]) == 1


def test_format_errors_answer_with_a_tool_message_and_use_a_turn():
    env = gym.make("MATCoding-v0", max_turns=2)
    obs, _ = env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step("I think the answer is 4")
    assert reward == 0.0 and info["reward_components"] == {"format": 0.0}
    assert info["format_errors"] == 1 and not terminated and not truncated
    assert obs["messages"][-1]["role"] == "tool"
    assert "No action found" in obs["messages"][-1]["content"][-1]["text"]
    obs, reward, terminated, truncated, info = env.step("<search>x</search>")
    assert truncated and not terminated
    assert info["answer"] is None and info["f1"] == 0.0 and info["golds"]
    with pytest.raises(gym.error.ResetNeeded):
        env.step("<answer>x</answer>")


def test_format_error_can_terminate():
    env = gym.make("MATCoding-v0", on_format_error="terminate")
    env.reset(seed=0)
    _, _, terminated, truncated, info = env.step("<answer>a</answer><answer>b</answer>")
    assert terminated and not truncated and info["format_errors"] == 1


def test_a_one_megabyte_action_is_rejected_clearly():
    env = gym.make("MATCoding-v0")
    env.reset(seed=0)
    obs, reward, *_, info = env.step("<answer>" + "y" * (1 << 20) + "</answer>")
    assert info["action_kind"] == "format_error"
    assert "limit is" in obs["messages"][-1]["content"][-1]["text"]
    assert env.observation_space.contains(obs)


def test_repeated_steps_do_not_farm_reward():
    env = gym.make("MATCoding-v0", max_turns=5)
    obs, _ = env.reset(seed=0)
    step = ScriptedExpert()(obs, env)
    assert "<problem>" in step
    total = 0.0
    for _ in range(4):
        obs, reward, *_ = env.step(step)
        total += reward
    assert total <= 2.0


def test_stepwise_mode_scores_one_step_against_the_gold():
    env = gym.make("MATCoding-v0", mode="stepwise")
    for seed in range(12):
        obs, info = env.reset(seed=seed)
        gold = env.unwrapped.task.meta["gold_step"]
        assert [m["role"] for m in obs["messages"]] == ["user"]
        obs, reward, terminated, truncated, info = env.step(gold)
        assert terminated
        expected = 1.9 if "<code>" in gold else 2.0
        assert reward == pytest.approx(expected)


def test_official_benchmark_reports_missing_images(shared_data, tmp_path):
    path = shared_data / "mat_coding_demo" / "coding_case.json"
    gym.make("MATCoding-v0", data=str(path)).close()  # the sample has every image it uses
    rows = json.loads(path.read_text(encoding="utf-8"))
    rows[0]["processed_image_path"] = "gone.png"
    (tmp_path / "coding_case.json").write_text(json.dumps(rows), encoding="utf-8")
    with pytest.raises(DatasetError) as err:
        gym.make(
            "MATCoding-v0", data=str(tmp_path / "coding_case.json"), image_root=str(path.parent)
        )
    message = str(err.value)
    assert "coding_case.json" in message and "row" in message and "field" in message


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_make_vec(mode):
    kwargs = {"vector_kwargs": {"shared_memory": False}} if mode == "async" else {}
    envs = gym.make_vec("MATCoding-v0", num_envs=2, vectorization_mode=mode, **kwargs)
    obs, infos = envs.reset(seed=[0, 1])
    assert len(obs) == 2 and obs[0]["images"][0].ndim == 3
    actions = ("<think>a</think><answer>x</answer>", "<problem>{'dark'}</problem>")
    obs, rewards, terminated, truncated, infos = envs.step(actions)
    assert terminated.tolist() == [True, False]
    assert rewards.shape == (2,)
    envs.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.text(max_size=300), min_size=1, max_size=6))
def test_fuzz_step_never_raises(actions):
    env = gym.make("MATCoding-v0", timeout_s=2.0)
    obs, _ = env.reset(seed=0)
    for action in actions:
        obs, reward, terminated, truncated, info = env.step(action)
        assert env.observation_space.contains(obs)
        assert isinstance(reward, float) and np.isfinite(reward)
        if terminated or truncated:
            break
