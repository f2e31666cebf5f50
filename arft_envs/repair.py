"""How much a MAT-Coding code turn restored its image: PSNR and SSIM against the clean image.

The live code reward pays for code that ran and wrote an image, so a "repair" that leaves the
image as degraded as it was earns it too. This module measures the repair itself:
:func:`repair_report` compares the image the code read (*before*) and the image it wrote
(*after*) with the task's clean image (:func:`clean_reference`), and calls the turn
``improved`` when the written image is measurably closer to it than the input (and than the
input saved unchanged, since a JPEG round trip alone smooths noise): +:data:`MIN_SSIM_GAIN`
SSIM or +:data:`MIN_PSNR_GAIN_DB` dB PSNR. ``MATCoding-v0`` reports it
in ``info["repair"]`` on every code turn, and ``code_reward="improved"`` pays the code reward
only for an improvement.

The clean image is known for synthetic tasks (the generator's scene, rendered again without
its degradation) and for any task whose ``meta["clean_image"]`` holds an array or a callable
that returns one; the official benchmark has none, and its report is ``None``.

Both metrics are our own numpy/OpenCV code: PSNR over all channels (255 peak), and SSIM as
Wang et al. (2004) define it (an 11-tap Gaussian window of sigma 1.5, K1 = 0.01, K2 = 0.03)
on the luma. An image whose shape differs from the reference (a rotated
or uncropped one) is resized to the reference's size first, so a wrong orientation or crop
scores low rather than failing.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import cv2
import numpy as np

#: The SSIM rise (0–1 scale) over the unchanged image that counts as a real repair: above
#: what re-encoding changes, far below what the gold repairs achieve (+0.2 to +0.8).
MIN_SSIM_GAIN = 0.02
#: The PSNR rise (dB) that counts as a real repair: the gold unsharp mask of a blur gains
#: +1.5 to +3 dB while its SSIM barely moves.
MIN_PSNR_GAIN_DB = 1.0
#: The PSNR of two identical images is infinite; reports cap it here (dB) to stay JSON numbers.
PSNR_CAP_DB = 100.0

logger = logging.getLogger(__name__)

_C1 = (0.01 * 255) ** 2
_C2 = (0.03 * 255) ** 2


def _as_float(image: np.ndarray) -> np.ndarray:
    array = np.asarray(image)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3:
        raise ValueError(f"expected an H×W or H×W×C image, got shape {array.shape}")
    return array.astype(np.float64)


def _match(image: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``image`` as float with the reference's height, width and channel count."""
    image, reference = _as_float(image), _as_float(reference)
    height, width = reference.shape[:2]
    if image.shape[:2] != (height, width):
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
        if image.ndim == 2:
            image = image[:, :, None]
    if image.shape[2] != reference.shape[2]:
        image = np.repeat(image.mean(axis=2, keepdims=True), reference.shape[2], axis=2)
    return image


def psnr(image: np.ndarray, reference: np.ndarray) -> float:
    """Peak signal-to-noise ratio of ``image`` against ``reference`` in dB (``uint8`` scale,
    capped at :data:`PSNR_CAP_DB` for identical images)."""
    a, b = _match(image, reference), _as_float(reference)
    mse = float(np.mean((a - b) ** 2))
    if mse == 0.0:
        return PSNR_CAP_DB
    return min(PSNR_CAP_DB, 10.0 * math.log10(255.0**2 / mse))


def _luma(image: np.ndarray) -> np.ndarray:
    """The Rec. 601 luma of an H×W×C float image (the image itself when it has one channel)."""
    if image.shape[2] == 1:
        return image[:, :, 0]
    return image[:, :, :3] @ np.array([0.299, 0.587, 0.114])


def ssim(image: np.ndarray, reference: np.ndarray) -> float:
    """Structural similarity of ``image`` to ``reference`` (1 for identical images): the mean
    of Wang et al.'s SSIM map over the two images' luma."""
    x, y = _luma(_match(image, reference)), _luma(_as_float(reference))

    def blur(z: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(z, (11, 11), 1.5, borderType=cv2.BORDER_REFLECT)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    numerator = (2 * mu_x * mu_y + _C1) * (2 * cov + _C2)
    denominator = (mu_x**2 + mu_y**2 + _C1) * (var_x + var_y + _C2)
    return float(np.mean(numerator / denominator))


def saved_unchanged(image: np.ndarray, suffix: str = ".jpg") -> np.ndarray:
    """``image`` as code that changes nothing leaves it: written under the output's name
    (``suffix``; cv2's default JPEG quality) and read back. The baseline of a repair, since
    the JPEG round trip alone smooths some noise away."""
    array = np.ascontiguousarray(np.asarray(image, dtype=np.uint8))
    if array.ndim == 3 and array.shape[2] == 3:
        array = array[:, :, ::-1]  # RGB -> the BGR cv2 encodes
    ok, encoded = cv2.imencode(suffix, array)
    if not ok:
        raise ValueError(f"cv2 cannot encode an image as {suffix!r}")
    decoded = cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED)
    if decoded.ndim == 3 and decoded.shape[2] == 3:
        decoded = decoded[:, :, ::-1]
    return decoded


