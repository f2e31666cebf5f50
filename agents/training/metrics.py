"""What a run reports: per-step timing, episode summaries, the step's metrics line, and one
:class:`MetricsWriter` for ``*.jsonl``, tensorboard, wandb and the progress bar."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agents.policy import Policy
from agents.rollout import Trajectory
from agents.training.config import TrainConfig


class Clock:
    """Seconds spent per named activity within one step."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

    def wrap(self, name: str, fn: Callable) -> Callable:
        """``fn`` with every call's time added to ``name``."""

        def timed(*args, **kwargs):
            with self(name):
                return fn(*args, **kwargs)

        return timed


class TimedPolicy:
    """The policy as the rollout sees it, with ``generate`` timed."""

    def __init__(self, policy: Policy, clock: Clock):
        self._policy = policy
        self.generate = clock.wrap("generation", policy.generate)

    def __getattr__(self, name: str):
        return getattr(self._policy, name)


class TimedEnvs:
    """A vector env whose ``step`` (where the tools run) is timed."""

    def __init__(self, envs, clock: Clock):
        self._envs = envs
        self.step = clock.wrap("tools", envs.step)

    def __getattr__(self, name: str):
        return getattr(self._envs, name)


def episode_summary(t: Trajectory) -> dict[str, Any]:
    """The numbers of one episode that a step's metrics average."""
    components: dict[str, float] = {}
    for turn in t.reward_components:
        for name, value in turn.items():
            components[name] = components.get(name, 0.0) + float(value)
    info = t.info
    return {
        "group": t.group,
        "rewards": [float(r) for r in t.rewards],
        "return": t.episode_return,
        "components": components,
        "f1": float(info.get("f1", 0.0) or 0.0),
        "em": float(info.get("em", 0.0) or 0.0),
        "turns": t.num_turns,
        "format_errors": float(info.get("format_errors", 0) or 0),
        "tool_failures": float(info.get("tool_failures", 0) or 0),
        "tool_timeouts": float(info.get("tool_timeouts", 0) or 0),
        # every tool reply (a format error's included) is a "tool" message; calls are the rest
        "tool_calls": max(
            float(sum(m.get("role") == "tool" for m in t.messages))
            - float(info.get("format_errors", 0) or 0),
            0.0,
        ),
        "truncated": float(t.truncated),
        "model_tokens": int(sum(t.assistant_mask)),
        "tokens": len(t.input_ids),
        "length_stops": float(sum(r == "length" for r in t.finish_reasons)),
    }


def step_metrics(
    step: int,
    trajectories: Sequence[Trajectory],
    update: dict[str, float],
    clock: Clock,
    accelerator,
) -> dict[str, Any]:
    """The metrics line of one step, over every process's episodes: rewards and their
    components, episode statistics, the update's loss statistics (averaged over processes),
    token counts and where the time went."""
    from accelerate.utils import gather_object

    local = {"episodes": [episode_summary(t) for t in trajectories], "update": update}
    parts = gather_object([local]) if accelerator.num_processes > 1 else [local]
    episodes = [e for part in parts for e in part["episodes"]]
    returns = np.array([e["return"] for e in episodes])
    metrics: dict[str, Any] = {
        "step": step,
        "episodes": len(episodes),
        "reward_mean": float(returns.mean()),
        "reward_std": float(returns.std()),
        # the share of groups whose episodes' rewards differ: a group-relative advantage
        # (GRPO, RLOO, ...) is 0 on every episode of the others
        "groups_with_signal": groups_with_signal(
            [
                (p, e["group"], e["rewards"])
                for p, part in enumerate(parts)
                for e in part["episodes"]
            ]
        ),
    }
    names = sorted({k for e in episodes for k in e["components"]})
    for name in names:
        metrics[f"reward/{name}"] = float(
            np.mean([e["components"].get(name, 0.0) for e in episodes])
        )
    for key in ("f1", "em", "turns", "format_errors", "tool_failures", "truncated"):
        metrics[key] = float(np.mean([e[key] for e in episodes]))
    for key in parts[0]["update"]:
        metrics[key] = float(np.mean([p["update"][key] for p in parts]))
    calls = sum(e["tool_calls"] for e in episodes)
    failures = sum(e["tool_failures"] for e in episodes)
    timeouts = sum(e["tool_timeouts"] for e in episodes)
    metrics["tools/calls_per_turn"] = calls / max(sum(e["turns"] for e in episodes), 1)
    metrics["tools/ok_rate"] = (calls - failures) / calls if calls else 0.0
    metrics["tools/error_rate"] = (failures - timeouts) / calls if calls else 0.0
    metrics["tools/timeout_rate"] = timeouts / calls if calls else 0.0
    metrics["tokens/model"] = int(sum(e["model_tokens"] for e in episodes))
    metrics["tokens/total"] = int(sum(e["tokens"] for e in episodes))
    metrics["tokens/per_turn"] = metrics["tokens/model"] / max(sum(e["turns"] for e in episodes), 1)
    metrics["stopped_at_length"] = float(np.mean([e["length_stops"] for e in episodes]))
    seconds = clock.seconds
    for key in ("generation", "tools", "rollout", "reference", "forward_backward", "step"):
        metrics[f"time/{key}"] = round(seconds.get(key, 0.0), 4)
    metrics["time/rollout_other"] = round(
        seconds.get("rollout", 0.0) - seconds.get("generation", 0.0) - seconds.get("tools", 0.0),
        4,
    )
    return metrics


