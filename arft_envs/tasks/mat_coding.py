"""MAT-Coding tasks: the official benchmark, the paper's stepwise rows, and a synthetic generator.

A MAT-Coding item is an image, possibly degraded, and a question about the text in it. The
agent names the degradation (``<problem>{'rotation90', 'dark'}</problem>``), writes OpenCV code
that restores the image (it reads ``path_to_input_image.jpg`` and writes
``path_to_output_image.jpg``), and answers. The degradations are the paper's: ``rotation90``,
``rotation180``, ``dark``, ``overexposure``, ``blur``, ``noise``, ``crop`` (the question names
a region by a bounding box on a 0–1000 scale, and the input image is the undegraded one),
``none``, and a rotation combined with one of dark, overexposure, blur or noise.

Three ways to get tasks, all as :class:`~arft_envs.tasks.base.Task` records:

- :func:`load_mat_coding` reads the official benchmark JSON (``MAT-Coding.json``);
- :func:`load_coding_rows` reads the paper's one-row-per-step training file
  (``rft_agent_code_1_2k.json``) for stepwise replay;
- :class:`SyntheticCoding` renders unlimited tasks from a seed, offline, with the full gold
  trajectory in ``meta["gold_steps"]``. It writes itself out in both file formats, which the
  two loaders read back.

Splits follow the benchmark, whose items carry ``split``: ``simple`` is one degradation (or
none); ``hard`` is a rotation combined with another degradation, and crop (the benchmark files
its crop items as hard).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from arft_envs.rewards import PROBLEM_TYPES
from arft_envs.tasks.base import DatasetError, Task
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

ROTATIONS = ("rotation90", "rotation180")
PHOTOMETRIC = ("dark", "overexposure", "blur", "noise")
SPLITS = ("simple", "hard")
ROW_TYPES = ("pre_problem", "pre_code", "pre_answer")
INPUT_IMAGE = "path_to_input_image.jpg"
OUTPUT_IMAGE = "path_to_output_image.jpg"

# The degradation classes of each benchmark split, as type lists.
SPLIT_CLASSES: dict[str, tuple[tuple[str, ...], ...]] = {
    "simple": (
        ("rotation90",),
        ("rotation180",),
        ("dark",),
        ("overexposure",),
        ("blur",),
        ("noise",),
        ("none",),
    ),
    "hard": tuple((r, x) for r in ROTATIONS for x in PHOTOMETRIC) + (("crop",),),
}
# split="all" draws classes as the paper's training data is made: each single-degradation
# class (crop and none included) twice as often as each rotation+X class (100 vs 50 items).
_ALL_CLASSES = SPLIT_CLASSES["simple"] + SPLIT_CLASSES["hard"]
_ALL_WEIGHTS = np.array([1.0 if len(c) == 2 else 2.0 for c in _ALL_CLASSES])
CONTENT_KINDS = ("glyph", "number", "word", "phrase", "lines", "sign")


def gold_plan(degradations: Sequence[str]) -> list[str]:
    """The gold step kinds of an item: no code step when the image needs no processing."""
    if list(degradations) == ["none"]:
        return ["problem", "answer"]
    return ["problem", "code", "answer"]


def input_image_field(degradations: Sequence[str]) -> str:
    """Which benchmark field holds the model's input image (paper §4.3): the undegraded
    ``ori_image_path`` for crop items, else ``processed_image_path``."""
    return (
        "ori_image_path" if degradations and degradations[0] == "crop" else "processed_image_path"
    )


# ============================================================================ loading files


def _read_json_rows(path: str | Path) -> tuple[Path, list]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DatasetError(path, "file not found") from None
    except IsADirectoryError:
        raise DatasetError(path, "is a directory; pass the path of the JSON file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise DatasetError(path, f"cannot read the file ({err})") from None
    try:
        rows = json.loads(text)
    except json.JSONDecodeError as err:
        raise DatasetError(
            path, f"not valid JSON: {err.msg} at line {err.lineno}, column {err.colno}"
        ) from None
    if not isinstance(rows, list):
        raise DatasetError(path, f"expected a JSON list of rows, got a {type(rows).__name__}")
    return path, rows


class _Row:
    """Typed access to one JSON row; every failure names the file, the row and the field."""

    def __init__(self, path: Path, index: int, row: Any):
        self.path, self.index = path, index
        if not isinstance(row, dict):
            self.fail(f"expected a JSON object, got a {type(row).__name__}")
        self.row = row

    def fail(self, message: str, field: str | None = None):
        raise DatasetError(self.path, message, row=self.index, field=field)

    def _get(self, name: str) -> Any:
        if name not in self.row:
            self.fail(f"missing field (the row has {sorted(self.row)})", name)
        return self.row[name]

    def text(self, name: str, default: str | None = None, allow_empty: bool = False) -> str:
        if default is not None and name not in self.row:
            return default
        value = self._get(name)
        if not isinstance(value, str):
            self.fail(f"expected a string, got {type(value).__name__} {value!r:.60}", name)
        if not allow_empty and not value.strip():
            self.fail("is empty", name)
        return value

    def ident(self, name: str, default: str | None = None) -> str:
        value = self._get(name) if default is None else self.row.get(name, default)
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            self.fail(f"expected an integer or a string, got {type(value).__name__}", name)
        return str(value)

    def strings(self, name: str, allow_numbers: bool = False) -> list[str]:
        value = self._get(name)
        if not isinstance(value, list) or not value:
            self.fail(f"expected a non-empty list, got {value!r:.60}", name)
        scalar = (str, int, float) if allow_numbers else (str,)
        for item in value:
            if isinstance(item, bool) or not isinstance(item, scalar):
                self.fail(f"expected a list of strings, found {type(item).__name__} {item!r}", name)
        return [str(item) for item in value]

    def choice(self, name: str, options: Sequence[str]) -> str:
        value = self._get(name)
        if value not in options:
            self.fail(f"unknown value {value!r}; expected one of {list(options)}", name)
        return value

    def image(self, name: str, root: Path, check: bool) -> Path:
        image = root / self.text(name)
        if check and not image.is_file():
            self.fail(
                f"image file not found: {image} (image paths are relative to {root}; pass "
                "image_root=... to look elsewhere, or check_images=False to defer the check "
                "until an image is decoded)",
                name,
            )
        return image


def load_mat_coding(
    path: str | Path,
    split: str | None = None,
    image_root: str | Path | None = None,
    check_images: bool = True,
) -> list[Task]:
    """The official MAT-Coding benchmark (``MAT-Coding.json``) as tasks, in file order.

    Every row is validated now, and a bad one raises :class:`DatasetError` naming the file,
    the row (0-based) and the field. Image paths are relative to ``image_root`` (default: the
    JSON file's folder); with ``check_images`` every image a kept row names (original and
    processed) must exist. ``split`` keeps ``"simple"`` or ``"hard"`` rows (``None``: all).
    The task's image is the undegraded original for crop items, else the processed image
    (paper §4.3); it is decoded only when ``Task.load_images`` is called.

    An optional ``gold_steps`` list per row (written by :meth:`SyntheticCoding.write`) is kept
    in ``meta["gold_steps"]``.
    """
    if split not in (None, *SPLITS):
        raise ValueError(f"split must be 'simple', 'hard' or None (all), got {split!r}")
    path, rows = _read_json_rows(path)
    root = Path(image_root) if image_root is not None else path.parent
    tasks, seen = [], {}
    for index, raw in enumerate(rows):
        row = _Row(path, index, raw)
        task_id = row.ident("id")
        if task_id in seen:
            row.fail(f"duplicate id {task_id!r} (first used in row {seen[task_id]})", "id")
        seen[task_id] = index
        question = row.text("question")
        answers = row.strings("answers", allow_numbers=True)
        degradations = row.strings("type")
        unknown = [d for d in degradations if d not in PROBLEM_TYPES]
        if unknown:
            row.fail(f"unknown degradation {unknown[0]!r}; expected {list(PROBLEM_TYPES)}", "type")
        row_split = row.choice("split", SPLITS)
        for name in ("ori_image_path", "processed_image_path"):
            row.text(name)
        meta = {
            "degradations": degradations,
            "source": "mat-coding",
            "gold_plan": gold_plan(degradations),
        }
        if "gold_steps" in row.row:
            meta["gold_steps"] = row.strings("gold_steps")
        if split is not None and row_split != split:
            continue
        check = check_images
        images = {n: row.image(n, root, check) for n in ("ori_image_path", "processed_image_path")}
        tasks.append(
            Task(
                id=task_id,
                question=question,
                answers=answers,
                images=[images[input_image_field(degradations)]],
                split=row_split,
                meta=meta,
            )
        )
    return tasks


_SPAN_RE = {
    tag: re.compile(rf"<{tag}>(.*?)</{tag}>", re.DOTALL) for tag in ("problem", "code", "answer")
}
_ROW_TAG = {"pre_problem": "problem", "pre_code": "code", "pre_answer": "answer"}


def load_coding_rows(
    path: str | Path, image_root: str | Path | None = None, check_images: bool = True
) -> list[Task]:
    """The paper's stepwise coding rows (``rft_agent_code_1_2k.json`` format) as tasks.

    Each row is one step of a gold trajectory: ``type`` (``pre_problem``, ``pre_code`` or
    ``pre_answer``), ``image_path``, ``problem`` (the query), ``context`` (the earlier gold
    steps; optional, default empty), ``solution`` (the gold step) and ``gt`` (the full
    reference completion; optional, default ``solution``). The task's ``meta`` holds
    ``gold_step``, ``context``, ``row_type``, ``gt`` and ``prompt_text`` (the problem, then the
    context on a new line when there is one); ``answers`` is the answer span of a
    ``pre_answer`` row, else empty. Errors name the file, the row and the field.
    """
    path, rows = _read_json_rows(path)
    root = Path(image_root) if image_root is not None else path.parent
    tasks = []
    for index, raw in enumerate(rows):
        row = _Row(path, index, raw)
        task_id = row.ident("id", str(index))
        row_type = row.choice("type", ROW_TYPES)
        problem = row.text("problem")
        context = row.text("context", default="", allow_empty=True)
        solution = row.text("solution")
        gt = row.text("gt", default=solution)
        span = _SPAN_RE[_ROW_TAG[row_type]].search(solution)
        if span is None:
            tag = _ROW_TAG[row_type]
            row.fail(f"a {row_type} row's solution must hold <{tag}>…</{tag}>", "solution")
        image = row.image("image_path", root, check_images)
        prompt = problem + ("\n" + context if context.strip() else "")
        tasks.append(
            Task(
                id=task_id,
                question=problem,
                answers=[span.group(1).strip()] if row_type == "pre_answer" else [],
                images=[image],
                split="train",
                meta={
                    "gold_step": solution,
                    "context": context,
                    "row_type": row_type,
                    "gt": gt,
                    "prompt_text": prompt,
                    "source": "mat-coding-rows",
                },
            )
        )
    return tasks


# ============================================================================ degradations


@dataclass(frozen=True)
class Degradation:
    """What was done to a clean image, with the parameters the restoring code undoes.

    ``rotation`` is how the image was turned: ``"cw"`` / ``"ccw"`` (90°) or ``"180"``.
    ``gain`` is how many times darker (``dark``) or closer to white (``overexposure``) the
    image became. ``bbox`` is the crop region on the 0–1000 scale.
    """

    names: tuple[str, ...]
    rotation: str | None = None
    gain: float = 1.0
    sigma: float = 0.0
    noise: str | None = None  # "gaussian" or "salt_pepper"
    noise_level: float = 0.0  # gaussian std (0-255 scale) or salt-and-pepper pixel fraction
    noise_seed: int = 0
    bbox: tuple[int, int, int, int] | None = None


_ROTATE_FORWARD = {
    "cw": cv2.ROTATE_90_CLOCKWISE,
    "ccw": cv2.ROTATE_90_COUNTERCLOCKWISE,
    "180": cv2.ROTATE_180,
}
_ROTATE_BACK = {
    "cw": "cv2.ROTATE_90_COUNTERCLOCKWISE",
    "ccw": "cv2.ROTATE_90_CLOCKWISE",
    "180": "cv2.ROTATE_180",
}


def degrade(clean: np.ndarray, d: Degradation) -> np.ndarray:
    """The degraded version of a clean ``uint8`` image (crop and none leave it unchanged)."""
    out = clean
    if d.rotation is not None:
        out = cv2.rotate(out, _ROTATE_FORWARD[d.rotation])
    if "dark" in d.names:
        out = np.rint(out.astype(np.float32) / d.gain).astype(np.uint8)
    if "overexposure" in d.names:
        out = (255 - np.rint((255 - out.astype(np.float32)) / d.gain)).astype(np.uint8)
    if "blur" in d.names:
        out = cv2.GaussianBlur(out, (0, 0), d.sigma)
    if "noise" in d.names:
        rng = np.random.default_rng(d.noise_seed)
        if d.noise == "gaussian":
            noisy = out.astype(np.float32) + rng.normal(0.0, d.noise_level, out.shape)
            out = np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
        else:
            out = out.copy()
            draw = rng.random(out.shape[:2])
            out[draw < d.noise_level / 2] = 0
            out[draw > 1 - d.noise_level / 2] = 255
    return np.ascontiguousarray(out)


def restore_code(d: Degradation) -> str:
    """OpenCV code that undoes ``d``: it reads ``path_to_input_image.jpg`` and writes
    ``path_to_output_image.jpg``."""
    lines = ["import cv2", f"img = cv2.imread('{INPUT_IMAGE}')"]
    current = "img"

    def step(*code: str) -> None:
        nonlocal current
        lines.extend(line.replace("{src}", current) for line in code)
        current = "out"

    if "crop" in d.names:
        x1, y1, x2, y2 = d.bbox
        step(
            "h, w = {src}.shape[:2]",
            f"x1, y1, x2, y2 = {x1}, {y1}, {x2}, {y2}  # the region on the 0-1000 scale",
            "out = {src}[int(y1 * h / 1000):int(y2 * h / 1000), int(x1 * w / 1000):int(x2 * w / 1000)]",
            "out = cv2.resize(out, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)",
        )
    if d.rotation is not None:
        step(f"out = cv2.rotate({{src}}, {_ROTATE_BACK[d.rotation]})")
    if "dark" in d.names:
        step(f"out = cv2.convertScaleAbs({{src}}, alpha={d.gain:.1f}, beta=0)")
    if "overexposure" in d.names:
        step(
            "inverse = cv2.bitwise_not({src})  # distance from white",
            f"out = cv2.bitwise_not(cv2.convertScaleAbs(inverse, alpha={d.gain:.1f}, beta=0))",
        )
    if "blur" in d.names:
        step(
            f"soft = cv2.GaussianBlur({{src}}, (0, 0), {d.sigma:.1f})",
            "out = cv2.addWeighted({src}, 3.5, soft, -2.5, 0)  # unsharp mask",
        )
    if "noise" in d.names:
        if d.noise == "gaussian":
            h = _denoise_strength(d.noise_level)
            step(f"out = cv2.fastNlMeansDenoisingColored({{src}}, None, {h}, {h}, 7, 21)")
        else:
            step("out = cv2.medianBlur({src}, 3)")
    lines.append(f"cv2.imwrite('{OUTPUT_IMAGE}', {current})")
    return "\n".join(lines)


def _denoise_strength(std: float) -> int:
    return int(round(std * 0.6))


# ----------------------------------------------------------------------------- gold steps

_SEEN = {
    "rotation90": {
        "cw": "the lines of text run from top to bottom, so the picture was turned 90 degrees "
        "clockwise",
        "ccw": "the lines of text run from bottom to top, so the picture was turned 90 degrees "
        "counter-clockwise",
    },
    "rotation180": "the text is upside down, so the picture was turned by 180 degrees",
    "dark": "it is far too dark and the text barely stands out",
    "overexposure": "it is washed out and far too bright, leaving the text with little contrast",
    "blur": "the strokes of the letters are smeared, so it is blurred",
    "noise": "it is covered in grainy noise that hides the strokes",
    "crop": "the question asks about one small region, given as a box on a 0-1000 scale",
    "none": "it is upright, evenly lit, sharp and clean",
}
_FIX = {
    "rotation90": "rotate it 90 degrees {way} to make the text upright",
    "rotation180": "rotate it by 180 degrees",
    "dark": "brighten it {gain:.1f} times with convertScaleAbs",
    "overexposure": "pull the tones {gain:.1f} times further away from white",
    "blur": "sharpen it with an unsharp mask",
    "noise": "{denoise}",
    "crop": "convert the box to pixels, crop that region and enlarge it twice",
}


def _diagnosis(d: Degradation) -> str:
    parts = []
    for name in d.names:
        seen = _SEEN[name]
        parts.append(seen[d.rotation] if isinstance(seen, dict) else seen)
    if len(parts) == 1:
        return f"Looking at the image, {parts[0]}."
    return f"Looking at the image, {parts[0]}. Besides, {parts[1]}."


def _plan(d: Degradation) -> str:
    way = {"cw": "counter-clockwise", "ccw": "clockwise"}.get(d.rotation or "", "")
    denoise = (
        "remove the noise with non-local means denoising"
        if d.noise == "gaussian"
        else "remove the salt-and-pepper specks with a median filter"
    )
    order = ["crop", *ROTATIONS, *PHOTOMETRIC]
    fixes = [
        _FIX[n].format(way=way, gain=d.gain, denoise=denoise)
        for n in sorted(d.names, key=order.index)
    ]
    return "I will " + ", then ".join(fixes) + ", and save the result."


def _problem_set(names: Sequence[str]) -> str:
    return "{" + ", ".join(f"'{n}'" for n in names) + "}"


def gold_steps(d: Degradation, answer: str) -> list[str]:
    """The gold turns, each in the paper's strict format: problem, code (unless none), answer."""
    steps = [f"<think> {_diagnosis(d)} </think>\n<problem> {_problem_set(d.names)} </problem>"]
    if "code" in gold_plan(d.names):
        steps.append(
            f"<think> {_plan(d)} </think>\n<code>\n```python\n{restore_code(d)}\n```\n</code>"
        )
        seen = (
            "Now the region is large enough to read"
            if "crop" in d.names
            else "Now the image is clear"
        )
    else:
        seen = "The image needs no fixing"
    steps.append(
        f"<think> {seen}, and the text reads: {answer}. </think>\n<answer> {answer} </answer>"
    )
    return steps


