"""Chat-template text of an env conversation, its token ids, and the start-up audits of a
template: it can be extended turn by turn (append-only), which token-in/token-out rollouts
need; it writes the images of ``tool`` messages (a template that drops them fails much later,
as "image features and image tokens do not match"); and, for native tool calls, it renders
``tools=`` and assistant ``tool_calls``.

The functions take the :class:`~agents.policy.Policy` whose tokenizer, template and image
token they use; the policy's methods of the same names are the public way in.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from agents.images import DROPPED_TEXT, TEXT_ONLY_TEXT

if TYPE_CHECKING:
    from agents.policy import Policy

# Stands for an assistant turn's text when the rollout renders a conversation around it, so the
# model's own text is never re-read: a string no model samples (invisible separators around a
# name).
SENTINEL = "\u2063ARFT-SENTINEL\u2063"


class TemplateError(ValueError):
    """The chat template cannot be used token-in/token-out; the message says why and what to do."""


def template_messages(
    policy: Policy, messages: Sequence[dict], shown: Sequence[bool] | None = None
) -> list[dict]:
    """Env messages → the message dicts the chat template reads (see
    :meth:`Policy.template_messages`)."""
    out = []
    k = 0
    for m in messages:
        parts = []
        for part in m["content"]:
            if part["type"] == "image":
                visible = policy.is_multimodal and (shown is None or shown[k])
                k += 1
                if visible:
                    parts.append({"type": "image"})
                else:
                    note = DROPPED_TEXT if policy.is_multimodal else TEXT_ONLY_TEXT
                    parts.append({"type": "text", "text": note})
            else:
                parts.append({"type": "text", "text": part["text"]})
        role = policy.role_map.get(m["role"], m["role"])
        if policy.is_multimodal:
            converted = {"role": role, "content": parts}
        else:
            converted = {"role": role, "content": "".join(p["text"] for p in parts)}
        # native tool calls: the calls of an assistant turn, the function name of a reply
        if m.get("tool_calls"):
            converted["tool_calls"] = [_template_call(c) for c in m["tool_calls"]]
        if m.get("name") is not None:
            converted["name"] = m["name"]
        out.append(converted)
    return out


def _template_call(call: dict) -> dict:
    """One recorded call as chat templates read it (lists and dicts, not tuples)."""
    function = dict(call.get("function", call))
    return {"type": "function", "function": function}


def apply_template(
    policy: Policy,
    template_messages: list[dict],
    add_generation_prompt: bool,
    tools: Sequence[dict] | None = None,
) -> str:
    """The policy's chat template applied to already-converted message dicts, as text;
    ``tools`` (function schemas) go to the template's ``tools=``."""
    return policy.tokenizer.apply_chat_template(
        template_messages,
        chat_template=policy.chat_template,
        add_generation_prompt=add_generation_prompt,
        tokenize=False,
        tools=list(tools) if tools else None,
    )


def encode(policy: Policy, text: str, image_tokens: Sequence[int] = ()) -> list[int]:
    """Token ids of chat-template text; the i-th image placeholder becomes ``image_tokens[i]``
    copies of the image token."""
    pieces = text.split(policy.image_token) if policy.is_multimodal else [text]
    if len(pieces) - 1 != len(image_tokens):
        raise ValueError(
            f"text holds {len(pieces) - 1} image placeholders but {len(image_tokens)} "
            "image sizes were given"
        )
    ids: list[int] = []
    for i, piece in enumerate(pieces):
        if piece:
            ids += policy.tokenizer(piece, add_special_tokens=False)["input_ids"]
        if i < len(image_tokens):
            ids += [policy.image_token_id] * int(image_tokens[i])
    return ids


def template_name(policy: Policy) -> str:
    """The template as messages name it: where it came from, else the model's."""
    return policy.template_source or f"the chat template of {policy.name or 'the model'}"


def _probe(policy: Policy, calls: Sequence[dict] = ()) -> list[dict]:
    """A conversation with every role, an image in the user and in the tool message (for a
    VLM), and — with ``calls`` — an assistant turn carrying native tool calls."""
    image = [{"type": "image", "index": 0}] if policy.is_multimodal else []
    assistant = {"role": "assistant", "content": ({"type": "text", "text": SENTINEL},)}
    tool = {"role": "tool", "content": (*image, {"type": "text", "text": "T"})}
    if calls:
        assistant["tool_calls"] = tuple(calls)
        tool["name"] = calls[0]["function"]["name"]
    return [
        {"role": "system", "content": ({"type": "text", "text": "S"},)},
        {"role": "user", "content": (*image, {"type": "text", "text": "Q"})},
        assistant,
        tool,
    ]