def groups_with_signal(episodes: Sequence[tuple[Any, int, Sequence[float]]]) -> float:
    """The share of groups with a learning signal, from ``(process, group, turn rewards)``
    of each episode: a group has one when its episodes did not all earn the same rewards,
    turn by turn (the same returns and the same per-turn rewards leave every group-relative
    advantage at 0, whether credit is per episode or per turn). 0.0 without episodes."""
    groups: dict[tuple[Any, int], set[tuple[float, ...]]] = {}
    for process, group, rewards in episodes:
        groups.setdefault((process, group), set()).add(tuple(float(r) for r in rewards))
    if not groups:
        return 0.0
    return sum(len(v) > 1 for v in groups.values()) / len(groups)


#: Tensorboard groups: a metric whose name starts with one of these keeps its name.
TAG_GROUPS = ("train/", "rollout/", "time/", "tools/")
_ROLLOUT_KEYS = frozenset(
    {"episodes", "reward_mean", "reward_std", "groups_with_signal", "f1", "em", "turns",
     "format_errors", "tool_failures", "truncated", "stopped_at_length"}
)  # fmt: skip


def tensorboard_tag(key: str) -> str:
    """The grouped tensorboard tag of a metrics.jsonl key (the file keeps its names):
    rewards, episode statistics and tokens under ``rollout/``, timings under ``time/``, tool
    health under ``tools/``, the update's statistics under ``train/``."""
    if key.startswith(TAG_GROUPS):
        return key
    if key in _ROLLOUT_KEYS or key.startswith(("reward/", "tokens/", "sampling/")):
        return "rollout/" + key
    return "train/" + key


