"""A tool-call family's marker tokens are special tokens (Mistral's ``[TOOL_CALLS]``,
``[ARGS]``, ``[CALL_ID]``; Llama's ``<|python_tag|>``): generated for native tool calls, a turn
may sample them and keeps them in its text, so a model trained to open a call with its marker
writes it and the parser reads it; without tools they stay suppressed and out of the text; the
ids are the ones sampled, with their log-probs; Hermes on Qwen's tokenizer is unchanged."""

from __future__ import annotations

import json

import pytest
import torch
from shared_helpers import text_lm
from tool_templates import LLAMA_PYTHON_TAG, MISTRAL, with_tools

from agents.policy import ModelInput, Policy, generation
from agents.policy.tool_parsers import HermesParser, Llama3JsonParser, MistralParser

MARKERS = ("[TOOL_CALLS]", "[ARGS]", "[CALL_ID]", "<|python_tag|>")
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "answer",
            "description": "Give the final answer.",
            "parameters": {"type": "object", "properties": {"answer": {"type": "string"}}},
        },
    }
]
CONVERSATION = [
    {"role": "system", "content": ({"type": "text", "text": "Answer with a tool call."},)},
    {"role": "user", "content": ({"type": "text", "text": "What reads STUDIO?"},)},
]
ARGUMENTS = {"answer": "STUDIO"}
CALLS = {  # the family's call, as a model trained on it writes it (the marker opens it)
    MistralParser: "[TOOL_CALLS]" + json.dumps([{"name": "answer", "arguments": ARGUMENTS}]),
    Llama3JsonParser: "<|python_tag|>" + json.dumps({"name": "answer", "parameters": ARGUMENTS}),
}
TEMPLATES = {MistralParser: MISTRAL, Llama3JsonParser: LLAMA_PYTHON_TAG}


def marker_policy(family) -> Policy:
    """A tiny text LM (Qwen2 layers) whose tokenizer has the families' markers as added
    special tokens, with a tools template of ``family``."""
    from agents.models.tiny import CHAT_TEMPLATE, build_tokenizer

    tok = build_tokenizer()
    tok.add_tokens(list(MARKERS), special_tokens=True)
    model = text_lm(
        tok, hidden_size=64, intermediate_size=128, num_attention_heads=4, num_key_value_heads=2
    )
    template = with_tools(CHAT_TEMPLATE, *TEMPLATES[family])
    return Policy(model.eval(), tok, template, name=f"tiny-{family.name}")


def prompt_ids(policy: Policy) -> list[int]:
    return policy.encode(policy.render(CONVERSATION, add_generation_prompt=True, tools=TOOLS))


def train_to_call(policy: Policy, prompt: list[int], target: list[int], most: int = 600) -> float:
    """Teach the model to answer ``prompt`` with ``target`` (a call opened by its marker, then
    EOS): Adam on the one sequence until its mean token loss is below 0.01 (about 150 steps,
    under a second), at most ``most`` steps. Returns the last loss."""
    ids = torch.tensor([prompt + target])
    labels = ids.clone()
    labels[0, : len(prompt)] = -100
    model = policy.model.train()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        for _ in range(most):
            loss = model(input_ids=ids, labels=labels).loss
            if loss.item() < 0.01:
                break
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    model.eval()
    return loss.item()


@pytest.fixture(scope="module", params=[MistralParser, Llama3JsonParser], ids=lambda c: c.name)
def trained(request):
    """``(family, policy, its tool-calling set-up, the call's ids)``, the model trained to
    write the family's call with its marker."""
    family = request.param
    policy = marker_policy(family)
    calling = policy.tool_calling(TOOLS)
    target = policy.encode(CALLS[family]) + [policy.eos_token_ids[0]]
    assert train_to_call(policy, prompt_ids(policy), target) < 0.01  # it learnt the call
    return family, policy, calling, target


def test_the_familys_markers_are_sampleable_under_tools_only(trained):
    family, policy, calling, _ = trained
    assert type(calling.parser) is family
    vocabulary = policy.tokenizer.get_added_vocab()
    own = {vocabulary[t] for t in family.marker_tokens}
    others = {vocabulary[t] for t in MARKERS} - own
    assert calling.marker_ids == own
    suppressed = set(policy._suppressed)
    assert own <= suppressed  # without tools: never sampled
    under_tools = set(generation.suppressed_except(policy, calling.marker_ids))
    assert not own & under_tools
    assert others <= under_tools and policy.tokenizer.pad_token_id in under_tools
    assert under_tools == suppressed - own


