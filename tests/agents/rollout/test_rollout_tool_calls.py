"""Native tool calls in the rollout: an env in ``action_format="tool_calls"`` has its tool schemas
rendered through tiny-qwen's real template (``tools=``), the model's Hermes calls parsed into
assistant messages, turns stopped at ``</tool_call>``, tool replies with images in
``<tool_response>``, token-in/token-out kept; tag mode stops at the env's own tools' tags (user
tools included); a model no parser fits is refused naming its tokenizer."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

import arft_envs  # noqa: F401
from agents.policy import Generation, TemplateError, ToolParserError
from agents.policy.tool_parsers import HermesParser, parser_for
from agents.rollout import RolloutConfig, collect, make_envs
from agents.rollout.collect import EnvActions
from arft_envs.tools.base import Tool, ToolOutcome

CODE = (
    "import cv2\nimg = cv2.imread('path_to_input_image.jpg')\n"
    "img = cv2.rotate(img, cv2.ROTATE_90_CLOCKWISE)\ncv2.imwrite('path_to_output_image.jpg', img)\n"
)


def hermes(reasoning: str, name: str, arguments: dict) -> str:
    """A turn as a Qwen model writes it, in the very layout Qwen's template renders a call."""
    payload = json.dumps({"name": name, "arguments": arguments}, ensure_ascii=False)
    return f"<think> {reasoning} </think>\n<tool_call>\n{payload}\n</tool_call>"


SCRIPT = [
    (hermes("The text runs sideways.", "problem", {"problems": ["rotation90"]}), "stop"),
    (hermes("Rotate it back.", "code", {"code": CODE}), "eos"),
    (hermes("Now it reads clearly.", "answer", {"answer": "STUDIO"}), "stop"),
]


class Scripted:
    """Stands in for ``Policy.generate``: the script's turns as if sampled, and the stop strings
    each call was given."""

    def __init__(self, policy, script):
        self.policy, self.script, self.calls, self.stops = policy, list(script), 0, []

    def __call__(self, inputs, **kwargs):
        self.stops.append(tuple(kwargs["stop_strings"]))
        out = []
        for _ in inputs:
            text, reason = self.script[min(self.calls, len(self.script) - 1)]
            ids = self.policy.encode(text)
            if reason == "eos":
                ids = ids + [self.policy.eos_token_ids[0]]
            out.append(Generation(ids, [-0.5] * len(ids), text, reason))
        self.calls += 1
        return out


def run(policy, env_id="MATCoding-v0", config=None, num_envs=1, groups=1, mode="sync", **kw):
    envs = make_envs(env_id, num_envs, mode, **kw)
    try:
        return collect(
            policy, envs, config or RolloutConfig(check_retokenization=True), groups=groups
        )
    finally:
        envs.close()


def test_scripted_tool_call_episode_tools_block_calls_and_tool_images(tiny_qwen_policy):
    policy = dataclasses.replace(tiny_qwen_policy)
    policy.generate = scripted = Scripted(policy, SCRIPT)
    [t] = run(policy, action_format="tool_calls")
    tok = policy.tokenizer
    ids, mask = np.array(t.input_ids), np.array(t.assistant_mask)

    # The prompt carries the env's tools through the real template's tools= block.
    prompt = tok.decode(ids[: t.turn_spans[0][0]].tolist())
    assert "# Tools" in prompt and "<tools>" in prompt
    for name in ("problem", "code", "answer"):
        assert f'"name": "{name}"' in prompt
    assert set(scripted.stops) == {("</tool_call>",)}  # every turn stops where a call closes

    # The sampled tokens are kept verbatim and the calls were parsed into assistant messages.
    for (start, end), (text, reason) in zip(t.turn_spans, SCRIPT, strict=True):
        want = policy.encode(text) + ([policy.eos_token_ids[0]] if reason == "eos" else [])
        assert ids[start:end].tolist() == want and mask[start:end].all()
    assert int(mask.sum()) == sum(e - s for s, e in t.turn_spans)
    turns = [m for m in t.messages if m["role"] == "assistant"]
    assert [m["tool_calls"][0]["function"]["name"] for m in turns] == ["problem", "code", "answer"]
    assert turns[0]["content"][0]["text"] == "<think> The text runs sideways. </think>"
    replies = [m for m in t.messages if m["role"] == "tool"]
    assert [m.get("name") for m in replies] == ["problem", "code"]

    # The repaired image came back inside Qwen's <tool_response>, as mask-0 image tokens.
    (_, e1), (s2, e2), (s3, _) = t.turn_spans
    between = tok.decode(ids[e2:s3].tolist())
    assert between.startswith("\n<|im_start|>user\n<tool_response>\n<|vision_start|>")
    assert between.endswith("</tool_response><|im_end|>\n<|im_start|>assistant\n")
    image_tokens = ids == policy.image_token_id
    assert image_tokens[e2:s3].sum() > 0 and not (image_tokens & (mask == 1)).any()
    assert image_tokens.sum() == int(t.image_grid_thw.prod(-1).sum()) // 4

    # Rewards are the env's, and re-rendering the recorded calls gives the very same ids.
    assert t.reward_components[0]["format"] == 1.0 and t.reward_components[0]["problem"] > 0
    assert t.terminated and t.info["answer"] == "STUDIO"
    assert t.retokenization == {"status": "exact", "turns": []}


