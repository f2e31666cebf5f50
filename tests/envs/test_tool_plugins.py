"""Tools as plug-ins: a user's tool joins an env's grammar, format checks, prompt and schemas
without any edit to arft; the paper's envs are unchanged by the machinery; and the task's
public facts reach ``info`` (gold facts only at the end)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import pytest

import arft_envs  # noqa: F401
from arft_envs.actions import FormatError, ToolCall, parse_action
from arft_envs.experts import ScriptedExpert
from arft_envs.prompts import CODING_SYSTEM_PROMPT, SEARCH_SYSTEM_PROMPT
from arft_envs.rewards import format_reward
from arft_envs.tools.base import Tool, ToolOutcome

REPO = Path(__file__).resolve().parents[2]


class Calculator(Tool):
    """A user's calculator for a text env: ``<calc> 2 * (3 + 4) </calc>``."""

    name = "calc"
    description = "Evaluate an arithmetic expression."
    usage = "<calc> 2 * (3 + 4) </calc>"
    timeout_s = 2.0

    def run(self, call, env):
        tree = ast.parse(call.argument, mode="eval")
        allowed = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Constant, ast.operator, ast.unaryop)
        if not all(isinstance(node, allowed) for node in ast.walk(tree)):
            return ToolOutcome("Only arithmetic is allowed.", status="error")
        return ToolOutcome(str(eval(compile(tree, "<calc>", "eval"), {"__builtins__": {}})))

    def reward(self, call, outcome, action, env):
        return {"format": format_reward(action, "calc", task="search", tags=env.action_tags)}


