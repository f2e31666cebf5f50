"""Observation and action views of a conversation env.

- :class:`DeltaObservation`: only what is new since the last action, for trainers that keep
  their own history (token-in/token-out rollouts).
- :class:`DiscreteActions`: a menu of fixed turns behind ``Discrete(n)``, so a classic agent
  (stable-baselines3, cleanrl) can act in a text env.
- :class:`ImageObservation`: the newest image resized to a fixed ``Box``, plus the turn
  index, so such an agent can observe it.
- :class:`SingleTurn`: a one-turn episode, ended ``terminated`` (the task is one decision),
  not ``truncated`` (a turn cap cut short), so value-based learners do not bootstrap.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import gymnasium as gym
import numpy as np
from gymnasium import spaces

from arft_envs.spaces import Conversation


class DeltaObservation(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """Observations hold only the messages (and images) added since the previous one.

    After ``reset`` that is the opening messages; after a ``step`` it is the assistant turn
    just taken and the tool's reply. Image parts are re-indexed into the delta's own
    ``images``; a message's other fields (``tool_calls`` and ``name`` in an env made with
    ``action_format="tool_calls"``) pass through. Concatenating the deltas rebuilds the full
    conversation.
    """

    def __init__(self, env: gym.Env):
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.ObservationWrapper.__init__(self, env)
        self._seen_messages = 0
        self._seen_images = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        self._seen_messages = self._seen_images = 0
        return super().reset(seed=seed, options=options)

    def observation(self, observation: dict) -> dict:
        messages = observation["messages"][self._seen_messages :]
        first_image = self._seen_images
        images = observation["images"][first_image:]
        remapped = tuple(
            {
                **m,
                "content": tuple(
                    {"type": "image", "index": p["index"] - first_image}
                    if p["type"] == "image"
                    else p
                    for p in m["content"]
                ),
            }
            for m in messages
        )
        self._seen_messages = len(observation["messages"])
        self._seen_images = len(observation["images"])
        return {"messages": remapped, "images": images}

    @property
    def observation_space(self) -> Conversation:
        return self.env.observation_space


class DiscreteActions(gym.ActionWrapper, gym.utils.RecordConstructorArgs):
    """``Discrete(len(choices))`` actions, each one a fixed assistant turn: tagged text, or
    in an env made with ``action_format="tool_calls"`` Hermes ``<tool_call>`` text or an
    assistant message with ``tool_calls`` (whatever that env's ``step`` takes)."""

    def __init__(self, env: gym.Env, choices: Sequence[str | dict]):
        gym.utils.RecordConstructorArgs.__init__(self, choices=list(choices))
        gym.ActionWrapper.__init__(self, env)
        if not choices:
            raise ValueError("DiscreteActions needs at least one choice")
        self.choices = list(choices)
        self.action_space = spaces.Discrete(len(self.choices))

    def action(self, action: int) -> str | dict:
        index = int(action)
        if not 0 <= index < len(self.choices):
            raise ValueError(f"action {index} is outside Discrete({len(self.choices)})")
        return self.choices[index]


class ImageObservation(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """``{"image": Box(size×size×3 uint8), "turn": Discrete(max_turns + 1)}``.

    The image is the newest one in the conversation (after a code turn, the repaired image),
    resized with area interpolation. Text is dropped, so use this only with envs whose
    question is visual or fixed.
    """

    def __init__(self, env: gym.Env, size: int = 64):
        gym.utils.RecordConstructorArgs.__init__(self, size=size)
        gym.ObservationWrapper.__init__(self, env)
        self.size = int(size)
        max_turns = getattr(env.unwrapped, "max_turns", 64)
        self.observation_space = spaces.Dict(
            {
                "image": spaces.Box(0, 255, (self.size, self.size, 3), np.uint8),
                "turn": spaces.Discrete(max_turns + 1),
            }
        )

    def observation(self, observation: dict) -> dict:
        images = observation["images"]
        if images:
            image = cv2.resize(
                np.ascontiguousarray(images[-1]),
                (self.size, self.size),
                interpolation=cv2.INTER_AREA,
            )
        else:
            image = np.zeros((self.size, self.size, 3), np.uint8)
        turns = sum(1 for m in observation["messages"] if m["role"] == "assistant")
        return {"image": image, "turn": int(turns)}


class SingleTurn(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Every episode is exactly one turn, and it ends ``terminated=True, truncated=False``.

    An arft env made with ``max_turns=1`` reports the end of a tool turn (a diagnosis, a code
    call) as ``truncated``: the turn cap stopped an episode that could have gone on. For a
    one-decision task (a bandit, the discrete diagnosis view) that is wrong: there is no next
    state, so PPO and Gymnasium's ``check_env`` must see ``terminated``. This wrapper says so.
    Make the inner env with ``max_turns=1`` so its end-of-episode info (answer, F1, return)
    is present; with more turns the inner episode is simply abandoned at the next reset.
    """

    def __init__(self, env: gym.Env):
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.Wrapper.__init__(self, env)

    def step(self, action: Any):
        observation, reward, _terminated, _truncated, info = self.env.step(action)
        return observation, reward, True, False, info
