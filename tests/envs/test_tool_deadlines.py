"""Whole-call deadlines, enforced by the env for every tool whatever the backend: a loopback
server that trickles its headers or its body, a user's backend or tool that hangs for ever, a
sandbox that never answers. Each turn must end within deadline + 1 s (a correctness bound on a
deadline, measured with ``time.monotonic``) as a readable tool message counted in ``info``, and
the episode goes on. Hanging calls cost a bounded number of threads."""

from __future__ import annotations

import threading
import time

import gymnasium as gym
import pytest
from loopback import TrickleServer

import arft_envs  # noqa: F401
from arft_envs.tools.base import Tool, ToolOutcome
from arft_envs.tools.search import CachedSearch, SearchResult, SerperSearch

SEARCH = "<think> I should look this up. </think>\n<search> {} </search>"
ANSWER = "<think> done </think>\n<answer> x </answer>"


def _tool_text(obs) -> str:
    message = obs["messages"][-1]
    assert message["role"] == "tool"
    return message["content"][-1]["text"]


def _timed_step(env, action):
    start = time.monotonic()
    result = env.step(action)
    return result, time.monotonic() - start


class Hang:
    """A user's search backend that blocks until released (for ever, unless the test ends)."""

    def __init__(self):
        self.release = threading.Event()
        self.calls = 0

    def search(self, query, k):
        self.calls += 1
        self.release.wait()
        return [SearchResult("late", "too late", "late://1")]


def _tool_threads(env, name: str) -> list[threading.Thread]:
    """The live threads that run ``env``'s ``name`` tool."""
    base = env.unwrapped
    wanted = base._thread_name(base.tools[name])
    return [t for t in threading.enumerate() if t.name == wanted and t.is_alive()]


@pytest.fixture(scope="module", autouse=True)
def _query_model_loaded():
    """Load MiniLM once up front: the live query reward of a web search uses it, and its
    first load (seconds) is not part of any tool call's deadline."""
    from arft_envs.tools.search.semantic import query_similarity

    query_similarity("warm", "up")


# ----------------------------------------------------------------------------- search backends


@pytest.mark.parametrize("mode", ["headers", "body"])
def test_a_trickling_web_server_cannot_hold_a_search_turn(mode):
    server = TrickleServer(mode)
    # the client's own limits are loose on purpose: only the env's deadline can end the turn
    client = SerperSearch(api_key="k", endpoint=server.url, timeout_s=30, retries=3)
    env = gym.make("MATSearch-v0", backend=client, tool_timeout_s=1.0)
    try:
        env.reset(seed=0)
        (obs, reward, terminated, truncated, info), elapsed = _timed_step(
            env, SEARCH.format("Quorvane founder")
        )
        assert elapsed < 1.0 + 1.0
        assert not terminated and not truncated
        assert info["tool_status"] == "timeout"
        assert info["tool_timeouts"] == 1 and info["tool_failures"] == 1
        text = _tool_text(obs)
        assert text.startswith("<information>\nSearch failed (timeout)")
        assert "did not finish within 1 s" in text
        obs, reward, terminated, truncated, info = env.step(ANSWER)
        assert terminated and info["tool_timeouts"] == 1
    finally:
        env.close()
        server.close()


@pytest.mark.parametrize("cached", [False, True], ids=["plain", "cached"])
def test_a_hanging_backend_ends_the_turn_at_the_deadline(cached, tmp_path):
    backend = Hang()
    spec = CachedSearch(backend, tmp_path / "cache.sqlite") if cached else backend
    env = gym.make("MATSearch-v0", backend=spec, tool_timeout_s=0.5, max_turns=4)
    try:
        env.reset(seed=1)
        for turn in (1, 2):
            (obs, _, terminated, truncated, info), elapsed = _timed_step(
                env, SEARCH.format(f"query {turn}")
            )
            assert elapsed < 0.5 + 1.0
            assert not terminated and not truncated
            assert info["tool_status"] == "timeout" and info["tool_timeouts"] == turn
            assert "did not finish within 0.5 s" in _tool_text(obs)
        obs, _, terminated, _, info = env.step(ANSWER)
        assert terminated and info["tool_failures"] == 2 and backend.calls == 2
    finally:
        backend.release.set()
        env.close()


def test_hanging_calls_cost_a_bounded_number_of_threads():
    backend = Hang()
    env = gym.make(
        "MATSearch-v0", backend=backend, tool_timeout_s=0.2, max_abandoned_calls=2, max_turns=8
    )
    try:
        env.reset(seed=2)
        statuses, texts = [], []
        for turn in range(6):
            (obs, _, _, _, info), elapsed = _timed_step(env, SEARCH.format(f"q{turn}"))
            assert elapsed < 0.2 + 1.0
            statuses.append(info["tool_status"])
            texts.append(_tool_text(obs))
        assert statuses == ["timeout"] * 6
        # two calls hang, abandoned; the rest were refused without starting a thread
        assert backend.calls == 2
        assert "2 earlier call(s) still running, not started" in texts[-1]
        assert len(_tool_threads(env, "search")) <= 2
        backend.release.set()  # the backend comes back: its abandoned threads end
        deadline = time.monotonic() + 10
        while _tool_threads(env, "search") and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _tool_threads(env, "search") == []
        obs, _, _, _, info = env.step(SEARCH.format("after"))  # and the tool works again
        assert info["tool_status"] == "ok" and backend.calls == 3
        assert "1. Title: late" in _tool_text(obs)
    finally:
        backend.release.set()
        env.close()


