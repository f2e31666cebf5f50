"""Chat-template text of an env conversation, its token ids, and the load-time check that a
template can be extended turn by turn (append-only), which token-in/token-out rollouts need.

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
            out.append({"role": role, "content": parts})
        else:
            out.append({"role": role, "content": "".join(p["text"] for p in parts)})
    return out


def apply_template(
    policy: Policy, template_messages: list[dict], add_generation_prompt: bool
) -> str:
    """The policy's chat template applied to already-converted message dicts, as text."""
    return policy.tokenizer.apply_chat_template(
        template_messages,
        chat_template=policy.chat_template,
        add_generation_prompt=add_generation_prompt,
        tokenize=False,
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


def check_template(policy: Policy) -> None:
    """Refuse, at load time, a chat template the rollout cannot extend turn by turn.

    A template that fails on the ``tool`` role is retried with ``tool`` rendered as ``user``
    (the policy's ``role_map`` keeps that choice)."""
    image = [{"type": "image", "index": 0}] if policy.is_multimodal else []
    probe = [
        {"role": "system", "content": ({"type": "text", "text": "S"},)},
        {"role": "user", "content": (*image, {"type": "text", "text": "Q"})},
        {"role": "assistant", "content": ({"type": "text", "text": SENTINEL},)},
        {"role": "tool", "content": (*image, {"type": "text", "text": "T"})},
    ]
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
    if policy.is_multimodal and full.count(policy.image_token) != 2:
        raise TemplateError(
            f"{policy.name}: the chat template does not emit {policy.image_token!r} for image "
            "parts; pass a multimodal chat_template"
        )
    before = policy.render(probe[:2], add_generation_prompt=True)
    with_turn = policy.render(probe[:3])
    if not (with_turn.startswith(before + SENTINEL) and full.startswith(with_turn)):
        raise TemplateError(
            f"{policy.name}: the chat template is not append-only (rendering a longer "
            "conversation changes the text of earlier turns), so generated tokens could not "
            "be kept verbatim. Pass chat_template= an append-only template."
        )
