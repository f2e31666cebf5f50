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


class _Composite(Space):
    """A space made of sub-spaces (the attributes named in ``_parts``, which ``__init__`` sets
    before ``super().__init__``): not a numpy array, and seeded as a whole, each part from the
    space's own generator in turn, so that one seed fixes every sample."""

    _parts: tuple[str, ...] = ()

    @property
    def is_np_flattenable(self) -> bool:
        return False

    def seed(self, seed: int | None = None) -> int | list[int]:
        seeds = super().seed(seed)
        for name in self._parts:
            getattr(self, name).seed(int(self.np_random.integers(2**31)))
        return seeds


class AssistantTurn(_Composite):
    """A ``tool_calls`` action (:mod:`arft_envs.tool_calls`): either text of at most
    ``max_length`` characters (a Qwen/Hermes turn with ``<tool_call>`` blocks) or an assistant
    message ``{"role": "assistant", "content": str, "tool_calls": [{"type": "function",
    "function": {"name": str, "arguments": dict | str}}, ...]}``."""

    _parts = ("text",)

    def __init__(self, max_length: int = 16384, seed: int | None = None):
        self.max_length = int(max_length)
        self.text = Utf8Text(max_length)
        super().__init__(dtype=None, seed=seed)

    def sample(self, mask: Any = None, probability: Any = None) -> dict | str:
        """A random turn: a message with a random call, or raw text, half the time each."""
        rng = self.np_random
        name = str(rng.choice(["answer", "search", "code", "problem", "zoom"]))
        arguments = {str(rng.choice(["answer", "query", "code", "x"])): self.text.sample()[:32]}
        if rng.random() < 0.5:
            call = {"type": "function", "function": {"name": name, "arguments": arguments}}
            return {"role": "assistant", "content": self.text.sample()[:64], "tool_calls": [call]}
        payload = _json({"name": name, "arguments": arguments})
        return f"<think>{self.text.sample()[:32]}</think>\n<tool_call>{payload}</tool_call>"[
            : self.max_length
        ]

    def contains(self, x: Any) -> bool:
        if isinstance(x, str):
            return len(x) <= self.max_length
        if not isinstance(x, dict) or x.get("role") != "assistant":
            return False
        content = x.get("content", "")
        calls = x.get("tool_calls", [])
        if not (content is None or isinstance(content, str)) or not isinstance(calls, list):
            return False
        for call in calls:
            function = call.get("function") if isinstance(call, dict) else None
            if not isinstance(function, dict) or not isinstance(function.get("name"), str):
                return False
            if not isinstance(function.get("arguments", {}), (dict, str)):
                return False
        return True

    def __repr__(self) -> str:
        return f"AssistantTurn(max_length={self.max_length})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AssistantTurn) and other.max_length == self.max_length


def _json(value: Any) -> str:
    import json

    return json.dumps(value, ensure_ascii=False)


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


class Conversation(_Composite):
    """The chat so far: ``{"messages": (message, ...), "images": (uint8 array, ...)}``.

    A message is ``{"role": one of ROLES, "content": (part, ...)}`` and a part is
    ``{"type": "text", "text": str}`` or ``{"type": "image", "index": int}`` pointing into
    ``images``. With ``action_format="tool_calls"`` an assistant message may also hold
    ``"tool_calls"``: a tuple of ``{"type": "function", "function": {"name": str,
    "arguments": dict}}`` (the transformers chat convention, so a chat template renders it),
    and a tool message ``"name"``: the function that answered.
    """

    _parts = ("text", "image")

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


_EXTRA_KEYS = {"assistant": {"tool_calls"}, "tool": {"name"}}


def _valid_message(m: Any, n_images: int, text: Utf8Text) -> bool:
    if not isinstance(m, dict) or m.get("role") not in ROLES:
        return False
    extra = set(m) - {"role", "content"}
    if "content" not in m or not extra <= _EXTRA_KEYS.get(m["role"], set()):
        return False
    if "name" in m and not isinstance(m["name"], str):
        return False
    if "tool_calls" in m and not _valid_calls(m["tool_calls"]):
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


def _valid_calls(calls: Any) -> bool:
    if not isinstance(calls, tuple):
        return False
    for call in calls:
        if not isinstance(call, dict) or call.get("type") != "function":
            return False
        function = call.get("function")
        if not isinstance(function, dict) or set(function) != {"name", "arguments"}:
            return False
        if not isinstance(function["name"], str) or not isinstance(function["arguments"], dict):
            return False
    return True


def conversation_text(messages: Sequence[dict]) -> str:
    """The concatenated text of ``messages`` (images omitted) — handy for logs and tests."""
    return "\n".join(p["text"] for m in messages for p in m["content"] if p["type"] == "text")


