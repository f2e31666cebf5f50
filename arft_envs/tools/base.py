"""What a tool is: one object that names itself, the tags that call it, its arguments, how it
runs, its deadline, and how its step is rewarded.

An env holds a list of tools (:class:`~arft_envs.core.AgenticEnv` ``tools``). The action
grammar, the format checks and the system prompt are built from that list, so adding a tool
needs no edit to arft::

    class Calculator(Tool):
        name = "calc"
        description = "Evaluate an arithmetic expression."
        usage = "<calc> 2 * (3 + 4) </calc>"

        def run(self, call, env):
            return ToolOutcome(str(safe_eval(call.argument)))

    env = gym.make("HotpotQA-v0", extra_tools=[Calculator()])

A turn ``<think>…</think><calc> 1 + 2 </calc>`` then reaches ``Calculator.run`` and its text
comes back as the next ``tool`` message. The paper's four tools are written the same way, in
:mod:`arft_envs.tools.paper`.

The life of one call, in the env's ``step()``:

1. the grammar finds the tag and calls :meth:`Tool.parse` on its body (a
   :class:`~arft_envs.actions.FormatError` there is a format error, as for a malformed turn);
2. :meth:`Tool.run` runs on a worker thread under :meth:`Tool.deadline` seconds (see
   :mod:`arft_envs.tools.deadline`); a missed deadline becomes :meth:`Tool.timeout_outcome`;
   an exception becomes a ``status="error"`` message. ``run`` reads the env (its task, images,
   reward mode) but changes nothing in it: a call that misses its deadline keeps running,
   abandoned, beside later turns;
3. :meth:`Tool.reward` runs back in the env's thread and returns the turn's reward
   components (this is where per-episode state, reset by :meth:`Tool.reset`, lives).

A tool instance belongs to one env (its per-episode state is that env's); give each env its
own instance.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from arft_envs.actions import Answer, FormatError, ToolCall

if TYPE_CHECKING:
    from arft_envs.core import AgenticEnv

#: Default whole-call deadline of a tool, in seconds.
DEFAULT_TIMEOUT_S = 30.0
TAG_RE = re.compile(r"\A[A-Za-z_][A-Za-z0-9_-]*\Z")


@dataclass
class ToolOutcome:
    """What a tool call produced: the text (and new images) the model reads next.

    ``status`` is ``"ok"`` or a failure kind (``"error"``, ``"timeout"``, ...); every status
    other than ``"ok"`` is counted in ``info["tool_failures"]`` and ``"timeout"`` also in
    ``info["tool_timeouts"]``. ``reward_components`` name the reward of the turn (a tool's
    :meth:`Tool.reward` may compute them instead). ``detail`` carries whatever ``run`` wants
    its ``reward`` to see (search results, whether the code wrote an image); it never reaches
    the model.
    """

    text: str
    images: tuple[np.ndarray, ...] = ()
    status: str = "ok"
    reward_components: dict[str, float] = field(default_factory=dict)
    detail: Any = None


class Tool:
    """Base class of a tool (override :meth:`run`; the rest has working defaults).

    Class attributes (or instance attributes, set in ``__init__``):

    - ``name``: the tool's name (``ToolCall.name``, ``info["action_kind"]``, the
      ``{name}_calls`` counter, the function name of its schema).
    - ``tags``: the tags that call it; default ``(name,)``. Tags are ``[A-Za-z_][\\w-]*``
      and unique within an env; ``think`` is reserved.
    - ``description`` and ``parameters``: the function description and JSON schema of its
      arguments (:meth:`schema`); the default schema is one string, ``input``, the tag body.
    - ``usage``: how a call is written, for the system prompt (default ``<tag> … </tag>``).
    - ``timeout_s``: the whole-call deadline (``None``: ``run`` is quick and pure, and runs
      in the env's thread without one). An env's ``tool_timeout_s`` overrides it.
    - ``terminal``: a call ends the episode and is scored as the answer (only ``<answer>``).
    """

    name: str = ""
    tags: tuple[str, ...] = ()
    description: str = ""
    parameters: Mapping[str, Any] = {
        "type": "object",
        "properties": {"input": {"type": "string", "description": "The text inside the tag."}},
        "required": ["input"],
    }
    usage: str = ""
    timeout_s: float | None = DEFAULT_TIMEOUT_S
    terminal: bool = False

    # ------------------------------------------------------------------ identity

    @property
    def call_tags(self) -> tuple[str, ...]:
        """The tags that call this tool."""
        return tuple(self.tags) or (self.name,)

    def schema(self) -> dict[str, Any]:
        """The function-calling schema: ``{"type": "function", "function": {...}}``."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": dict(self.parameters),
            },
        }

    def prompt_usage(self) -> str:
        """The lines the system prompt shows for this tool."""
        tag = self.call_tags[0]
        usage = self.usage or f"<{tag}> ... </{tag}>"
        return f"{usage}\n  {self.description}".rstrip()

    # ------------------------------------------------------------------ one call

    def parse(self, body: str, tag: str) -> str | FormatError:
        """The argument inside ``<tag>…</tag>`` (default: the stripped body, non-empty)."""
        argument = body.strip()
        if not argument:
            return FormatError(f"The <{tag}> body is empty. Write its input inside the tags.")
        return argument

    def call_body(self, arguments: Mapping[str, Any]) -> str | FormatError:
        """The tag body a native call's ``arguments`` stand for (``action_format="tool_calls"``;
        they already fit :attr:`parameters`). Default: the value of a schema's only property,
        else the arguments' JSON text. :meth:`parse` then reads the body as in tag mode."""
        props = list(dict(self.parameters).get("properties", {}))
        if len(props) == 1:
            value = arguments.get(props[0], "")
            return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        return json.dumps(dict(arguments), ensure_ascii=False, sort_keys=True)

    def call_arguments(self, argument: str) -> dict[str, Any]:
        """The native call's arguments for a parsed tag argument (the inverse of
        :meth:`call_body`, used to replay tag turns as calls)."""
        props = list(dict(self.parameters).get("properties", {}))
        if len(props) == 1:
            return {props[0]: argument}
        try:
            value = json.loads(argument)
        except ValueError:
            value = None
        return value if isinstance(value, dict) else {"input": argument}

    def reset(self, env: AgenticEnv) -> None:
        """Start of an episode: clear per-episode state (default: none)."""

    def deadline(self, env: AgenticEnv) -> float | None:
        """This call's whole-call deadline in seconds (default ``timeout_s``)."""
        return self.timeout_s

    def run(self, call: ToolCall, env: AgenticEnv) -> ToolOutcome:
        """Run the call and say what the model reads next. Must not change ``env``."""
        raise NotImplementedError(f"tool {self.name!r} does not implement run(call, env)")

    def timeout_outcome(self, call: ToolCall, deadline_s: float, why: str) -> ToolOutcome:
        """What the model reads when the call missed its deadline (``why`` says how)."""
        return ToolOutcome(
            f"The {self.name} tool did not finish within {deadline_s:g} s ({why}), so this "
            "call has no result. The episode goes on: you may try again or answer.",
            status="timeout",
        )

    def reward(
        self,
        call: ToolCall | Answer,
        outcome: ToolOutcome,
        action: str,
        env: AgenticEnv,
    ) -> dict[str, float]:
        """The turn's reward components (default: those ``run`` put in the outcome)."""
        return dict(outcome.reward_components)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, tags={self.call_tags})"


def check_tools(tools: list[Tool]) -> None:
    """Raise ``ValueError`` saying what to fix when ``tools`` cannot share one env."""
    seen: dict[str, str] = {}
    names: set[str] = set()
    for tool in tools:
        if not isinstance(tool.name, str) or not TAG_RE.match(tool.name):
            raise ValueError(
                f"tool {tool!r}: name must be a word ([A-Za-z_][A-Za-z0-9_-]*), got {tool.name!r}"
            )
        if tool.name in names:
            raise ValueError(f"two tools are named {tool.name!r}; tool names must be unique")
        names.add(tool.name)
        if not callable(getattr(tool, "run", None)):
            raise ValueError(f"tool {tool.name!r} has no run(call, env) method")
        for tag in tool.call_tags:
            if not isinstance(tag, str) or not TAG_RE.match(tag) or tag.lower() == "think":
                raise ValueError(
                    f"tool {tool.name!r}: tag {tag!r} must be a word ([A-Za-z_][A-Za-z0-9_-]*) "
                    "other than 'think'"
                )
            if tag.lower() in seen:
                raise ValueError(
                    f"tag <{tag}> is claimed by both {seen[tag.lower()]!r} and {tool.name!r}"
                )
            seen[tag.lower()] = tool.name
