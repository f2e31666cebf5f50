"""``make demo``: a tiny model learns an agentic tool-use loop on a CPU, in minutes.

The demo trains the offline tiny model (:mod:`agents.models.tiny`, 0.4 M parameters, random
weights) on an easy MAT-Coding setting — the real env, its OpenCV code really executed in the
sandbox — in two phases, and measures it on the same held-out tasks before, between and after:

1. **untrained**: the random model, which never writes a well-formed action;
2. **after SFT**: a supervised warm start on scripted-expert episodes (:mod:`agents.training.warm_start`)
   teaches the three turns: diagnose, repair with code, answer. The expert is a noisy
   annotator (:class:`~agents.demo.annotator.MislabellingExpert`): on one task in five it names a wrong
   degradation and writes that one's repair, and the warm-started model copies its mistakes;
3. **after GRPO**: RL on live episodes (:mod:`agents.training`), rewarded by the env's own
   check of the diagnosis, unlearns them: the case where RL improves on imitation.

With a clean expert (``--expert-error 0``) the gain depends on what the warm start left open:
large where it diagnoses poorly, within noise where it already diagnoses nearly every task
(README, "The demo", has both, per seed). The summary reports GRPO − SFT with a bootstrap
interval over held-out tasks.

**The easy setting** (``EasyMATCoding-v0``, :mod:`arft_envs.tasks.coding.easy`): 128-px images of one
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
So is ``repaired``, not part of success: a code turn measurably restored the image (SSIM or
PSNR against the clean image, ``info["repair"]``), which code that merely ran need not do;
and the tool calls of each phase by status (``ok``, ``error``, ``timeout``, ...).

Run ``python -m agents.demo --output runs/demo`` (``make demo``; about 10 minutes on one CPU
core plus the sandbox's). It writes ``runs/demo/`` with ``summary.json``, ``reward_curve.png``,
``heldout.html`` (held-out episodes after GRPO, with their images) and the trainer's run folder
``train/`` (metrics, tensorboard, sample pages, the warm-started and final models).

**One source for the settings.** The training settings are those of
``configs/easy_coding_tiny.yaml`` (the same run as ``arft train --config``); a
:class:`DemoSettings` field left at ``None`` takes the file's value, and the demo overrides only
its own knobs (output, seed, the warm start's annotator, checkpoints off, the sample cadence).
The package: :mod:`.annotator` (the noisy expert), :mod:`.measure` (held-out success and the
bootstrap), :mod:`.report` (the curve and the table), and this module (the settings and the run).
"""

from __future__ import annotations

import argparse
import json
import time
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from agents.demo.annotator import MislabellingExpert
from agents.demo.measure import Evaluation, evaluate_success, paired_gain
from agents.demo.report import (
    format_rate,
    format_statuses,
    page_summary,
    plot_rewards,
    print_summary,
)
from arft_envs.tasks.coding.easy import ENV_ID, EasyCoding

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "easy_coding_tiny.yaml"

# DemoSettings fields that are TrainConfig fields of the same name, and those that are env
# arguments: all default to the config file's values.
TRAIN_KNOBS = (
    "temperature",
    "sft_steps",
    "sft_learning_rate",
    "sft_batch_size",
    "sft_episodes",
    "steps",
    "group_size",
    "groups_per_step",
    "learning_rate",
    "beta",
    "aggregation",
    "credit",
    "max_new_tokens",
    "max_turns",
)
ENV_KNOBS = ("degradations", "holdout")


