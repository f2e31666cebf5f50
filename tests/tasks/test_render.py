"""Text-to-image helpers: fonts, masks, fitting, scenes, and the bitmap-font fallback."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from arft_envs.tasks import render
from arft_envs.tasks.render import (
    Panel,
    Scene,
    TextBlock,
    contrasting_colors,
    draw_text,
    fit_font_size,
    luminance,
    render_scene,
    shade,
    text_mask,
    text_size,
    vertical_gradient,
)


@pytest.fixture(params=["scalable", "bitmap"])
def font_mode(request, monkeypatch):
    """Run a test with Pillow's scalable font and again with the scaled bitmap fallback."""
    if request.param == "bitmap":
        monkeypatch.setattr(render, "scalable_font", lambda size: None)
    elif render.scalable_font(20) is None:
        pytest.skip("this Pillow has no scalable default font")
    return request.param


def test_text_size_grows_with_font_size(font_mode):
    widths = [text_size("Harbor 42", size)[0] for size in (12, 24, 48, 96)]
    heights = [text_size("Harbor 42", size)[1] for size in (12, 24, 48, 96)]
    assert widths == sorted(widths) and widths[-1] > 4 * widths[0]
    assert heights == sorted(heights)
    one, two = text_size("OPEN", 40), text_size("OPEN\nDAILY", 40)
    assert two[1] > 1.8 * one[1]


def test_text_mask_matches_text_size(font_mode):
    for text in ("B", "coffee", "SUNSET BRIDGE\nSPECIAL"):
        mask = text_mask(text, 40)
        assert mask.mode == "L" and mask.size == text_size(text, 40)
        ink = np.asarray(mask)
        assert ink.max() == 255 and (ink > 0).mean() > 0.05


@pytest.mark.parametrize("text", ["7", "market", "fresh bread daily", "NORTH\nEXIT"])
def test_fit_font_size_is_the_largest_that_fits(font_mode, text):
    size = fit_font_size(text, 300, 120, max_size=400)
    width, height = text_size(text, size)
    assert width <= 300 and height <= 120
    bigger = text_size(text, size + 1)
    assert bigger[0] > 300 or bigger[1] > 120
    assert fit_font_size(text, 2, 2, min_size=9) == 9  # never below min_size


def test_draw_text_puts_ink_inside_the_box():
    image = Image.new("RGB", (200, 100), (255, 255, 255))
    ink_box = draw_text(image, "Tea", (50, 20, 150, 80), 30, (0, 0, 0))
    pixels = np.asarray(image)
    dark = np.argwhere(pixels.min(axis=2) < 128)
    (top, left), (bottom, right) = dark.min(axis=0), dark.max(axis=0)
    x1, y1, x2, y2 = ink_box
    assert 50 <= x1 <= left and right < x2 <= 150
    assert 20 <= y1 <= top and bottom < y2 <= 80


def test_render_scene_is_deterministic_and_layered(font_mode):
    scene = Scene(
        120,
        160,
        (200, 200, 200),
        (100, 100, 100),
        (
            Panel((10, 10, 150, 110), (250, 250, 250), (0, 0, 0), 2, 6),
            TextBlock("OPEN", (10, 10, 150, 110), 36, (200, 0, 0)),
        ),
    )
    a, b = render_scene(scene), render_scene(scene)
    assert a.shape == (120, 160, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert tuple(a[0, 0]) == (200, 200, 200)  # background gradient outside the panel
    assert tuple(a[15, 15]) == (250, 250, 250)  # the panel
    red = (a[:, :, 0] > 150) & (a[:, :, 1] < 80)
    assert red[10:110, 10:150].sum() > 100 and red.sum() == red[10:110, 10:150].sum()


def test_vertical_gradient_endpoints():
    image = vertical_gradient(50, 7, (0, 100, 200), (200, 100, 0))
    assert image.shape == (50, 7, 3) and image.dtype == np.uint8
    assert tuple(image[0, 3]) == (0, 100, 200) and tuple(image[-1, 3]) == (200, 100, 0)
    assert image.flags.writeable


def test_colour_helpers():
    rng = np.random.default_rng(0)
    for _ in range(50):
        background, ink = contrasting_colors(rng)
        assert abs(luminance(background) - luminance(ink)) >= 140
    assert shade((100, 100, 100), 0.5) == (178, 178, 178)
    assert shade((100, 100, 100), -0.5) == (50, 50, 50)


def test_synthetic_tasks_render_with_the_bitmap_fallback(monkeypatch):
    from arft_envs.tasks.coding.synthetic import SyntheticCoding

    monkeypatch.setattr(render, "scalable_font", lambda size: None)
    for seed in range(4):
        (image,) = SyntheticCoding().make(seed).load_images()
        assert image.dtype == np.uint8 and image.std() > 5
