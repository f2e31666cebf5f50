"""AgenticEnv: the turn loop shared by every text-acting, tool-using environment.

One ``step(action)`` is one assistant turn. The env parses the text with the grammar of its
registered tools (``actions``), runs the tool call it holds under the tool's whole-call
deadline (``tools.base``, ``tools.deadline``), appends the assistant turn and the tool's reply
to the conversation, and returns the reward of that turn (the tool's ``reward``). The
conversation *is* the Markov state, so the observation is the whole chat so far. Reward
definitions live in ``rewards``; tools live in ``tools``; this module only sequences them.

A family (MATCoding, the search envs) overrides four hooks: ``_make_tools`` (its tools),
``_initial_messages`` (the opening chat), ``_stepwise_components`` (the paper's one-row
rewards, for ``mode="stepwise"``) and ``_task_info`` (the task's public facts for ``info``).
A user adds a tool with ``extra_tools=[...]`` or :meth:`AgenticEnv.add_tool`. Nothing requires
this base class: a third-party env is any ``gym.Env`` with the observation and info contract.
"""

from __future__ import annotations

import copy
import json
import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

import gymnasium as gym
import numpy as np

from arft_envs.actions import (
    ACTION_TAGS,
    Answer,
    FormatError,
    ToolCall,
    body_parser,
    grammar_for,
)
from arft_envs.prompts import for_tool_calls, with_tools
from arft_envs.spaces import (
    AssistantTurn,
    Conversation,
    Utf8Text,
    conversation_text,
    fit_image,
    image_part,
    message,
    text_part,
)
from arft_envs.tasks.base import Task, TaskSource
from arft_envs.tool_calls import ACTION_FORMATS, parse_tool_call_turn
from arft_envs.tools.base import Tool, ToolOutcome, check_tools
from arft_envs.tools.deadline import DeadlineBusy, DeadlineExceeded, DeadlineRunner

logger = logging.getLogger(__name__)

REWARD_MODES = ("live", "paper")
FORMAT_ERROR_POLICIES = ("continue", "terminate")
MODES = ("agent", "stepwise")

__all__ = ["AgenticEnv", "ToolOutcome", "Tool"]