def fit_image(image: Any, max_side: int) -> tuple[np.ndarray | None, str]:
    """``image`` as an :class:`Image` of sides at most ``max_side``, and a note saying what was
    changed ("" when nothing was); ``(None, why)`` when it cannot be an image at all.

    Whatever a tool hands back (a grayscale or RGBA array, floats, a side beyond the space), the
    observation must stay in its space: gray becomes RGB, alpha is dropped, other dtypes are
    clipped to 0-255, and a side over ``max_side`` is scaled down keeping the aspect ratio
    (area interpolation), so the agent still sees the whole picture.
    """
    try:
        array = np.asarray(image)
    except Exception as err:  # an object numpy cannot read
        return None, f"not an array ({type(err).__name__})"
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        return None, f"shape {array.shape} is not H×W, H×W×3 or H×W×4"
    if array.shape[0] < 1 or array.shape[1] < 1:
        return None, f"shape {array.shape} has an empty side"
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    elif array.dtype != np.uint8:
        if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
            return None, f"dtype {array.dtype} is not an integer or float type"
        array = np.clip(np.nan_to_num(array), 0, 255).astype(np.uint8)
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    elif array.shape[2] == 4:
        array = array[:, :, :3]
    notes = []
    h, w = array.shape[:2]
    if max(h, w) > max_side:
        import cv2

        scale = max_side / max(h, w)
        size = (max(1, min(max_side, round(w * scale))), max(1, min(max_side, round(h * scale))))
        array = cv2.resize(np.ascontiguousarray(array), size, interpolation=cv2.INTER_AREA)
        notes.append(
            f"the image was {w}x{h}, over the {max_side}-pixel limit of a side, so it was "
            f"scaled down to {size[0]}x{size[1]} (same aspect ratio)"
        )
    return np.ascontiguousarray(array), "; ".join(notes)


# ---------------------------------------------------------------------- vector-env shared memory
#
# Gymnasium's AsyncVectorEnv (``gym.make_vec(..., vectorization_mode="async")``) defaults to
# ``shared_memory=True``: the workers write each observation into a buffer made once by
# ``create_shared_memory`` and the main process reads it through the view that
# ``read_from_shared_memory`` returned at start-up. A conversation has no fixed size, so no
# fixed array can hold it. Instead each env gets one slot file in a private directory on
# tmpfs (``/dev/shm``, POSIX shared memory; the system temp dir where there is none): the
# worker replaces its slot with the pickled observation before it answers through its pipe,
# and the main process's view reads the slots when indexed or copied. The same spaces keep
# working with ``SyncVectorEnv``, which never calls these functions.


class SharedSlots:
    """One file per sub-env in a private directory; removed when the creator drops it."""

    def __init__(self, n: int):
        import os
        import tempfile
        import weakref

        root = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
        self.path = tempfile.mkdtemp(prefix="arft-obs-", dir=root)
        self.n = int(n)
        weakref.finalize(self, _remove_slots, self.path, os.getpid())

    def __getstate__(self) -> dict:
        return {"path": self.path, "n": self.n}

    def __setstate__(self, state: dict) -> None:  # a worker's copy: it never deletes the dir
        self.path, self.n = state["path"], state["n"]

    def write(self, index: int, value: Any) -> None:
        import os
        import pickle

        target = os.path.join(self.path, str(int(index)))
        temporary = f"{target}.{os.getpid()}.tmp"
        with open(temporary, "wb") as f:
            pickle.dump(value, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(temporary, target)

    def read(self, index: int) -> Any:
        import os
        import pickle

        if not 0 <= index < self.n:
            raise IndexError(f"sub-env index {index} is outside 0..{self.n - 1}")
        try:
            with open(os.path.join(self.path, str(index)), "rb") as f:
                return pickle.load(f)
        except FileNotFoundError:
            raise RuntimeError(
                f"sub-env {index} has written no observation yet; call reset() on the vector "
                "env first"
            ) from None


class SharedObservations(Sequence):
    """The live batch a vector env reads: item ``i`` is sub-env ``i``'s latest observation.

    ``copy.deepcopy`` (what AsyncVectorEnv does with ``copy=True``, its default) returns a
    plain tuple, the same type SyncVectorEnv returns for these spaces.
    """

    def __init__(self, slots: SharedSlots):
        self.slots = slots

    def __len__(self) -> int:
        return self.slots.n

    def __getitem__(self, index):  # noqa: ANN001 - int or slice, as for a tuple
        if isinstance(index, slice):
            return tuple(self.slots.read(i) for i in range(self.slots.n)[index])
        index = int(index)
        return self.slots.read(index + self.slots.n if index < 0 else index)

    def __deepcopy__(self, memo: dict) -> tuple:
        return tuple(self)

    def __repr__(self) -> str:
        return f"SharedObservations(n={self.slots.n})"


def _remove_slots(path: str, owner_pid: int) -> None:
    import os
    import shutil

    if os.getpid() == owner_pid:  # a forked worker collecting its copy must not delete it
        shutil.rmtree(path, ignore_errors=True)


def _register_shared_memory() -> None:
    from gymnasium.vector.utils import shared_memory as gsm

    for space_cls in (Utf8Text, AssistantTurn, Image, Conversation):
        gsm.create_shared_memory.register(space_cls, lambda space, n=1, ctx=None: SharedSlots(n))
        gsm.read_from_shared_memory.register(
            space_cls, lambda space, shared_memory, n=1: SharedObservations(shared_memory)
        )
        gsm.write_to_shared_memory.register(
            space_cls,
            lambda space, index, value, shared_memory: shared_memory.write(index, value),
        )


_register_shared_memory()
