"""Errors shared across arft_envs' layers: raised by task loaders and by tool back-ends alike.

They live here, below both ``tasks`` and ``tools``, so that a tool never imports the task
layer to raise one (the only import that ran back up the layering).
"""

from __future__ import annotations

from pathlib import Path


class DatasetError(ValueError):
    """A dataset file or row that cannot be used; the message names file, row and field."""

    def __init__(
        self, path: str | Path, message: str, row: int | str | None = None, field: str | None = None
    ):
        where = str(path)
        if row is not None:
            where += f": row {row}"
        if field is not None:
            where += f": field {field!r}"
        super().__init__(f"{where}: {message}")
        self.path, self.row, self.field = str(path), row, field


__all__ = ["DatasetError"]
