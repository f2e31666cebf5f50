"""Image files in and out of the per-call work dir, shared by the worker and the ``none`` level.

Like ``_protocol`` this module is also imported inside the sandbox as a top-level module, so it
only imports numpy, cv2 and PIL (lazily) besides the standard library.

* Inputs given as arrays are written as 24-bit BMP: lossless, ~0.1 ms for 512x512 (PNG costs
  ~7 ms), and both ``cv2.imread`` and ``PIL.Image.open`` detect the format from the bytes, so
  the file may be named ``path_to_input_image.jpg``.
* Outputs are decoded to HxWx3 uint8 RGB (grey becomes 3 channels, alpha is dropped). The
  header is read first and the size checked, so a decompression bomb is refused before any
  pixel is decoded.
* Decoding is skipped for files the code saved losslessly with ``cv2.imwrite`` and did not
  touch since (see :class:`ImwriteLog`): inflating a 512x512 PNG costs ~4 ms, more than half
  of what returning it costs otherwise.
"""

from __future__ import annotations

import functools
import os
import struct
import zlib
from typing import Any

if __package__:  # the host imports this package; the worker imports the file top-level
    from . import _protocol
else:
    import _protocol

#: Work-dir entries looked at for images; the code may make millions.
MAX_LISTED = 100_000


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


def bmp_rows(rgb: Any, scratch: dict | None = None, alloc: Any = None) -> Any:
    """The pixel rows of a 24-bit BMP for ``rgb``: BGR, bottom-up, padded to 4 bytes.

    ``scratch`` (a dict the caller keeps) lets repeated calls reuse their buffers: fresh
    memory costs a page fault per 4 KiB, which is most of the cost of this function.
    ``alloc(n)`` makes those buffers (n uint8s; default ``np.empty``).
    """
    import cv2
    import numpy as np

    h, w = rgb.shape[:2]
    scratch = {} if scratch is None else scratch

    def buf(key: str, shape: tuple) -> Any:
        n = int(np.prod(shape))
        if scratch.get(key) is None or scratch[key].size < n:
            scratch[key] = alloc(n) if alloc is not None else np.empty(n, np.uint8)
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


# --- skipping the decode of images the code saved losslessly ---------------------------------

#: Suffixes whose cv2 encoders are lossless for 8-bit grey and BGR arrays.
_LOSSLESS_SUFFIXES = (".png", ".bmp")


def _file_crc32(path: str) -> int:
    """CRC-32 of a file's bytes: it only has to notice that the code changed the file again
    (the code could forge anything it returns anyway), at ~0.1 ms for a 512x512 PNG."""
    crc = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            crc = zlib.crc32(chunk, crc)
    return crc


class ImwriteLog:
    """Remembers the pixels of images saved with ``cv2.imwrite``, so they need no decoding.

    When an 8-bit grey or BGR array without encoder params is saved as PNG or BMP, decoding
    the file gives back exactly that array (as RGB, grey repeated). :meth:`install` wraps
    ``cv2.imwrite`` to keep an RGB copy, keyed by the file's inode, with the size and CRC-32
    of what was written. :meth:`lookup` returns the copy only while the file is still
    byte-identical, so a file changed afterwards by any means is decoded as usual.

    It lives in the sandboxed process: code that tampers with it can only change its own
    answer, which the fork-server validates like any other untrusted output. Copies are kept
    up to ``max_bytes`` in total, so the log cannot push the code into its memory limit.
    """

    def __init__(self, max_bytes: int = 32 << 20) -> None:
        self.max_bytes = max_bytes
        self._entries: dict[tuple[int, int], tuple[int, int, Any]] = {}
        self._bytes = 0

    def install(self, cv2: Any) -> None:
        """Replace ``cv2.imwrite`` with a wrapper that behaves the same and records writes."""
        original = cv2.imwrite

        @functools.wraps(original)
        def imwrite(*args: Any, **kwargs: Any) -> Any:
            ok = original(*args, **kwargs)
            if ok is True:
                try:
                    self._record(cv2, *_imwrite_args(*args, **kwargs))
                except Exception:
                    pass  # recording is an optimisation; the file is decoded instead
            return ok

        cv2.imwrite = imwrite

    def _record(self, cv2: Any, filename: Any, img: Any, params: Any) -> None:
        import numpy as np

        path = os.fspath(filename)
        lossless = (
            not (params is not None and len(params))  # e.g. IMWRITE_PNG_BILEVEL loses detail
            and isinstance(path, str)
            and path.lower().endswith(_LOSSLESS_SUFFIXES)
            and isinstance(img, np.ndarray)
            and img.dtype == np.uint8
            and (img.ndim == 2 or (img.ndim == 3 and img.shape[2] in (1, 3)))
        )
        if not lossless:
            return
        st = os.stat(path)
        key = (st.st_dev, st.st_ino)
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= old[2].nbytes
        if self._bytes + img.shape[0] * img.shape[1] * 3 > self.max_bytes:
            return
        code = cv2.COLOR_BGR2RGB if img.ndim == 3 and img.shape[2] == 3 else cv2.COLOR_GRAY2RGB
        rgb = cv2.cvtColor(np.ascontiguousarray(img), code)
        self._entries[key] = (st.st_size, _file_crc32(path), rgb)
        self._bytes += rgb.nbytes

    def lookup(self, path: str) -> Any:
        """The recorded RGB pixels of the image file at ``path``, or None if it must be decoded."""
        try:
            st = os.stat(path, follow_symlinks=False)
            entry = self._entries.get((st.st_dev, st.st_ino))
            if entry is None or entry[0] != st.st_size or _file_crc32(path) != entry[1]:
                return None
        except OSError:
            return None  # decoding reports the problem in its own words
        return entry[2]


