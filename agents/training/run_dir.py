"""The run directory: ``config.json`` and the resume check, step checkpoints (atomic, pruned,
the newest found again), the warm start's marker, and log truncation after a kill."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from agents.training.config import RESUMABLE_FIELDS, ConfigError, TrainConfig


class RunDir:
    """One run's folder (``config.output``); see :mod:`agents.training` for its layout.

    Methods that write do so on the main process only and synchronise the processes of
    ``accelerator`` where the others must wait for the file.
    """

    def __init__(self, path: str | Path, accelerator):
        self.path = Path(path)
        self.accelerator = accelerator

    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process

    @property
    def checkpoints(self) -> Path:
        """``checkpoints/``: the warm start's model and the step checkpoints."""
        return self.path / "checkpoints"

    @property
    def sft_model(self) -> Path:
        """Where the warm-started model is saved (the RL reference when ``sft_steps > 0``)."""
        return self.checkpoints / "sft" / "model"

    # ------------------------------------------------------------------ config.json

    def write_config(self, config: TrainConfig, resume: bool) -> None:
        """Check that ``config`` may run here, then write it as ``config.json``.

        A resumed run may only change :data:`~agents.training.config.RESUMABLE_FIELDS`; a
        fresh run refuses a folder that already holds checkpoints. Either raises
        :class:`ConfigError` with the fix.
        """
        saved = self.path / "config.json"
        if resume and saved.is_file():
            old = json.loads(saved.read_text(encoding="utf-8"))
            new = json.loads(json.dumps(config.to_dict()))  # tuples as lists, as saved
            changed = {
                k: (old.get(k), v)
                for k, v in new.items()
                if k not in RESUMABLE_FIELDS and old.get(k, v) != v
            }
            if changed:
                lines = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in changed.items())
                raise ConfigError(
                    f"--resume with settings that change what a step computes ({lines}). A "
                    f"resumed run may only change {', '.join(sorted(RESUMABLE_FIELDS))}; start "
                    "a new --output for the rest"
                )
        elif not resume and self.checkpoints.exists() and any(self.checkpoints.iterdir()):
            raise ConfigError(
                f"{self.path} already holds a run (checkpoints/); pass --resume to continue "
                "it, or choose another --output"
            )
        if self.is_main:
            self.path.mkdir(parents=True, exist_ok=True)
            tmp = saved.with_suffix(".tmp")
            tmp.write_text(json.dumps(config.to_dict(), indent=2), encoding="utf-8")
            os.replace(tmp, saved)
        self.accelerator.wait_for_everyone()

    # ------------------------------------------------------------------ the warm start

    def sft_done(self) -> bool:
        """Whether the warm start completed (its model is saved)."""
        return (self.sft_model.parent / "done.json").is_file()

    def mark_sft_done(self, record: dict) -> None:
        """Write the warm start's completion marker (main process)."""
        (self.sft_model.parent / "done.json").write_text(json.dumps(record), encoding="utf-8")

    # ------------------------------------------------------------------ step checkpoints

    def latest_checkpoint(self) -> Path | None:
        """The newest complete step checkpoint (it holds trainer_state.json), or None."""
        if not self.checkpoints.is_dir():
            return None
        done = [
            p
            for p in self.checkpoints.glob("step_*")
            if p.is_dir() and (p / "trainer_state.json").is_file()
        ]
        return max(done, key=_step_of, default=None)

    def save_checkpoint(self, step: int, config: TrainConfig, policy=None) -> Path:
        """Write ``checkpoints/step_N`` (accelerate's state of every prepared object, and
        ``trainer_state.json``) atomically, a temporary folder renamed when complete, and
        keep the newest ``config.keep_checkpoints``. With ``policy``, ``step_N/model`` also
        holds its model (or LoRA adapters), tokenizer, template and image processor, a folder
        ``Policy.from_pretrained`` (or ``adapter=``) loads."""
        acc = self.accelerator
        final = self.checkpoints / f"step_{step:06d}"
        tmp = self.checkpoints / f".tmp_step_{step:06d}"
        if self.is_main and tmp.exists():
            shutil.rmtree(tmp)
        acc.wait_for_everyone()
        acc.save_state(str(tmp))
        acc.wait_for_everyone()
        if self.is_main:
            state = {"step": step, "config": config.to_dict(), "time": time.time()}
            if policy is not None:
                policy.save_pretrained(tmp / "model")
            (tmp / "trainer_state.json").write_text(json.dumps(state, indent=2))
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
            steps = sorted((p for p in self.checkpoints.glob("step_*") if p.is_dir()), key=_step_of)
            for old in steps[: -config.keep_checkpoints]:
                shutil.rmtree(old, ignore_errors=True)
        acc.wait_for_everyone()
        return final

    @staticmethod
    def checkpoint_step(checkpoint: Path) -> int:
        """The step a checkpoint was saved at."""
        return int(json.loads((checkpoint / "trainer_state.json").read_text())["step"])

    # ------------------------------------------------------------------ logs

    def truncate_jsonl(self, name: str, key: str, last: int) -> None:
        """Drop the lines of ``name`` whose ``key`` is above ``last`` (steps a killed run
        logged after its last checkpoint), so that after a resume every step appears exactly
        once. Main process only."""
        if self.is_main:
            truncate_jsonl(self.path / name, key, last)


def truncate_jsonl(path: Path, key: str, last: int) -> None:
    """Keep the lines of the JSONL file ``path`` whose ``key`` is at most ``last``."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if int(json.loads(line)[key]) <= last:
                kept.append(line)
        except (ValueError, KeyError, TypeError):
            continue  # a line cut short by the kill
    path.write_text("".join(k + "\n" for k in kept), encoding="utf-8")


def _step_of(checkpoint: Path) -> int:
    return int(checkpoint.name.split("_")[1])