class AgenticEnv(gym.Env[dict, str]):
    """Base class: a multi-turn conversation where each action is one assistant turn.

    Subclasses implement ``_make_tools`` and ``_initial_messages`` (and
    ``_stepwise_components`` for ``mode="stepwise"``, ``_task_info`` for more ``info``).
    An older form still works: set ``action_tags`` and implement ``_run_tool(call, action)``
    and ``_answer_components(answer, action, f1, em)``; each tag then becomes a tool that
    calls those hooks.

    Common arguments: ``extra_tools`` (more :class:`~arft_envs.tools.base.Tool` objects) and
    ``tool_timeout_s`` (a number for every tool, or ``{tool name: seconds or None}``;
    default: each tool's own ``deadline``). ``max_abandoned_calls``: how many calls that
    missed their deadline may still run, per tool, before further calls are refused.
    ``action_format``: ``"tags"`` (default; the paper's tagged text, a ``Utf8Text`` action) or
    ``"tool_calls"`` (native function calls, an ``AssistantTurn`` action; see
    :mod:`arft_envs.tool_calls`, with the same rewards for the same behaviour).
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 1}
    action_tags: tuple[str, ...] = ("answer",)
    chinese_metric: bool = False

    def __init__(
        self,
        tasks: TaskSource,
        *,
        max_turns: int = 5,
        reward_mode: str = "live",
        on_format_error: str = "continue",
        mode: str = "agent",
        max_action_length: int = 16384,
        max_image_side: int = 4096,
        share_images: bool = False,
        extra_tools: Iterable[Tool] = (),
        tool_timeout_s: float | Mapping[str, float | None] | None = None,
        max_abandoned_calls: int = 4,
        action_format: str = "tags",
        render_mode: str | None = None,
    ):
        if action_format not in ACTION_FORMATS:
            raise ValueError(
                f"action_format must be one of {ACTION_FORMATS}, got {action_format!r}"
            )
        if action_format == "tool_calls" and mode == "stepwise":
            raise ValueError(
                "mode='stepwise' replays the paper's text rows, which are tag turns; use "
                "action_format='tags' with it (or mode='agent' with tool calls)"
            )
        if reward_mode not in REWARD_MODES:
            raise ValueError(f"reward_mode must be one of {REWARD_MODES}, got {reward_mode!r}")
        if on_format_error not in FORMAT_ERROR_POLICIES:
            raise ValueError(
                f"on_format_error must be one of {FORMAT_ERROR_POLICIES}, got {on_format_error!r}"
            )
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if max_turns < 1:
            raise ValueError(f"max_turns must be >= 1, got {max_turns}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']}")
        self.tasks = tasks
        self.max_turns = 1 if mode == "stepwise" else int(max_turns)
        self.reward_mode = reward_mode
        self.on_format_error = on_format_error
        self.mode = mode
        self.render_mode = render_mode
        self.share_images = bool(share_images)
        self.action_format = action_format
        if action_format == "tool_calls":
            self.action_space = AssistantTurn(max_action_length)
        else:
            self.action_space = Utf8Text(max_action_length)
        self.observation_space = Conversation(
            max_messages=3 + 2 * self.max_turns,
            max_images=8 + self.max_turns,
            max_image_side=max_image_side,
        )
        self._timeouts = _check_timeouts(tool_timeout_s)
        self._max_abandoned = int(max_abandoned_calls)
        self._tools: list[Tool] = []
        self._extra: list[Tool] = []
        self._runners: dict[str, DeadlineRunner] = {}
        self._set_tools(list(self._make_tools()), list(extra_tools))
        self.task: Task | None = None
        self._messages: list[dict] = []
        self._images: list[np.ndarray] = []
        self._turn = 0
        self._done = True
        self._counts: Counter[str] = Counter()
        self._return = 0.0
        self._action = ""

    # ------------------------------------------------------------------ subclass hooks

    def _make_tools(self) -> list[Tool]:
        """The family's own tools. The default wraps the older hooks, one tool per tag of
        ``action_tags`` (see the class docstring)."""
        unknown = set(self.action_tags) - set(ACTION_TAGS)
        if unknown:
            raise ValueError(f"unknown action tags {sorted(unknown)}")
        return [_HookTool(tag) for tag in self.action_tags]

    def _initial_messages(self, task: Task, images: list[np.ndarray]) -> list[dict]:
        """The opening messages (system prompt, user question with image parts)."""
        raise NotImplementedError

    def _stepwise_components(self, action: str, gold_step: str) -> dict[str, float]:
        """Reward components of one completion against a gold step (``mode="stepwise"``)."""
        raise NotImplementedError(f"{type(self).__name__} has no stepwise mode")

    def _task_info(self, task: Task, final: bool) -> dict[str, Any]:
        """The task's public facts for ``info`` at ``reset()`` and (``final``) at the episode's
        end. Never a gold answer or step before the end."""
        return {}

    def _run_tool(self, call: ToolCall, action: str) -> ToolOutcome:
        """Older hook: run one tool call (only used through ``action_tags``)."""
        raise NotImplementedError

    def _answer_components(self, answer: Answer, action: str, f1: float, em: float) -> dict:
        """Older hook: reward components of the final answer turn."""
        raise NotImplementedError

    # ------------------------------------------------------------------ tools

    @property
    def tools(self) -> Mapping[str, Tool]:
        """The registered tools by name, in the order the prompt lists them."""
        return MappingProxyType({tool.name: tool for tool in self._tools})

    @property
    def tool_schemas(self) -> list[dict[str, Any]]:
        """Every tool's function schema (``{"type": "function", "function": {...}}``)."""
        return [tool.schema() for tool in self._tools]

    def add_tool(self, tool: Tool) -> None:
        """Register one more tool; its tag is accepted from now on and the system prompt
        lists it from the next ``reset()``."""
        self._set_tools([t for t in self._tools if t not in self._extra], [*self._extra, tool])

    def _set_tools(self, own: list[Tool], extra: list[Tool]) -> None:
        tools = [*own, *extra]
        check_tools(tools)
        if sum(1 for t in tools if t.terminal) > 1:
            raise ValueError("at most one tool may be terminal (the answer)")
        self._tools, self._extra = tools, extra
        self.action_tags = tuple(tag for tool in tools for tag in tool.call_tags)
        self._grammar = grammar_for(tuple(tools))

    def _deadline(self, tool: Tool) -> float | None:
        if tool.name in self._timeouts:
            return self._timeouts[tool.name]
        if "*" in self._timeouts:
            return self._timeouts["*"]
        return tool.deadline(self)

    def _call(self, tool: Tool, call: ToolCall) -> ToolOutcome:
        """Run ``call`` under ``tool``'s deadline; every failure becomes a tool message."""
        try:
            deadline = self._deadline(tool)
            runner = self._runners.get(tool.name)
            if runner is None:
                runner = DeadlineRunner(self._max_abandoned, name=self._thread_name(tool))
                self._runners[tool.name] = runner
            outcome = runner.call(lambda: tool.run(call, self), deadline)
        except DeadlineBusy as err:
            outcome = tool.timeout_outcome(
                call, err.deadline_s, f"{err.running} earlier call(s) still running, not started"
            )
        except DeadlineExceeded as err:
            outcome = tool.timeout_outcome(call, err.deadline_s, "the whole-call deadline")
        except Exception as err:  # a tool's bug is reported to the model, never raised
            logger.warning("tool %r raised %r", tool.name, err, exc_info=True)
            outcome = ToolOutcome(
                f"The {tool.name} tool failed ({type(err).__name__}: {_short(err)}). "
                "The episode goes on.",
                status="error",
            )
        if not isinstance(outcome, ToolOutcome):
            outcome = ToolOutcome(
                f"The {tool.name} tool returned {type(outcome).__name__}, not a ToolOutcome.",
                status="error",
            )
        return outcome

    def _thread_name(self, tool: Tool) -> str:
        """The name of the threads that run ``tool``'s calls for this env."""
        return f"arft-tool-{tool.name}@{id(self):x}"

    def close(self) -> None:
        for runner in self._runners.values():
            runner.close()
        self._runners.clear()
        super().close()

    # ------------------------------------------------------------------ gymnasium API

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        options = options or {}
        unknown = set(options) - {"task_id"}
        if unknown:
            raise ValueError(f"unknown reset option(s) {sorted(unknown)}; supported: 'task_id'")
        if "task_id" in options:
            self.task = self.tasks.get(str(options["task_id"]))
        else:
            self.task = self.tasks.sample(self.np_random)
        self._images = list(self.task.load_images())
        for tool in self._tools:
            tool.reset(self)
        self._messages = self._initial_messages(self.task, self._images)
        self._turn = 0
        self._done = False
        self._counts = Counter()
        self._return = 0.0
        info = {"task_id": self.task.id, "split": self.task.split, "turn": 0}
        info.update(self._task_info(self.task, final=False))
        return self._observation(), info

    def step(self, action: str):
        if self._done:
            raise gym.error.ResetNeeded("the episode is over; call reset() before step()")
        self._turn += 1
        limit = self.action_space.max_length
        if self.action_format == "tool_calls":
            turn = parse_tool_call_turn(action, self._tools, limit)
            parsed, text = turn.action, turn.text
            recorded = message("assistant", text_part(turn.content))
            if turn.calls:
                recorded["tool_calls"] = turn.calls
            self._messages.append(recorded)
        else:
            text = action if isinstance(action, str) else repr(action)
            self._messages.append(message("assistant", text_part(text[:limit])))
            parsed = self._grammar.parse(action, limit)
        self._action = text
        terminated = False
        answer: Answer | None = None
        tool_status = None
        kind = _kind(parsed)
        if self.mode == "stepwise":
            components = self._stepwise_components(text, self.task.meta["gold_step"])
            if isinstance(parsed, Answer):
                answer = parsed
            elif isinstance(parsed, FormatError):
                self._counts["format_errors"] += 1
            terminated = True
        elif isinstance(parsed, FormatError):
            self._counts["format_errors"] += 1
            components = {"format": 0.0}
            self._append_tool(f"Format error: {parsed.message}", ())
            terminated = self.on_format_error == "terminate"
        elif isinstance(parsed, Answer):
            answer = parsed
            f1, em = self._score(parsed.text)
            tool = next(t for t in self._tools if t.terminal)
            scored = ToolOutcome("", detail={"f1": f1, "em": em})
            components = dict(tool.reward(parsed, scored, text, self))
            terminated = True
        else:
            tool = self.tools[parsed.name]
            outcome = self._call(tool, parsed)
            tool_status = outcome.status
            self._counts[f"{parsed.name}_calls"] += 1
            if outcome.status != "ok":
                self._counts["tool_failures"] += 1
            if outcome.status == "timeout":
                self._counts["tool_timeouts"] += 1
            components = dict(tool.reward(parsed, outcome, text, self))
            self._append_tool(outcome.text, outcome.images, tool.name)
        truncated = not terminated and self._turn >= self.max_turns
        reward = float(sum(components.values()))
        self._return += reward
        self._done = terminated or truncated
        info: dict[str, Any] = {
            "task_id": self.task.id,
            "turn": self._turn,
            "action_kind": kind,
            "reward_components": components,
            "tool_status": tool_status,
            "format_errors": self._counts["format_errors"],
            "tool_failures": self._counts["tool_failures"],
            "tool_timeouts": self._counts["tool_timeouts"],
        }
        if isinstance(parsed, FormatError):
            info["format_error"] = parsed.message
        if self._done:
            info.update(self._final_info(answer))
        return self._observation(), reward, terminated, truncated, info

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        lines = []
        for m in self._messages:
            images = sum(1 for p in m["content"] if p["type"] == "image")
            suffix = f" [+{images} image(s)]" if images else ""
            lines.append(f"--- {m['role']}{suffix}\n{conversation_text([m])}")
            for call in m.get("tool_calls", ()):
                function = call["function"]
                lines.append(f"[call] {function['name']}({json.dumps(function['arguments'])})")
        return "\n".join(lines)

    # ------------------------------------------------------------------ helpers

    @property
    def messages(self) -> tuple[dict, ...]:
        """The episode's conversation so far, as copies: a caller may keep or change them
        without touching the env's state (image parts index :attr:`images`)."""
        return tuple(_copy_message(m) for m in self._messages)

    @property
    def images(self) -> tuple[np.ndarray, ...]:
        """The episode's images so far (read-only arrays; the newest last)."""
        return tuple(self._images)

    def system_prompt(self, base: str) -> str:
        """``base`` with a section on each extra tool (``base`` itself when there is none).
        With ``action_format="tool_calls"``, ``base`` with its output-format section for
        function calls; the tools themselves reach the model as :attr:`tool_schemas`."""
        if self.action_format == "tool_calls":
            return for_tool_calls(base)
        return with_tools(base, self._extra)

    def _score(self, prediction: str | None) -> tuple[float, float]:
        from arft_envs.rewards import score_answer

        return score_answer(prediction, self.task.answers, chinese=self.chinese_metric)

    def _final_info(self, answer: Answer | None) -> dict[str, Any]:
        prediction = answer.text if answer is not None else None
        f1, em = self._score(prediction)
        info = {
            "answer": prediction,
            "golds": list(self.task.answers),
            "f1": f1,
            "em": em,
            "episode_return": self._return,
            "turns": self._turn,
            "split": self.task.split,
        }
        info.update(self._task_info(self.task, final=True))
        return info

    def _append_tool(self, text: str, images: Iterable[Any], name: str | None = None) -> None:
        """Append the tool message; its images are fitted to the observation space first
        (see :func:`~arft_envs.spaces.fit_image`), and the text says what was changed."""
        parts, notes = [], []
        space = self.observation_space
        for image in images:
            if len(self._images) >= space.max_images:
                notes.append("an image was dropped: the conversation holds its maximum")
                continue
            fitted, note = fit_image(image, space.image.max_side)
            if fitted is None:
                notes.append(f"an image was dropped: {note}")
                continue
            if note:
                notes.append(note)
            if fitted.flags.writeable:
                fitted = fitted.copy()
                fitted.setflags(write=False)
            self._images.append(fitted)
            parts.append(image_part(len(self._images) - 1))
        text = str(text)
        if notes:
            text += "\n(" + "; ".join(notes) + ".)"
        limit = space.text.max_length
        if len(text) > limit:
            keep = limit - 64  # room for the marker
            text = text[:keep] + f"\n…[cut {len(text) - keep} characters]"
        parts.append(text_part(text))
        reply = message("tool", *parts)
        if name is not None and self.action_format == "tool_calls":
            reply["name"] = name
        self._messages.append(reply)

    def _observation(self) -> dict:
        """A fresh observation: users may keep or modify it without touching the env's state.

        With ``share_images=True`` the image arrays are the env's own read-only arrays, the
        same objects from turn to turn (no copy; what a trainer keeping its own history wants).
        Gymnasium's ``check_env`` requires fresh data, hence the copy by default.
        """
        messages = tuple(_copy_message(m) for m in self._messages)
        if self.share_images:
            images = tuple(self._images)
        else:
            images = tuple(image.copy() for image in self._images)
        return {"messages": messages, "images": images}