@pytest.mark.parametrize("run", [generation.decode_loop, generation.hf_generate])
def test_a_model_trained_on_its_marker_writes_it_and_the_call_parses(trained, run):
    """Greedy decoding reproduces the trained call, marker first, through the policy's loop and
    through ``model.generate``; the text keeps the marker, the parser reads the call, and the
    recorded log-probs are those a forward pass gives the sampled ids."""
    family, policy, calling, target = trained
    x = ModelInput(prompt_ids(policy))
    batch = policy.collate([x, x], padding_side="left")
    suppressed = generation.suppressed_except(policy, calling.marker_ids)
    rows, logprobs, ends = run(policy, batch, 40, 0.0, 1.0, (), suppressed=suppressed)
    assert all(end == (len(target), "eos") for end in ends)
    assert [row[: len(target)] for row in rows] == [target, target]

    [gen] = policy.generate([x], max_new_tokens=40, temperature=0, tool_calling=calling)
    assert gen.token_ids == target and gen.finish_reason == "eos"
    assert gen.text == CALLS[family]  # the marker kept, EOS left out
    assert policy.decode(gen.token_ids, calling) == gen.text
    action = calling.action(gen.text)
    assert action["tool_calls"] == [
        {"type": "function", "function": {"name": "answer", "arguments": ARGUMENTS}}
    ]
    [scored] = policy.sequence_logprobs([ModelInput(x.input_ids + gen.token_ids)])
    assert scored[len(x.input_ids) :] == pytest.approx(gen.logprobs, abs=1e-4)


def test_without_tools_the_marker_is_neither_sampled_nor_kept(trained):
    """The same trained model, generating without the tool-calling set-up: its marker is
    suppressed (it writes something else), and a row holding it decodes without it."""
    family, policy, calling, target = trained
    x = ModelInput(prompt_ids(policy))
    [gen] = policy.generate([x], max_new_tokens=40, temperature=0)
    assert not set(gen.token_ids) & calling.marker_ids
    assert gen.token_ids[0] != target[0]
    assert policy.decode(target) == CALLS[family].removeprefix(family.marker_tokens[0])
    assert policy.decode(target, calling) == CALLS[family]


def test_other_special_tokens_are_still_left_out_of_a_tool_turn(trained):
    family, policy, calling, _ = trained
    tok = policy.tokenizer
    im_start = tok.convert_tokens_to_ids("<|im_start|>")
    foreign = next(tok.convert_tokens_to_ids(t) for t in MARKERS if t not in family.marker_tokens)
    ids = [im_start, *tok.encode(CALLS[family], add_special_tokens=False), foreign]
    assert policy.decode(ids, calling) == CALLS[family]


def test_mistral_call_ids_between_name_and_arguments_are_read():
    text = 'Looking.[TOOL_CALLS]answer[CALL_ID]a1B2c3D4e[ARGS]{"answer": "STUDIO"}'
    assert MistralParser().parse(text) == {
        "role": "assistant",
        "content": "Looking.",
        "tool_calls": [
            {"type": "function", "function": {"name": "answer", "arguments": ARGUMENTS}}
        ],
    }


def test_hermes_on_qwens_tokenizer_is_unchanged(tiny_qwen_policy):
    """Qwen's ``<tool_call>`` tokens are ordinary added tokens: the Hermes set-up's markers
    change neither the suppressed ids nor the text."""
    policy = tiny_qwen_policy
    calling = policy.tool_calling(TOOLS)
    assert type(calling.parser) is HermesParser
    vocabulary = policy.tokenizer.get_added_vocab()
    assert calling.marker_ids == {vocabulary["<tool_call>"], vocabulary["</tool_call>"]}
    assert generation.suppressed_except(policy, calling.marker_ids) == policy._suppressed
    text = '<think> x </think>\n<tool_call>\n{"name": "answer", "arguments": {}}\n</tool_call>'
    ids = policy.encode(text) + [policy.eos_token_ids[0]]
    assert policy.decode(ids, calling) == policy.decode(ids) == text


@pytest.mark.parametrize("family", [MistralParser, Llama3JsonParser], ids=lambda c: c.name)
def test_a_rollout_samples_the_marker_and_the_env_gets_the_call(family):
    """End to end through ``collect``: a model trained to open its answer call with its
    family's marker samples it in an env in ``action_format="tool_calls"``, the env receives
    the parsed call, and the trajectory's ids are the sampled ones (marker included), their
    re-tokenisation exact or explained."""
    from agents.rollout import RolloutConfig, collect, make_envs

    policy = marker_policy(family)
    config = RolloutConfig(temperature=0.0, max_new_tokens=48, max_turns=1,
                           check_retokenization=True)  # fmt: skip
    envs = make_envs("MATCoding-v0", 1, "sync", action_format="tool_calls")
    try:
        [first] = collect(policy, envs, config, groups=1)
        prompt = first.input_ids[: first.turn_spans[0][0]]
        call = CALLS[family].replace("STUDIO", "DIGIT")
        target = policy.encode(call) + [policy.eos_token_ids[0]]
        assert train_to_call(policy, prompt, target) < 0.01
        [t] = collect(policy, envs, config, groups=1)  # the same task: the same seed
    finally:
        envs.close()
    start, end = t.turn_spans[0]
    assert t.input_ids[start:end] == target  # the marker sampled, then the call, then EOS
    [turn] = [m for m in t.messages if m["role"] == "assistant"]
    assert turn["tool_calls"][0]["function"] == {"name": "answer", "arguments": {"answer": "DIGIT"}}
    assert t.retokenization["status"] in ("exact", "explained"), t.retokenization
