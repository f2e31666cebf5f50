"""A rollout with a non-Hermes family: the tiny model given a Mistral-style or a Llama-style
tools template gets that family's parser (chosen from the template), its stop strings (none:
EOS ends a call turn), and its calls reach the env as native calls with the rewards of the
same turns in Hermes form."""

from __future__ import annotations

import dataclasses

import pytest
from tool_templates import HERMES, LLAMA, MISTRAL, with_tools

import arft_envs  # noqa: F401
from agents.policy import Generation
from agents.policy.tool_parsers import HermesParser, Llama3JsonParser, MistralParser
from agents.rollout import RolloutConfig, collect, make_envs
from agents.rollout.collect import EnvActions

ROT = {"problems": ["rotation90"]}
TURNS = {  # (reasoning, the family's markup of a problem call, of an answer call)
    MistralParser: (
        '[TOOL_CALLS][{"name": "problem", "arguments": {"problems": ["rotation90"]}}]',
        '[TOOL_CALLS][{"name": "answer", "arguments": {"answer": "STUDIO"}}]',
    ),
    Llama3JsonParser: (
        '{"name": "problem", "parameters": {"problems": ["rotation90"]}}',
        '{"name": "answer", "parameters": {"answer": "STUDIO"}}',
    ),
    HermesParser: (
        '<tool_call>{"name": "problem", "arguments": {"problems": ["rotation90"]}}</tool_call>',
        '<tool_call>{"name": "answer", "arguments": {"answer": "STUDIO"}}</tool_call>',
    ),
}


class Scripted:
    """Stands in for ``Policy.generate``: the script's turns, each ended by EOS."""

    def __init__(self, policy, script):
        self.policy, self.script, self.calls, self.stops = policy, list(script), 0, []

    def __call__(self, inputs, **kwargs):
        self.stops.append(tuple(kwargs["stop_strings"]))
        text = self.script[min(self.calls, len(self.script) - 1)]
        self.calls += 1
        ids = self.policy.encode(text) + [self.policy.eos_token_ids[0]]
        return [Generation(ids, [-0.5] * len(ids), text, "eos") for _ in inputs]


@pytest.mark.parametrize(
    ("parts", "family", "stops"),
    [
        (MISTRAL, MistralParser, ()),  # EOS ends a call turn
        (LLAMA, Llama3JsonParser, ()),
        (HERMES, HermesParser, ("</tool_call>",)),
    ],
    ids=["mistral", "llama3", "hermes"],
)
def test_a_family_template_gets_its_parser_and_its_calls_reach_the_env(
    tiny_policy, parts, family, stops
):
    vocabulary = tiny_policy.tokenizer.get_added_vocab()
    assert not any(token in vocabulary for token in family.vocab_tokens)  # the template decides
    policy = dataclasses.replace(
        tiny_policy, chat_template=with_tools(tiny_policy.chat_template, *parts)
    )
    problem, answer = TURNS[family]
    script = ["It lies on its side.\n" + problem, "It reads STUDIO.\n" + answer]
    policy.generate = scripted = Scripted(policy, script)
    envs = make_envs("MATCoding-v0", 1, "sync", action_format="tool_calls")
    try:
        actions = EnvActions.of(policy, envs, RolloutConfig())
        assert type(actions.calling.parser) is family
        assert actions.stop_strings == stops
        [t] = collect(policy, envs, RolloutConfig(), groups=1)
    finally:
        envs.close()
    assert set(scripted.stops) == {stops}
    assert "problem" in policy.tokenizer.decode(t.input_ids[: t.turn_spans[0][0]])  # tools=
    turns = [m for m in t.messages if m["role"] == "assistant"]
    assert [m["tool_calls"][0]["function"] for m in turns] == [
        {"name": "problem", "arguments": ROT},
        {"name": "answer", "arguments": {"answer": "STUDIO"}},
    ]
    assert t.reward_components[0]["format"] == 1.0 and t.reward_components[0]["problem"] > 0
    assert t.terminated and t.info["answer"] == "STUDIO"