def test_sampled_tool_call_episodes_keep_token_in_token_out(tiny_qwen_policy):
    policy = tiny_qwen_policy
    config = RolloutConfig(group_size=2, max_new_tokens=10, check_retokenization=True, seed=0)
    trajs = run(policy, config=config, num_envs=2, action_format="tool_calls", max_turns=2)
    fresh = policy.sequence_logprobs(
        [t.model_input() for t in trajs], [t.assistant_mask for t in trajs]
    )
    for t, lp in zip(trajs, fresh, strict=True):
        assert t.retokenization["status"] in ("exact", "explained")
        assert "# Tools" in policy.tokenizer.decode(t.input_ids[:400])
        m = np.array(t.assistant_mask, dtype=bool)
        np.testing.assert_allclose(np.array(lp)[m], np.array(t.old_logprobs)[m], atol=1e-4)


def test_a_malformed_call_reaches_the_env_as_written(tiny_qwen_policy):
    policy = dataclasses.replace(tiny_qwen_policy)
    bad = '<think> hmm </think>\n<tool_call>\n{"name": "problem", "arguments": {oops}\n</tool_call>'
    policy.generate = Scripted(policy, [(bad, "stop")])
    [t] = run(policy, action_format="tool_calls", max_turns=1)
    assert t.reward_components[0] == {"format": 0.0}
    assert "not valid JSON" in t.messages[-1]["content"][-1]["text"]
    assert t.messages[-2]["content"][0]["text"] == bad and "tool_calls" not in t.messages[-2]
    assert t.retokenization["status"] == "exact"


def test_hermes_parser_reads_calls_and_leaves_the_rest_to_the_env():
    parser = HermesParser()
    call = '<think> t </think>\n<tool_call>\n{"name": "search", "arguments": {"query": "x"}}\n</tool_call>'
    assert parser.parse(call) == {
        "role": "assistant",
        "content": "<think> t </think>",
        "tool_calls": [
            {"type": "function", "function": {"name": "search", "arguments": {"query": "x"}}}
        ],
    }
    for text in (
        "no call at all",
        "<tool_call>{bad json}</tool_call>",
        '<tool_call>{"name": "a", "arguments": {}}</tool_call> and then more',
        "<tool_call>[1, 2]</tool_call>",
        '<tool_call>{"name": "a"',
    ):
        assert parser.parse(text) == text


def test_parser_is_chosen_from_the_tokenizer_and_none_fits_tiny(tiny_policy, tiny_qwen_policy):
    q = tiny_qwen_policy
    assert isinstance(parser_for(q.tokenizer, q.chat_template, q.name), HermesParser)
    with pytest.raises(ToolParserError, match="no tool-call parser fits the tokenizer") as caught:
        run(tiny_policy, action_format="tool_calls", max_turns=1)
    assert type(tiny_policy.tokenizer).__name__ in str(caught.value)
    assert "action_format='tags'" in str(caught.value)