def _imwrite_args(filename: Any, img: Any, params: Any = None) -> tuple[Any, Any, Any]:
    """``cv2.imwrite``'s arguments, by position or keyword, as (filename, img, params)."""
    return filename, img, params


#: The log of this process (the worker installs it once; each forked child has its own copy).
imwrite_log = ImwriteLog()


def read_image_file(path: str, max_side: int) -> Any:
    """Like :func:`decode_image_file`, but returns the recorded pixels of an image the code
    saved losslessly and left unchanged (see :class:`ImwriteLog`) without decoding it."""
    rgb = imwrite_log.lookup(path)
    if rgb is not None and 1 <= rgb.shape[0] <= max_side and 1 <= rgb.shape[1] <= max_side:
        return rgb
    return decode_image_file(path, max_side)


# --- the worker's image output: find, decode in a confined child, validate in the server ---


def image_candidates(job: str, written: dict) -> tuple[list[str], list[str]]:
    """Image files in ``job`` that the code created or changed (not untouched inputs), and
    bounded error lines about the rest."""
    names, errors, unusable = [], [], []
    try:
        with os.scandir(job) as it:
            for i, e in enumerate(it):
                if i >= MAX_LISTED or not _protocol.is_image_name(e.name):
                    continue
                try:
                    _protocol.check_file_name(e.name)
                except ValueError:
                    unusable.append(e.name)
                    continue
                if not e.is_file(follow_symlinks=False):
                    continue
                st = e.stat(follow_symlinks=False)
                if written.get(e.name) == (st.st_ino, st.st_size, st.st_mtime_ns):
                    continue  # an input file the code left unchanged
                names.append(e.name)
    except OSError as e:
        return [], [f"could not list the work dir: {e.strerror}"]
    if unusable:  # one bounded line, however many there are
        shown = ", ".join(f"{n!r:.60}" for n in sorted(unusable)[:3])
        more = f" and {len(unusable) - 3} more" if len(unusable) > 3 else ""
        errors.append(f"skipped image files with unusable names: {shown}{more}")
    names.sort()
    if len(names) > _protocol.MAX_IMAGES:
        errors.append(
            f"{len(names)} image files were written; only the first "
            f"{_protocol.MAX_IMAGES} by name are returned"
        )
        names = names[: _protocol.MAX_IMAGES]
    return names, errors


def emit_images(fd: int, job: str, names: list, lim: dict) -> None:
    """Decode ``names`` (files in ``job``) and write them to ``fd`` as frames + pixels.

    In the call's own child, images the code saved losslessly need no decoding (see
    :class:`ImwriteLog`); a decoding-only child has an empty log and decodes all.
    """
    budget = lim["max_result_bytes"]
    for name in names:
        try:
            a = read_image_file(os.path.join(job, name), lim["max_image_side"])
        except ValueError as e:
            _protocol.write_all(fd, _protocol.pack_frame({"name": name, "error": str(e)[:300]}))
            continue
        if a.nbytes > budget:
            msg = f"the decoded images exceed max_result_bytes={lim['max_result_bytes']}"
            _protocol.write_all(fd, _protocol.pack_frame({"name": name, "error": msg}))
            continue
        budget -= a.nbytes
        head = _protocol.pack_frame({"name": name, "shape": list(a.shape)})
        _protocol.write_all(fd, head, memoryview(a).cast("B"))
    _protocol.write_all(fd, _protocol.pack_frame({"end": True}))


def parse_images(data: memoryview, names: list, lim: dict) -> tuple[dict, dict]:
    """Validate image frames from an untrusted decoder: ``({name: array}, {name: error})``.

    Stops at the first malformed frame; frames after it are ignored.
    """
    import numpy as np

    images, errors = {}, {}
    budget = lim["max_result_bytes"]
    side = lim["max_image_side"]
    pos = 0
    try:
        while pos + 4 <= len(data):
            n = _protocol.frame_length(bytes(data[pos : pos + 4]))
            f = _protocol.parse_frame(bytes(data[pos + 4 : pos + 4 + n]))
            pos += 4 + n
            if f.get("end") is True:
                break
            name = f.get("name")
            if name not in names or name in images or name in errors:
                break
            if "error" in f:
                errors[name] = str(f["error"])[:300]
                continue
            shape = f.get("shape")
            if (
                not isinstance(shape, list)
                or len(shape) != 3
                or not all(type(x) is int for x in shape)
                or shape[2] != 3
                or not (1 <= shape[0] <= side and 1 <= shape[1] <= side)
            ):
                break
            size = shape[0] * shape[1] * 3
            if size > budget or pos + size > len(data):
                break
            budget -= size
            images[name] = np.frombuffer(data, np.uint8, size, pos).reshape(shape)
            pos += size
    except _protocol.ProtocolError:
        pass
    return images, errors