def test_the_default_backend_runs_under_its_deadline_unchanged():
    env = gym.make("MATSearch-v0")
    env.reset(seed=0)
    obs, _, _, _, info = env.step(SEARCH.format("founder"))
    assert info["tool_status"] == "ok" and info["tool_timeouts"] == 0
    assert env.unwrapped._deadline(env.unwrapped.tools["search"]) == 30.0


# ----------------------------------------------------------------------------- the sandbox


class HangingSandbox:
    """A user's own sandbox object (anything with ``run``) that never answers."""

    def __init__(self):
        self.release = threading.Event()

    def run(self, code, files=None, timeout_s=None):
        self.release.wait()
        raise RuntimeError("released")


CODE = (
    "<think> fix </think>\n<code>\n```python\nimport cv2\n"
    "img = cv2.imread('path_to_input_image.jpg')\n"
    "cv2.imwrite('path_to_output_image.jpg', img)\n```\n</code>"
)


def test_a_sandbox_that_never_answers_ends_the_code_turn_at_the_deadline():
    sandbox = HangingSandbox()
    env = gym.make("MATCoding-v0", sandbox=sandbox, tool_timeout_s={"code": 1.0})
    try:
        env.reset(seed=0)
        (obs, reward, terminated, _, info), elapsed = _timed_step(env, CODE)
        assert elapsed < 1.0 + 1.0
        assert not terminated
        assert info["tool_status"] == "timeout" and info["tool_timeouts"] == 1
        assert "did not answer within 1 s" in _tool_text(obs)
        assert info["reward_components"]["code"] == 0.0  # live: no image, no code reward
        assert len(obs["images"]) == 1  # the image is unchanged
    finally:
        sandbox.release.set()
        env.close()


def test_the_code_deadline_defaults_to_the_sandbox_wall_limit_plus_grace():
    env = gym.make("MATCoding-v0", timeout_s=3.0)
    tool = env.unwrapped.tools["code"]
    assert env.unwrapped._deadline(tool) == 3.0 + 10.0


def test_code_that_loops_for_ever_is_a_counted_timeout():
    env = gym.make("MATCoding-v0", timeout_s=0.5)
    env.reset(seed=0)
    loop = "<think> spin </think>\n<code>\n```python\nwhile True:\n    pass\n```\n</code>"
    (obs, _, terminated, _, info), elapsed = _timed_step(env, loop)
    assert elapsed < 0.5 + 10.0 + 1.0
    assert info["tool_status"] == "timeout" and info["tool_timeouts"] == 1
    assert "timed out" in _tool_text(obs) and not terminated


# ----------------------------------------------------------------------------- a user's tool


class Stuck(Tool):
    name = "stuck"
    description = "Never returns."
    timeout_s = 0.5

    def __init__(self):
        self.release = threading.Event()

    def run(self, call, env):
        self.release.wait()
        return ToolOutcome("late")


class Broken(Tool):
    name = "broken"
    timeout_s = 0.5

    def run(self, call, env):
        raise ZeroDivisionError("division by zero in a user's tool")


def test_a_users_tool_that_hangs_or_raises_is_a_tool_message():
    stuck = Stuck()
    env = gym.make("MATCoding-v0", extra_tools=[stuck, Broken()], max_turns=4)
    try:
        env.reset(seed=0)
        (obs, _, terminated, _, info), elapsed = _timed_step(env, "<stuck> go </stuck>")
        assert elapsed < 0.5 + 1.0 and not terminated
        assert info["tool_status"] == "timeout" and info["tool_timeouts"] == 1
        assert "The stuck tool did not finish within 0.5 s" in _tool_text(obs)
        obs, _, terminated, _, info = env.step("<broken> go </broken>")
        assert info["tool_status"] == "error" and info["tool_failures"] == 2
        assert "ZeroDivisionError: division by zero" in _tool_text(obs)
        assert not terminated
    finally:
        stuck.release.set()
        env.close()


def test_tool_timeout_s_is_checked():
    with pytest.raises(ValueError, match=r"tool_timeout_s\['search'\] must be a positive"):
        gym.make("MATSearch-v0", tool_timeout_s={"search": 0})
    with pytest.raises(ValueError, match="positive number"):
        gym.make("MATSearch-v0", tool_timeout_s="soon")


def test_deadline_runner_passes_values_and_errors_through():
    from arft_envs.tools.deadline import DeadlineExceeded, DeadlineRunner

    runner = DeadlineRunner(max_abandoned=1)
    assert runner.call(lambda: 41 + 1, 1.0) == 42
    with pytest.raises(KeyError):
        runner.call(lambda: {}["missing"], 1.0)
    assert runner.call(lambda: "inline", None) == "inline"
    gate = threading.Event()
    with pytest.raises(DeadlineExceeded):
        runner.call(gate.wait, 0.05)
    assert runner.abandoned == 1
    gate.set()
    end = time.monotonic() + 10
    while runner.abandoned and time.monotonic() < end:
        time.sleep(0.01)
    assert runner.abandoned == 0
    assert runner.call(lambda: "again", 1.0) == "again"
    runner.close()
