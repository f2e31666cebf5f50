"""``make demo``: a tiny model learns an agentic tool-use loop on a CPU, in minutes.

The demo trains the offline tiny model (:mod:`agents.models.tiny`, 0.4 M parameters, random
weights) on an easy MAT-Coding setting — the real env, its OpenCV code really executed in the
sandbox — in two phases, and measures it on the same held-out tasks before, between and after:

1. **untrained**: the random model, which never writes a well-formed action;
2. **after SFT**: a supervised warm start on scripted-expert episodes (:mod:`agents.sft`)
   teaches the three turns: diagnose, repair with code, answer. The expert is a noisy
   annotator (:class:`MislabellingExpert`): on one task in five it names a wrong
   degradation and writes that one's repair, and the warm-started model copies its mistakes;
3. **after GRPO**: RL on live episodes (:mod:`agents.trainer`), rewarded by the env's own
   check of the diagnosis, unlearns them: the case where RL improves on imitation.

With a clean expert (``--expert-error 0``) the gain depends on what the warm start left open:
large where it diagnoses poorly, within noise where it already diagnoses nearly every task
(README, "The demo", has both, per seed). The summary reports GRPO − SFT with a bootstrap
interval over held-out tasks.

**The easy setting** (``EasyMATCoding-v0``, registered by this module): 128-px images of one
large glyph, three degradations whose look differs (dark, overexposure, noise), and short gold
turns (a few words of ``<think>``), so that an episode is ~110 model tokens. Four choices
differ from the paper's GRPO, each because the tiny model needs it:

- rollouts and the held-out evaluation sample at temperature 0.7, not 1.0: at 1.0 the tiny
  model's flat tail breaks almost every 60-token code turn, after SFT and after RL alike;
- a malformed turn ends the episode (``on_format_error="terminate"``), so that the return
  counts it (by default the env lets the model retry, which costs it nothing);
- the loss is a token mean, not the paper's per-episode mean: with the latter, the tokens of
  short (failed, terminated) episodes weigh more, which pushed down the correct turns they
  share with successful ones, and RL made the warm-started model worse.
- each turn is credited with its own reward against the group's same turn
  (``credit="turn"``, the paper's one-row-per-step training) rather than with the episode's
  return, which also rewarded a wrong diagnosis whenever the code after it ran.

**Success** on a held-out episode is what the agentic loop controls: every turn well-formed,
the exact diagnosis, the repair code ran and wrote an image, and an answer was given. It is
reported sampled (T = 0.7, four episodes per task) and greedy. Reading the glyph is reported
apart (answer F1, near chance): a 0.4 M-parameter model does not learn to read in minutes.

Run ``python -m agents.demo --output runs/demo`` (``make demo``; about 10 minutes on one CPU
core plus the sandbox's). It writes ``runs/demo/`` with ``summary.json``, ``reward_curve.png``,
``heldout.html`` (held-out episodes after GRPO, with their images) and the trainer's run folder
``train/`` (metrics, tensorboard, sample pages, the warm-started and final models).
"""

from __future__ import annotations

import argparse
import json
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from gymnasium.envs.registration import register, registry

from arft_envs.tasks.base import Task
from arft_envs.tasks.mat_coding import SyntheticCoding, restore_code

ENV_ID = "EasyMATCoding-v0"
DEFAULT_DEGRADATIONS = ("dark", "overexposure", "noise")
_CUES = {
    "dark": "too dark",
    "overexposure": "too bright",
    "blur": "blurred",
    "noise": "noisy",
    "none": "looks fine",
    "rotation90": "turned sideways",
    "rotation180": "upside down",
}


class EasyCoding:
    """A :class:`~arft_envs.tasks.mat_coding.SyntheticCoding` source restricted to some
    single degradations, with short gold turns.

    ``degradations``: the kinds kept (each a simple-split class). ``holdout``: how many tasks
    are set aside as the held-out set (drawn from ``holdout_seed``); :meth:`sample` never
    returns them. Task ids are the generator's, so ``get`` rebuilds any task.
    """

    def __init__(
        self,
        degradations: Sequence[str] = DEFAULT_DEGRADATIONS,
        image_size: Sequence[int] = (128, 128),
        content: str = "glyph",
        holdout: int = 48,
        holdout_seed: int = 2024,
    ):
        unknown = [d for d in degradations if d not in _CUES]
        if unknown or not degradations:
            raise ValueError(f"degradations must be among {sorted(_CUES)}, got {degradations}")
        self.kinds = tuple(degradations)
        self.source = SyntheticCoding("simple", tuple(int(v) for v in image_size), content)
        self._holdout: list[str] = []
        rng = np.random.default_rng(holdout_seed)
        while len(self._holdout) < holdout:
            task = self._draw(rng)
            if task.id not in self._holdout:
                self._holdout.append(task.id)
        self._excluded = set(self._holdout)

    @property
    def holdout_ids(self) -> list[str]:
        """The held-out task ids: the same ones for the same arguments, every run."""
        return list(self._holdout)

    def _draw(self, rng: np.random.Generator) -> Task:
        while True:
            task = self.source.make(int(rng.integers(2**32)))
            if tuple(task.meta["degradations"])[0] in self.kinds:
                return task

    def sample(self, rng: np.random.Generator) -> Task:
        while True:
            task = self._draw(rng)
            if task.id not in self._excluded:
                return _short(task)

    def get(self, task_id: str) -> Task:
        return _short(self.source.get(task_id))


