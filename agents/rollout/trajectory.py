"""What a rollout *is*: :class:`Trajectory`, one episode as a trainer consumes it, and its
JSONL/PNG serialisation (:func:`save_trajectories`, :func:`load_trajectories`).

A record is written field by field from the dataclass's own field list, so adding a field to
:class:`Trajectory` adds it to the files; only the fields below that hold tensors or images
have a rule of their own.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents.images import resize
from agents.policy import ModelInput, Policy


@dataclass
class Trajectory:
    """One episode, as a trainer consumes it and a report shows it.

    Token fields have one entry per token of ``input_ids``: ``assistant_mask`` is 1 on the
    model's own sampled tokens, ``old_logprobs`` their log-probs at sampling time (0 elsewhere).
    ``turn_spans[k]`` is the ``[start, end)`` of turn k's sampled ids. ``pixel_values``
    (n_patches, patch_dim) and ``image_grid_thw`` (n_images, 3) are the images of
    ``input_ids`` in order; ``images`` are the same images as the model saw them (resized).
    ``rewards[k]`` and ``reward_components[k]`` are the env's for turn k; ``info`` is the
    env's final info (``answer``, ``golds``, ``f1``, ``em``, ... for arft envs) plus the
    reset info under ``"reset"``; ``turn_infos[k]`` is the env's info of turn k as it was
    returned (``tool_status``, ``repair``, ... for arft envs), JSON-safe.
    """

    env_id: str
    task_id: str | None
    group: int
    index: int
    seed: int | None
    input_ids: list[int]
    assistant_mask: list[int]
    old_logprobs: list[float]
    turn_spans: list[tuple[int, int]]
    pixel_values: torch.Tensor | None
    image_grid_thw: torch.Tensor | None
    images: list[np.ndarray]
    rewards: list[float]
    reward_components: list[dict[str, float]]
    actions: list[str]
    finish_reasons: list[str]
    terminated: bool
    truncated: bool
    info: dict[str, Any]
    messages: list[dict]
    env_images: list[np.ndarray]
    image_slots: list[dict]
    image_events: list[dict] = field(default_factory=list)
    stale_logprob_turns: list[int] = field(default_factory=list)
    retokenization: dict[str, Any] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)
    turn_infos: list[dict[str, Any]] = field(default_factory=list)

    @property
    def episode_return(self) -> float:
        return float(sum(self.rewards))

    @property
    def num_turns(self) -> int:
        return len(self.turn_spans)

    def model_input(self) -> ModelInput:
        return ModelInput(list(self.input_ids), self.pixel_values, self.image_grid_thw)

    # ------------------------------------------------------------------ serialisation

    def to_record(self, image_dir: str | Path | None = None, prefix: str = "") -> dict:
        """A JSON-safe dict; the env's images are written as PNG files into ``image_dir``."""
        names = []
        if image_dir is not None:
            from PIL import Image

            image_dir = Path(image_dir)
            image_dir.mkdir(parents=True, exist_ok=True)
            for i, image in enumerate(self.env_images):
                name = f"{prefix}{self.index}_{i}.png"
                Image.fromarray(np.ascontiguousarray(image)).save(image_dir / name)
                names.append(name)
        record: dict[str, Any] = {}
        for f in fields(self):
            if f.name in _REBUILT:
                continue
            if f.name == "env_images":  # written as PNG files, named in the record
                record["image_files"] = names
                continue
            record[f.name] = _WRITE.get(f.name, _copy)(getattr(self, f.name))
            if f.name == "reward_components":  # for readers of the file; never read back
                record["episode_return"] = self.episode_return
        return record

    @classmethod
    def from_record(
        cls, record: dict, image_dir: str | Path | None = None, policy: Policy | None = None
    ) -> Trajectory:
        """Rebuild a trajectory; with ``policy``, its pixel values are recomputed. A field
        with a default that the record lacks (a file written before the field existed) takes
        its default."""
        env_images = []
        if image_dir is not None:
            from PIL import Image

            for name in record["image_files"]:
                with Image.open(Path(image_dir) / name) as im:
                    env_images.append(np.asarray(im.convert("RGB")))
        shown = [
            resize(env_images[s["image"]], tuple(s["size"]))
            for s in record["image_slots"]
            if s["size"] is not None and env_images
        ]
        pixel_values = grid = None
        if policy is not None and shown:
            pixel_values, grid = policy.process_images(shown)
        rebuilt = {
            "pixel_values": pixel_values,
            "image_grid_thw": grid,
            "images": shown,
            "env_images": env_images,
        }
        values = {
            f.name: rebuilt[f.name]
            if f.name in rebuilt
            else _READ.get(f.name, _same)(record[f.name])
            for f in fields(cls)
            if f.name in rebuilt or f.name in record or f.default_factory is MISSING
        }
        return cls(**values)


