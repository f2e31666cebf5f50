"""Image files in and out of the per-call work dir, shared by the worker and the ``none`` level.

Like ``_protocol`` this module is also imported inside the sandbox as a top-level module, so it
only imports numpy, cv2 and PIL (lazily) besides the standard library.

* Inputs given as arrays are written as 24-bit BMP: lossless, ~0.1 ms for 512x512 (PNG costs
  ~7 ms), and both ``cv2.imread`` and ``PIL.Image.open`` detect the format from the bytes, so
  the file may be named ``path_to_input_image.jpg``.
* Outputs are decoded to HxWx3 uint8 RGB (grey becomes 3 channels, alpha is dropped). The
  header is read first and the size checked, so a decompression bomb is refused before any
  pixel is decoded.
"""

from __future__ import annotations

import struct
from typing import Any


def check_rgb_array(arr: Any, max_side: int, what: str = "image") -> None:
    """Raise ValueError unless ``arr`` is an HxWx3 uint8 array with sides in 1..max_side."""
    import numpy as np

    if not isinstance(arr, np.ndarray):
        raise ValueError(f"{what} must be a numpy array, got {type(arr).__name__}")
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(
            f"{what} must be an HxWx3 uint8 RGB array, got shape {arr.shape} dtype {arr.dtype}"
        )
    h, w = arr.shape[:2]
    if not (1 <= h <= max_side and 1 <= w <= max_side):
        raise ValueError(f"{what} is {w}x{h} pixels; each side must be in 1..{max_side}")


def bmp_header(height: int, width: int) -> bytes:
    """The 54-byte header of a 24-bit bottom-up BMP file of ``height`` x ``width`` pixels."""
    size = ((width * 3 + 3) & ~3) * height
    return struct.pack("<2sIHHI", b"BM", 54 + size, 0, 0, 54) + struct.pack(
        "<IiiHHIIiiII", 40, width, height, 1, 24, 0, size, 2835, 2835, 0, 0
    )


def bmp_rows(rgb: Any, scratch: dict | None = None) -> Any:
    """The pixel rows of a 24-bit BMP for ``rgb``: BGR, bottom-up, padded to 4 bytes.

    ``scratch`` (a dict the caller keeps) lets repeated calls reuse their buffers: fresh
    memory costs a page fault per 4 KiB, which is most of the cost of this function.
    """
    import cv2
    import numpy as np

    h, w = rgb.shape[:2]
    scratch = {} if scratch is None else scratch

    def buf(key: str, shape: tuple) -> Any:
        n = int(np.prod(shape))
        if scratch.get(key) is None or scratch[key].size < n:
            scratch[key] = np.empty(n, np.uint8)
        return scratch[key][:n].reshape(shape)

    flipped = cv2.flip(np.ascontiguousarray(rgb), 0, dst=buf("flip", (h, w, 3)))
    bgr = cv2.cvtColor(flipped, cv2.COLOR_RGB2BGR, dst=buf("bgr", (h, w, 3)))
    stride = (w * 3 + 3) & ~3
    if stride == w * 3:
        return bgr
    padded = buf("pad", (h, stride))
    padded[:, w * 3 :] = 0
    padded[:, : w * 3] = bgr.reshape(h, w * 3)
    return padded


def encode_rgb_bmp(rgb: Any) -> bytes:
    """Encode an HxWx3 uint8 RGB array as a lossless 24-bit BMP file."""
    return bmp_header(*rgb.shape[:2]) + bmp_rows(rgb).tobytes()


def decode_image_file(path: str, max_side: int) -> Any:
    """Decode the image file at ``path`` into an HxWx3 uint8 RGB array.

    Raises ValueError with a short, model-readable reason when the file is not a decodable
    image or a side exceeds ``max_side`` (checked from the header, before decoding).
    """
    import cv2
    import numpy as np
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = max_side * max_side
    size = None
    try:
        with Image.open(path) as im:
            size = im.size
    except Image.DecompressionBombError:
        raise ValueError(f"its header claims more than {max_side}x{max_side} pixels") from None
    except Exception:
        size = None  # PIL cannot parse it; cv2 may (its own pixel cap and RLIMIT_AS apply)
    if size is not None and not (1 <= size[0] <= max_side and 1 <= size[1] <= max_side):
        raise ValueError(f"it is {size[0]}x{size[1]} pixels; each side must be <= {max_side}")

    bgr = cv2.imread(path, cv2.IMREAD_COLOR)
    if bgr is not None:
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    else:
        if size is None:
            raise ValueError("it is not a decodable image") from None
        try:
            with Image.open(path) as im:
                rgb = np.asarray(im.convert("RGB"))
        except Exception as e:
            raise ValueError(f"it could not be decoded ({type(e).__name__})") from None
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    check_rgb_array(rgb, max_side, "decoded image")
    return rgb