def _short(task: Task) -> Task:
    """The task with short gold turns: a cue word, the repair code, the answer."""
    kind = task.meta["degradations"][0]
    answer = task.answers[0]
    steps = [f"<think> {_CUES[kind]} </think>\n<problem> {{'{kind}'}} </problem>"]
    if kind != "none":
        lines = restore_code(task.meta["degradation"]).splitlines()
        code = "\n".join(line.split("  #")[0] for line in lines)  # comments cost tokens
        steps.append(f"<think> fix it </think>\n<code>\n```python\n{code}\n```\n</code>")
    steps.append(f"<think> it reads {answer} </think>\n<answer> {answer} </answer>")
    meta = dict(task.meta, gold_steps=steps)
    return Task(task.id, task.question, task.answers, task.images, task.split, meta)


class MislabellingExpert:
    """The scripted expert with an annotator's noise: on a fraction ``error`` of tasks it
    names another of ``kinds`` and writes that degradation's repair, then answers as the gold
    does. The tasks are chosen by a hash of the task id, so a task is always demonstrated the
    same way, as in a fixed, noisily labelled dataset. Tasks without a repair (``none``) keep
    their gold turns, and ``none`` is never the wrong label, so every episode keeps its shape.

    Use as the warm start's demonstrator: ``GRPOTrainer(config, expert=MislabellingExpert(…))``.
    """

    def __init__(self, kinds: Sequence[str], error: float):
        if not 0.0 <= error < 1.0:
            raise ValueError(f"error must be in [0, 1), got {error}")
        self.kinds = tuple(k for k in kinds if k != "none")
        if error and len(self.kinds) < 2:
            raise ValueError(f"mislabelling needs two degradations with a repair, got {kinds}")
        self.error = error
        from arft_envs.experts import ScriptedExpert

        self._gold = ScriptedExpert()
        self._turns: dict[str, list[str]] = {}  # kind -> short gold turns of one example task
        rng = np.random.default_rng(0)
        source = SyntheticCoding("simple", (128, 128), "glyph")
        while len(self._turns) < len(self.kinds):
            task = source.make(int(rng.integers(2**32)))
            kind = task.meta["degradations"][0]
            if kind in self.kinds and kind not in self._turns:
                self._turns[kind] = _short(task).meta["gold_steps"]

    def wrong_label(self, task: Task) -> str | None:
        """The degradation this expert names for ``task`` instead of the true one, or None."""
        kind = task.meta["degradations"][0]
        if kind not in self.kinds or not self.error:
            return None
        digest = zlib.crc32(task.id.encode())
        if (digest & 0xFFFF) / 0x10000 >= self.error:
            return None
        others = [k for k in self.kinds if k != kind]
        return others[(digest >> 16) % len(others)]

    def __call__(self, obs: Any, env: Any) -> str:
        turn = self._gold(obs, env)
        task = env.unwrapped.task
        wrong = self.wrong_label(task)
        index = task.meta["gold_steps"].index(turn)
        if wrong is None or index >= 2:  # the answer turn stays the gold one
            return turn
        return self._turns[wrong][index]