def _copy_message(m: dict) -> dict:
    """A copy of one message that shares nothing mutable with the env's own."""
    out = {"role": m["role"], "content": tuple(dict(p) for p in m["content"])}
    if "tool_calls" in m:
        out["tool_calls"] = tuple(copy.deepcopy(c) for c in m["tool_calls"])
    if "name" in m:
        out["name"] = m["name"]
    return out


def _short(err: BaseException, limit: int = 200) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _check_timeouts(value: Any) -> dict[str, float | None]:
    """``tool_timeout_s`` as ``{tool name or "*": seconds or None}``."""
    if value is None:
        return {}
    items = value.items() if isinstance(value, Mapping) else [("*", value)]
    out: dict[str, float | None] = {}
    for name, seconds in items:
        if seconds is not None:
            if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds <= 0:
                raise ValueError(
                    f"tool_timeout_s[{name!r}] must be a positive number of seconds or None, "
                    f"got {seconds!r}"
                )
            seconds = float(seconds)
        out[str(name)] = seconds
    return out


class _HookTool(Tool):
    """A tool over the older hooks ``_run_tool`` / ``_answer_components`` of its env."""

    timeout_s = None  # the hook changes env state, so it runs in the env's thread

    def __init__(self, tag: str):
        self.name = tag
        self.terminal = tag == "answer"

    def parse(self, body: str, tag: str):
        return body_parser(tag)(body, tag)

    def run(self, call: ToolCall, env: AgenticEnv) -> ToolOutcome:
        return env._run_tool(call, env._action)

    def reward(self, call, outcome, action, env) -> dict[str, float]:
        if self.terminal:
            return env._answer_components(call, action, outcome.detail["f1"], outcome.detail["em"])
        return dict(outcome.reward_components)


def _kind(parsed: ToolCall | Answer | FormatError) -> str:
    if isinstance(parsed, ToolCall):
        return parsed.name
    if isinstance(parsed, Answer):
        return "answer"
    return "format_error"