def clean_reference(task: Any) -> np.ndarray | None:
    """The image a perfect repair of ``task`` would write, or ``None`` when it is unknown.

    ``task.meta["clean_image"]`` (an array, or a callable returning one) wins; otherwise a
    task made by :class:`~arft_envs.tasks.coding.synthetic.SyntheticCoding` (or a source built
    on it, like the easy setting) is rendered again without its degradation. For a crop task
    the reference is the clean image's region (``meta["bbox"]``, 0–1000 scale), which is what
    the gold code keeps.
    """
    meta = getattr(task, "meta", None) or {}
    given = meta.get("clean_image")
    if given is not None:
        image = given() if callable(given) else given
        return np.asarray(image)
    from arft_envs.tasks.coding.scenes import _scene_of
    from arft_envs.tasks.render import render_scene

    try:
        scene = _scene_of(task)
    except (ValueError, IndexError, AttributeError):
        return None
    clean = render_scene(scene)
    bbox = meta.get("bbox")
    if "crop" in (meta.get("degradations") or ()) and bbox:
        height, width = clean.shape[:2]
        x1, y1, x2, y2 = bbox
        clean = clean[
            int(y1 * height / 1000) : int(y2 * height / 1000),
            int(x1 * width / 1000) : int(x2 * width / 1000),
        ]
    return np.ascontiguousarray(clean)


def repair_report(
    before: np.ndarray,
    after: np.ndarray | None,
    reference: np.ndarray,
    *,
    output_suffix: str = ".jpg",
    min_ssim_gain: float = MIN_SSIM_GAIN,
    min_psnr_gain_db: float = MIN_PSNR_GAIN_DB,
) -> dict[str, Any]:
    """PSNR and SSIM against the clean ``reference`` of the image a code turn read
    (``before``), of that image saved unchanged (:func:`saved_unchanged`, what a no-op
    writes) and of the image it wrote (``after``; ``None`` when it wrote none).

    Returns ``{"psnr_before", "psnr_unchanged", "psnr_after", "ssim_before",
    "ssim_unchanged", "ssim_after", "improved"}`` (PSNR in dB, 2 decimals; SSIM 4 decimals;
    the ``after`` values ``None`` without an image). ``improved``: the written image is closer
    to the clean one than both the input and the unchanged save, by ``min_ssim_gain`` in SSIM
    or ``min_psnr_gain_db`` in PSNR (a sharpened blur gains PSNR before SSIM).
    """
    unchanged = saved_unchanged(before, output_suffix)
    report: dict[str, Any] = {
        "psnr_before": round(psnr(before, reference), 2),
        "psnr_unchanged": round(psnr(unchanged, reference), 2),
        "psnr_after": None,
        "ssim_before": round(ssim(before, reference), 4),
        "ssim_unchanged": round(ssim(unchanged, reference), 4),
        "ssim_after": None,
        "improved": False,
    }
    if after is not None:
        report["psnr_after"] = round(psnr(after, reference), 2)
        report["ssim_after"] = round(ssim(after, reference), 4)
        ssim_base = max(report["ssim_before"], report["ssim_unchanged"])
        psnr_base = max(report["psnr_before"], report["psnr_unchanged"])
        report["improved"] = bool(
            report["ssim_after"] - ssim_base >= min_ssim_gain
            or report["psnr_after"] - psnr_base >= min_psnr_gain_db
        )
    return report


_UNSET = object()


class RepairMeter:
    """Measures one episode's code turns: the task's clean image is looked up once (on the
    first call) and every call's :func:`repair_report` is returned; ``reset()`` forgets the
    task. A failure of the measurement itself is logged and reported as ``None``, so that a
    tool never fails because of its report."""

    def __init__(self) -> None:
        self._task: Any = None
        self._reference: Any = _UNSET

    def reset(self) -> None:
        self._task, self._reference = None, _UNSET

    def reference(self, task: Any) -> np.ndarray | None:
        """The clean image of ``task`` (cached while the task is the same)."""
        if self._reference is _UNSET or task is not self._task:
            self._task, self._reference = task, clean_reference(task)
        return self._reference

    def measure(
        self, task: Any, before: np.ndarray, after: np.ndarray | None, output_name: str
    ) -> dict[str, Any] | None:
        """The report of one code call on ``task`` (``None``: no clean image is known)."""
        try:
            reference = self.reference(task)
            if reference is None:
                return None
            suffix = "." + output_name.rsplit(".", 1)[-1] if "." in output_name else ".png"
            return repair_report(before, after, reference, output_suffix=suffix)
        except Exception as err:  # noqa: BLE001 - a report must never break a step
            logger.warning(
                "repair measurement failed on task %r: %r", getattr(task, "id", None), err
            )
            return None