def check_template(policy: Policy) -> None:
    """Refuse, at load time, a chat template the rollout cannot extend turn by turn, or one
    that drops the images of tool messages.

    A template that fails on the ``tool`` role is retried with ``tool`` rendered as ``user``
    (the policy's ``role_map`` keeps that choice)."""
    probe = _probe(policy)
    try:
        full = policy.render(probe, add_generation_prompt=True)
    except Exception as err:  # templates raise anything on an unknown role
        policy.role_map = {"tool": "user"}
        try:
            full = policy.render(probe, add_generation_prompt=True)
        except Exception:
            raise TemplateError(
                f"{policy.name}: the chat template fails on an env conversation ({err}). "
                "Pass chat_template= a template that renders system/user/assistant/tool."
            ) from err
    if policy.is_multimodal:
        before = policy.render(probe[:3])
        if before.count(policy.image_token) != 1:
            raise TemplateError(
                f"{policy.name}: the chat template does not emit {policy.image_token!r} for image "
                "parts; pass a multimodal chat_template"
            )
        audit_tool_images(policy, probe)
    before = policy.render(probe[:2], add_generation_prompt=True)
    with_turn = policy.render(probe[:3])
    if not (with_turn.startswith(before + SENTINEL) and full.startswith(with_turn)):
        raise TemplateError(
            f"{policy.name}: the chat template is not append-only (rendering a longer "
            "conversation changes the text of earlier turns), so generated tokens could not "
            "be kept verbatim. Pass chat_template= an append-only template."
        )


def audit_tool_images(
    policy: Policy, probe: Sequence[dict], tools: Sequence[dict] | None = None
) -> None:
    """The start-up audit of tool images: rendering the ``tool`` message of ``probe`` (its
    last message, with one image part) must add exactly one image placeholder."""
    if not policy.is_multimodal:
        return
    without = policy.render(probe[:-1], tools=tools)
    with_tool = policy.render(probe, tools=tools)
    added = with_tool.count(policy.image_token) - without.count(policy.image_token)
    if added != 1:
        raise TemplateError(
            f"{policy.name}: {template_name(policy)} drops the images of tool-role messages "
            f"(a tool message with one image renders {added} {policy.image_token!r} "
            "placeholders, not 1), so the model would never see a tool's image and the forward "
            "pass would fail with 'image features and image tokens do not match'. Fix: pass "
            "chat_template= (a .jinja file) whose tool branch writes the message's content "
            "parts as the user branch does, each image as "
            "'<|vision_start|><|image_pad|><|vision_end|>' for Qwen-VL — "
            "agents/models/tiny_qwen.py:extend_chat_template shows the edit."
        )


def check_tool_calling(policy: Policy, tools: Sequence[dict]) -> None:
    """The start-up audit for ``action_format="tool_calls"``: the template must render
    ``tools=`` (every function name appears), assistant ``tool_calls``, and still write the
    images of tool messages; the turn must stay append-only with tools in the system block."""
    from agents.policy.tool_parsers import tool_names

    names = tool_names(tools)
    head = _probe(policy)[:2]
    plain = policy.render(head, add_generation_prompt=True)
    with_tools = policy.render(head, add_generation_prompt=True, tools=tools)
    missing = [n for n in names if n not in with_tools or with_tools == plain]
    if missing:
        raise TemplateError(
            f"{policy.name}: {template_name(policy)} ignores tools= (the function(s) "
            f"{', '.join(missing)} do not appear in the rendered prompt), so the model would "
            "not know its tools. Use action_format='tags' with this model, or pass "
            "chat_template= a template that renders tools (as Qwen's and Hermes' do)."
        )
    call = {"type": "function", "function": {"name": names[0], "arguments": {"x": "ARFT-CALL"}}}
    probe = _probe(policy, [call])
    with_call = policy.render(probe[:3], tools=tools)
    if "ARFT-CALL" not in with_call:
        raise TemplateError(
            f"{policy.name}: {template_name(policy)} does not render the tool_calls of "
            "assistant messages; pass chat_template= a template that writes them."
        )
    audit_tool_images(policy, probe, tools)
    sentinel = _probe(policy)
    sentinel[3]["name"] = names[0]
    before = policy.render(sentinel[:2], add_generation_prompt=True, tools=tools)
    turn = policy.render(sentinel[:3], tools=tools)
    full = policy.render(sentinel, add_generation_prompt=True, tools=tools)
    if not (turn.startswith(before + SENTINEL) and full.startswith(turn)):
        raise TemplateError(
            f"{policy.name}: with tools=, {template_name(policy)} is not append-only "
            "(rendering a longer conversation changes earlier turns); pass chat_template= an "
            "append-only template."
        )
