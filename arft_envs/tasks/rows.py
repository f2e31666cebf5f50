"""Reading dataset rows: JSON lists, JSON Lines and CSV files, and typed access to one row.

Every loader in :mod:`arft_envs.tasks` reads its file with :func:`read_rows` (any of the three
formats) or :func:`read_json_list` (a benchmark that is one JSON list), then wraps each row in
a :class:`Row`. Every failure is a :class:`~arft_envs.errors.DatasetError` that names the file,
the row and the field, so a broken dataset says where to look.

:class:`Row` has two kinds of accessors. The exact ones (:meth:`Row.text`, :meth:`Row.ident`,
:meth:`Row.strings`, :meth:`Row.choice`, :meth:`Row.image`) read one named field of a
benchmark with a fixed schema. The ``find`` ones (:meth:`Row.find`, :meth:`Row.find_text`,
:meth:`Row.find_ident`, :meth:`Row.answers`) take the first present field among aliases,
case-insensitive, in the row or its ``metadata`` object, for the many layouts of multi-hop QA.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

from arft_envs.errors import DatasetError


def read_json_list(path: str | Path) -> tuple[Path, list]:
    """The path and the rows of a file that must hold one JSON list."""
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
        raise _invalid_json(path, err) from None
    if not isinstance(rows, list):
        raise DatasetError(path, f"expected a JSON list of rows, got a {type(rows).__name__}")
    return path, rows


def read_rows(path: str | Path) -> Iterator[tuple[int, Any]]:
    """``(row number, row)`` of a JSON list, a JSON Lines file, or a CSV with a header.

    Rows of a JSON list or a CSV are numbered from 0; JSON Lines rows by their line (from 1).
    """
    path = Path(path)
    if not path.exists():
        raise DatasetError(path, "file not found")
    if path.is_dir():
        raise DatasetError(path, "is a directory; pass the path of the data file")
    try:
        if path.suffix.lower() == ".csv":
            with path.open(encoding="utf-8-sig", newline="") as f:
                yield from enumerate(csv.DictReader(f))
            return
        with path.open(encoding="utf-8") as f:
            first = f.read(1)
            while first.isspace():
                first = f.read(1)
            f.seek(0)
            if first == "[":
                try:
                    rows = json.load(f)
                except json.JSONDecodeError as err:
                    raise _invalid_json(path, err) from None
                yield from enumerate(rows)
                return
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as err:
                    raise DatasetError(
                        path, f"not valid JSON Lines: {err.msg}", row=f"line {number}"
                    ) from None
                yield number, row
    except (OSError, UnicodeDecodeError) as err:
        raise DatasetError(path, f"cannot read the file ({err})") from None


class Row:
    """Typed access to one row of ``path``; every failure names the file, the row and the field.

    ``kind`` is how a row that is not an object is described in the error ("a JSON object"
    for benchmark files, "an object" for files of any format).
    """

    def __init__(self, path: Path, number: int | str, row: Any, kind: str = "a JSON object"):
        self.path, self.number = path, number
        if not isinstance(row, dict):
            self.fail(f"expected {kind}, got a {type(row).__name__}")
        self.row = row
        meta = row.get("metadata")
        self.meta = meta if isinstance(meta, dict) else {}

    def fail(self, message: str, field: str | None = None) -> NoReturn:
        """Raise a :class:`DatasetError` for this row (and ``field``, when given)."""
        raise DatasetError(self.path, message, row=self.number, field=field)

    # ---------------------------------------------------------------- one named field

    def _get(self, name: str) -> Any:
        if name not in self.row:
            self.fail(f"missing field (the row has {sorted(self.row)})", name)
        return self.row[name]

    def text(self, name: str, default: str | None = None, allow_empty: bool = False) -> str:
        """The string field ``name`` as written (``default`` when absent, if given)."""
        if default is not None and name not in self.row:
            return default
        value = self._get(name)
        if not isinstance(value, str):
            self.fail(f"expected a string, got {type(value).__name__} {value!r:.60}", name)
        if not allow_empty and not value.strip():
            self.fail("is empty", name)
        return value

    def ident(self, name: str, default: str | None = None) -> str:
        """The id field ``name`` (an integer or a string) as a string."""
        value = self._get(name) if default is None else self.row.get(name, default)
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            self.fail(f"expected an integer or a string, got {type(value).__name__}", name)
        return str(value)

    def strings(self, name: str, allow_numbers: bool = False) -> list[str]:
        """The non-empty list of strings ``name`` (numbers too, as strings, if allowed)."""
        value = self._get(name)
        if not isinstance(value, list) or not value:
            self.fail(f"expected a non-empty list, got {value!r:.60}", name)
        scalar = (str, int, float) if allow_numbers else (str,)
        for item in value:
            if isinstance(item, bool) or not isinstance(item, scalar):
                self.fail(f"expected a list of strings, found {type(item).__name__} {item!r}", name)
        return [str(item) for item in value]

    def choice(self, name: str, options: Sequence[str]) -> str:
        """The field ``name``, which must be one of ``options``."""
        value = self._get(name)
        if value not in options:
            self.fail(f"unknown value {value!r}; expected one of {list(options)}", name)
        return value

    def image(self, name: str, root: Path, check: bool) -> Path:
        """The image path in field ``name``, relative to ``root``; with ``check`` it must exist."""
        image = root / self.text(name)
        if check and not image.is_file():
            self.fail(
                f"image file not found: {image} (image paths are relative to {root}; pass "
                "image_root=... to look elsewhere, or check_images=False to defer the check "
                "until an image is decoded)",
                name,
            )
        return image

    # ---------------------------------------------------------------- the first of some aliases

    def find(self, *names: str) -> tuple[str | None, Any]:
        """The key and value of the first present field among ``names`` (case-insensitive), in
        the row or its ``metadata``; ``(None, None)`` when none is present."""
        for source in (self.row, self.meta):
            lowered = {str(k).lower(): k for k in source}
            for name in names:
                key = lowered.get(name.lower())
                if key is not None and source[key] not in (None, ""):
                    return key, source[key]
        return None, None

    def find_text(self, *names: str) -> str:
        """The first present field among ``names`` as stripped text (numbers are accepted)."""
        key, value = self.find(*names)
        if key is None:
            self.fail(
                f"missing field; expected one of {list(names)} (the row has {sorted(self.row)})"
            )
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            self.fail(f"expected a string, got {type(value).__name__}", key)
        if not str(value).strip():
            self.fail("is empty", key)
        return str(value).strip()

    def find_ident(self, default: int) -> str:
        """The row's id (``_id``, ``id`` or ``qid``), or ``default`` when it has none."""
        key, value = self.find("_id", "id", "qid")
        if key is None:
            return str(default)
        if isinstance(value, (bool, dict, list)):
            self.fail(f"expected an integer or a string, got {type(value).__name__}", key)
        return str(value)

    def answers(self) -> list[str]:
        """The gold answers (``golden_answers``, ``answers``, ``answer`` or ``gt``, a string or
        a list), plus any ``answer_aliases``, deduplicated in order."""
        key, value = self.find("golden_answers", "answers", "answer", "gt")
        if key is None:
            self.fail(
                "missing gold answer; expected one of ['golden_answers', 'answers', 'answer', "
                f"'gt'] (the row has {sorted(self.row)})"
            )
        values = value if isinstance(value, list) else [value]
        if not values or any(isinstance(v, (bool, dict, list)) or v is None for v in values):
            self.fail(f"expected a string or a list of strings, got {value!r:.60}", key)
        _, aliases = self.find("answer_aliases")
        if isinstance(aliases, list):
            values = values + [a for a in aliases if isinstance(a, (str, int, float))]
        out = list(dict.fromkeys(str(v).strip() for v in values if str(v).strip()))
        if not out:
            self.fail("is empty", key)
        return out


__all__ = ["Row", "read_json_list", "read_rows"]


def _invalid_json(path: Path, err: json.JSONDecodeError) -> DatasetError:
    return DatasetError(path, f"not valid JSON: {err.msg} at line {err.lineno}, column {err.colno}")