class TrainingHealth:
    """Watches a run's step metrics and warns, once each, about two silent failures:

    - **tool-use collapse**: ``tools/calls_per_turn`` below ``collapse_fraction`` of its first
      step's value (the policy learned to stop calling tools);
    - **no learning signal**: a step in which no group's episodes differ in their rewards
      (``groups_with_signal`` 0, :func:`groups_with_signal`; for a metrics line without it,
      ``reward_std`` 0 over the step), so that every group-relative advantage is 0.
    """

    def __init__(self, collapse_fraction: float = 0.5):
        self.collapse_fraction = float(collapse_fraction)
        self.start_rate: float | None = None
        self.warned: set[str] = set()

    def check(self, metrics: dict[str, Any]) -> list[str]:
        """The warnings this step raises for the first time."""
        out = []
        rate = metrics.get("tools/calls_per_turn")
        if rate is not None and self.start_rate is None:
            self.start_rate = float(rate)
        if (
            rate is not None
            and self.collapse_fraction > 0
            and self.start_rate
            and rate < self.collapse_fraction * self.start_rate
            and "collapse" not in self.warned
        ):
            self.warned.add("collapse")
            out.append(
                f"step {metrics.get('step')}: tool-call rate {rate:.2f} per turn fell below "
                f"{self.collapse_fraction:g} x its start ({self.start_rate:.2f}): tool-use "
                "collapse. Try a warm start on expert episodes (sft_steps), a reward that pays "
                "tool calls, a higher temperature, or a smaller learning rate"
            )
        signal = metrics.get("groups_with_signal")
        silent = signal == 0.0 if signal is not None else metrics.get("reward_std") == 0.0
        if silent and "no_signal" not in self.warned:
            self.warned.add("no_signal")
            out.append(
                f"step {metrics.get('step')}: every group has reward std 0 (its episodes all "
                "earned the same rewards), so every group-relative advantage is 0 and the step "
                "learns nothing. Try a warm start (sft_steps), an easier env, or a higher "
                "temperature"
            )
        return out


class MetricsWriter:
    """Where a run's records go: a JSON line per record in the run folder, the numeric values
    to tensorboard (``tensorboard/<phase>``) and wandb, and a progress bar. Only the main
    process writes; on the others every method does nothing."""

    def __init__(self, output: Path, config: TrainConfig, is_main: bool):
        self.output = Path(output)
        self.config = config
        self.is_main = is_main
        self._writers: dict[str, Any] = {}

    def open(self, phase: str, purge_step: int) -> None:
        """Open the loggers of ``phase`` ("sft" or the algorithm's name), dropping events a
        killed run wrote at ``purge_step`` and later."""
        if not self.is_main:
            return
        cfg = self.config
        if "tensorboard" in cfg.report_to and f"tb/{phase}" not in self._writers:
            from torch.utils.tensorboard import SummaryWriter

            self._writers[f"tb/{phase}"] = SummaryWriter(
                str(self.output / "tensorboard" / phase), purge_step=purge_step
            )
        if "wandb" in cfg.report_to and "wandb" not in self._writers:
            self._writers["wandb"] = self._open_wandb()

    def _open_wandb(self):
        try:
            import wandb
        except ImportError as err:
            raise ImportError(
                "report_to includes 'wandb' but wandb is not installed: `pip install wandb`"
            ) from err
        run_id_file = self.output / "wandb_run_id"
        run_id = run_id_file.read_text().strip() if run_id_file.is_file() else None
        run = wandb.init(
            project=self.config.wandb_project,
            config=self.config.to_dict(),
            dir=str(self.output),
            id=run_id,
            resume="allow",
        )
        run_id_file.write_text(run.id)
        return run

    def log(self, record: dict, filename: str, phase: str, step: int) -> None:
        """One line of ``filename`` and the numeric values to tensorboard and wandb."""
        if not self.is_main:
            return
        with (self.output / filename).open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        scalars = {
            k: v
            for k, v in record.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)
        }
        writer = self._writers.get(f"tb/{phase}")
        if writer is not None:
            for key, value in scalars.items():
                writer.add_scalar(tensorboard_tag(key), value, step)
            writer.flush()
        if "wandb" in self._writers:
            self._writers["wandb"].log({f"{phase}/{k}": v for k, v in scalars.items()})

    def progress(self, total: int, initial: int, desc: str):
        """A tqdm bar on stderr (None off the main process or with ``progress_bar=False``),
        redrawn on every update as ``arft eval``'s is: a step takes long enough for each to
        count."""
        if not (self.is_main and self.config.progress_bar):
            return None
        import sys

        from tqdm.auto import tqdm

        return tqdm(
            total=total,
            initial=initial,
            desc=desc,
            dynamic_ncols=True,
            file=sys.stderr,
            mininterval=0,
        )

    def close(self) -> None:
        """Finish wandb and close the tensorboard writers."""
        for name, writer in list(self._writers.items()):
            if name == "wandb":
                writer.finish()
            else:
                writer.close()
        self._writers.clear()
