"""Tools templates of the non-Hermes families for the tests: the tiny model's ChatML template
with a family's tools block first and its call markup after an assistant message's content
(:func:`with_tools`), so the family's parser is chosen from the template."""

from __future__ import annotations


def with_tools(template: str, tools: str, calls: str) -> str:
    """The tiny ChatML template, with ``tools`` written first and ``calls`` after an
    assistant message's content."""
    head = "{%- if tools -%}{{- " + tools + " -}}{%- endif -%}"
    calls = "{%- if message.tool_calls -%}{{- " + calls + " -}}{%- endif -%}"
    return head + template.replace("{{- '<|im_end|>\\n' -}}", calls + "{{- '<|im_end|>\\n' -}}")


# (the tools block, the calls of an assistant message), Jinja expressions
MISTRAL = (
    "'[AVAILABLE_TOOLS]' ~ (tools | tojson) ~ '[/AVAILABLE_TOOLS]\\n'",
    "'[TOOL_CALLS]' ~ (message.tool_calls | map(attribute='function') | list | tojson)",
)
_LLAMA_TOOLS = "'Respond with a JSON function call. Functions: ' ~ (tools | tojson) ~ '\\n'"
_LLAMA_CALL = (
    '\'{"name": "\' ~ message.tool_calls[0].function.name ~ \'", "parameters": \' '
    "~ (message.tool_calls[0].function.arguments | tojson) ~ '}'"
)
LLAMA = (_LLAMA_TOOLS, _LLAMA_CALL)
LLAMA_PYTHON_TAG = (_LLAMA_TOOLS, "'<|python_tag|>' ~ " + _LLAMA_CALL)
HERMES = (
    "'<tools>' ~ (tools | tojson) ~ '</tools>\\n'",
    "'<tool_call>' ~ (message.tool_calls[0].function | tojson) ~ '</tool_call>'",
)
