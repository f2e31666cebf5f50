"""The :class:`Task` record every environment consumes, task sources, and image decoding.

:class:`~arft_envs.errors.DatasetError` is re-exported here, where loaders have always raised
it from.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from arft_envs.errors import DatasetError  # re-exported: loaders raise it from here too

ImageSource = np.ndarray | str | Path | Callable[[], np.ndarray]


def load_image(source: ImageSource) -> np.ndarray:
    """Decode an image source to a read-only ``uint8`` H×W×3 RGB array."""
    if callable(source):
        array = source()
    elif isinstance(source, np.ndarray):
        array = source
    else:
        from PIL import Image as PILImage

        path = Path(source)
        try:
            with PILImage.open(path) as im:
                array = np.asarray(im.convert("RGB"))
        except FileNotFoundError:
            raise DatasetError(path, "image file not found") from None
        except OSError as err:
            raise DatasetError(path, f"cannot decode image ({err})") from None
    array = np.asarray(array)
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"expected a uint8 HxWx3 image, got {array.dtype} {array.shape}")
    array = np.ascontiguousarray(array)
    array.setflags(write=False)
    return array


@dataclass
class Task:
    """One problem: a question, its images (loaded lazily), gold answers and metadata.

    ``meta`` carries family-specific gold data, e.g. ``degradations`` and ``gold_steps`` for
    MAT-Coding, ``gold_queries`` and ``corpus`` for search tasks. ``origins`` says where each
    image path came from, ``(file, row, field)`` per image (empty for generated tasks), so
    that an image found missing only when decoded (``check_images=False``) is reported with
    its dataset file, row and field.
    """

    id: str
    question: str
    answers: list[str]
    images: Sequence[ImageSource] = ()
    split: str = "default"
    meta: dict[str, Any] = field(default_factory=dict)
    origins: Sequence[tuple[str, int | str, str]] = field(default=(), repr=False, compare=False)
    _cache: list[np.ndarray] | None = field(default=None, repr=False, compare=False)

    def load_images(self) -> list[np.ndarray]:
        """The decoded images (read-only arrays), decoded once and cached. A file that is
        missing or undecodable raises :class:`DatasetError` naming the dataset file, row and
        field it came from (when known) and the image path."""
        if self._cache is None:
            decoded = []
            for index, src in enumerate(self.images):
                try:
                    decoded.append(load_image(src))
                except DatasetError as err:
                    if index >= len(self.origins):
                        raise
                    file, row, name = self.origins[index]
                    reason = str(err).removeprefix(f"{err.path}: ")
                    raise DatasetError(
                        file,
                        f"{reason}: {err.path} (task {self.id!r}; fix the path or the file, "
                        "or pass image_root=... if the images live elsewhere)",
                        row,
                        name,
                    ) from None
            self._cache = decoded
        return self._cache


class TaskSource(Protocol):
    """Where an env gets its tasks: a finite dataset or an unlimited generator."""

    def sample(self, rng: np.random.Generator) -> Task:
        """A task drawn with ``rng`` (the env's ``np_random``)."""

    def get(self, task_id: str) -> Task:
        """The task with this id; raise ``KeyError`` naming close ids if it is unknown."""


class ListTaskSource:
    """A finite list of tasks (a loaded benchmark), sampled uniformly."""

    def __init__(self, tasks: Sequence[Task], name: str = "dataset"):
        if not tasks:
            raise ValueError(f"{name}: no tasks to serve (is the split empty?)")
        self.tasks = list(tasks)
        self.name = name
        self._by_id = {t.id: t for t in self.tasks}

    def __len__(self) -> int:
        return len(self.tasks)

    def sample(self, rng: np.random.Generator) -> Task:
        return self.tasks[int(rng.integers(len(self.tasks)))]

    def get(self, task_id: str) -> Task:
        try:
            return self._by_id[str(task_id)]
        except KeyError:
            import difflib

            close = difflib.get_close_matches(str(task_id), list(self._by_id), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise KeyError(f"{self.name}: no task with id {task_id!r}{hint}") from None


class StepwiseTaskSource:
    """One-step rows drawn from a generator of full trajectories (``mode="stepwise"``).

    Each sampled task is one random gold step of a generated task; its id is
    ``"<task id>:<step index>"``. Subclasses build the row in ``_row``.
    """

    def __init__(self, source: TaskSource):
        self.source = source

    def _row(self, task: Task, index: int) -> Task:
        raise NotImplementedError

    def sample(self, rng: np.random.Generator) -> Task:
        task = self.source.sample(rng)
        return self._row(task, int(rng.integers(len(task.meta["gold_steps"]))))

    def get(self, task_id: str) -> Task:
        base, _, index = str(task_id).rpartition(":")
        if not base or not index.isdigit():
            raise KeyError(f"stepwise synthetic ids look like '<task id>:<step>', got {task_id!r}")
        return self._row(self.source.get(base), int(index))