# Fields a record does not hold: rebuilt from the image files (and a policy) on reading.
_REBUILT = frozenset({"pixel_values", "image_grid_thw", "images"})


def _copy(value: Any) -> Any:
    return list(value) if isinstance(value, list) else value


def _same(value: Any) -> Any:
    return value


def _messages_record(messages: Sequence[dict]) -> list[dict]:
    return [{"role": m["role"], "content": [dict(p) for p in m["content"]]} for m in messages]


def _messages_from_record(messages: Sequence[dict]) -> list[dict]:
    return [{"role": m["role"], "content": tuple(m["content"])} for m in messages]


# How a field is written to a record and read back, where that is not "as it is".
_WRITE: dict[str, Callable[[Any], Any]] = {
    "old_logprobs": lambda values: [round(float(x), 6) for x in values],
    "turn_spans": lambda spans: [list(s) for s in spans],
    "messages": _messages_record,
}
_READ: dict[str, Callable[[Any], Any]] = {
    "turn_spans": lambda spans: [tuple(s) for s in spans],
    "messages": _messages_from_record,
}


def save_trajectories(trajectories: Sequence[Trajectory], path: str | Path) -> Path:
    """Write ``path`` (JSONL, one trajectory a line) and its images beside it in
    ``<stem>_images/``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image_dir = path.with_name(path.stem + "_images")
    with path.open("w", encoding="utf-8") as f:
        for t in trajectories:
            f.write(json.dumps(t.to_record(image_dir), ensure_ascii=False) + "\n")
    return path


def load_trajectories(path: str | Path, policy: Policy | None = None) -> list[Trajectory]:
    """Read trajectories written by :func:`save_trajectories`."""
    path = Path(path)
    image_dir = path.with_name(path.stem + "_images")
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            out.append(Trajectory.from_record(json.loads(line), image_dir, policy))
    return out


def _json_safe(value: Any) -> Any:
    """Info values as plain JSON types (numpy scalars and arrays included)."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist() if value.size <= 64 else f"<array {value.shape} {value.dtype}>"
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)


# ---------------------------------------------------------------------- HTML pages


def trajectory_record(
    t: Trajectory, title: str | None = None, verdict: tuple[bool, str] | None = None
):
    """An :class:`arft_envs.report.EpisodeRecord` of a trajectory (env images, per-turn
    rewards and the final info)."""
    from arft_envs.report import EpisodeRecord

    title = title or (
        f"task {t.task_id} · episode {t.index} (group {t.group}) · return {t.episode_return:.2f}"
    )
    observation = {"messages": t.messages, "images": t.env_images}
    return EpisodeRecord(
        title, observation, list(t.rewards), list(t.reward_components), t.info, verdict
    )


def write_trajectory_page(
    path: str | Path,
    trajectories: Sequence[Trajectory],
    title: str = "arft",
    verdicts: Sequence[tuple[bool, str]] | None = None,
    summary: Sequence[tuple[str, str]] | None = None,
) -> Path:
    """An HTML page of trajectories (:mod:`arft_envs.report`): a summary table (the report's
    own over these episodes, or ``summary``'s (label, value) rows), then one section per
    episode marked pass/fail with its reason (``verdicts``, or the report's default
    :func:`~arft_envs.report.episode_verdict`)."""
    from arft_envs.report import write_report

    verdicts = list(verdicts) if verdicts is not None else [None] * len(trajectories)
    records = [trajectory_record(t, verdict=v) for t, v in zip(trajectories, verdicts, strict=True)]
    return write_report(path, records, title=title, summary=summary)