# ============================================================================ synthetic content

# Common English words for signs, labels and notes; no articles (the metric drops them) and
# no repeats (the training F1 counts repeated tokens against the answer).
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


# ============================================================================ the generator

_ID_RE = re.compile(r"synth-coding-(all|simple|hard)-(\d+)")


class SyntheticCoding:
    """Unlimited MAT-Coding tasks rendered offline, reproducible from a seed.

    Each task is a picture of text (a large glyph, a number, a word, a phrase, a few lines of
    a note, a sign; or, for crop, a grid of labelled boxes) with one of the paper's
    degradations, a question whose gold answer is the rendered text, and the gold trajectory
    in ``meta``: ``degradations``, ``gold_plan``, ``gold_steps`` (strict-format turns whose
    code really restores the image), ``content``, ``degradation`` (the parameters) and, for
    crop, ``bbox``. Images are ``H×W×3`` ``uint8`` RGB, rendered only when
    ``Task.load_images`` is called.

    ``split``: ``"simple"`` (one degradation, or none), ``"hard"`` (a rotation with dark,
    overexposure, blur or noise; and crop), or ``"all"`` (the paper's training mix).
    ``content``: ``"mixed"`` or one of :data:`CONTENT_KINDS`. Task ids are
    ``synth-coding-{split}-{seed}``; :meth:`get` rebuilds a task from its id.
    """

    def __init__(
        self,
        split: str = "all",
        image_size: tuple[int, int] = (384, 512),
        content: str = "mixed",
    ):
        if split not in ("all", *SPLITS):
            raise ValueError(f"split must be 'all', 'simple' or 'hard', got {split!r}")
        if content not in ("mixed", *CONTENT_KINDS):
            raise ValueError(f"content must be 'mixed' or one of {CONTENT_KINDS}, got {content!r}")
        height, width = (int(v) for v in image_size)
        if min(height, width) < 128 or max(height, width) > 4096:
            raise ValueError(f"image_size (H, W) sides must be in 128..4096, got {image_size}")
        self.split, self.content, self.image_size = split, content, (height, width)

    # ---------------------------------------------------------------- TaskSource protocol

    def sample(self, rng: np.random.Generator) -> Task:
        """A task from a seed drawn with ``rng``."""
        return self.make(int(rng.integers(2**32)))

    def get(self, task_id: str) -> Task:
        """Rebuild the task ``synth-coding-{split}-{seed}`` (any split, this generator's
        content and image size)."""
        match = _ID_RE.fullmatch(str(task_id))
        if match is None:
            raise KeyError(
                f"synthetic coding ids look like 'synth-coding-{self.split}-123', got {task_id!r}"
            )
        return self._make(int(match[2]), match[1])

    def make(self, seed: int) -> Task:
        """The task for ``seed`` in this generator's split."""
        return self._make(int(seed), self.split)

    def _make(self, seed: int, split: str) -> Task:
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        rng = np.random.default_rng(seed)
        if split == "all":
            names = _ALL_CLASSES[
                int(rng.choice(len(_ALL_CLASSES), p=_ALL_WEIGHTS / _ALL_WEIGHTS.sum()))
            ]
        else:
            names = _pick(rng, SPLIT_CLASSES[split])
        kind = self.content if self.content != "mixed" else _pick(rng, CONTENT_KINDS)
        height, width = self.image_size
        meta: dict[str, Any] = {}
        if names == ("crop",):
            scene, answer, bbox = _crop_scene(rng, kind, height, width)
            d = Degradation(names, bbox=bbox)
            question = _CROP_QUESTION.format(x1=bbox[0], y1=bbox[1], x2=bbox[2], y2=bbox[3])
            meta["bbox"] = list(bbox)
        else:
            scene, answer = _content_scene(rng, kind, height, width)
            question = _pick(rng, _QUESTIONS[kind])
            text_px = min(item.size for item in scene.items if isinstance(item, TextBlock))
            d = _draw_degradation(rng, names, text_px)
        meta.update(
            {
                "degradations": list(names),
                "source": "synthetic-coding",
                "gold_plan": gold_plan(names),
                "gold_steps": gold_steps(d, answer),
                "content": kind,
                "degradation": d,
            }
        )
        source = (
            partial(render_scene, scene)
            if names in (("crop",), ("none",))
            else partial(_render_input, scene, d)
        )
        task_split = "hard" if names in SPLIT_CLASSES["hard"] else "simple"
        return Task(f"synth-coding-{split}-{seed}", question, [answer], [source], task_split, meta)

    def clean_image(self, task: Task) -> np.ndarray:
        """The undegraded render of one of this generator's tasks (built on demand)."""
        return render_scene(_scene_of(task))

    # ---------------------------------------------------------------- writing files

    def tasks(self, n: int, seed: int = 0) -> list[Task]:
        """``n`` distinct tasks drawn from ``seed``, simple items first (benchmark order)."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        rng, tasks, ids = np.random.default_rng(seed), [], set()
        while len(tasks) < n:
            task = self.sample(rng)
            if task.id not in ids:
                ids.add(task.id)
                tasks.append(task)
        return sorted(tasks, key=lambda t: SPLITS.index(t.split))

    def write(self, directory: str | Path, n: int, seed: int = 0) -> Path:
        """Write ``n`` tasks in the official benchmark format: ``mat_coding.json`` plus PNG
        images under ``images/``. Returns the JSON path, which :func:`load_mat_coding` reads.

        Rows carry one extra field, ``gold_steps``, which the loader keeps in ``meta``.
        """
        directory = Path(directory)
        rows = []
        for task in self.tasks(n, seed):
            ori, proc = _write_images(task, directory)
            rows.append(
                {
                    "id": task.id,
                    "question": task.question,
                    "answers": list(task.answers),
                    "ori_image_path": ori,
                    "processed_image_path": proc,
                    "type": list(task.meta["degradations"]),
                    "split": task.split,
                    "gold_steps": list(task.meta["gold_steps"]),
                }
            )
        path = directory / "mat_coding.json"
        path.write_text(json.dumps(rows, ensure_ascii=False, indent=1), encoding="utf-8")
        return path

    def stepwise_rows(self, n: int, seed: int = 0) -> list[dict]:
        """The stepwise training rows (``rft_agent_code_1_2k.json`` format) of ``n`` tasks.

        One row per gold step: ``pre_problem``, ``pre_code`` (not for ``none`` items),
        ``pre_answer``. ``context`` holds the earlier gold steps, ``solution`` the step's
        action, ``gt`` the full step with its ``<think>``. As in the paper's data, the answer
        row shows the clean image (``*_ori.png``) and the others the input image. Image paths
        are those :meth:`write` and :meth:`write_stepwise` create (``images/{id}_….png``).
        """
        return [row for task in self.tasks(n, seed) for row in _stepwise_rows(task)]

    def write_stepwise(self, path: str | Path, n: int, seed: int = 0) -> Path:
        """Write :meth:`stepwise_rows` to ``path`` and their images beside it (``images/``);
        returns ``path``, which :func:`load_coding_rows` reads."""
        path = Path(path)
        rows = []
        for task in self.tasks(n, seed):
            _write_images(task, path.parent)
            rows.extend(_stepwise_rows(task))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(rows, ensure_ascii=False, indent=1), encoding="utf-8")
        return path


def _scene_of(task: Task) -> Scene:
    source = task.images[0]
    if not isinstance(source, partial) or not isinstance(source.args[0], Scene):
        raise ValueError(f"task {task.id!r} was not made by SyntheticCoding")
    return source.args[0]


def _image_names(task: Task) -> tuple[str, str]:
    return f"images/{task.id}_ori.png", f"images/{task.id}_proc.png"


def _write_images(task: Task, directory: Path) -> tuple[str, str]:
    """Write a task's clean (``_ori``) and input-or-degraded (``_proc``) images as PNG."""
    ori, proc = _image_names(task)
    (directory / "images").mkdir(parents=True, exist_ok=True)
    clean = render_scene(_scene_of(task))
    Image.fromarray(clean).save(directory / ori)
    degraded = degrade(clean, task.meta["degradation"])
    Image.fromarray(degraded).save(directory / proc)
    return ori, proc


def _stepwise_rows(task: Task) -> list[dict]:
    ori, proc = _image_names(task)
    field = input_image_field(task.meta["degradations"])
    input_image = ori if field == "ori_image_path" else proc
    steps = task.meta["gold_steps"]
    rows = []
    for index, (kind, step) in enumerate(zip(task.meta["gold_plan"], steps, strict=True)):
        action = step[step.index("</think>") + len("</think>") :].strip()
        rows.append(
            {
                "id": f"{task.id}-{kind}",
                "type": f"pre_{kind}",
                "image_path": ori if kind == "answer" else input_image,
                "problem": f"<query> {task.question} </query>",
                "context": "\n".join(steps[:index]),
                "solution": action,
                "gt": step,
            }
        )
    return rows
