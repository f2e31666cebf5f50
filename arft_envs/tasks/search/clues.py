"""Clue images: the picture that names a question's start entity (logo, label, sign, poster, banner).

A :class:`Clue` is what an image shows, and :func:`render_clue` draws it, reproducibly from the
clue's ``style`` seed, as an ``H×W×3`` ``uint8`` array of :data:`IMAGE_SIZE`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IMAGE_SIZE = (384, 512)  # H, W


@dataclass(frozen=True)
class Clue:
    """What an image shows: the start entity's name in a rendered logo/label/sign/poster/banner."""

    kind: str  # logo, label, sign, poster, banner
    name: str
    style: int  # seed of colours and layout


def render_clue(clue: Clue, size: tuple[int, int] = IMAGE_SIZE) -> np.ndarray:
    """The image of a clue: an ``H×W×3`` ``uint8`` picture naming the entity."""
    from arft_envs.tasks.render import (
        Panel,
        Scene,
        TextBlock,
        contrasting_colors,
        fit_font_size,
        render_scene,
        shade,
    )

    height, width = size
    rng = np.random.default_rng(clue.style)
    paper, ink = contrasting_colors(rng)
    top = tuple(int(v) for v in rng.integers(40, 220, size=3))
    bottom = shade(top, float(rng.uniform(-0.5, 0.5)))
    items: list = []
    name = clue.name

    def text(value: str, box, max_size: int = 96) -> TextBlock:
        x1, y1, x2, y2 = box
        size_px = fit_font_size(value, x2 - x1, y2 - y1, max_size=max_size)
        return TextBlock(value, box, size_px, ink)

    if clue.kind == "logo":
        top, bottom = paper, shade(paper, -0.1)
        r = int(min(height, width) * 0.2)
        cx, cy = width // 2, int(height * 0.36)
        accent = tuple(int(v) for v in rng.integers(0, 256, size=3))
        radius = r if rng.random() < 0.5 else r // 3
        items.append(Panel((cx - r, cy - r, cx + r, cy + r), accent, ink, 4, radius))
        initial = TextBlock(name[0], (cx - r, cy - r, cx + r, cy + r), int(r * 1.2), paper)
        items.append(initial)
        items.append(
            text(
                name.upper(), (width // 10, int(height * 0.64), width * 9 // 10, int(height * 0.88))
            )
        )
    elif clue.kind == "label":
        m = int(min(height, width) * 0.12)
        items.append(Panel((m, m, width - m, height - m), paper, ink, 5, 18))
        stripe = tuple(int(v) for v in rng.integers(0, 256, size=3))
        items.append(Panel((m, int(height * 0.62), width - m, int(height * 0.7)), stripe))
        items.append(text(name, (m * 2, int(height * 0.25), width - m * 2, int(height * 0.58))))
    elif clue.kind == "sign":
        sign = ((20, 100, 50), (25, 60, 140), (120, 30, 30))[int(rng.integers(3))]
        items.append(Panel((30, 70, width - 30, height - 70), sign, (255, 255, 255), 8, 20))
        white = (255, 255, 255)
        size_px = fit_font_size("Welcome to", width - 160, int(height * 0.12), max_size=40)
        items.append(
            TextBlock("Welcome to", (80, 95, width - 80, int(height * 0.36)), size_px, white)
        )
        size_px = fit_font_size(name.upper(), width - 120, int(height * 0.3), max_size=96)
        items.append(
            TextBlock(
                name.upper(), (60, int(height * 0.38), width - 60, height - 100), size_px, white
            )
        )
    elif clue.kind == "poster":
        for _ in range(4):
            x, y = int(rng.integers(0, width - 80)), int(rng.integers(0, height - 80))
            s = int(rng.integers(40, 120))
            color = tuple(int(v) for v in rng.integers(0, 256, size=3))
            items.append(
                Panel((x, y, min(x + s, width), min(y + s, height)), color, None, 0, s // 2)
            )
        items.append(
            Panel((40, int(height * 0.28), width - 40, int(height * 0.8)), paper, ink, 3, 12)
        )
        items.append(
            text(name.replace(" ", "\n"), (70, int(height * 0.34), width - 70, int(height * 0.74)))
        )
    else:  # banner
        items.append(Panel((width // 6, 10, width * 5 // 6, height - 10), paper, ink, 6, 0))
        r = int(min(height, width) * 0.1)
        cx, cy = width // 2, int(height * 0.22)
        accent = tuple(int(v) for v in rng.integers(0, 256, size=3))
        items.append(Panel((cx - r, cy - r, cx + r, cy + r), accent, ink, 3, r))
        items.append(
            text(
                name.replace(" ", "\n"),
                (width // 6 + 20, int(height * 0.4), width * 5 // 6 - 20, height - 30),
            )
        )
    return render_scene(Scene(height, width, top, bottom, tuple(items)))