def load_config(path: str | Path = CONFIG) -> dict[str, Any]:
    """The keys of the demo's training config file (YAML)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: the demo reads its training settings from configs/{path.name} of the "
            "arft source tree; run it from a checkout (pip install -e .)"
        )
    values = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a mapping of config keys at the top level")
    return values


@dataclass
class DemoSettings:
    """The demo's knobs; the defaults are the ones ``make demo`` runs.

    ``output``, ``seed``, ``eval_samples``, ``expert_error`` and ``threads`` are the demo's
    own. Every other field is a training setting: left at ``None`` it takes the value of
    :data:`CONFIG` (``configs/easy_coding_tiny.yaml``), so the demo and the file never differ.
    """

    output: str = "runs/demo"
    seed: int = 0
    degradations: tuple[str, ...] | None = None
    holdout: int | None = None
    temperature: float | None = None
    eval_samples: int = 4
    sft_steps: int | None = None
    sft_learning_rate: float | None = None
    sft_batch_size: int | None = None
    sft_episodes: int | None = None
    expert_error: float = 0.2
    steps: int | None = None
    group_size: int | None = None
    groups_per_step: int | None = None
    learning_rate: float | None = None
    beta: float | None = None
    aggregation: str | None = None
    credit: str | None = None
    max_new_tokens: int | None = None
    max_turns: int | None = None
    threads: int = 1

    def __post_init__(self):
        if any(getattr(self, name) is None for name in (*TRAIN_KNOBS, *ENV_KNOBS)):
            values = load_config()
            env_kwargs = values.get("env_kwargs", {})
            for name in TRAIN_KNOBS:
                if getattr(self, name) is None:
                    setattr(self, name, values[name])
            for name in ENV_KNOBS:
                if getattr(self, name) is None:
                    setattr(self, name, env_kwargs[name])
        self.degradations = tuple(self.degradations)

    def train_config(self):
        """The config file's TrainConfig with the demo's knobs over it: this demo's output
        folder and seed, its training settings, no checkpoints and four sample pages."""
        from agents.training.config import TrainConfig

        values = load_config()
        values.update({name: getattr(self, name) for name in TRAIN_KNOBS})
        values.update(
            env_kwargs=self.env_kwargs(),
            output=str(Path(self.output) / "train"),
            seed=self.seed,
            save_every=0,
            sample_every=max(self.steps // 4, 1),
            progress_bar=True,
        )
        return TrainConfig.from_dict(values, source=str(CONFIG))

    def env_kwargs(self) -> dict[str, Any]:
        """The config file's env arguments with the demo's degradations, held-out count and
        turn cap."""
        return {
            **load_config().get("env_kwargs", {}),
            "degradations": list(self.degradations),
            "holdout": self.holdout,
            "max_turns": self.max_turns,
        }


def run_demo(settings: DemoSettings) -> dict[str, Any]:
    """SFT then GRPO with held-out evaluations before, between and after; returns the summary."""
    import torch

    from agents.rollout.trajectory import write_trajectory_page
    from agents.training import GRPOTrainer

    torch.set_num_threads(settings.threads)
    start = time.perf_counter()
    output = Path(settings.output)
    if (output / "train").exists():
        import shutil

        shutil.rmtree(output / "train")
    output.mkdir(parents=True, exist_ok=True)
    config = settings.train_config()
    tasks = EasyCoding(settings.degradations, holdout=settings.holdout)
    holdout = tasks.holdout_ids
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
            "sampled": evaluate_success(
                trainer.policy,
                tasks,
                holdout,
                temperature=settings.temperature,
                samples=settings.eval_samples,
                desc=f"held-out {label}, sampled",
                **common,
            ),
            "greedy": evaluate_success(
                trainer.policy,
                tasks,
                holdout,
                temperature=0.0,
                samples=1,
                desc=f"held-out {label}, greedy",
                **common,
            ),
        }
        s, g = out["sampled"], out["greedy"]
        print(
            f"[{time.perf_counter() - start:4.0f}s] held-out {label:<11} success {s.success:.3f} "
            f"sampled (T={settings.temperature}), {g.success:.3f} greedy; diagnosis "
            f"{s.diagnosis:.3f}, well-formed {s.well_formed:.3f}, code ran {s.code_ran:.3f}, "
            f"repaired {format_rate(s.repaired)}, answer F1 {s.answer_f1:.3f}; tool calls "
            f"{format_statuses(s.tool_status)} ({time.perf_counter() - t:.0f}s)",
            flush=True,
        )
        return out

    results = {"untrained": measure("untrained")}
    trainer.warm_start()
    results["sft"] = measure("after SFT")
    trainer.run()
    results["grpo"] = measure("after GRPO")
    trainer.finish()
    shown = slice(None, 12 * max(settings.eval_samples, 1), max(settings.eval_samples, 1))
    final = results["grpo"]["sampled"]
    episodes = final.trajectories[shown]  # the first sample of each of the first 12 tasks
    verdicts = [_verdict(f, t) for f, t in zip(final.flags[shown], episodes, strict=True)]
    write_trajectory_page(
        output / "heldout.html",
        episodes,
        title=f"{ENV_ID}: held-out episodes after SFT + GRPO (sampled, T={settings.temperature})",
        verdicts=verdicts,
        summary=page_summary(final, results["grpo"]["greedy"], len(episodes), verdicts),
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
    print("\nwrote")
    for path, what in (
        (output / "summary.json", "the held-out rates of each phase and GRPO - SFT"),
        (output / "reward_curve.png", "the training reward and the held-out success"),
        (output / "heldout.html", "held-out episodes after GRPO, with their images"),
        (Path(config.output), "the training run: metrics, tensorboard, samples, models"),
    ):
        print(f"  {path}  ({what})")
    print(end="", flush=True)
    return summary


def _verdict(flags: dict[str, bool], trajectory=None) -> tuple[bool, str]:
    """An episode's pass/fail mark for the page, from :func:`episode_success`'s flags, and
    with ``trajectory`` what its last measured code turn did to the image (SSIM against the
    clean image, before → after)."""
    repair = _repair_note(trajectory) if trajectory is not None else ""
    if flags["success"]:
        reading = _reading_note(trajectory) if trajectory is not None else ""
        return True, (
            "diagnosis exact, every turn well-formed, the repair ran, answered" + repair + reading
        )
    why = {"diagnosis": "wrong diagnosis", "well_formed": "a malformed turn or no answer",
           "code_ran": "the repair code did not run or wrote no image"}  # fmt: skip
    return False, "; ".join(text for key, text in why.items() if not flags[key]) + repair


def _reading_note(trajectory) -> str:
    """A passed episode whose answer is wrong says so: reading the glyph is not part of
    success (see the module docstring), and a PASS beside a wrong answer would puzzle."""
    info = trajectory.info
    if float(info.get("f1", 0.0) or 0.0) >= 1.0:
        return ""
    golds = ", ".join(repr(g) for g in info.get("golds") or [])
    return f"; read {info.get('answer')!r}, not {golds} (reading is not part of success)"


def _repair_note(trajectory) -> str:
    reports = [
        i["repair"]
        for i in trajectory.turn_infos
        if i.get("repair") and i["repair"].get("ssim_after") is not None  # an image written
    ]
    if not reports:
        return ""
    r = reports[-1]
    done = "restored the image" if r.get("improved") else "did not restore the image"
    return f"; the code {done} (SSIM {r['ssim_before']:.2f} → {r['ssim_after']:.2f})"


def main(argv: list[str] | None = None) -> int:
    """``python -m agents.demo``: one flag per :class:`DemoSettings` field."""
    parser = settings_parser(DemoSettings, "python -m agents.demo", __doc__.split("\n\n")[0])
    args = parser.parse_args(argv)
    values = vars(args)
    values["degradations"] = tuple(values["degradations"])
    run_demo(DemoSettings(**values))
    return 0


def settings_parser(settings: type, prog: str, description: str) -> argparse.ArgumentParser:
    """A parser with one flag per field of the ``settings`` dataclass (``--field-name``), whose
    defaults are a default instance's values; a tuple field takes one or more values of its
    element type. What both demos' command lines are."""
    defaults = settings()
    parser = argparse.ArgumentParser(prog=prog, description=description)
    hints = typing.get_type_hints(settings)
    for f in fields(settings):
        value = getattr(defaults, f.name)
        flag = "--" + f.name.replace("_", "-")
        if isinstance(value, tuple):
            element = _tuple_element(hints[f.name])
            parser.add_argument(flag, nargs="+", type=element, default=list(value))
        else:
            parser.add_argument(flag, type=_value_type(hints[f.name]), default=value)
    return parser


def _tuple_element(hint: Any) -> type:
    """``int`` of ``tuple[int, ...]`` (or of ``tuple[int, ...] | None``); ``str`` otherwise."""
    for candidate in (hint, *typing.get_args(hint)):
        if typing.get_origin(candidate) is tuple:
            return typing.get_args(candidate)[0]
    return str


def _value_type(hint: Any) -> type:
    """``int`` of ``int | None``: the type a flag's text converts to."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args else hint


if __name__ == "__main__":
    raise SystemExit(main())
