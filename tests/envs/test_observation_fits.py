"""The observation always stays in its space, whatever images a tool hands back: the model's
code writing images of random sizes (over the space's 4,096-pixel side, odd shapes,
grayscale, 4 channels) in the real sandbox, and a user's tool returning raw arrays of any
shape and dtype. Too-large images are scaled down keeping their aspect ratio, and the tool
message says so; what cannot be an image is dropped, and the message says so too."""

from __future__ import annotations

import random

import gymnasium as gym
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import arft_envs  # noqa: F401
from arft_envs.spaces import Image, fit_image
from arft_envs.tools.base import Tool, ToolOutcome

MAX_SIDE = 4096


def _code(width: int, height: int, channels: int, ext: str) -> str:
    shape = (height, width) if channels == 1 else (height, width, channels)
    return (
        "<think> write </think>\n<code>\n```python\nimport cv2\nimport numpy as np\n"
        f"img = (np.arange({int(np.prod(shape))}) % 251).astype(np.uint8).reshape({shape})\n"
        f"cv2.imwrite('path_to_output_image.{ext}', img)\n```\n</code>"
    )


def test_images_the_models_code_writes_always_fit_the_space():
    rng = random.Random(7)
    env = gym.make("MATCoding-v0", max_turns=10, timeout_s=20)
    space = env.observation_space
    resized = 0
    for episode in range(3):
        obs, _ = env.reset(seed=episode)
        assert space.contains(obs)
        for _ in range(10):
            # a long thin image keeps the bytes small while a side exceeds the space
            width = rng.choice([1, 3, 640, 4095, 4096, 4097, 4100, rng.randint(4097, 8192)])
            height = rng.choice([1, 2, 7, 31])
            if rng.random() < 0.5:
                width, height = height, width
            channels = rng.choice([1, 3, 4])
            ext = "png" if channels == 4 else "jpg"
            obs, _, terminated, truncated, info = env.step(_code(width, height, channels, ext))
            assert space.contains(obs), (width, height, channels, info["tool_status"])
            text = obs["messages"][-1]["content"][-1]["text"]
            if max(width, height) > MAX_SIDE and info["tool_status"] == "ok" and ext == "jpg":
                resized += 1
                assert f"the image was {width}x{height}, over the 4096-pixel limit" in text
                assert obs["images"][-1].shape[:2] != (height, width)
                assert max(obs["images"][-1].shape[:2]) <= MAX_SIDE
            if terminated or truncated:
                break
    assert resized > 0  # the case of the bug report was exercised


class RawImages(Tool):
    """A user's tool that returns whatever arrays it is given, as they are."""

    name = "raw"
    timeout_s = None

    def __init__(self):
        self.next: list = []

    def run(self, call, env):
        return ToolOutcome("here", tuple(self.next))


ODD = [
    np.zeros((10, 5000), np.uint8),  # grayscale, too wide
    np.full((5000, 3, 4), 200, np.uint8),  # RGBA, too tall
    np.random.default_rng(0).random((20, 30, 3)),  # float in [0, 1)
    np.full((4, 4, 3), 1e9),  # float far out of range
    np.ones((3, 3), bool),
    np.zeros((9, 9, 1), np.int64),
    np.zeros((0, 5, 3), np.uint8),  # an empty side: dropped
    np.zeros((2, 2, 2, 3), np.uint8),  # 4-D: dropped
    np.array(["not", "pixels"]),  # strings: dropped
    np.zeros((6, 6, 3), np.uint8),  # an ordinary image
]


def test_a_users_tool_returning_odd_arrays_keeps_the_observation_in_its_space():
    tool = RawImages()
    env = gym.make("MATCoding-v0", extra_tools=[tool], max_turns=4)
    obs, _ = env.reset(seed=0)
    tool.next = ODD
    obs, _, _, _, info = env.step("<raw> go </raw>")
    assert env.observation_space.contains(obs)
    assert len(obs["images"]) == 1 + 7  # three could not be images
    text = obs["messages"][-1]["content"][-1]["text"]
    assert text.count("an image was dropped") == 3
    assert "scaled down to 4096x8" in text  # 5000x10 keeps its aspect ratio
    tool.next = [np.zeros((8, 8, 3), np.uint8)] * 40  # more than the conversation may hold
    obs, _, _, _, _ = env.step("<raw> more </raw>")
    assert env.observation_space.contains(obs)
    assert "the conversation holds its maximum" in obs["messages"][-1]["content"][-1]["text"]


@settings(max_examples=60, deadline=None)
@given(
    hnp.arrays(
        dtype=st.sampled_from([np.uint8, np.int16, np.float32, np.float64, np.bool_]),
        shape=st.one_of(
            hnp.array_shapes(min_dims=2, max_dims=2, min_side=0, max_side=70),
            st.tuples(st.integers(0, 70), st.integers(0, 70), st.sampled_from([1, 2, 3, 4, 5])),
        ),
    ),
    st.integers(1, 64),
)
def test_fit_image_returns_a_space_image_or_says_why_not(array, max_side):
    fitted, note = fit_image(array, max_side)
    if fitted is None:
        assert note
        return
    assert Image(max_side).contains(fitted), (array.shape, array.dtype, fitted.shape)
    h, w = array.shape[:2]
    if max(h, w) > max_side:
        assert "scaled down" in note
        scale = max_side / max(h, w)  # the long side becomes max_side, the short one follows
        assert max(fitted.shape[:2]) == max_side
        assert abs(fitted.shape[0] - h * scale) <= 1 and abs(fitted.shape[1] - w * scale) <= 1
    else:
        assert fitted.shape[:2] == (h, w)
