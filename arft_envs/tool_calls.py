"""The ``tool_calls`` action format: one assistant message with one native function call.

``gym.make(ID, action_format="tool_calls")`` makes any arft env take, instead of the paper's
tagged text, either

- an assistant message in the transformers chat convention::

      {"role": "assistant", "content": "reasoning",
       "tool_calls": [{"type": "function",
                       "function": {"name": "search", "arguments": {"query": "..."}}}]}

  (``arguments`` a dict or its JSON text; ``content`` may be ``<think>…</think>``), or
- the raw text a Qwen/Hermes-style model writes: the reasoning (optionally in
  ``<think>…</think>``), then one ``<tool_call>{"name": …, "arguments": …}</tool_call>``.

The final answer is a tool too (``answer``, with ``{"answer": str}``): a turn is exactly one
call, and the answer call ends the episode, as ``<answer>`` does in tag mode. A turn with no
call, bad JSON, an unknown name, arguments that break the tool's JSON schema (a missing or
extra argument, a wrong type, a value outside an ``enum``), two calls, or text after the call
is a format error: a readable ``tool`` message and a format score of 0.

**Rewards are those of tag mode for the same behaviour.** A well-formed call is rendered as
the tag turn it stands for (:func:`canonical_turn`: ``<think>reasoning</think>`` and the tool's
tag around the body :meth:`~arft_envs.tools.base.Tool.call_body` builds from the arguments),
and that text goes through the same reward functions. So the reasoning plays the part of the
``<think>`` block: a call with no reasoning earns format 0, as a tag turn without ``<think>``.
One difference: a diagnosis naming a problem outside the schema's ``enum`` is a format error
here, while tag mode accepts the set and scores the diagnosis 0.

How the turn is recorded in the observation: an assistant message
``{"role": "assistant", "content": (text part,), "tool_calls": ({"type": "function",
"function": {"name", "arguments": dict}},)}`` whose text is the reasoning; a turn whose calls
cannot be read is recorded as its text, with no ``tool_calls``. The tool's reply is a ``tool``
message with ``"name"`` (the function's) and its text and image parts.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from arft_envs.actions import Answer, FormatError, ToolCall

ACTION_FORMATS = ("tags", "tool_calls")

_CALL_RE = re.compile(r"<tool_call>(.*?)</tool_call>", re.DOTALL)
_THINK_RE = re.compile(r"\A\s*<think>(?P<think>.*?)</think>\s*\Z", re.DOTALL)


@dataclass(frozen=True)
class ParsedTurn:
    """One ``tool_calls`` turn: the action, the tag text its rewards read, and how the turn
    is recorded in the conversation (``content`` text, ``calls`` as read)."""

    action: ToolCall | Answer | FormatError
    text: str
    content: str
    calls: tuple[dict[str, Any], ...]


def _json_type_ok(value: Any, kind: str) -> bool:
    return {
        "string": lambda v: isinstance(v, str),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
        "array": lambda v: isinstance(v, list),
        "object": lambda v: isinstance(v, dict),
        "null": lambda v: v is None,
    }.get(kind, lambda v: True)(value)


def schema_errors(value: Any, schema: Mapping[str, Any], where: str = "arguments") -> list[str]:
    """What in ``value`` breaks ``schema`` (the JSON-schema subset tool schemas use: ``type``,
    ``properties``, ``required``, ``additionalProperties`` (default: none allowed),
    ``items``, ``enum``, ``minItems``); empty when it fits."""
    kind = schema.get("type")
    if isinstance(kind, str) and not _json_type_ok(value, kind):
        return [f"{where} must be of type {kind}, got {type(value).__name__}"]
    errors: list[str] = []
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{where} must be one of {list(schema['enum'])}, got {value!r}")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for name in schema.get("required", ()):
            if name not in value:
                errors.append(f"{where} lacks the required argument {name!r}")
        if not schema.get("additionalProperties", False):
            for name in value:
                if name not in props:
                    errors.append(
                        f"{where} has an unknown argument {name!r} (expected {sorted(props)})"
                    )
        for name, sub in props.items():
            if name in value:
                errors += schema_errors(value[name], sub, f"{where}.{name}")
    if isinstance(value, list):
        if len(value) < int(schema.get("minItems", 0)):
            errors.append(f"{where} needs at least {schema['minItems']} item(s)")
        items = schema.get("items")
        if isinstance(items, Mapping):
            for i, item in enumerate(value):
                errors += schema_errors(item, items, f"{where}[{i}]")
    return errors


def _read_call(raw: Any) -> dict[str, Any] | str:
    """``{"name": str, "arguments": dict}`` from one call as written, or why it cannot be."""
    if not isinstance(raw, Mapping):
        return f"a tool call must be an object, got {type(raw).__name__}"
    if raw.get("type", "function") != "function":
        return f"a tool call's type must be 'function', got {raw.get('type')!r}"
    function = raw.get("function", raw)
    if not isinstance(function, Mapping):
        return "a tool call's 'function' must be an object with 'name' and 'arguments'"
    name = function.get("name")
    if not isinstance(name, str) or not name:
        return "a tool call needs a 'name' (a string)"
    arguments = function.get("arguments", {})
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except ValueError as err:
            return f"the arguments of {name!r} are not valid JSON ({err.msg} at char {err.pos})"
    if not isinstance(arguments, dict):
        return f"the arguments of {name!r} must be a JSON object, got {type(arguments).__name__}"
    return {"name": name, "arguments": arguments}


def _split_text(text: str) -> tuple[str, list[Any], str | None]:
    """Raw Hermes text: (text before the first call, the calls' JSON, a problem or None)."""
    blocks = list(_CALL_RE.finditer(text))
    if not blocks:
        if "<tool_call>" in text:
            return text, [], "a <tool_call> block is not closed with </tool_call>"
        return text, [], None
    head = text[: blocks[0].start()]
    tail = text[blocks[-1].end() :]
    between = [text[a.end() : b.start()] for a, b in zip(blocks, blocks[1:], strict=False)]
    problem = None
    if tail.strip() or any(s.strip() for s in between):
        problem = "only whitespace may follow a tool call; put the reasoning before it"
    calls: list[Any] = []
    for block in blocks:
        body = block[1].strip()
        try:
            calls.append(json.loads(body))
        except ValueError as err:
            calls.append(f"the <tool_call> body is not valid JSON ({err.msg} at char {err.pos})")
    return head, calls, problem


def reasoning_of(content: str) -> str:
    """The reasoning of a turn's content: the inside of a lone ``<think>…</think>``, else the
    content itself (stripped)."""
    match = _THINK_RE.match(content)
    return (match["think"] if match else content).strip()


def canonical_turn(reasoning: str, tag: str, body: str) -> str:
    """The tag turn a call stands for: ``<think>reasoning</think>`` (none when empty) and
    ``<tag>body</tag>``; the text the tag-mode reward functions score."""
    think = f"<think>{reasoning}</think>\n" if reasoning else ""
    return f"{think}<{tag}>{body}</{tag}>"


def parse_tool_call_turn(action: Any, tools: Sequence[Any], max_length: int) -> ParsedTurn:
    """Parse one ``tool_calls`` turn against ``tools`` (:class:`~arft_envs.tools.base.Tool`).

    Never raises on any ``action``: what does not fit becomes a :class:`FormatError` saying
    what to fix.
    """
    names = [t.name for t in tools]
    expected = ", ".join(names)

    def error(message: str, content: str, calls=()) -> ParsedTurn:
        return ParsedTurn(FormatError(message), content, content, tuple(calls))

    if isinstance(action, str):
        if len(action) > max_length:
            return error(
                f"The action is {len(action)} characters long; the limit is {max_length}.",
                action[:max_length],
            )
        content, raw_calls, problem = _split_text(action)
        verbatim = action
    elif isinstance(action, Mapping):
        content = action.get("content")
        content = "" if content is None else content
        if not isinstance(content, str):
            return error("The message's 'content' must be a string.", repr(content)[:max_length])
        raw_calls = action.get("tool_calls") or []
        problem = None
        if action.get("role", "assistant") != "assistant":
            problem = f"the message's role must be 'assistant', got {action.get('role')!r}"
        if not isinstance(raw_calls, (list, tuple)):
            return error("The message's 'tool_calls' must be a list.", content[:max_length])
        verbatim = None
        size = len(content) + len(json.dumps(raw_calls, default=repr))
        if size > max_length:
            return error(
                f"The action is {size} characters long; the limit is {max_length}.",
                content[:max_length],
            )
    else:
        return error(
            f"The action must be an assistant message (a dict) or text, got "
            f"{type(action).__name__}.",
            "",
        )
    read = [c if isinstance(c, str) else _read_call(c) for c in raw_calls]
    readable = [c for c in read if isinstance(c, dict)]
    # recorded as parsed when every call reads; otherwise the text as written
    if len(readable) == len(read):
        recorded_content, recorded_calls = content, [_as_recorded(c) for c in readable]
    else:
        recorded_content = verbatim if verbatim is not None else content
        if verbatim is None:
            recorded_content += "\n" + json.dumps(list(raw_calls), default=repr)
        recorded_calls = []
    recorded_content = recorded_content[:max_length]

    def fail(message: str) -> ParsedTurn:
        return ParsedTurn(
            FormatError(message), recorded_content, recorded_content, tuple(recorded_calls)
        )

    if problem:
        return fail(problem[0].upper() + problem[1:] + ".")
    bad = [c for c in read if isinstance(c, str)]
    if bad:
        return fail(bad[0][0].upper() + bad[0][1:] + ".")
    if not readable:
        return fail(
            f"No tool call found. Call exactly one of the functions ({expected}); "
            "to give the final answer, call 'answer'."
        )
    if len(readable) > 1:
        return fail(f"Exactly one tool call per turn is allowed, got {len(readable)}.")
    call = readable[0]
    tool = next((t for t in tools if t.name == call["name"]), None)
    if tool is None:
        return fail(f"There is no tool named {call['name']!r}. Call one of: {expected}.")
    errors = schema_errors(call["arguments"], tool.parameters)
    if errors:
        return fail(f"The call to {tool.name!r} does not fit its schema: " + "; ".join(errors))
    try:
        body = tool.call_body(call["arguments"])
    except Exception as err:  # a third-party tool's bug is the model's format error
        return fail(f"The arguments of {tool.name!r} could not be read ({type(err).__name__}).")
    if isinstance(body, FormatError):
        return fail(body.message)
    reasoning = reasoning_of(content)
    tag = tool.call_tags[0]
    text = canonical_turn(reasoning, tag, body)
    think = reasoning or None
    if tool.terminal:
        parsed: ToolCall | Answer | FormatError = Answer(str(body).strip(), think)
    else:
        try:
            argument = tool.parse(body, tag)
        except Exception as err:
            argument = FormatError(f"The call to {tool.name!r} could not be read ({err!r}).")
        parsed = (
            argument
            if isinstance(argument, FormatError)
            else ToolCall(tool.name, str(argument), think, tag)
        )
    return ParsedTurn(parsed, text, recorded_content, tuple(recorded_calls))


def _as_recorded(call: dict[str, Any]) -> dict[str, Any]:
    return {"type": "function", "function": {"name": call["name"], "arguments": call["arguments"]}}


def as_message(turn: ToolCall | Answer, tool: Any, raw: bool = False) -> dict[str, Any] | str:
    """The ``tool_calls`` action equivalent to a parsed tag turn (the scripted expert's):
    an assistant message, or with ``raw`` the Hermes text."""
    argument = turn.text if isinstance(turn, Answer) else turn.argument
    arguments = tool.call_arguments(argument)
    reasoning = turn.think or ""
    if raw:
        think = f"<think>{reasoning}</think>\n" if reasoning else ""
        payload = json.dumps({"name": tool.name, "arguments": arguments}, ensure_ascii=False)
        return f"{think}<tool_call>\n{payload}\n</tool_call>"
    return {
        "role": "assistant",
        "content": reasoning,
        "tool_calls": [
            {"type": "function", "function": {"name": tool.name, "arguments": arguments}}
        ],
    }
