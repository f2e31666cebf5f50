"""The action grammar: one assistant turn, as text, parsed into exactly one action.

A turn is an optional ``<think>…</think>`` followed by exactly one of ``<problem>``,
``<code>``, ``<search>`` or ``<answer>``, with nothing but whitespace outside the tags. Tags
are matched with DOTALL, so bodies may span lines. ``<code>`` may wrap a fenced
```` ```python ```` block; the code is what is inside the fence.

``parse_action`` never raises on a ``str``: anything that does not fit the grammar comes back
as a :class:`FormatError` whose message is written for the model to read.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass

ACTION_TAGS = ("problem", "code", "search", "answer")
ALL_TAGS = ("think", *ACTION_TAGS)

_TAG_RE = re.compile(r"</?\s*(think|problem|code|search|answer)\s*>", re.IGNORECASE)
_TURN_RE = re.compile(
    r"\A\s*(?:<think>(?P<think>.*?)</think>)?\s*"
    r"<(?P<tag>problem|code|search|answer)>(?P<body>.*)</(?P=tag)>\s*\Z",
    re.DOTALL,
)
_FENCE_RE = re.compile(r"```[ \t]*(?:python|py|python3)?[ \t]*\n?(?P<code>.*?)```", re.DOTALL)
_PROBLEM_SET_RE = re.compile(r"\A\s*\{\s*'[^']+'\s*(?:,\s*'[^']+'\s*)*\}\s*\Z", re.DOTALL)
_QUOTED_RE = re.compile(r"'([^']+)'")


@dataclass(frozen=True)
class ToolCall:
    """A request to run a tool: ``name`` is ``problem``, ``code`` or ``search``.

    ``argument`` is the cleaned body: the code inside the fence, the stripped query, or the
    raw set text of a diagnosis (see :func:`parse_problem_set`).
    """

    name: str
    argument: str
    think: str | None = None


@dataclass(frozen=True)
class Answer:
    """The final answer; it ends the episode."""

    text: str
    think: str | None = None


@dataclass(frozen=True)
class FormatError:
    """The turn does not fit the grammar; ``message`` tells the model what to fix."""

    message: str


Action = ToolCall | Answer | FormatError


def _expected(allowed: Collection[str]) -> str:
    tags = [t for t in ACTION_TAGS if t in allowed]
    return ", ".join(f"<{t}>…</{t}>" for t in tags)


def parse_action(
    text: object,
    allowed: Collection[str] = ACTION_TAGS,
    max_length: int | None = None,
) -> Action:
    """Parse one assistant turn.

    Returns a :class:`ToolCall`, an :class:`Answer`, or a :class:`FormatError` saying what
    was wrong. ``allowed`` limits which action tags the environment accepts.
    """
    expected = _expected(allowed)
    if not isinstance(text, str):
        return FormatError(f"The action must be text (a str), got {type(text).__name__}.")
    if max_length is not None and len(text) > max_length:
        return FormatError(
            f"The action is {len(text)} characters long; the limit is {max_length}. "
            "Write a shorter turn."
        )
    match = _TURN_RE.match(text)
    if match is None:
        return FormatError(_explain(text, expected))
    tag, body, think = match["tag"], match["body"], match["think"]
    nested = _TAG_RE.search(body)
    if nested is not None or (think is not None and _TAG_RE.search(think)):
        return FormatError(
            f"Exactly one action per turn: found another tag {(nested or _TAG_RE.search(think))[0]!r} "
            f"inside <{tag}>. Write an optional <think>…</think> and then one of {expected}."
        )
    if tag not in allowed:
        return FormatError(f"<{tag}> is not available in this environment. Use one of {expected}.")
    think = think.strip() if think is not None else None
    if tag == "answer":
        return Answer(body.strip(), think)
    if tag == "code":
        fence = _FENCE_RE.search(body)
        code = fence["code"] if fence is not None else body
        if not code.strip():
            return FormatError("The <code> block is empty. Put Python code inside it.")
        return ToolCall("code", code.strip("\n"), think)
    if tag == "problem":
        if _PROBLEM_SET_RE.match(body) is None:
            return FormatError(
                "Write the diagnosis as a set of quoted names, e.g. "
                "<problem>{'rotation90', 'dark'}</problem>."
            )
        return ToolCall("problem", body.strip(), think)
    query = body.strip()
    if not query:
        return FormatError("The <search> query is empty. Write the query inside the tags.")
    return ToolCall("search", query, think)


def parse_problem_set(body: str) -> tuple[str, ...]:
    """The sorted names in a diagnosis such as ``{'rotation90', 'dark'}``."""
    return tuple(sorted(name.strip() for name in _QUOTED_RE.findall(body)))


def _explain(text: str, expected: str) -> str:
    """Say why ``text`` did not parse, as specifically as possible."""
    tags = [m[1].lower() for m in _TAG_RE.finditer(text)]
    actions = [t for t in tags if t in ACTION_TAGS]
    if not text.strip():
        return f"The turn is empty. Write an optional <think>…</think> and then one of {expected}."
    if not actions:
        unknown = re.search(r"<\s*([A-Za-z_][\w-]*)\s*>", text)
        hint = f" ({unknown[0]!r} is not an action tag)" if unknown else ""
        return f"No action found{hint}. End the turn with one of {expected}."
    opened = {t for t in ACTION_TAGS if re.search(rf"<{t}>", text)}
    closed = {t for t in ACTION_TAGS if re.search(rf"</{t}>", text)}
    if opened != closed:
        missing = sorted(opened ^ closed)
        return f"Unbalanced tag <{missing[0]}>: every action tag must be opened and closed."
    if len([t for t in tags if t in ACTION_TAGS]) > 2:
        return f"Exactly one action per turn is allowed. Use one of {expected}."
    return (
        "Only whitespace may appear outside the tags: write an optional <think>…</think> "
        f"and then one of {expected}, nothing before or after."
    )
