"""Native tool calls on the policy side: which parser reads a model's calls, chosen from its
tokenizer and chat template, and the :class:`ToolCalling` set-up one rollout uses.

A chat template that takes ``tools=`` tells the model to write its calls in the family's own
markup; the policy must stop a turn where a call closes and turn the text into the assistant
message an env in ``action_format="tool_calls"`` takes
(``{"role": "assistant", "content": str, "tool_calls": [...]}``). A parser per model family
does both:

- :class:`HermesParser` (Qwen2.5, Qwen3, Qwen2.5-VL / Qwen3-VL, Hermes, and every model trained
  on the Hermes format): ``<tool_call>{"name": …, "arguments": {…}}</tool_call>``, after the
  reasoning. It fits a tokenizer that has ``<tool_call>`` as one token, or a template that
  writes it.

:func:`parser_for` picks the first of :data:`PARSERS` that fits, or raises
:class:`ToolParserError` naming the tokenizer. Adding a family means adding a parser class with
``fits``, ``stop_strings`` and ``parse`` to :data:`PARSERS`.

A parser never raises on what the model wrote: text it cannot read as calls goes to the env
unchanged, and the env answers with a readable format error.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar


class ToolParserError(ValueError):
    """No tool-call parser fits the model; the message names its tokenizer and the choices."""


class HermesParser:
    """``<tool_call>{"name": …, "arguments": {…}}</tool_call>`` blocks after the reasoning."""

    name: ClassVar[str] = "hermes"
    families: ClassVar[str] = "Qwen2.5/Qwen3(-VL), Hermes: <tool_call>{JSON}</tool_call>"
    stop_strings: ClassVar[tuple[str, ...]] = ("</tool_call>",)
    _BLOCK: ClassVar[re.Pattern] = re.compile(r"<tool_call>(.*?)</tool_call>", re.DOTALL)

    @staticmethod
    def fits(tokenizer: Any, chat_template: str) -> bool:
        token = "<tool_call>"
        return token in (chat_template or "") or token in tokenizer.get_added_vocab()

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
                call = json.loads(block[1])
            except ValueError:
                return text
            if not isinstance(call, dict) or not isinstance(call.get("name"), str):
                return text
            arguments = call.get("arguments", {})
            calls.append(
                {"type": "function", "function": {"name": call["name"], "arguments": arguments}}
            )
        # The template writes "content\n<tool_call>…": the content without the newline before
        # the first call renders back to the very text sampled.
        return _message(text[: blocks[0].start()].rstrip(), calls)


def _message(content: str, calls: list[dict]) -> dict[str, Any]:
    return {"role": "assistant", "content": content, "tool_calls": calls}


PARSERS: tuple[type, ...] = (HermesParser,)


def parser_for(tokenizer: Any, chat_template: str, model_name: str = "") -> Any:
    """The first parser of :data:`PARSERS` that fits ``tokenizer`` and ``chat_template``."""
    for cls in PARSERS:
        if cls.fits(tokenizer, chat_template):
            return cls()
    where = getattr(tokenizer, "name_or_path", "") or model_name
    known = "; ".join(f"{cls.name} ({cls.families})" for cls in PARSERS)
    raise ToolParserError(
        f"{model_name or where}: no tool-call parser fits the tokenizer "
        f"{type(tokenizer).__name__} ({where}): neither its vocabulary nor its chat template "
        f"has the markup of a known family [{known}]. Use action_format='tags' with this "
        "model, pass chat_template= a template that writes Hermes <tool_call> blocks, or add "
        "a parser for its family to agents/policy/tool_parsers.py (PARSERS)."
    )


@dataclass(frozen=True)
class ToolCalling:
    """What one rollout in ``action_format="tool_calls"`` uses: the env's tool schemas
    (rendered through the template's ``tools=``), the family's parser, and its stop strings."""

    tools: tuple[dict, ...]
    parser: Any

    @property
    def stop_strings(self) -> tuple[str, ...]:
        return tuple(self.parser.stop_strings)

    def action(self, text: str) -> dict[str, Any] | str:
        """The env action of one generated turn."""
        return self.parser.parse(text)


def tool_names(tools: Sequence[dict]) -> list[str]:
    """The function names of tool schemas."""
    return [str((t.get("function") or t).get("name")) for t in tools]
