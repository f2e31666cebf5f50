"""The action grammar: one assistant turn, as text, parsed into exactly one action.

A turn is an optional ``<think>…</think>`` followed by exactly one action tag, with nothing
but whitespace outside the tags. Tags are matched with DOTALL, so bodies may span lines. The
action tags are those of the env's registered tools (:mod:`arft_envs.tools.base`); the paper's
are ``<problem>``, ``<code>``, ``<search>`` and ``<answer>``. ``<code>`` may wrap a fenced
```` ```python ```` block; the code is what is inside the fence.

``parse_action`` never raises on a ``str``: anything that does not fit the grammar comes back
as a :class:`FormatError` whose message is written for the model to read. A :class:`Grammar`
is built once per set of tools; ``parse_action`` caches them.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any, Protocol

#: The paper's action tags, in the order error messages list them.
ACTION_TAGS = ("problem", "code", "search", "answer")
PAPER_TAGS = ACTION_TAGS
ALL_TAGS = ("think", *ACTION_TAGS)

_FENCE_RE = re.compile(r"```[ \t]*(?:python|py|python3)?[ \t]*\n?(?P<code>.*?)```", re.DOTALL)
_PROBLEM_SET_RE = re.compile(r"\A\s*\{\s*'[^']+'\s*(?:,\s*'[^']+'\s*)*\}\s*\Z", re.DOTALL)
_QUOTED_RE = re.compile(r"'([^']+)'")


@dataclass(frozen=True)
class ToolCall:
    """A request to run a tool: ``name`` is the tool's name (``problem``, ``code``,
    ``search`` for the paper's tools).

    ``argument`` is the cleaned body: the code inside the fence, the stripped query, or the
    raw set text of a diagnosis (see :func:`parse_problem_set`).
    """

    name: str
    argument: str
    think: str | None = None
    tag: str = field(default="", compare=False)
    """The tag that made the call (a tool may have several); empty when built by hand."""


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


class ToolLike(Protocol):
    """What the grammar needs of a tool (see :class:`arft_envs.tools.base.Tool`)."""

    name: str
    terminal: bool

    @property
    def call_tags(self) -> tuple[str, ...]: ...

    def parse(self, body: str, tag: str) -> str | FormatError: ...


# ----------------------------------------------------------------------------- the paper's bodies


def parse_code_body(body: str, tag: str = "code") -> str | FormatError:
    """The code of a ``<code>`` body: inside its first fence when there is one."""
    fence = _FENCE_RE.search(body)
    code = fence["code"] if fence is not None else body
    if not code.strip():
        return FormatError("The <code> block is empty. Put Python code inside it.")
    return code.strip("\n")


def parse_problem_body(body: str, tag: str = "problem") -> str | FormatError:
    """A ``<problem>`` body, which must be a set of quoted names."""
    if _PROBLEM_SET_RE.match(body) is None:
        return FormatError(
            "Write the diagnosis as a set of quoted names, e.g. "
            "<problem>{'rotation90', 'dark'}</problem>."
        )
    return body.strip()


def parse_search_body(body: str, tag: str = "search") -> str | FormatError:
    """A ``<search>`` query, stripped and non-empty."""
    query = body.strip()
    if not query:
        return FormatError("The <search> query is empty. Write the query inside the tags.")
    return query


def _parse_plain_body(body: str, tag: str) -> str | FormatError:
    argument = body.strip()
    if not argument:
        return FormatError(f"The <{tag}> body is empty. Write its input inside the tags.")
    return argument


_PAPER_BODIES = {
    "code": parse_code_body,
    "problem": parse_problem_body,
    "search": parse_search_body,
}


def body_parser(tag: str):
    """The body rule of a tag named by string: the paper's for its tags, else non-empty."""
    return _PAPER_BODIES.get(tag, _parse_plain_body)


# ----------------------------------------------------------------------------- the grammar


