"""Tool-call parsers per model family: each reads its family's valid calls (one, several, with
reasoning before them) into the assistant message the env takes; what it cannot read reaches
the env's step as a readable format error, never an exception; and the parser is chosen from
the tokenizer's vocabulary and chat template (small tokenizers built offline, and the real
template and control tokens of the packaged SmolLM2 GGUF)."""

from __future__ import annotations

import gymnasium as gym
import pytest

import arft_envs  # noqa: F401
from agents.policy.tool_parsers import (
    PARSERS,
    HermesParser,
    Llama3JsonParser,
    MistralParser,
    ToolCalling,
    ToolParserError,
    parser_for,
)

HERMES, MISTRAL, LLAMA = HermesParser(), MistralParser(), Llama3JsonParser()


def call(name, arguments):
    return {"type": "function", "function": {"name": name, "arguments": arguments}}


def message(content, *calls):
    return {"role": "assistant", "content": content, "tool_calls": list(calls)}


ROT = {"problems": ["rotation90"]}
VALID = [
    (
        HERMES,
        '<tool_call>\n{"name": "problem", "arguments": {"problems": ["rotation90"]}}\n</tool_call>',
        message("", call("problem", ROT)),
    ),
    (
        HERMES,
        'Turned.\n<tool_call>{"name": "a", "arguments": {}}</tool_call>\n'
        '<tool_call>{"name": "b", "arguments": {"x": 1}}</tool_call>',
        message("Turned.", call("a", {}), call("b", {"x": 1})),
    ),
    # SmolLM2's trained format: a list of calls in one block
    (
        HERMES,
        '<tool_call>[{"name": "a", "arguments": {"q": "x"}}, {"name": "b", "arguments": {}}]</tool_call>',
        message("", call("a", {"q": "x"}), call("b", {})),
    ),
    (
        MISTRAL,
        '[TOOL_CALLS][{"name": "problem", "arguments": {"problems": ["rotation90"]}}]',
        message("", call("problem", ROT)),
    ),
    (
        MISTRAL,
        'It is sideways.[TOOL_CALLS] [{"name": "a", "arguments": {"q": 1}, "id": "abc123xyz"},'
        ' {"name": "b", "arguments": "{\\"x\\": 2}"}]',
        message("It is sideways.", call("a", {"q": 1}), call("b", '{"x": 2}')),
    ),
    (
        MISTRAL,
        '[TOOL_CALLS]search[ARGS]{"query": "x"}[TOOL_CALLS]answer[ARGS]{"answer": "y"}',
        message("", call("search", {"query": "x"}), call("answer", {"answer": "y"})),
    ),
    # decoded without the special [TOOL_CALLS] token: a list of calls that opens a line
    (
        MISTRAL,
        'I think so.\n[{"name": "answer", "arguments": {"answer": "Paris"}}]',
        message("I think so.", call("answer", {"answer": "Paris"})),
    ),
    (
        LLAMA,
        '{"name": "problem", "parameters": {"problems": ["rotation90"]}}',
        message("", call("problem", ROT)),
    ),
    (
        LLAMA,
        '<|python_tag|>{"name": "a", "parameters": {"q": "x"}}; {"name": "b", "arguments": {}}',
        message("", call("a", {"q": "x"}), call("b", {})),
    ),
    (
        LLAMA,
        'Look it up first.\n{"name": "search", "parameters": {"query": "x"}}\n',
        message("Look it up first.", call("search", {"query": "x"})),
    ),
    (LLAMA, '{"name": "answer"}', message("", call("answer", {}))),
]


@pytest.mark.parametrize(("parser", "text", "want"), VALID)
def test_valid_calls_become_the_assistant_message(parser, text, want):
    assert parser.parse(text) == want


NO_CALL = [
    (parser, text)
    for parser in (HERMES, MISTRAL, LLAMA)
    for text in ("", "no call at all", "The list [1, 2] and {braces} in prose.")
]


@pytest.mark.parametrize(("parser", "text"), NO_CALL)
def test_text_without_a_call_goes_to_the_env_as_written(parser, text):
    assert parser.parse(text) == text


def step(action):
    """One MATCoding-v0 step in tool_calls mode: (its reply text, its reward components)."""
    env = gym.make("MATCoding-v0", action_format="tool_calls")
    env.reset(seed=0)
    obs, _, _, _, info = env.step(action)
    reply = obs["messages"][-1]
    assert reply["role"] == "tool"
    return reply["content"][-1]["text"], info["reward_components"]


MALFORMED = [
    (
        HERMES,
        '<tool_call>{"name": "answer", "arguments": {"answer": }}</tool_call>',
        "The <tool_call> body is not valid JSON",
    ),
    (
        HERMES,
        '<tool_call>{"name": "answer", "arguments": {}}</tool_call> and then more',
        "Only whitespace may follow a tool call",
    ),
    (HERMES, '<tool_call>{"name": "answer"', "is not closed with </tool_call>"),
    (
        MISTRAL,
        '[TOOL_CALLS][{"name": "answer", "arguments": {"answer": "x"}]',
        "The arguments of 'answer' are not valid JSON",
    ),
    (
        MISTRAL,
        '[TOOL_CALLS][{"name": "answer", "arguments": {"answer": "x"}}] Done.',
        "The arguments of 'answer' are not valid JSON (Extra data",
    ),
    (
        MISTRAL,
        '[TOOL_CALLS]answer[ARGS]{"answer": x}',
        "The arguments of 'answer' are not valid JSON",
    ),
    (MISTRAL, "[TOOL_CALLS][{name: answer}]", "No tool call found"),
    (
        MISTRAL,
        '[TOOL_CALLS][{"name": "answer", "arguments": {}}, 7]',
        "The arguments of 'answer' must be a JSON object, got list",
    ),
    (
        LLAMA,
        '{"name": "answer", "parameters": {"answer": "x"',
        "The arguments of 'answer' are not valid JSON",
    ),
    (
        LLAMA,
        '<|python_tag|>{"name": "answer", "parameters": {}} and more',
        "The arguments of 'answer' are not valid JSON (Extra data",
    ),
    (LLAMA, "<|python_tag|>answer(x=1)", "No tool call found"),
]


