"""AgenticEnv: the turn loop shared by every text-acting, tool-using environment.

One ``step(action)`` is one assistant turn. The env parses the text (``actions``), runs the
tool call it holds (the family's ``_run_tool``), appends the assistant turn and the tool's
reply to the conversation, and returns the reward of that turn. The conversation *is* the
Markov state, so the observation is the whole chat so far. Reward definitions live in
``rewards``; tools live in ``tools``; this module only sequences them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

from arft_envs.actions import ACTION_TAGS, Answer, FormatError, ToolCall, parse_action
from arft_envs.spaces import (
    Conversation,
    Utf8Text,
    conversation_text,
    image_part,
    message,
    text_part,
)
from arft_envs.tasks.base import Task, TaskSource

REWARD_MODES = ("live", "paper")
FORMAT_ERROR_POLICIES = ("continue", "terminate")
MODES = ("agent", "stepwise")


@dataclass
class ToolOutcome:
    """What a tool call produced: the text (and new images) the model reads next.

    ``status`` is ``"ok"`` or a failure kind (``"error"``, ``"timeout"``, ...); every status
    other than ``"ok"`` is counted in ``info["tool_failures"]``. ``reward_components`` name
    the reward of the turn (the env adds the format component itself when relevant).
    """

    text: str
    images: tuple[np.ndarray, ...] = ()
    status: str = "ok"
    reward_components: dict[str, float] = field(default_factory=dict)


class AgenticEnv(gym.Env[dict, str]):
    """Base class: a multi-turn conversation where each action is one assistant turn.

    Subclasses set ``action_tags`` and implement ``_initial_messages``, ``_run_tool`` and
    ``_answer_components`` (and ``_stepwise_components`` for ``mode="stepwise"``).
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
        render_mode: str | None = None,
    ):
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
        unknown = set(self.action_tags) - set(ACTION_TAGS)
        if unknown:
            raise ValueError(f"unknown action tags {sorted(unknown)}")
        self.tasks = tasks
        self.max_turns = 1 if mode == "stepwise" else int(max_turns)
        self.reward_mode = reward_mode
        self.on_format_error = on_format_error
        self.mode = mode
        self.render_mode = render_mode
        self.share_images = bool(share_images)
        self.action_space = Utf8Text(max_action_length)
        self.observation_space = Conversation(
            max_messages=3 + 2 * self.max_turns,
            max_images=8 + self.max_turns,
            max_image_side=max_image_side,
        )
        self.task: Task | None = None
        self._messages: list[dict] = []
        self._images: list[np.ndarray] = []
        self._turn = 0
        self._done = True
        self._counts: Counter[str] = Counter()
        self._return = 0.0

    # ------------------------------------------------------------------ subclass hooks

    def _initial_messages(self, task: Task, images: list[np.ndarray]) -> list[dict]:
        """The opening messages (system prompt, user question with image parts)."""
        raise NotImplementedError

    def _run_tool(self, call: ToolCall, action: str) -> ToolOutcome:
        """Run one tool call and say what the model sees next."""
        raise NotImplementedError

    def _answer_components(self, answer: Answer, action: str, f1: float, em: float) -> dict:
        """Reward components of the final answer turn."""
        raise NotImplementedError

    def _stepwise_components(self, action: str, gold_step: str) -> dict[str, float]:
        """Reward components of one completion against a gold step (``mode="stepwise"``)."""
        raise NotImplementedError(f"{type(self).__name__} has no stepwise mode")

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
        self._messages = self._initial_messages(self.task, self._images)
        self._turn = 0
        self._done = False
        self._counts = Counter()
        self._return = 0.0
        info = {"task_id": self.task.id, "split": self.task.split, "turn": 0}
        return self._observation(), info

    def step(self, action: str):
        if self._done:
            raise gym.error.ResetNeeded("the episode is over; call reset() before step()")
        self._turn += 1
        text = action if isinstance(action, str) else repr(action)
        self._messages.append(message("assistant", text_part(text[: self.action_space.max_length])))
        terminated = False
        answer: Answer | None = None
        tool_status = None
        if self.mode == "stepwise":
            parsed = parse_action(action, self.action_tags, self.action_space.max_length)
            components = self._stepwise_components(text, self.task.meta["gold_step"])
            kind = _kind(parsed)
            if isinstance(parsed, Answer):
                answer = parsed
            elif isinstance(parsed, FormatError):
                self._counts["format_errors"] += 1
            terminated = True
        else:
            parsed = parse_action(action, self.action_tags, self.action_space.max_length)
            kind = _kind(parsed)
            if isinstance(parsed, FormatError):
                self._counts["format_errors"] += 1
                components = {"format": 0.0}
                self._append_tool(f"Format error: {parsed.message}", ())
                terminated = self.on_format_error == "terminate"
            elif isinstance(parsed, Answer):
                answer = parsed
                f1, em = self._score(parsed.text)
                components = self._answer_components(parsed, text, f1, em)
                terminated = True
            else:
                outcome = self._run_tool(parsed, text)
                tool_status = outcome.status
                self._counts[f"{parsed.name}_calls"] += 1
                if outcome.status != "ok":
                    self._counts["tool_failures"] += 1
                components = dict(outcome.reward_components)
                self._append_tool(outcome.text, outcome.images)
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
        return "\n".join(lines)

    # ------------------------------------------------------------------ helpers

    @property
    def messages(self) -> tuple[dict, ...]:
        return tuple(self._messages)

    def _score(self, prediction: str | None) -> tuple[float, float]:
        from arft_envs.rewards import score_answer

        return score_answer(prediction, self.task.answers, chinese=self.chinese_metric)

    def _final_info(self, answer: Answer | None) -> dict[str, Any]:
        prediction = answer.text if answer is not None else None
        f1, em = self._score(prediction)
        return {
            "answer": prediction,
            "golds": list(self.task.answers),
            "f1": f1,
            "em": em,
            "episode_return": self._return,
            "turns": self._turn,
        }

    def _append_tool(self, text: str, images: tuple[np.ndarray, ...]) -> None:
        parts = []
        for image in images:
            if image.flags.writeable:
                image = image.copy()
                image.setflags(write=False)
            self._images.append(image)
            parts.append(image_part(len(self._images) - 1))
        parts.append(text_part(text))
        self._messages.append(message("tool", *parts))

    def _observation(self) -> dict:
        """A fresh observation: users may keep or modify it without touching the env's state.

        With ``share_images=True`` the image arrays are the env's own read-only arrays, the
        same objects from turn to turn (no copy; what a trainer keeping its own history wants).
        Gymnasium's ``check_env`` requires fresh data, hence the copy by default.
        """
        messages = tuple(
            {"role": m["role"], "content": tuple(dict(p) for p in m["content"])}
            for m in self._messages
        )
        if self.share_images:
            images = tuple(self._images)
        else:
            images = tuple(image.copy() for image in self._images)
        return {"messages": messages, "images": images}


def _kind(parsed: ToolCall | Answer | FormatError) -> str:
    if isinstance(parsed, ToolCall):
        return parsed.name
    if isinstance(parsed, Answer):
        return "answer"
    return "format_error"
