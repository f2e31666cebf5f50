"""Every RL algorithm of arft on the demo's easy MAT-Coding setting, from the same warm start:
held-out success (sampled and greedy, mean ± sd over seeds) and the learning curves.

What runs, per seed:

1. **one warm start**: the demo's SFT (``python -m agents.demo``'s settings, read from
   ``configs/easy_coding_tiny.yaml``: the tiny model, 300 supervised steps on episodes of the
   noisy annotator :class:`~agents.demo.MislabellingExpert`), saved once, then measured on the
   held-out tasks: the ``sft`` row;
2. **each algorithm** of :data:`agents.algorithms.ALGORITHMS` starts from that saved model with
   the same seed (so the same task stream and rollout seeds), the same step budget and the
   demo's training settings wherever the algorithm has the field (what ``arft train --config
   configs/easy_coding_tiny.yaml --algo NAME`` would give it); its own options keep its
   defaults. Settings an algorithm has no field for are listed per algorithm in the JSON
   (``dropped``): PPO has no ``beta`` (its KL weight, ``kl_coef``, defaults to 0), and only
   GRPO has the demo's per-turn credit (``credit: turn``); the others credit episode returns;
3. each trained policy is measured on the same held-out tasks as the warm start (the demo's
   :func:`~agents.demo.evaluate_success`: sampled at the demo's temperature with four episodes
   per task, and greedy), and compared with it by :func:`~agents.demo.paired_gain` (a bootstrap
   over tasks; the gain is "measurable" when the 95 % interval excludes 0).

Outputs (``--output``, default ``benchmarks/results``): ``algorithms_demo.json`` (every run:
held-out rates, per-step training return, seconds, dropped settings, gains over the warm
start), ``algorithms_demo.md`` (the table) and ``algorithms_demo.png`` (mean training return per
step per algorithm, mean over seeds with a ±1 sd band, beside held-out success). The run
folders (metrics, saved warm starts) go to ``--runs`` (default ``runs/algorithms_demo``).

Each run uses one thread (``torch.set_num_threads(1)``); ``--jobs N`` runs N at once in
separate processes (the warm start of a seed first, then its algorithms).

    python benchmarks/algorithms_demo.py [--seeds 3] [--steps 50] [--algos grpo ppo ...]
        [--jobs 2] [--output benchmarks/results] [--runs runs/algorithms_demo]
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import shutil
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import fields
from multiprocessing import get_context
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "benchmarks" / "results"
NAME = "algorithms_demo"
MODES = ("sampled", "greedy")
# DemoSettings fields this script passes through (the warm start's and the measurement's size)
SETTING_FLAGS = (
    "holdout", "eval_samples", "sft_steps", "sft_episodes", "group_size", "groups_per_step",
    "max_new_tokens", "expert_error",
)  # fmt: skip


# ---------------------------------------------------------------------- one process's jobs


def _settings(seed: int, output: Path, overrides: dict[str, Any]):
    from agents.demo import DemoSettings

    return DemoSettings(output=str(output), seed=seed, **overrides)


def _measure(policy, settings) -> dict[str, Any]:
    """The demo's held-out measurement (sampled and greedy, the demo's seeds) of ``policy``:
    the rates and, per episode, its task and success (what :func:`paired_gain` pairs)."""
    from agents.demo import evaluate_success
    from arft_envs.tasks.coding.easy import EasyCoding

    tasks = EasyCoding(settings.degradations, holdout=settings.holdout)
    common = dict(
        env_kwargs=settings.env_kwargs(),
        max_new_tokens=settings.max_new_tokens,
        max_turns=settings.max_turns,
        seed=10_000 + settings.seed,
    )
    runs = {
        "sampled": dict(temperature=settings.temperature, samples=settings.eval_samples),
        "greedy": dict(temperature=0.0, samples=1),
    }
    out = {}
    for mode, how in runs.items():
        e = evaluate_success(policy, tasks, tasks.holdout_ids, **how, **common)
        out[mode] = {
            **e.row(),
            "episodes": e.episodes,
            "per_episode": [
                [t.task_id, bool(f["success"])]
                for t, f in zip(e.trajectories, e.flags, strict=True)
            ],
        }
    return out


def warm_start_job(
    seed: int, runs: str, overrides: dict[str, Any], saved: str | None = None
) -> dict[str, Any]:
    """The seed's demo warm start, saved once, and its held-out measurement; with ``saved``
    (a warm-started model folder, e.g. a demo run's ``train/checkpoints/sft/model``) that
    model is measured and used instead of training a new one."""
    import torch

    from agents.demo import MislabellingExpert
    from agents.policy import Policy
    from agents.training import Trainer

    torch.set_num_threads(1)
    start = time.perf_counter()
    settings = _settings(seed, Path(runs) / f"seed{seed}" / "sft", overrides)
    if saved is not None:
        if not (Path(saved) / "config.json").is_file():
            raise SystemExit(f"--warm-starts: {saved} holds no saved model (config.json)")
        heldout = _measure(Policy.from_pretrained(saved, seed=seed), settings)
        model = saved
    else:
        if (Path(settings.output) / "train").exists():  # a new warm start each run
            shutil.rmtree(Path(settings.output) / "train")
        config = settings.train_config()
        config.progress_bar = False
        config.report_to = ()
        expert = None
        if settings.expert_error:
            expert = MislabellingExpert(settings.degradations, settings.expert_error)
        trainer = Trainer(config, expert=expert)
        trainer.setup()
        trainer.warm_start()
        heldout = _measure(trainer.policy, settings)
        trainer.close()
        model = str(trainer.run_dir.sft_model)
    return {
        "seed": seed,
        "model": model,
        "saved": saved is not None,
        "heldout": heldout,
        "seconds": round(time.perf_counter() - start, 1),
    }


def algorithm_config(algo: str, settings, model: str, output: Path):
    """The run's config: the demo's config file and training settings, for ``algo``, from the
    saved warm start ``model`` (no SFT), keeping only the keys the algorithm's config has.
    Returns ``(config, dropped)``, ``dropped`` the demo settings ``algo`` has no field for."""
    from agents.demo import CONFIG, load_config
    from agents.demo.__main__ import TRAIN_KNOBS
    from agents.training.config import TrainConfig

    values = load_config()
    values.update({name: getattr(settings, name) for name in TRAIN_KNOBS})
    values.update(
        env_kwargs=settings.env_kwargs(),
        output=str(output),
        seed=settings.seed,
        algo=algo,
        model=model,
        sft_steps=0,
        save_every=0,
        sample_every=0,
        progress_bar=False,
        report_to=[],
    )
    names = {f.name for f in fields(TrainConfig.class_for(values))}
    dropped = sorted(k for k in values if k not in names)
    kept = {k: v for k, v in values.items() if k in names}
    return TrainConfig.from_dict(kept, source=str(CONFIG)), dropped


def algorithm_job(
    seed: int, algo: str, runs: str, overrides: dict[str, Any], model: str
) -> dict[str, Any]:
    """``algo``'s RL run from the seed's saved warm start, and its held-out measurement."""
    import torch

    from agents.training import Trainer

    torch.set_num_threads(1)
    start = time.perf_counter()
    output = Path(runs) / f"seed{seed}" / algo
    settings = _settings(seed, output, overrides)
    config, dropped = algorithm_config(algo, settings, model, output)
    if output.exists():
        shutil.rmtree(output)
    trainer = Trainer(config)
    trainer.setup()
    trainer.run()
    train_seconds = time.perf_counter() - start
    heldout = _measure(trainer.policy, settings)
    trainer.close()
    rows = [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]
    return {
        "seed": seed,
        "algo": algo,
        "dropped": dropped,
        "reward_mean": [r["reward_mean"] for r in rows],
        "heldout": heldout,
        "train_seconds": round(train_seconds, 1),
        "seconds": round(time.perf_counter() - start, 1),
    }


# ---------------------------------------------------------------------- the comparison


def _evaluation(record: dict[str, Any]):
    """An :class:`~agents.demo.Evaluation` holding what :func:`paired_gain` reads (each
    episode's task and success) from a measurement's ``per_episode`` list."""
    from agents.demo import Evaluation

    pairs = record["per_episode"]
    return Evaluation(
        success=record["success"], diagnosis=record["diagnosis"],
        well_formed=record["well_formed"], code_ran=record["code_ran"],
        answer_f1=record["answer_f1"], mean_return=record["mean_return"], episodes=len(pairs),
        trajectories=[SimpleNamespace(task_id=task) for task, _ in pairs],
        flags=[{"success": ok} for _, ok in pairs],
    )  # fmt: skip


def gains(base: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Success after minus the warm start's on the same tasks, per mode (the demo's
    :func:`paired_gain`)."""
    from agents.demo import paired_gain

    return {m: paired_gain(_evaluation(base[m]), _evaluation(after[m])) for m in MODES}


def summarise(warm: dict[int, dict], done: dict[tuple[int, str], dict], algos, seeds) -> dict:
    """The table's rows: per algorithm (and the warm start), held-out success mean and sd over
    seeds per mode, and how many seeds' gains over the warm start are measurable."""

    def stats(values: list[float]) -> dict[str, float]:
        a = np.asarray(values, dtype=float)
        return {"mean": float(a.mean()), "sd": float(a.std(ddof=1)) if len(a) > 1 else 0.0}

    rows = {"sft": {m: stats([warm[s]["heldout"][m]["success"] for s in seeds]) for m in MODES}}
    for algo in algos:
        runs = [done[(s, algo)] for s in seeds]
        row = {m: stats([r["heldout"][m]["success"] for r in runs]) for m in MODES}
        for m in MODES:
            g = [r["gain"][m] for r in runs]
            row[m]["gain"] = stats([x["gain"] for x in g])
            row[m]["seeds_up"] = sum(x["ci95"][0] > 0 for x in g)
            row[m]["seeds_down"] = sum(x["ci95"][1] < 0 for x in g)
        row["train_seconds"] = stats([r["train_seconds"] for r in runs])
        rows[algo] = row
    return rows


def markdown(result: dict[str, Any]) -> str:
    """The table as markdown, with the conditions it was measured under."""
    s = result["settings"]
    n = len(result["seeds"])
    lines = [
        f"Held-out success on EasyMATCoding-v0 ({s['holdout']} held-out tasks; sampled at "
        f"T={s['temperature']} with {s['eval_samples']} episodes per task, and greedy), mean ± sd "
        f"over {n} seed(s), after {result['steps']} RL steps of {s['groups_per_step']}×"
        f"{s['group_size']} episodes from each seed's SFT warm start. Δ: the change from that "
        "warm start (mean over seeds); ↑/↓: seeds whose 95 % bootstrap interval of Δ lies "
        "above/below 0.",
        "",
        "| algorithm | sampled | Δ sampled | ↑/↓ | greedy | Δ greedy | ↑/↓ | RL s/run |",
        "|---|---|---|---|---|---|---|---|",
    ]

    def pm(x: dict[str, float], signed: bool = False) -> str:
        return f"{x['mean']:+.3f} ± {x['sd']:.3f}" if signed else f"{x['mean']:.3f} ± {x['sd']:.3f}"

    for name, row in result["table"].items():
        if name == "sft":
            lines.append(
                f"| SFT warm start | {pm(row['sampled'])} | | | {pm(row['greedy'])} | | | |"
            )
            continue
        cells = []
        for m in MODES:
            r = row[m]
            cells += [pm(r), pm(r["gain"], True), f"{r['seeds_up']}/{r['seeds_down']}"]
        lines.append(
            f"| {name} | " + " | ".join(cells) + f" | {row['train_seconds']['mean']:.0f} |"
        )
    if result.get("warm_start_source") == "saved":
        lines += ["", "Warm starts: the ones `python -m agents.demo --seed N` saved (its "
                  "`train/checkpoints/sft/model`), measured here; the command below trains "
                  "them itself, the same way."]  # fmt: skip
    if len(result["seeds"]) < len(result.get("seeds_planned", result["seeds"])):
        lines += ["", f"Partial: {len(result['seeds'])} of {len(result['seeds_planned'])} "
                  "planned seeds finished."]  # fmt: skip
    lines += [
        "",
        f"Wall time {result['wall_seconds'] / 60:.1f} min with {result['jobs']} process(es) of "
        f"one thread each ({result['machine']}). Reproduce: `{result['command']}`",
    ]
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], path: Path) -> Path:
    """Mean training return per step per algorithm (mean over seeds, ±1 sd band) beside
    held-out success (sampled and greedy, mean ± sd), as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, side) = plt.subplots(
        1, 2, figsize=(12, 4.6), dpi=110, gridspec_kw={"width_ratios": [1.8, 1]}
    )
    colors = plt.get_cmap("tab10")
    algos = [a for a in result["table"] if a != "sft"]
    for i, algo in enumerate(algos):
        curves = np.array([r["reward_mean"] for r in result["runs"] if r["algo"] == algo])
        steps = np.arange(1, curves.shape[1] + 1)
        mean = curves.mean(axis=0)
        sd = curves.std(axis=0, ddof=1) if len(curves) > 1 else np.zeros_like(mean)
        ax.plot(steps, mean, color=colors(i), lw=1.6, marker="o", ms=3, label=algo)
        ax.fill_between(steps, mean - sd, mean + sd, color=colors(i), alpha=0.12, lw=0)
    ax.set_xlabel("RL step (from the SFT warm start)")
    ax.set_ylabel("training episode return (step mean)")
    ax.set_title(
        f"EasyMATCoding-v0, tiny model: training return, mean over {len(result['seeds'])} "
        "seed(s), band ±1 sd",
        fontsize=9,
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    names = ["sft", *algos]
    x = np.arange(len(names))
    width = 0.38
    for k, (mode, color) in enumerate((("sampled", "#136"), ("greedy", "#c63"))):
        means = [result["table"][n][mode]["mean"] for n in names]
        sds = [result["table"][n][mode]["sd"] for n in names]
        side.bar(x + (k - 0.5) * width, means, width, yerr=sds, color=color, alpha=0.8,
                 capsize=2, label=mode)  # fmt: skip
    side.set_xticks(x, names, rotation=45, ha="right", fontsize=8)
    side.set_ylim(0, 1.05)
    side.set_ylabel("held-out success")
    side.set_title("held-out success, mean ± sd over seeds", fontsize=9)
    side.grid(alpha=0.3, axis="y")
    side.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------- the run


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The warm starts and the algorithms' runs (``--jobs`` at once), then the results. Every
    finished job is recorded in ``--runs``/progress.json at once, so that ``--report`` can
    write the results of the seeds that finished if the whole run is cut short."""
    from agents.algorithms import ALGORITHMS

    start = time.perf_counter()
    algos = list(args.algos or ALGORITHMS)
    unknown = [a for a in algos if a not in ALGORITHMS]
    if unknown:
        raise SystemExit(f"--algos: unknown {unknown}; choose from {', '.join(ALGORITHMS)}")
    seeds = list(range(args.seeds))
    overrides = {k: getattr(args, k) for k in SETTING_FLAGS if getattr(args, k) is not None}
    probe = _settings(0, Path(args.runs), {**overrides})
    steps = args.steps if args.steps is not None else probe.steps
    overrides["steps"] = steps
    runs = str(args.runs)
    settings = {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(probe).items()}
    settings.update(overrides)
    for key in ("output", "seed"):
        settings.pop(key)
    progress = {
        "env": "EasyMATCoding-v0",
        "steps": steps,
        "seeds": seeds,
        "algos": algos,
        "settings": settings,
        "jobs": args.jobs,
        "machine": f"{platform.machine()}, {platform.python_version()}",
        "command": "python benchmarks/algorithms_demo.py " + " ".join(args.argv),
        "warm_start_source": "saved" if args.warm_starts else "trained",
        "warm_starts": [],
        "runs": [],
        "wall_seconds": 0.0,
    }
    Path(runs).mkdir(parents=True, exist_ok=True)
    warm: dict[int, dict] = {}

    def record(kind: str, value: dict) -> None:
        if kind == "warm":
            warm[value["seed"]] = value
            progress["warm_starts"].append(value)
        else:
            value["gain"] = gains(warm[value["seed"]]["heldout"], value["heldout"])
            progress["runs"].append(value)
        name = "warm start" if kind == "warm" else value["algo"]
        h = value["heldout"]
        print(f"[{time.perf_counter() - start:5.0f}s] seed {value['seed']} {name}: success "
              f"{h['sampled']['success']:.3f} sampled, {h['greedy']['success']:.3f} greedy "
              f"({value['seconds']:.0f}s)", flush=True)  # fmt: skip
        progress["wall_seconds"] = round(time.perf_counter() - start, 1)
        (Path(runs) / "progress.json").write_text(json.dumps(progress), encoding="utf-8")

    def saved(seed: int) -> str | None:
        return None if args.warm_starts is None else args.warm_starts.format(seed=seed)

    if args.jobs <= 1:
        for seed in seeds:
            record("warm", warm_start_job(seed, runs, overrides, saved(seed)))
            for algo in algos:
                model = warm[seed]["model"]
                record("algo", algorithm_job(seed, algo, runs, overrides, model))
    else:
        # seed by seed: a free process takes the next algorithm of the lowest seed whose warm
        # start is done, else the next warm start (so that whole seeds finish first)
        todo_warm = list(seeds)
        todo_algo: list[tuple[int, str]] = []
        with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn")) as pool:
            pending: dict[Future, str] = {}
            while todo_warm or todo_algo or pending:
                while len(pending) < args.jobs and (todo_warm or todo_algo):
                    if todo_algo:
                        seed, algo = todo_algo.pop(0)
                        job = pool.submit(algorithm_job, seed, algo, runs, overrides,
                                          warm[seed]["model"])  # fmt: skip
                        pending[job] = "algo"
                    else:
                        seed = todo_warm.pop(0)
                        job = pool.submit(warm_start_job, seed, runs, overrides, saved(seed))
                        pending[job] = "warm"
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    kind = pending.pop(future)
                    value = future.result()
                    record(kind, value)
                    if kind == "warm":
                        todo_algo += [(value["seed"], a) for a in algos]
                        todo_algo.sort(key=lambda job: job[0])
    return write_results(progress, Path(args.output))