def make_easy_env(
    degradations: Sequence[str] = DEFAULT_DEGRADATIONS,
    image_size: Sequence[int] = (128, 128),
    content: str = "glyph",
    holdout: int = 48,
    holdout_seed: int = 2024,
    **kwargs: Any,
):
    """
    ## Description
    ``MATCoding-v0`` on the easy task source :class:`EasyCoding`: 128-px images of one
    glyph, one of a few photometric degradations, short gold turns; the held-out tasks are
    never sampled. The code turn really runs in the sandbox.

    ## Action Space, Observation Space, Rewards, Starting State, Episode End
    As ``MATCoding-v0`` (see :class:`arft_envs.envs.mat_coding.MATCodingEnv`).

    ## Arguments
    ``degradations``, ``image_size``, ``content``, ``holdout``, ``holdout_seed`` (see
    :class:`EasyCoding`); any other keyword goes to ``MATCodingEnv`` (``max_turns``, …).

    ## Version History
    - v0: initial release.
    """
    from arft_envs.envs.mat_coding import MATCodingEnv

    tasks = EasyCoding(degradations, image_size, content, holdout, holdout_seed)
    return MATCodingEnv(tasks=tasks, **kwargs)


if ENV_ID not in registry:
    register(id=ENV_ID, entry_point=make_easy_env, disable_env_checker=True)


# ============================================================================ evaluation


@dataclass
class Evaluation:
    """Held-out results of one policy: rates over episodes, and the episodes themselves."""

    success: float
    diagnosis: float
    well_formed: float
    code_ran: float
    answer_f1: float
    mean_return: float
    episodes: int
    trajectories: list = field(default_factory=list, repr=False)

    def row(self) -> dict[str, float]:
        return {
            "success": self.success,
            "diagnosis": self.diagnosis,
            "well_formed": self.well_formed,
            "code_ran": self.code_ran,
            "answer_f1": self.answer_f1,
            "mean_return": self.mean_return,
        }


def episode_success(trajectory) -> dict[str, bool]:
    """What one MAT-Coding episode achieved: exact diagnosis, all turns well-formed, the
    repair ran (when the gold plan has one), an answer given; ``success`` is all of them."""
    totals: dict[str, float] = {}
    formats = []
    for turn in trajectory.reward_components:
        for name, value in turn.items():
            totals[name] = totals.get(name, 0.0) + float(value)
        formats.append(float(turn.get("format", 0.0)))
    answered = trajectory.info.get("answer") is not None
    diagnosis = totals.get("problem", 0.0) == 1.0
    needs_code = gold_kind(trajectory.task_id) != "none"
    code_ran = totals.get("code", 0.0) >= 1.0 if needs_code else True
    well_formed = bool(formats) and all(f == 1.0 for f in formats) and answered
    return {
        "diagnosis": diagnosis,
        "well_formed": well_formed,
        "code_ran": code_ran,
        "success": diagnosis and well_formed and code_ran,
    }


def gold_kind(task_id: str) -> str:
    """The degradation of a synthetic coding task, from its id (the generator draws the
    degradation first, so neither image size nor content changes it)."""
    return _ID_SOURCE.get(task_id).meta["degradations"][0]


_ID_SOURCE = SyntheticCoding("simple", (128, 128), "glyph")


def evaluate(
    policy,
    task_ids: Sequence[str],
    *,
    env_id: str = ENV_ID,
    env_kwargs: dict | None = None,
    temperature: float = 1.0,
    samples: int = 1,
    max_new_tokens: int = 128,
    max_turns: int = 4,
    seed: int = 0,
    num_envs: int = 16,
) -> Evaluation:
    """Play ``samples`` episodes on each held-out task (sampled at ``temperature``, 0 for
    greedy, seeded) and measure them with :func:`episode_success`."""
    import torch

    from agents.rollout import RolloutConfig, collect, make_envs

    envs = make_envs(env_id, min(num_envs, len(task_ids) * samples), **(env_kwargs or {}))
    config = RolloutConfig(
        group_size=samples,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        max_turns=max_turns,
        seed=seed,
    )
    try:
        policy.model.eval()
        with torch.no_grad():
            trajectories = collect(policy, envs, config, task_ids=list(task_ids), env_id=env_id)
    finally:
        envs.close()
    flags = [episode_success(t) for t in trajectories]

    def rate(key: str) -> float:
        return float(np.mean([f[key] for f in flags]))

    return Evaluation(
        success=rate("success"),
        diagnosis=rate("diagnosis"),
        well_formed=rate("well_formed"),
        code_ran=rate("code_ran"),
        answer_f1=float(np.mean([float(t.info.get("f1", 0.0) or 0.0) for t in trajectories])),
        mean_return=float(np.mean([t.episode_return for t in trajectories])),
        episodes=len(trajectories),
        trajectories=trajectories,
    )


