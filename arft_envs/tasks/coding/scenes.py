"""The synthetic content of MAT-Coding: scenes of text to read, and the degradations drawn for them.

A scene is a picture of text (a large glyph, a number, a word, a phrase, a few lines of a
note, a sign; or, for crop, a grid of labelled boxes) built from seeded draws over the word
lists below; :func:`_draw_degradation` draws the parameters of the paper's degradations for
it. :func:`_scene_of` recovers the scene from a task that :class:`~arft_envs.tasks.coding.
synthetic.SyntheticCoding` made, so its clean image can be rendered again.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import partial
from typing import Any

import numpy as np

from arft_envs.tasks.base import Task
from arft_envs.tasks.coding.degrade import Degradation, degrade
from arft_envs.tasks.render import (
    Panel,
    Scene,
    TextBlock,
    contrasting_colors,
    fit_font_size,
    render_scene,
    shade,
    text_size,
)

CONTENT_KINDS = ("glyph", "number", "word", "phrase", "lines", "sign")


_WORDS = tuple(
    """
    apple river garden window market coffee bakery station ticket bridge forest island
    orange yellow purple silver golden winter summer autumn spring morning evening friday
    monday sunday travel pizza bread cheese butter honey lemon mango cherry tomato potato
    rocket planet comet galaxy ocean desert valley canyon harbor castle tower palace museum
    library school office clinic pharmacy hotel cinema theater gallery studio kitchen
    parking exit entrance open closed welcome please thank push pull danger caution
    silence quiet fresh daily special sale discount free hours north south east west
    central avenue street road lane plaza square park zoo farm dairy fish meat salad
    noodle soup rice tea juice water milk sugar salt pepper basket bottle candle mirror
    pencil paper letter stamp camera guitar piano violin drum trumpet tiger eagle dolphin
    panda rabbit falcon turtle zebra giraffe lion wolf fox owl bear horse sheep goat
    storm cloud thunder rainbow sunset sunrise shadow crystal marble granite velvet cotton
    copper bronze anchor compass lantern harvest meadow orchard village cottage
    """.split()
)
assert len(set(_WORDS)) == len(_WORDS)
# Glyphs whose turned versions are not themselves letters or digits (no H, I, N, O, S, X, Z,
# M/W, 0, 6/9, 8), and no "A" (the metric drops the article "a").
_GLYPHS = "BCDEFGJKLPQRTUVY123457"
_QUESTIONS = {
    "glyph": ("What character is shown in the image?", "Which letter or digit is displayed?"),
    "number": ("What number is shown in the image?", "What is the number written in the image?"),
    "word": ("What word is written in the image?", "Which word appears in the image?"),
    "phrase": ("What phrase is written in the image?", "What does the text in the image say?"),
    "lines": (
        "What text is written in the image? Give the lines in reading order, separated by spaces.",
        "Read all the text in the image, line by line, separated by spaces.",
    ),
    "sign": (
        "What does the sign say? Give its lines in reading order, separated by spaces.",
        "Read the text on the sign, line by line, separated by spaces.",
    ),
}
_CROP_QUESTION = (
    "What text is inside the region [{x1}, {y1}, {x2}, {y2}] of the image? The coordinates "
    "are scaled to 0-1000 by the image width and height."
)


def _pick(rng: np.random.Generator, options: Sequence):
    return options[int(rng.integers(len(options)))]


def _words(rng: np.random.Generator, n: int) -> list[str]:
    return [_WORDS[i] for i in rng.choice(len(_WORDS), size=n, replace=False)]


def _number(rng: np.random.Generator) -> str:
    """A 2–6 digit number with at least one digit that reads differently when turned."""
    while True:
        text = str(int(rng.integers(1, 10))) + "".join(
            str(int(d)) for d in rng.integers(0, 10, size=int(rng.integers(1, 6)))
        )
        if set(text) & set("23457"):
            return text


def _case(rng: np.random.Generator, word: str) -> str:
    return _pick(rng, (word.upper(), word.capitalize(), word))


def _scene_colors(rng: np.random.Generator) -> tuple[tuple, tuple, tuple, tuple]:
    """(gradient top, gradient bottom, panel/ink background, ink)."""
    background, ink = contrasting_colors(rng)
    top = tuple(int(v) for v in rng.integers(60, 200, size=3))
    return top, shade(top, float(rng.uniform(-0.4, 0.4))), background, ink


def _content_scene(rng: np.random.Generator, kind: str, height: int, width: int):
    """A scene of ``kind`` and the text it shows, as the gold answer (one line)."""
    top, bottom, paper, ink = _scene_colors(rng)
    short = min(height, width)
    if kind in ("glyph", "number"):
        text = _pick(rng, _GLYPHS) if kind == "glyph" else _number(rng)
        card_h = int(short * rng.uniform(0.6, 0.85))
        card_w = card_h if kind == "glyph" else int(width * rng.uniform(0.6, 0.9))
        x1 = int(rng.integers(0, width - card_w + 1))
        y1 = int(rng.integers(0, height - card_h + 1))
        bar = max(3, card_h // 20)  # an underline under the text shows which way is up
        text_box = (x1, y1 + card_h // 12, x1 + card_w, y1 + card_h - 3 * bar)
        size = fit_font_size(text, int(card_w * 0.8), int(card_h * 0.62))
        tw = text_size(text, size)[0]
        items = (
            Panel((x1, y1, x1 + card_w, y1 + card_h), paper, shade(ink, 0.3), 2, card_h // 10),
            TextBlock(text, text_box, size, ink),
            Panel(
                (
                    x1 + (card_w - tw) // 2,
                    y1 + card_h - 2 * bar,
                    x1 + (card_w + tw) // 2,
                    y1 + card_h - bar,
                ),
                ink,
            ),
        )
        return Scene(height, width, top, bottom, items), text
    if kind in ("word", "phrase"):
        words = [
            _case(rng, w) for w in _words(rng, 1 if kind == "word" else int(rng.integers(2, 4)))
        ]
        text = " ".join(words)
        size = fit_font_size(text, int(width * 0.85), int(height * 0.4), max_size=int(short * 0.35))
        tw, th = text_size(text, size)
        pad = size // 3
        half_w, half_h = tw // 2 + pad, th // 2 + pad
        slack = max(0, width // 2 - half_w - 2)
        cx = width // 2 + int(rng.integers(-min(slack, width // 12), min(slack, width // 12) + 1))
        cy = height // 2
        box = (cx - half_w, cy - half_h, cx + half_w, cy + half_h)
        items = (Panel(box, paper, None, 0, pad), TextBlock(text, box, size, ink))
        return Scene(height, width, top, bottom, items), text
    # Several lines: a note (left-aligned, any case) or a sign (centred, upper case, framed).
    sign = kind == "sign"
    n_lines = int(rng.integers(2, 4))
    per_line = [int(rng.integers(1, 3)) for _ in range(n_lines)]
    words = _words(rng, sum(per_line))
    lines, start = [], 0
    for count in per_line:
        chunk = words[start : start + count]
        start += count
        lines.append(" ".join(w.upper() if sign else _case(rng, w) for w in chunk))
    text = "\n".join(lines)
    margin = int(short * rng.uniform(0.06, 0.14))
    panel = (margin, margin, width - margin, height - margin)
    inner = int(short * 0.08)
    align = "center" if sign else "left"
    size = fit_font_size(
        text, panel[2] - panel[0] - 2 * inner, panel[3] - panel[1] - 2 * inner, int(short * 0.2)
    )
    text_box = (panel[0] + inner, panel[1] + inner, panel[2] - inner, panel[3] - inner)
    frame = (shade(ink, 0.15), max(3, short // 60)) if sign else (None, 0)
    items = (
        Panel(panel, paper, frame[0], frame[1], short // 20 if sign else 0),
        TextBlock(text, text_box, size, ink, align),
    )
    return Scene(height, width, top, bottom, items), " ".join(lines)


def _crop_scene(rng: np.random.Generator, kind: str, height: int, width: int):
    """Labelled boxes on a grid; returns the scene, the target text and its 0–1000 bbox."""
    top, bottom, _, _ = _scene_colors(rng)
    rows, cols = int(rng.integers(2, 4)), int(rng.integers(2, 4))
    cells = [(r, c) for r in range(rows) for c in range(cols)]
    keep = sorted(rng.choice(len(cells), size=len(cells) - int(rng.integers(0, 2)), replace=False))
    texts = _box_texts(rng, kind, len(keep))
    cell_w, cell_h = width / cols, height / rows
    gap = max(8, int(min(cell_w, cell_h) * 0.08))
    items, boxes = [], []
    for text, index in zip(texts, keep, strict=True):
        r, c = cells[index]
        bw = int((cell_w - 2 * gap) * rng.uniform(0.6, 1.0))
        bh = int((cell_h - 2 * gap) * rng.uniform(0.35, 0.7))
        x1 = int(c * cell_w + gap + rng.integers(0, int(cell_w - 2 * gap - bw) + 1))
        y1 = int(r * cell_h + gap + rng.integers(0, int(cell_h - 2 * gap - bh) + 1))
        box = (x1, y1, x1 + bw, y1 + bh)
        paper, ink = contrasting_colors(rng)
        cap = max(10, int(min(height, width) * 0.055))
        size = fit_font_size(text, int(bw * 0.85), int(bh * 0.7), max_size=cap)
        items += [Panel(box, paper, shade(ink, 0.2), 2, 4), TextBlock(text, box, size, ink)]
        boxes.append(box)
    target = int(rng.integers(len(texts)))
    x1, y1, x2, y2 = boxes[target]
    bbox = (
        math.floor(x1 * 1000 / width),
        math.floor(y1 * 1000 / height),
        math.ceil(x2 * 1000 / width),
        math.ceil(y2 * 1000 / height),
    )
    return Scene(height, width, top, bottom, tuple(items)), texts[target], bbox


def _box_texts(rng: np.random.Generator, kind: str, n: int) -> list[str]:
    if kind == "glyph":
        return [_GLYPHS[i] for i in rng.choice(len(_GLYPHS), size=n, replace=False)]
    if kind == "number" or (kind not in ("word", "phrase") and rng.random() < 0.3):
        texts: list[str] = []
        while len(texts) < n:
            number = _number(rng)
            if number not in texts:
                texts.append(number)
        return texts
    words = _words(rng, 2 * n if kind == "phrase" else n)
    if kind == "phrase":
        return [f"{words[2 * i].capitalize()} {words[2 * i + 1]}" for i in range(n)]
    return [_case(rng, w) for w in words]


def _draw_degradation(
    rng: np.random.Generator, names: tuple[str, ...], text_px: int
) -> Degradation:
    """Degradation parameters; blur scales with the smallest text size ``text_px``, so that it
    smears the strokes of big and small text alike."""
    fields: dict[str, Any] = {"names": names, "noise_seed": int(rng.integers(2**32))}
    if "rotation90" in names:
        fields["rotation"] = _pick(rng, ("cw", "ccw"))
    if "rotation180" in names:
        fields["rotation"] = "180"
    if "dark" in names or "overexposure" in names:
        fields["gain"] = float(_pick(rng, (3.0, 3.5, 4.0, 4.5, 5.0)))
    if "blur" in names:
        fields["sigma"] = float(np.clip(round(text_px * rng.uniform(0.05, 0.08) * 2) / 2, 1.5, 6.0))
    if "noise" in names:
        if rng.random() < 0.7:
            fields["noise"], fields["noise_level"] = "gaussian", float(_pick(rng, (25, 30, 35, 40)))
        else:
            fields["noise"], fields["noise_level"] = (
                "salt_pepper",
                float(_pick(rng, (0.04, 0.06, 0.08))),
            )
    return Degradation(**fields)


def _render_input(scene: Scene, d: Degradation) -> np.ndarray:
    return degrade(render_scene(scene), d)


def _scene_of(task: Task) -> Scene:
    source = task.images[0]
    if not isinstance(source, partial) or not isinstance(source.args[0], Scene):
        raise ValueError(f"task {task.id!r} was not made by SyntheticCoding")
    return source.args[0]