class Grammar:
    """The grammar of one env: its action tags, each with the tool (name, body parser) it calls.

    ``tools`` are tag names (the paper's ``"code"`` etc. get the paper's body rules, other
    names a non-empty stripped body, ``"answer"`` ends the episode) or tool objects
    (:class:`ToolLike`). The paper's tags are always *recognised*, so a turn using one the
    env lacks gets "<search> is not available in this environment", not "No action found".
    """

    def __init__(self, tools: Collection[str | ToolLike] = ACTION_TAGS):
        self.routes: dict[str, tuple[str, Any, bool]] = {}  # tag -> (name, parse, terminal)
        for tool in tools:
            if isinstance(tool, str):
                tag = tool
                parse = body_parser(tag)
                self.routes[tag] = (tag, parse, tag == "answer")
            else:
                for tag in tool.call_tags:
                    self.routes[tag] = (tool.name, tool.parse, bool(tool.terminal))
        extra = [t for t in self.routes if t not in ACTION_TAGS]
        self.allowed = tuple(t for t in ACTION_TAGS if t in self.routes) + tuple(extra)
        self.known = (*ACTION_TAGS, *extra)
        names = "|".join(re.escape(t) for t in sorted(set(self.known), key=len, reverse=True))
        self._tag_re = re.compile(rf"</?\s*(think|{names})\s*>", re.IGNORECASE)
        self._turn_re = re.compile(
            r"\A\s*(?:<think>(?P<think>.*?)</think>)?\s*"
            rf"<(?P<tag>{names})>(?P<body>.*)</(?P=tag)>\s*\Z",
            re.DOTALL,
        )
        self.expected = ", ".join(f"<{t}>…</{t}>" for t in self.allowed)

    def parse(self, text: object, max_length: int | None = None) -> Action:
        """Parse one turn (see :func:`parse_action`)."""
        expected = self.expected
        if not isinstance(text, str):
            return FormatError(f"The action must be text (a str), got {type(text).__name__}.")
        if max_length is not None and len(text) > max_length:
            return FormatError(
                f"The action is {len(text)} characters long; the limit is {max_length}. "
                "Write a shorter turn."
            )
        match = self._turn_re.match(text)
        if match is None:
            return FormatError(self._explain(text))
        tag, body, think = match["tag"], match["body"], match["think"]
        nested = self._tag_re.search(body)
        if nested is not None or (think is not None and self._tag_re.search(think)):
            found = (nested or self._tag_re.search(think))[0]
            return FormatError(
                f"Exactly one action per turn: found another tag {found!r} "
                f"inside <{tag}>. Write an optional <think>…</think> and then one of {expected}."
            )
        route = self.routes.get(tag)
        if route is None:
            return FormatError(
                f"<{tag}> is not available in this environment. Use one of {expected}."
            )
        name, parse, terminal = route
        think = think.strip() if think is not None else None
        if terminal:
            return Answer(body.strip(), think)
        try:
            argument = parse(body, tag)
        except Exception as err:  # a third-party parser's bug is the model's format error
            return FormatError(f"The <{tag}> body could not be read ({type(err).__name__}).")
        if isinstance(argument, FormatError):
            return argument
        return ToolCall(name, str(argument), think, tag)

    def _explain(self, text: str) -> str:
        """Say why ``text`` did not parse, as specifically as possible."""
        expected = self.expected
        tags = [m[1].lower() for m in self._tag_re.finditer(text)]
        actions = [t for t in tags if t in self.known]
        if not text.strip():
            return (
                f"The turn is empty. Write an optional <think>…</think> and then one of {expected}."
            )
        if not actions:
            unknown = re.search(r"<\s*([A-Za-z_][\w-]*)\s*>", text)
            hint = f" ({unknown[0]!r} is not an action tag)" if unknown else ""
            return f"No action found{hint}. End the turn with one of {expected}."
        opened = {t for t in self.known if re.search(rf"<{re.escape(t)}>", text)}
        closed = {t for t in self.known if re.search(rf"</{re.escape(t)}>", text)}
        if opened != closed:
            missing = sorted(opened ^ closed)
            return f"Unbalanced tag <{missing[0]}>: every action tag must be opened and closed."
        if len(actions) > 2:
            return f"Exactly one action per turn is allowed. Use one of {expected}."
        return (
            "Only whitespace may appear outside the tags: write an optional <think>…</think> "
            f"and then one of {expected}, nothing before or after."
        )


_GRAMMARS: dict[tuple, Grammar] = {}


def grammar_for(tools: Collection[str | ToolLike]) -> Grammar:
    """The (cached) :class:`Grammar` of ``tools``."""
    key = tuple(tools)
    try:
        grammar = _GRAMMARS.get(key)
    except TypeError:  # an unhashable tool object: build each time
        return Grammar(key)
    if grammar is None:
        if len(_GRAMMARS) > 256:
            _GRAMMARS.clear()
        grammar = _GRAMMARS[key] = Grammar(key)
    return grammar


def parse_action(
    text: object,
    allowed: Collection[str | ToolLike] = ACTION_TAGS,
    max_length: int | None = None,
) -> Action:
    """Parse one assistant turn.

    Returns a :class:`ToolCall`, an :class:`Answer`, or a :class:`FormatError` saying what
    was wrong. ``allowed`` are the action tags (or tool objects) the environment accepts.
    """
    return grammar_for(allowed).parse(text, max_length)


def parse_problem_set(body: str) -> tuple[str, ...]:
    """The sorted names in a diagnosis such as ``{'rotation90', 'dark'}``."""
    return tuple(sorted(name.strip() for name in _QUOTED_RE.findall(body)))