def paired_gain(
    before: Evaluation, after: Evaluation, resamples: int = 10_000, seed: int = 0
) -> dict[str, Any]:
    """Success after minus before on the same held-out tasks, with a 95% interval from a
    bootstrap over tasks (episodes of one task are not independent, so tasks are resampled).

    Returns ``{"gain", "ci95": [low, high], "tasks"}``; the interval excluding 0 is what the
    demo calls a measurable change.
    """

    def per_task(evaluation: Evaluation) -> dict[str, float]:
        hits: dict[str, list[bool]] = {}
        for t in evaluation.trajectories:
            hits.setdefault(t.task_id, []).append(episode_success(t)["success"])
        return {task: float(np.mean(v)) for task, v in hits.items()}

    a, b = per_task(before), per_task(after)
    if set(a) != set(b) or not a:
        raise ValueError("paired_gain needs evaluations of the same, non-empty set of tasks")
    diffs = np.array([b[task] - a[task] for task in sorted(a)])  # (tasks,)
    rng = np.random.default_rng(seed)
    means = diffs[rng.integers(len(diffs), size=(resamples, len(diffs)))].mean(axis=1)
    low, high = np.quantile(means, [0.025, 0.975])
    return {"gain": float(diffs.mean()), "ci95": [float(low), float(high)], "tasks": len(diffs)}


# ============================================================================ the demo