def reproduce(command: str) -> str:
    """``command`` without ``--output``, ``--runs``, ``--warm-starts`` and ``--report`` (where
    files are changes no figure, and a path of the machine that ran it means nothing to a
    reader; without ``--warm-starts`` the command trains the warm starts itself)."""
    words, out, skip = shlex.split(command), [], False
    for word in words:
        if skip:
            skip = False
        elif word in ("--output", "--runs", "--warm-starts"):
            skip = True
        elif word != "--report" and not word.startswith(("--output=", "--runs=", "--warm-")):
            out.append(word)
    return shlex.join(out)


def _light(record: dict[str, Any]) -> dict[str, Any]:
    """A job's record for the results file: without the saved model's path (a folder of the
    machine that ran it) and the per-episode successes (kept in progress.json)."""
    out = {k: v for k, v in record.items() if k != "model"}
    out["heldout"] = {
        m: {k: v for k, v in e.items() if k != "per_episode"} for m, e in record["heldout"].items()
    }
    return out


def write_results(progress: dict[str, Any], output: Path) -> dict[str, Any]:
    """The JSON, the markdown table and the PNG from a run's records, over the seeds whose
    warm start and every algorithm finished (all of them after a whole run)."""
    algos = progress["algos"]
    warm = {w["seed"]: w for w in progress["warm_starts"]}
    done = {(r["seed"], r["algo"]): r for r in progress["runs"]}
    seeds = [s for s in progress["seeds"] if s in warm and all((s, a) in done for a in algos)]
    if not seeds:
        raise SystemExit("no seed has finished its warm start and every algorithm yet")
    result = {
        **{k: v for k, v in progress.items() if k not in ("warm_starts", "runs")},
        "command": reproduce(progress["command"]),
        "seeds": seeds,
        "seeds_planned": progress["seeds"],
        "table": summarise(warm, done, algos, seeds),
        "warm_starts": [_light(warm[s]) for s in seeds],
        "runs": [_light(done[(s, a)]) for a in algos for s in seeds],
    }
    output.mkdir(parents=True, exist_ok=True)
    (output / f"{NAME}.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    (output / f"{NAME}.md").write_text(markdown(result), encoding="utf-8")
    plot(result, output / f"{NAME}.png")
    print("\n" + markdown(result))
    print(f"wrote {output / NAME}.json, .md and .png", flush=True)
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 (default 3)")
    parser.add_argument("--steps", type=int, help="RL steps per run (default: the demo's)")
    parser.add_argument("--algos", nargs="+", help="algorithms (default: all of ALGORITHMS)")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once, one process each")
    parser.add_argument("--output", default=str(RESULTS), help="where the table, JSON, PNG go")
    parser.add_argument("--runs", default="runs/algorithms_demo", help="the run folders")
    parser.add_argument(
        "--warm-starts",
        help="saved warm starts to use instead of training them, a folder pattern with {seed} "
        "(e.g. a demo run's: runs/demo{seed}/train/checkpoints/sft/model)",
    )
    parser.add_argument(
        "--report", action="store_true",
        help="run nothing: write the results from --runs/progress.json (the finished seeds)",
    )  # fmt: skip
    for name in SETTING_FLAGS:
        kind = float if name == "expert_error" else int
        parser.add_argument(
            "--" + name.replace("_", "-"), type=kind, help=f"the demo's {name} (default: its)"
        )
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    if args.seeds < 1 or args.jobs < 1 or (args.steps is not None and args.steps < 1):
        parser.error("--seeds, --jobs and --steps must be at least 1")
    args.argv = argv
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.report:
        path = Path(args.runs) / "progress.json"
        if not path.is_file():
            raise SystemExit(f"{path}: no records; run the comparison first (without --report)")
        return write_results(json.loads(path.read_text(encoding="utf-8")), Path(args.output))
    return run(args)


if __name__ == "__main__":
    main()