def test_the_example_plays_an_episode_through_its_own_tool():
    done = subprocess.run(
        [sys.executable, str(REPO / "examples" / "custom_tool.py")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Zoomed to [0, 0, 500, 500]" in done.stdout


def test_a_calculator_on_a_text_env_reaches_the_model():
    env = gym.make("HotpotQA-v0", extra_tools=[Calculator()])
    obs, _ = env.reset(seed=0)
    prompt = obs["messages"][0]["content"][0]["text"]
    assert "# More tools" in prompt and "<calc> 2 * (3 + 4) </calc>" in prompt
    assert prompt.endswith("# Current reasoning chain:")
    obs, reward, terminated, _, info = env.step("<think> add </think>\n<calc> 2 * (3 + 4) </calc>")
    assert obs["messages"][-1]["content"][-1]["text"] == "14"
    assert info["action_kind"] == "calc" and info["tool_status"] == "ok"
    assert reward == 1.0 and not terminated
    obs, reward, _, _, info = env.step("<think> x </think><calc> 1 </calc><calc> 2 </calc>")
    assert info["action_kind"] == "format_error"  # one action per turn holds for new tags too
    obs, _, _, _, info = env.step("<calc> __import__('os') </calc>")
    assert info["tool_status"] == "error"


def test_add_tool_after_construction_and_the_schemas():
    env = gym.make("MATSearch-v0")
    base = env.unwrapped
    assert [s["function"]["name"] for s in base.tool_schemas] == ["search", "answer"]
    assert base.action_tags == ("search", "answer")
    base.add_tool(Calculator())
    assert base.action_tags == ("search", "answer", "calc")
    schema = base.tool_schemas[-1]
    assert schema == {
        "type": "function",
        "function": {
            "name": "calc",
            "description": "Evaluate an arithmetic expression.",
            "parameters": dict(Calculator.parameters),
        },
    }
    obs, _ = env.reset(seed=0)
    assert "<calc>" in obs["messages"][0]["content"][0]["text"]
    obs, _, _, _, info = env.step("<calc> 6 * 7 </calc>")
    assert obs["messages"][-1]["content"][-1]["text"] == "42"
    assert set(base.tools) == {"search", "answer", "calc"}


def test_the_paper_envs_keep_the_paper_prompts_and_tags():
    coding = gym.make("MATCoding-v0")
    obs, _ = coding.reset(seed=0)
    assert obs["messages"][0]["content"][0]["text"] == CODING_SYSTEM_PROMPT
    assert coding.unwrapped.action_tags == ("problem", "code", "answer")
    search = gym.make("MATSearch-v0")
    obs, _ = search.reset(seed=0)
    assert obs["messages"][0]["content"][0]["text"] == SEARCH_SYSTEM_PROMPT


@pytest.mark.parametrize(
    ("tools", "message"),
    [
        ([Calculator(), Calculator()], "two tools are named 'calc'"),
        ([type("T", (Calculator,), {"name": "t2", "tags": ("code",)})()], "tag <code> is claimed"),
        ([type("T", (Calculator,), {"name": "t3", "tags": ("think",)})()], "other than 'think'"),
        ([type("T", (Calculator,), {"name": "bad name"})()], "name must be a word"),
        ([type("T", (Calculator,), {"name": "t4", "terminal": True})()], "at most one tool"),
    ],
)
def test_tools_that_cannot_share_an_env_fail_at_make(tools, message):
    with pytest.raises(ValueError, match=message):
        gym.make("MATCoding-v0", extra_tools=tools)


def test_the_grammar_reads_the_registered_tags():
    tools = ("answer", "calc")
    assert parse_action("<calc> 1 + 2 </calc>", tools) == ToolCall("calc", "1 + 2")
    refused = parse_action("<code>print(1)</code>", tools)
    assert isinstance(refused, FormatError)
    assert "<code> is not available" in refused.message and "<calc>…</calc>" in refused.message
    empty = parse_action("<calc>  </calc>", tools)
    assert isinstance(empty, FormatError) and "<calc> body is empty" in empty.message
    unknown = parse_action("<calc> 1 </calc>")  # not registered: not an action tag at all
    assert isinstance(unknown, FormatError) and "'<calc>' is not an action tag" in unknown.message


def test_format_checks_read_the_registered_tags():
    one = "<think> t </think>\n<calc> 1 </calc>"
    tags = ("search", "answer", "calc")
    assert format_reward(one, "calc", task="search", tags=tags) == 1.0
    assert format_reward(one + "<calc> 2 </calc>", "calc", task="search", tags=tags) == 0.0
    # with the paper's own tags the paper's checks are the same as with no tags at all
    paper = "<think> t </think>\n<search> q </search>"
    assert format_reward(paper, "search", "search", ("search", "answer")) == format_reward(
        paper, "search", "search"
    )
    with pytest.raises(ValueError, match="unknown step kind 'calc'"):
        format_reward(one, "calc")


def test_the_code_tool_uses_the_tasks_file_names():
    from arft_envs.tasks.coding.degrade import INPUT_IMAGE, OUTPUT_IMAGE
    from arft_envs.tools.paper import INPUT_NAME, OUTPUT_NAME

    assert (INPUT_NAME, OUTPUT_NAME) == (INPUT_IMAGE, OUTPUT_IMAGE)


# ----------------------------------------------------------------------------- public task facts


def _gold_strings(task) -> list[str]:
    return [a for a in task.answers if len(a) > 2] + [
        s for s in task.meta.get("gold_steps", ()) if s
    ]


def test_coding_info_names_the_task_its_split_and_degradations():
    env = gym.make("MATCoding-v0")
    expert = ScriptedExpert()
    for seed in range(4):
        obs, info = env.reset(seed=seed)
        task = env.unwrapped.task
        assert info["task_id"] == task.id and info["split"] == task.split
        assert "degradations" not in info  # the gold diagnosis, so only at the end
        assert "golds" not in info and "answer" not in info
        done = False
        while not done:
            obs, _, terminated, truncated, info = env.step(expert(obs, env))
            done = terminated or truncated
            if not done:
                assert "golds" not in info and "degradations" not in info
                text = repr(info)
                assert not any(g in text for g in _gold_strings(task))
        assert info["split"] == task.split
        assert info["degradations"] == sorted(task.meta["degradations"])
        assert info["golds"] == list(task.answers)


def test_search_info_gives_the_gold_queries_only_at_the_end():
    env = gym.make("MATSearch-v0")
    expert = ScriptedExpert()
    obs, info = env.reset(seed=3)
    task = env.unwrapped.task
    assert {"task_id", "split", "source"} <= set(info) and "gold_queries" not in info
    assert not any(q in repr(info) for q in task.meta["gold_queries"])
    done = False
    while not done:
        obs, _, terminated, truncated, info = env.step(expert(obs, env))
        done = terminated or truncated
        if not done:
            assert "gold_queries" not in info and "golds" not in info
    assert info["gold_queries"] == list(task.meta["gold_queries"])
    assert info["split"] == task.split