@dataclass
class DemoSettings:
    """The demo's knobs; the defaults are the ones ``make demo`` runs."""

    output: str = "runs/demo"
    seed: int = 0
    degradations: tuple[str, ...] = DEFAULT_DEGRADATIONS
    holdout: int = 48
    temperature: float = 0.7
    eval_samples: int = 4
    sft_steps: int = 300
    sft_learning_rate: float = 2e-3
    sft_batch_size: int = 8
    sft_episodes: int = 128
    expert_error: float = 0.2
    steps: int = 50
    group_size: int = 8
    groups_per_step: int = 4
    learning_rate: float = 2e-4
    beta: float = 0.04
    aggregation: str = "token-mean"
    credit: str = "turn"
    max_new_tokens: int = 128
    max_turns: int = 4
    threads: int = 1

    def train_config(self):
        from agents.trainer import TrainConfig

        return TrainConfig(
            env=ENV_ID,
            env_kwargs=self.env_kwargs(),
            model="tiny",
            output=str(Path(self.output) / "train"),
            steps=self.steps,
            seed=self.seed,
            group_size=self.group_size,
            groups_per_step=self.groups_per_step,
            beta=self.beta,
            aggregation=self.aggregation,
            credit=self.credit,
            temperature=self.temperature,
            learning_rate=self.learning_rate,
            lr_schedule="constant",
            max_new_tokens=self.max_new_tokens,
            max_turns=self.max_turns,
            sft_steps=self.sft_steps,
            sft_learning_rate=self.sft_learning_rate,
            sft_batch_size=self.sft_batch_size,
            sft_episodes=self.sft_episodes,
            save_every=0,
            sample_every=max(self.steps // 4, 1),
            report_to=("tensorboard",),
            progress_bar=True,
        )

    def env_kwargs(self) -> dict[str, Any]:
        return {
            "degradations": list(self.degradations),
            "holdout": self.holdout,
            "max_turns": self.max_turns,
            # A malformed turn ends the episode, so the return counts it; by default the env
            # lets the model try again, which a success measure of clean episodes would not.
            "on_format_error": "terminate",
        }


def run_demo(settings: DemoSettings) -> dict[str, Any]:
    """SFT then GRPO with held-out evaluations before, between and after; returns the summary."""
    import torch

    from agents.trainer import GRPOTrainer, write_trajectory_page

    torch.set_num_threads(settings.threads)
    start = time.perf_counter()
    output = Path(settings.output)
    if (output / "train").exists():
        import shutil

        shutil.rmtree(output / "train")
    output.mkdir(parents=True, exist_ok=True)
    config = settings.train_config()
    holdout = EasyCoding(settings.degradations, holdout=settings.holdout).holdout_ids
    expert = None
    if settings.expert_error:
        expert = MislabellingExpert(settings.degradations, settings.expert_error)
    trainer = GRPOTrainer(config, expert=expert)
    trainer.setup()

    def measure(label: str) -> dict[str, Evaluation]:
        t = time.perf_counter()
        common = dict(
            env_kwargs=settings.env_kwargs(),
            max_new_tokens=settings.max_new_tokens,
            max_turns=settings.max_turns,
            seed=10_000 + settings.seed,
        )
        out = {
            "sampled": evaluate(
                trainer.policy,
                holdout,
                temperature=settings.temperature,
                samples=settings.eval_samples,
                **common,
            ),
            "greedy": evaluate(trainer.policy, holdout, temperature=0.0, samples=1, **common),
        }
        s, g = out["sampled"], out["greedy"]
        print(
            f"[{time.perf_counter() - start:4.0f}s] held-out {label:<11} success {s.success:.3f} "
            f"sampled (T={settings.temperature}), {g.success:.3f} greedy; diagnosis "
            f"{s.diagnosis:.3f}, well-formed {s.well_formed:.3f}, code ran {s.code_ran:.3f}, "
            f"answer F1 {s.answer_f1:.3f} ({time.perf_counter() - t:.0f}s)",
            flush=True,
        )
        return out

    results = {"untrained": measure("untrained")}
    trainer.warm_start()
    results["sft"] = measure("after SFT")
    trainer.run()
    results["grpo"] = measure("after GRPO")
    trainer.finish()
    write_trajectory_page(
        output / "heldout.html",
        results["grpo"]["sampled"].trajectories[:: max(settings.eval_samples, 1)][:12],
        title=f"{ENV_ID}: held-out episodes after SFT + GRPO (sampled, T={settings.temperature})",
    )
    plot_rewards(config.output, output / "reward_curve.png", results)
    summary = {
        "settings": {
            k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(settings).items()
        },
        "heldout": {k: {m: e.row() for m, e in v.items()} for k, v in results.items()},
        "episodes_per_eval": {m: e.episodes for m, e in results["untrained"].items()},
        "grpo_minus_sft": {
            m: paired_gain(results["sft"][m], results["grpo"][m]) for m in ("sampled", "greedy")
        },
        "seconds": round(time.perf_counter() - start, 1),
    }
    (output / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    print_summary(summary)
    return summary


def plot_rewards(run_dir: str | Path, path: str | Path, results: dict | None = None) -> Path:
    """The training reward per GRPO step (mean and a moving average) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [
        json.loads(line)
        for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()
        if line.strip()
    ]
    steps = [r["step"] for r in rows]
    reward = np.array([r["reward_mean"] for r in rows])
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    ax.plot(steps, reward, color="#9ab", lw=1, label="episode return (step mean)")
    window = max(1, len(reward) // 8)
    if len(reward) >= window > 1:
        smooth = np.convolve(reward, np.ones(window) / window, mode="valid")
        ax.plot(steps[window - 1 :], smooth, color="#136", lw=2, label=f"moving average ({window})")
    if "reward/problem" in rows[0]:
        ax.plot(
            steps,
            [r["reward/problem"] for r in rows],
            color="#c63",
            lw=1,
            alpha=0.7,
            label="diagnosis reward",
        )
    ax.set_xlabel("GRPO step")
    ax.set_ylabel("reward")
    title = "EasyMATCoding-v0: tiny model, SFT warm start then GRPO"
    if results:
        title += "\nheld-out success (sampled): " + " → ".join(
            f"{k} {v['sampled'].success:.2f}" for k, v in results.items()
        )
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def print_summary(summary: dict) -> None:
    rows = summary["heldout"]
    settings = summary["settings"]
    keys = ("success", "diagnosis", "well_formed", "code_ran", "answer_f1", "mean_return")
    counts = summary["episodes_per_eval"]
    for mode, label in (
        ("sampled", f"sampled at T={settings['temperature']}, {counts['sampled']} episodes"),
        ("greedy", f"greedy, {counts['greedy']} episodes"),
    ):
        print(f"\nheld-out, {label}")
        print(f"{'':<11}" + "".join(f"{k:>12}" for k in keys))
        for name, row in rows.items():
            print(f"{name:<11}" + "".join(f"{row[mode][k]:>12.3f}" for k in keys))
    for mode, gain in summary.get("grpo_minus_sft", {}).items():
        low, high = gain["ci95"]
        print(
            f"GRPO - SFT, {mode}: {gain['gain']:+.3f} (95% bootstrap interval over "
            f"{gain['tasks']} tasks: {low:+.3f} to {high:+.3f})"
        )
    print(f"\nwall time {summary['seconds']:.0f}s")


def main(argv: list[str] | None = None) -> int:
    defaults = DemoSettings()
    parser = argparse.ArgumentParser(
        prog="python -m agents.demo", description=__doc__.split("\n\n")[0]
    )
    for name, value in vars(defaults).items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, tuple):
            parser.add_argument(flag, nargs="+", default=list(value))
        else:
            parser.add_argument(flag, type=type(value), default=value)
    args = parser.parse_args(argv)
    values = vars(args)
    values["degradations"] = tuple(values["degradations"])
    run_demo(DemoSettings(**values))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
