"""Scripted experts: policies that replay a task's gold trajectory, turn by turn.

Synthetic generators store the gold turns of each task in ``task.meta["gold_steps"]`` (a list
of assistant turns, each in the paper's strict format). :class:`ScriptedExpert` emits the turn
that comes next in the current episode. It anchors tests (it must reach the maximum return),
drives ``arft play``, and can produce demonstrations for a supervised warm start. It works
with any :class:`~arft_envs.core.AgenticEnv` whose tasks carry gold steps, whatever the tool.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


class ExpertError(ValueError):
    """The expert cannot act: the task has no gold steps, or the episode has used them all."""


class ScriptedExpert:
    """Emit the next gold turn of the env's current task.

    The turn index is the number of assistant turns so far in the episode. A stepwise task
    (one training row, with ``meta["gold_step"]``) gets its full reference turn:
    ``meta["gt"]`` when present (the paper's rows keep the ``<think>`` there), else
    ``meta["gold_step"]``.

    Use as ``action = expert(obs, env)`` or ``action = expert.act(env)``.

    In an env made with ``action_format="tool_calls"`` the gold turn is replayed as the
    equivalent native call: an assistant message with ``tool_calls``, or with ``raw=True``
    the Qwen/Hermes text (``<think>…</think>`` then a ``<tool_call>`` block).
    """

    def __init__(self, raw: bool = False):
        self.raw = bool(raw)

    def __call__(self, obs: Mapping[str, Any] | None, env: Any) -> str:
        """The next gold turn; ``obs`` is the env's latest observation (its ``messages``
        count the assistant turns when the env does not expose its own conversation)."""
        return self._next(env, obs)

    def act(self, env: Any) -> str:
        """The next gold turn for ``env``'s current episode."""
        return self._next(env, None)

    def _next(self, env: Any, obs: Mapping[str, Any] | None) -> str | dict:
        base = getattr(env, "unwrapped", env)
        turn = self._next_text(env, obs)
        if getattr(base, "action_format", "tags") != "tool_calls":
            return turn
        return _as_tool_call(turn, base, self.raw)

    def _next_text(self, env: Any, obs: Mapping[str, Any] | None) -> str:
        base = getattr(env, "unwrapped", env)
        task = getattr(base, "task", None)
        if task is None:
            raise ExpertError("the env has no current task; call env.reset() first")
        if "gold_step" in task.meta:  # one stepwise training row: its full reference turn
            return task.meta.get("gt") or task.meta["gold_step"]
        steps = task.meta.get("gold_steps")
        if steps is None:
            raise ExpertError(
                f"task {task.id!r} carries no gold steps (meta['gold_steps']), so the scripted "
                "expert cannot solve it. Official benchmark items have only gold answers; use a "
                "synthetic task source (e.g. arft_envs.tasks.mat_coding.SyntheticCoding), or a "
                "dataset written by one, which stores its gold steps."
            )
        turn = _assistant_turns(base, obs)
        if turn >= len(steps):
            raise ExpertError(
                f"task {task.id!r} has {len(steps)} gold steps and the episode has already had "
                f"{turn} assistant turns; the episode should have ended (call env.reset())"
            )
        return steps[turn]


def _as_tool_call(turn: str, env: Any, raw: bool) -> str | dict:
    """A gold tag turn as the native call it stands for (see :mod:`arft_envs.tool_calls`)."""
    from arft_envs.actions import FormatError
    from arft_envs.tool_calls import as_message

    parsed = env._grammar.parse(turn)
    if isinstance(parsed, FormatError):
        raise ExpertError(
            f"a gold turn does not fit the env's grammar ({parsed.message}): {turn!r}"
        )
    name = "answer" if not hasattr(parsed, "name") else parsed.name
    tool = next(
        (t for t in env.tools.values() if (t.terminal if name == "answer" else t.name == name)),
        None,
    )
    if tool is None:
        raise ExpertError(f"the env has no tool for the gold turn {turn!r}")
    return as_message(parsed, tool, raw=raw)


def _assistant_turns(env: Any, obs: Mapping[str, Any] | None) -> int:
    """Assistant turns so far: from the env's own full conversation when it has one (a
    wrapper may show only the newest messages), else from the observation."""
    messages: Sequence[Mapping[str, Any]] | None = getattr(env, "messages", None)
    if messages is None and obs is not None:
        messages = obs.get("messages")
    if messages is None:
        raise ExpertError(
            "cannot count the episode's turns: the env has no 'messages' and the observation "
            "has no 'messages'"
        )
    return sum(1 for m in messages if m.get("role") == "assistant")
