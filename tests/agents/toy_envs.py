"""Toy envs written the way a third party would: plain ``gym.Env`` subclasses that follow the
arft observation contract, registered under their own ids, with no arft_envs base class.

- ``ToyImageTool-v0``: the user shows an image and asks for a colour; every tool reply (to
  ``<code>`` or to a malformed turn) carries a new image, its size drawn from the env's RNG;
  ``<answer>`` ends the episode.
- ``ToyText-v0``: text only; ``<search>`` returns a text snippet, ``<answer>`` ends.
"""

from __future__ import annotations

import re

import gymnasium as gym
import numpy as np
from gymnasium.envs.registration import register, registry

from arft_envs.spaces import Conversation, Utf8Text

_TAG = re.compile(r"<(code|search|answer)>(.*?)</\1>", re.DOTALL)


def _text(text):
    return {"type": "text", "text": text}


class _ToyBase(gym.Env):
    """Shared turn loop of the toy envs."""

    metadata = {"render_modes": []}
    tool = "code"

    def __init__(self, max_turns: int = 4, **kwargs):
        self.max_turns = max_turns
        self.action_space = Utf8Text(4096)
        self.observation_space = Conversation(
            max_messages=3 + 2 * max_turns, max_images=2 + max_turns
        )
        self._messages: list = []
        self._images: list = []
        self._turn = 0
        self.gold = ""

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        options = options or {}
        task = (
            int(options["task_id"]) if "task_id" in options else int(self.np_random.integers(1000))
        )
        self.gold = ["red", "green", "blue"][task % 3]
        self._task = task
        self._images = []
        self._messages = [
            {"role": "system", "content": (_text(f"Use <{self.tool}> or <answer>."),)}
        ]
        self._messages.append(self._question())
        self._turn = 0
        return self._obs(), {"task_id": str(task), "split": "simple" if task % 2 else "hard"}

    def _question(self):
        return {"role": "user", "content": (_text(f"Task {self._task}: which colour?"),)}

    def _tool_reply(self, body: str):
        return {"role": "tool", "content": (_text(f"ran: {body.strip()[:40]}"),)}

    def step(self, action):
        self._turn += 1
        self._messages.append({"role": "assistant", "content": (_text(action),)})
        match = _TAG.search(action)
        terminated = False
        components = {"format": 0.0}
        info = {}
        if match is None:
            self._messages.append(self._tool_reply("Format error."))
        elif match[1] == "answer":
            answer = match[2].strip()
            em = float(answer == self.gold)
            components = {"format": 1.0, "answer": em}
            terminated = True
            info.update(answer=answer, golds=[self.gold], f1=em, em=em)
        else:
            components = {"format": 1.0, "tool": 0.5}
            self._messages.append(self._tool_reply(match[2]))
        truncated = not terminated and self._turn >= self.max_turns
        if truncated:
            info.update(answer=None, golds=[self.gold], f1=0.0, em=0.0)
        info.update(turn=self._turn, reward_components=components)
        return self._obs(), float(sum(components.values())), terminated, truncated, info

    def _obs(self):
        return {"messages": tuple(self._messages), "images": tuple(self._images)}


class ToyImageToolEnv(_ToyBase):
    """A tool that returns a new image every turn."""

    tool = "code"

    def _new_image(self):
        h, w = (int(v) for v in self.np_random.integers(40, 300, size=2))
        image = self.np_random.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
        image.setflags(write=False)
        self._images.append(image)
        return {"type": "image", "index": len(self._images) - 1}

    def _question(self):
        return {
            "role": "user",
            "content": (self._new_image(), _text(f"Task {self._task}: which colour?")),
        }

    def _tool_reply(self, body: str):
        return {"role": "tool", "content": (self._new_image(), _text(f"ran: {body.strip()[:40]}"))}


class ToyTextEnv(_ToyBase):
    """Text only: a search tool that answers in words."""

    tool = "search"


def register_toys() -> None:
    for env_id, cls in (("ToyImageTool-v0", ToyImageToolEnv), ("ToyText-v0", ToyTextEnv)):
        if env_id not in registry:
            register(id=env_id, entry_point=cls, disable_env_checker=True)


register_toys()
