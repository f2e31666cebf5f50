"""The degradation model of MAT-Coding: what was done to a clean image, and the code that undoes it.

A :class:`Degradation` holds the paper's degradation names and the parameters drawn for them;
:func:`degrade` applies it to a clean render and :func:`restore_code` writes the OpenCV code
that restores the image, reading :data:`INPUT_IMAGE` and writing :data:`OUTPUT_IMAGE` (the
file names the paper's prompts and the sandbox use).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

ROTATIONS = ("rotation90", "rotation180")
PHOTOMETRIC = ("dark", "overexposure", "blur", "noise")
INPUT_IMAGE = "path_to_input_image.jpg"
OUTPUT_IMAGE = "path_to_output_image.jpg"


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
