"""Gymnasium spaces for text-acting agents.

- :class:`Utf8Text` — a string action of any Unicode, bounded in length. Gymnasium's own
  ``Text`` space only admits a fixed character set, which would reject most model outputs.
- :class:`Image` — one ``uint8`` H×W×3 array with bounded sides.
- :class:`Conversation` — the observation: ``{"messages": tuple[Message, ...],
  "images": tuple[np.ndarray, ...]}``, where image parts point into ``images`` by index.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from gymnasium.spaces import Space

ROLES = ("system", "user", "assistant", "tool")

_SAMPLE_ALPHABET = (
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 <>/{}'\n_.,:;()[]=+-*"
    "éüß中文字符🙂"
)


class Utf8Text(Space[str]):
    """Any Python ``str`` of at most ``max_length`` characters (any code point, emoji included)."""

    def __init__(self, max_length: int = 16384, min_length: int = 0, seed: int | None = None):
        if not 0 <= min_length <= max_length:
            raise ValueError(f"need 0 <= min_length <= max_length, got {min_length}, {max_length}")
        self.max_length = int(max_length)
        self.min_length = int(min_length)
        super().__init__(dtype=str, seed=seed)

    @property
    def is_np_flattenable(self) -> bool:
        return False

    def sample(self, mask: Any = None, probability: Any = None) -> str:
        """A random string; tags from the action grammar appear often so samples exercise it."""
        rng = self.np_random
        upper = min(self.max_length, self.min_length + 64)
        n = int(rng.integers(self.min_length, upper + 1))
        pieces: list[str] = []
        length = 0
        while length < n:
            if rng.random() < 0.15:
                piece = str(rng.choice(["<think>", "</think>", "<answer>", "</answer>", "<code>"]))
            else:
                piece = _SAMPLE_ALPHABET[int(rng.integers(len(_SAMPLE_ALPHABET)))]
            pieces.append(piece)
            length += len(piece)
        return "".join(pieces)[:n].ljust(self.min_length, "x")

    def contains(self, x: Any) -> bool:
        return isinstance(x, str) and self.min_length <= len(x) <= self.max_length

    def __repr__(self) -> str:
        return f"Utf8Text(max_length={self.max_length})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Utf8Text)
            and other.max_length == self.max_length
            and other.min_length == self.min_length
        )


class Image(Space[np.ndarray]):
    """A ``uint8`` H×W×3 RGB array whose sides lie in ``[1, max_side]``."""

    def __init__(self, max_side: int = 4096, seed: int | None = None):
        self.max_side = int(max_side)
        super().__init__(dtype=np.uint8, seed=seed)

    @property
    def is_np_flattenable(self) -> bool:
        return False

    def sample(self, mask: Any = None, probability: Any = None) -> np.ndarray:
        h, w = (int(v) for v in self.np_random.integers(1, min(64, self.max_side) + 1, size=2))
        return self.np_random.integers(0, 256, size=(h, w, 3), dtype=np.uint8)

    def contains(self, x: Any) -> bool:
        return (
            isinstance(x, np.ndarray)
            and x.dtype == np.uint8
            and x.ndim == 3
            and x.shape[2] == 3
            and 1 <= x.shape[0] <= self.max_side
            and 1 <= x.shape[1] <= self.max_side
        )

    def __repr__(self) -> str:
        return f"Image(max_side={self.max_side})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Image) and other.max_side == self.max_side


def text_part(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def image_part(index: int) -> dict[str, Any]:
    return {"type": "image", "index": index}


def message(role: str, *parts: dict[str, Any]) -> dict[str, Any]:
    return {"role": role, "content": tuple(parts)}


class Conversation(Space[dict]):
    """The chat so far: ``{"messages": (message, ...), "images": (uint8 array, ...)}``.

    A message is ``{"role": one of ROLES, "content": (part, ...)}`` and a part is
    ``{"type": "text", "text": str}`` or ``{"type": "image", "index": int}`` pointing into
    ``images``.
    """

    def __init__(
        self,
        max_messages: int = 64,
        max_images: int = 32,
        max_text_length: int = 1 << 20,
        max_image_side: int = 4096,
        seed: int | None = None,
    ):
        self.max_messages = int(max_messages)
        self.max_images = int(max_images)
        self.text = Utf8Text(max_text_length)
        self.image = Image(max_image_side)
        super().__init__(dtype=None, seed=seed)

    @property
    def is_np_flattenable(self) -> bool:
        return False

    def seed(self, seed: int | None = None) -> int | list[int]:
        seeds = super().seed(seed)
        self.text.seed(int(self.np_random.integers(2**31)))
        self.image.seed(int(self.np_random.integers(2**31)))
        return seeds

    def sample(self, mask: Any = None, probability: Any = None) -> dict:
        images = tuple(self.image.sample() for _ in range(int(self.np_random.integers(0, 3))))
        messages = [message("system", text_part(self.text.sample()))]
        user_parts = [image_part(i) for i in range(len(images))] + [text_part(self.text.sample())]
        messages.append(message("user", *user_parts))
        return {"messages": tuple(messages), "images": images}

    def contains(self, x: Any) -> bool:
        if not isinstance(x, dict) or set(x) != {"messages", "images"}:
            return False
        messages, images = x["messages"], x["images"]
        if not isinstance(messages, tuple) or not isinstance(images, tuple):
            return False
        if len(messages) > self.max_messages or len(images) > self.max_images:
            return False
        if not all(self.image.contains(im) for im in images):
            return False
        return all(_valid_message(m, len(images), self.text) for m in messages)

    def __repr__(self) -> str:
        return f"Conversation(max_messages={self.max_messages}, max_images={self.max_images})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Conversation)
            and other.max_messages == self.max_messages
            and other.max_images == self.max_images
            and other.text == self.text
            and other.image == self.image
        )


def _valid_message(m: Any, n_images: int, text: Utf8Text) -> bool:
    if not isinstance(m, dict) or m.get("role") not in ROLES or set(m) != {"role", "content"}:
        return False
    content = m["content"]
    if not isinstance(content, tuple):
        return False
    for part in content:
        if not isinstance(part, dict):
            return False
        kind = part.get("type")
        if kind == "text":
            if set(part) != {"type", "text"} or not text.contains(part["text"]):
                return False
        elif kind == "image":
            index = part.get("index")
            if set(part) != {"type", "index"} or not isinstance(index, int):
                return False
            if not 0 <= index < n_images:
                return False
        else:
            return False
    return True


def conversation_text(messages: Sequence[dict]) -> str:
    """The concatenated text of ``messages`` (images omitted) — handy for logs and tests."""
    return "\n".join(p["text"] for m in messages for p in m["content"] if p["type"] == "text")