def test_a_template_that_ignores_tools_is_refused(tiny_qwen_policy):
    deaf = tiny_qwen_policy.chat_template.replace("{%- if tools %}", "{%- if false %}", 1)
    policy = dataclasses.replace(tiny_qwen_policy, chat_template=deaf)
    import gymnasium as gym

    schemas = gym.make("MATCoding-v0", action_format="tool_calls").unwrapped.tool_schemas
    with pytest.raises(TemplateError, match="ignores tools="):
        policy.tool_calling(schemas)
    assert tiny_qwen_policy.tool_calling(schemas).stop_strings == ("</tool_call>",)


class EchoTool(Tool):
    """A user's tool with its own tag, ``<echo>``."""

    name = "echo"
    description = "Echo the text back."
    usage = "<echo> text </echo>"
    parameters = {
        "type": "object",
        "properties": {"text": {"type": "string"}},
        "required": ["text"],
    }

    def run(self, call, env) -> ToolOutcome:
        return ToolOutcome(f"echo: {call.argument}")


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_tag_mode_stops_come_from_the_env_tools_user_tools_included(policy, mode):
    envs = make_envs("MATCoding-v0", 1, mode, extra_tools=[EchoTool()])
    try:
        actions = EnvActions.of(policy, envs, RolloutConfig())
        assert actions.action_format == "tags" and actions.tools is None
        assert actions.stop_strings == ("</problem>", "</code>", "</answer>", "</echo>")
        assert EnvActions.of(policy, envs, RolloutConfig(stop_strings=("!",))).stop_strings == (
            "!",
        )
    finally:
        envs.close()
    # An env that names no tools gets the paper's tags.
    toy = make_envs("ToyText-v0", 1)
    try:
        from agents.policy import ACTION_STOP_STRINGS

        assert EnvActions.of(policy, toy, RolloutConfig()).stop_strings == ACTION_STOP_STRINGS
    finally:
        toy.close()


def test_a_turn_is_cut_at_a_user_tools_closing_tag(policy):
    turn = "<think> say it </think>\n<echo> hi </echo>"
    scripted = Scripted(
        policy, [(turn, "stop"), ("<think> done </think>\n<answer> x </answer>", "stop")]
    )
    replaced = dataclasses.replace(policy)
    replaced.generate = scripted
    [t] = run(replaced, max_turns=2, extra_tools=[EchoTool()])
    assert "</echo>" in scripted.stops[0]
    assert t.messages[3]["content"][-1]["text"] == "echo: hi"
    # and the generation cut: ids running past the closing tag end right after it
    tok = policy.tokenizer
    ids = tok(turn + " and more text", add_special_tokens=False)["input_ids"]
    end, reason = policy._cut(ids, scripted.stops[0], window=16)
    assert reason == "stop" and tok.decode(ids[:end]).endswith("</echo>")
    ids = tok(
        'x <tool_call>\n{"name": "a", "arguments": {}}\n</tool_call> more', add_special_tokens=False
    )["input_ids"]
    end, reason = policy._cut(ids, ("</tool_call>",), window=16)
    assert reason == "stop" and tok.decode(ids[:end]).endswith("</tool_call>")
    if "</tool_call>" in tok.get_added_vocab():  # Qwen's one-token close can end a turn
        assert tok.convert_tokens_to_ids("</tool_call>") in policy._stop_finals(("</tool_call>",))


def test_expert_episodes_of_the_warm_start_use_native_calls(tiny_qwen_policy):
    import gymnasium as gym

    from agents.training.warm_start import expert_episode

    env = gym.make("MATCoding-v0", action_format="tool_calls")
    try:
        t = expert_episode(tiny_qwen_policy, env, seed=0, config=RolloutConfig(max_new_tokens=512))
    finally:
        env.close()
    tok = tiny_qwen_policy.tokenizer
    assert "<tools>" in tok.decode(t.input_ids[: t.turn_spans[0][0]])
    for (start, end), action in zip(t.turn_spans, t.actions, strict=True):
        assert action.rstrip().endswith("</tool_call>")
        assert tok.decode(t.input_ids[start:end]) == action and all(t.assistant_mask[start:end])
    assert all(c["format"] == 1.0 for c in t.reward_components) and t.terminated
    assert [m["tool_calls"][0]["function"]["name"] for m in t.messages if m.get("tool_calls")][
        -1
    ] == "answer"