@pytest.mark.parametrize(("parser", "text", "error"), MALFORMED)
def test_unreadable_calls_become_a_readable_tool_message(parser, text, error):
    reply, components = step(parser.parse(text))
    assert reply.startswith("Format error: ") and error in reply
    assert components == {"format": 0.0}


@pytest.mark.parametrize("parser", [HERMES, MISTRAL, LLAMA])
def test_a_parsed_call_is_stepped_like_the_native_message(parser):
    """The family's text and the chat-convention message earn the same reply and rewards."""
    wanted = message("The text runs sideways.", call("problem", ROT))
    texts = {
        HERMES: '<tool_call>{"name": "problem", "arguments": {"problems": ["rotation90"]}}</tool_call>',
        MISTRAL: '[TOOL_CALLS][{"name": "problem", "arguments": {"problems": ["rotation90"]}}]',
        LLAMA: '{"name": "problem", "parameters": {"problems": ["rotation90"]}}',
    }
    action = parser.parse("The text runs sideways.\n" + texts[parser])
    assert action == wanted
    assert step(action) == step(wanted)
    assert not step(action)[0].startswith("Format error")


def tokenizer(*special: str):
    """A word-level tokenizer built offline, with ``special`` as added special tokens."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({"[UNK]": 0, "hello": 1}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]")
    fast.add_tokens(list(special), special_tokens=True)
    return fast


CHATML = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
HERMES_TEMPLATE = CHATML + "{% if tools %}<tool_call>{name, arguments}</tool_call>{% endif %}"
MISTRAL_TEMPLATE = "[INST]{{ m }}[/INST]{% if c %}[TOOL_CALLS]{{ c | tojson }}{% endif %}"
LLAMA_TEMPLATE = "{{- '{\"name\": \"' + c.name + '\", ' }}{{- '\"parameters\": ' }}"
SELECTION = [
    (("<tool_call>", "</tool_call>"), CHATML, HermesParser),
    (("[TOOL_CALLS]", "[ARGS]"), CHATML, MistralParser),
    (("<|python_tag|>", "<|eot_id|>"), CHATML, Llama3JsonParser),
    ((), HERMES_TEMPLATE, HermesParser),
    ((), MISTRAL_TEMPLATE, MistralParser),
    ((), LLAMA_TEMPLATE, Llama3JsonParser),
    # the template says how to call: a Llama or Mistral tokenizer with a Hermes template
    (("<|python_tag|>",), HERMES_TEMPLATE, HermesParser),
    (("[TOOL_CALLS]",), HERMES_TEMPLATE, HermesParser),
    (("<tool_call>",), MISTRAL_TEMPLATE, MistralParser),
]


@pytest.mark.parametrize(("special", "template", "want"), SELECTION)
def test_the_parser_is_chosen_from_the_template_then_the_vocabulary(special, template, want):
    parser = parser_for(tokenizer(*special), template, "m")
    assert type(parser) is want
    assert ToolCalling((), parser).stop_strings == want.stop_strings


def test_stop_strings_are_the_familys():
    assert HermesParser.stop_strings == ("</tool_call>",)
    assert MistralParser.stop_strings == Llama3JsonParser.stop_strings == ()  # EOS ends them
    assert len({cls.name for cls in PARSERS}) == len(PARSERS)


def test_no_parser_fits_a_plain_chatml_model():
    tok = tokenizer("<|im_start|>", "<|im_end|>")
    with pytest.raises(ToolParserError, match="no tool-call parser fits the tokenizer") as caught:
        parser_for(tok, CHATML, "plain-chatml")
    message_ = str(caught.value)
    assert "plain-chatml" in message_ and type(tok).__name__ in message_
    assert all(cls.name in message_ for cls in PARSERS) and "chat_template=" in message_


def test_the_packaged_smollm2_template_has_no_tools_format():
    """SmolLM2-135M-Instruct's GGUF: a plain ChatML template and 17 control tokens, none a
    tool marker, so no parser fits; a Hermes template given as chat_template= fits."""
    gguf = pytest.importorskip("gguf", reason="the GGUF reader comes with arft[real]")
    from agents.models.registry import smollm2_path

    reader = gguf.GGUFReader(smollm2_path())

    def text(field):
        return bytes(field.parts[field.data[0]]).decode()

    template = text(reader.fields["tokenizer.chat_template"])
    tokens = reader.fields["tokenizer.ggml.tokens"]
    kinds = reader.fields["tokenizer.ggml.token_type"]
    control = [
        bytes(tokens.parts[i]).decode()
        for i, k in zip(tokens.data, kinds.data, strict=True)
        if int(kinds.parts[k][0]) == gguf.TokenType.CONTROL
    ]
    assert "<|im_start|>" in control and "tools" not in template
    tok = tokenizer(*control)
    with pytest.raises(ToolParserError):
        parser_for(tok, template, "smollm2-135m")
    assert type(parser_for(tok, HERMES_TEMPLATE, "smollm2-135m")) is HermesParser
