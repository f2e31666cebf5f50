"""Add a tool to an arft env without editing arft: a ``<zoom>`` crop on MATCoding-v0.

The model writes ``<zoom> x0 y0 x1 y1 </zoom>`` (a box in 0-1000 coordinates of the newest
image, as MAT-Coding's crop boxes are); the tool crops the image and the crop comes back as the
newest image of the conversation. This script defines the tool, plays one scripted episode in
which the model's call reaches it, checks that the crop is in the observation, and exits 0::

    python examples/custom_tool.py
"""

from __future__ import annotations

import re

import gymnasium as gym
import numpy as np

import arft_envs  # noqa: F401  (registers the env ids)
from arft_envs.actions import FormatError
from arft_envs.rewards import format_reward
from arft_envs.tools.base import Tool, ToolOutcome

BOX_RE = re.compile(r"\A\s*(\d{1,4})\s+(\d{1,4})\s+(\d{1,4})\s+(\d{1,4})\s*\Z")


class ZoomTool(Tool):
    """Crop the newest image to a box given in 0-1000 coordinates."""

    name = "zoom"
    description = "Crop the newest image to a box x0 y0 x1 y1, in 0-1000 coordinates."
    usage = "<zoom> x0 y0 x1 y1 </zoom>"
    parameters = {
        "type": "object",
        "properties": {
            axis: {"type": "integer", "minimum": 0, "maximum": 1000}
            for axis in ("x0", "y0", "x1", "y1")
        },
        "required": ["x0", "y0", "x1", "y1"],
    }
    timeout_s = 5.0  # cropping is quick; the env enforces this whole-call deadline

    def __init__(self) -> None:
        self._rewarded = False

    def parse(self, body: str, tag: str) -> str | FormatError:
        """Four integers x0 y0 x1 y1 with x0 < x1 <= 1000 and y0 < y1 <= 1000."""
        match = BOX_RE.match(body)
        if match is None:
            return FormatError("Write the box as four integers: <zoom> x0 y0 x1 y1 </zoom>.")
        x0, y0, x1, y1 = (int(v) for v in match.groups())
        if not (x0 < x1 <= 1000 and y0 < y1 <= 1000):
            return FormatError("The box needs x0 < x1 <= 1000 and y0 < y1 <= 1000.")
        return f"{x0} {y0} {x1} {y1}"

    def reset(self, env) -> None:
        self._rewarded = False

    def run(self, call, env) -> ToolOutcome:
        x0, y0, x1, y1 = (int(v) for v in call.argument.split())
        image = env.images[-1]
        h, w = image.shape[:2]
        top, bottom = y0 * h // 1000, max(y1 * h // 1000, y0 * h // 1000 + 1)
        left, right = x0 * w // 1000, max(x1 * w // 1000, x0 * w // 1000 + 1)
        crop = np.ascontiguousarray(image[top:bottom, left:right])
        text = f"Zoomed to [{x0}, {y0}, {x1}, {y1}]: a {crop.shape[1]}x{crop.shape[0]} crop."
        return ToolOutcome(text, images=(crop,))

    def reward(self, call, outcome, action, env) -> dict[str, float]:
        """A format reward for the first well-formed zoom of an episode, in both modes."""
        if self._rewarded:
            return {"format": 0.0}
        self._rewarded = True
        return {"format": format_reward(action, "zoom", tags=env.action_tags)}


def main() -> int:
    env = gym.make("MATCoding-v0", extra_tools=[ZoomTool()])
    base = env.unwrapped
    obs, info = env.reset(seed=0)
    assert "zoom" in base.action_tags
    assert "<zoom> x0 y0 x1 y1 </zoom>" in obs["messages"][0]["content"][0]["text"]
    assert any(s["function"]["name"] == "zoom" for s in base.tool_schemas)

    before = obs["images"][-1]
    obs, reward, terminated, truncated, info = env.step(
        "<think> The text is small; look closer. </think>\n<zoom> 0 0 500 500 </zoom>"
    )
    reply = obs["messages"][-1]
    assert reply["role"] == "tool" and info["action_kind"] == "zoom"
    assert info["tool_status"] == "ok" and reward == 1.0
    image_parts = [p for p in reply["content"] if p["type"] == "image"]
    assert len(image_parts) == 1, reply
    crop = obs["images"][image_parts[0]["index"]]
    h, w = before.shape[:2]
    assert np.array_equal(crop, before[: 500 * h // 1000, : 500 * w // 1000])
    print(reply["content"][-1]["text"])

    obs, reward, terminated, truncated, info = env.step("<zoom> 9 9 </zoom>")
    assert info["action_kind"] == "format_error" and "four integers" in info["format_error"]

    obs, reward, terminated, truncated, info = env.step(
        "<think> Now I can read it. </think>\n<answer> a guess </answer>"
    )
    assert terminated
    print(f"episode over: f1={info['f1']:.2f}, return={info['episode_return']:.2f}")
    env.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
