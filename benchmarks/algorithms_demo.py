"""Every RL algorithm of arft on the demo's easy MAT-Coding setting, from the same warm start:
held-out success (sampled and greedy, mean ± sd over seeds) and the learning curves.

What runs:

1. **one warm start**, shared by every algorithm and seed: the demo's SFT (``python -m
   agents.demo``'s settings, read from ``configs/easy_coding_tiny.yaml``: the tiny model, 300
   supervised steps on episodes of the noisy annotator :class:`~agents.demo.MislabellingExpert`)
   with ``--warm-start-seed`` (0), saved once, then measured on the held-out tasks with each
   seed's sampling (:func:`warm_measure_job`): the ``sft`` row, whose sd over seeds is the
   measurement's own noise. One warm start, not one per seed: the demo's warm starts differ
   by seed far more than RL moves them (greedy success 0.48 to 1.00), so per-seed warm starts
   made the spread over seeds a measure of the warm start, not of the algorithm;
2. **each algorithm** of :data:`agents.algorithms.ALGORITHMS` starts from that saved model,
   once per seed (the seed sets the task stream and rollout sampling, the same for every
   algorithm), with the same step budget and the demo's training settings wherever the
   algorithm has the field (what ``arft train --config configs/easy_coding_tiny.yaml --algo
   NAME`` would give it), and ``--option``'s algorithm options where it has them; its other
   options keep its defaults. Settings an algorithm has no field for are listed per algorithm
   in the JSON (``dropped``): PPO has no ``beta`` (its KL weight, ``kl_coef``, defaults to 0),
   and only GRPO has the demo's per-turn credit (``credit: turn``); the others credit episode
   returns;
3. each trained policy is measured on the same held-out tasks as the warm start, with its
   seed's sampling (the demo's :func:`~agents.demo.evaluate_success`: sampled at the demo's
   temperature with ``--eval-samples`` episodes per task, and greedy), and compared with the
   warm start's measurement on the same seed by :func:`~agents.demo.paired_gain` (a bootstrap
   over tasks; the gain is "measurable" when the 95 % interval excludes 0).

Outputs (``--output``, default ``benchmarks/results``): ``algorithms_demo.json`` (every run:
held-out rates, per-step training return, seconds, dropped settings, gains over the warm
start), ``algorithms_demo.md`` (the table) and ``algorithms_demo.png`` (mean training return per
step per algorithm, mean over seeds with a ±1 sd band, beside held-out success). The run
folders (metrics, the saved warm start) go to ``--runs`` (default ``runs/algorithms_demo``).

Each run uses one thread (``torch.set_num_threads(1)``); ``--jobs N`` runs N at once in
separate processes (after the warm start; seed by seed, so that whole seeds finish first).

    python benchmarks/algorithms_demo.py [--seeds 3] [--steps 50] [--learning-rate 2e-4]
        [--groups-per-step 4] [--algos grpo ppo ...] [--option NAME=VALUE ...] [--jobs 2]
        [--warm-start MODEL_DIR] [--output benchmarks/results] [--runs runs/algorithms_demo]
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
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
    "learning_rate", "max_new_tokens", "expert_error",
)  # fmt: skip
FLOAT_FLAGS = ("learning_rate", "expert_error")
# training statistics kept per step beside the return (those an algorithm logs): how far the
# policy moved from its warm start, how many groups carried a signal, the critic's fit
CURVES = ("kl", "groups_with_signal", "value/explained_variance", "value/loss")


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


def warm_start_job(seed: int, runs: str, overrides: dict[str, Any]) -> str:
    """The demo's warm start with ``seed``, trained and saved once (``runs``/sft); returns the
    saved model's folder."""
    import torch

    from agents.demo import MislabellingExpert
    from agents.training import Trainer

    torch.set_num_threads(1)
    settings = _settings(seed, Path(runs) / "sft", overrides)
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
    trainer.close()
    return str(trainer.run_dir.sft_model)


def warm_measure_job(seed: int, runs: str, overrides: dict[str, Any], model: str) -> dict:
    """The saved warm start ``model`` measured on the held-out tasks with ``seed``'s sampling,
    the same as ``seed``'s algorithm runs are measured: their gains are then paired on the
    same random numbers, and an unchanged policy gains exactly 0."""
    import torch

    from agents.policy import Policy

    torch.set_num_threads(1)
    start = time.perf_counter()
    if not (Path(model) / "config.json").is_file():
        raise SystemExit(f"--warm-start: {model} holds no saved model (config.json)")
    settings = _settings(seed, Path(runs) / "sft", overrides)
    heldout = _measure(Policy.from_pretrained(model, seed=seed), settings)
    return {"seed": seed, "heldout": heldout, "seconds": round(time.perf_counter() - start, 1)}


def algorithm_config(
    algo: str, settings, model: str, output: Path, options: dict[str, Any] | None = None
):
    """The run's config: the demo's config file and training settings, for ``algo``, from the
    saved warm start ``model`` (no SFT), plus ``options`` (``--option``: algorithm options,
    e.g. PPO's ``critic_learning_rate``), keeping only the keys the algorithm's config has.
    Returns ``(config, dropped)``, ``dropped`` the settings ``algo`` has no field for."""
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
    values.update(options or {})
    names = {f.name for f in fields(TrainConfig.class_for(values))}
    dropped = sorted(k for k in values if k not in names)
    kept = {k: v for k, v in values.items() if k in names}
    return TrainConfig.from_dict(kept, source=str(CONFIG)), dropped


def algorithm_job(
    seed: int,
    algo: str,
    runs: str,
    overrides: dict[str, Any],
    model: str,
    options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``algo``'s RL run with ``seed`` from the saved warm start ``model``, and its held-out
    measurement."""
    import torch

    from agents.training import Trainer

    torch.set_num_threads(1)
    start = time.perf_counter()
    output = Path(runs) / f"seed{seed}" / algo
    settings = _settings(seed, output, overrides)
    config, dropped = algorithm_config(algo, settings, model, output, options)
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
        "curves": {k: [r.get(k) for r in rows] for k in CURVES if any(k in r for r in rows)},
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
    """The table's rows: held-out success mean and sd over seeds per mode, of the one warm
    start (measured with each seed's sampling: its sd is the measurement's own noise) and of
    each algorithm, and how many seeds' gains over the warm start are measurable."""

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
        f"{s['group_size']} episodes (lr {s['learning_rate']:g}) from one shared SFT warm start. "
        "Each seed's runs and the warm start are measured with the same sampling seed. Δ: the "
        "change from the warm start on the same seed (mean ± sd over seeds); ↑/↓: seeds whose "
        "95 % bootstrap interval of Δ (over tasks) lies above/below 0.",
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
    if result.get("options"):
        given = ", ".join(f"`{k}={v}`" for k, v in result["options"].items())
        lines += ["", f"Algorithm options set for every algorithm that has them: {given}."]
    if result.get("warm_start_source") == "saved":
        lines += ["", "Warm start: saved beforehand by the demo's warm start (`--warm-start`) "
                  "and measured here; the command below trains it itself, the same way."]  # fmt: skip
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
    """The one warm start, then the algorithms' runs (``--jobs`` at once, seed by seed), then
    the results. Every finished job is recorded in ``--runs``/progress.json at once, so that
    ``--report`` can write the results of the seeds that finished if the run is cut short."""
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
        "options": args.options,
        "warm_start_seed": args.warm_start_seed,
        "warm_start_source": "saved" if args.warm_start else "trained",
        "warm_start": args.warm_start,
        "warm_measures": [],
        "runs": [],
        "wall_seconds": 0.0,
    }
    Path(runs).mkdir(parents=True, exist_ok=True)

    def record(kind: str, value: dict) -> None:
        progress["warm_measures" if kind == "warm" else "runs"].append(value)
        name = f"seed {value['seed']} " + ("warm start" if kind == "warm" else value["algo"])
        h = value["heldout"]
        print(f"[{time.perf_counter() - start:5.0f}s] {name}: success "
              f"{h['sampled']['success']:.3f} sampled, {h['greedy']['success']:.3f} greedy "
              f"({value['seconds']:.0f}s)", flush=True)  # fmt: skip
        progress["wall_seconds"] = round(time.perf_counter() - start, 1)
        (Path(runs) / "progress.json").write_text(json.dumps(progress), encoding="utf-8")

    # one warm start for every algorithm and seed (the seeds vary the RL run only), measured
    # with each seed's sampling beside the algorithms' runs
    if progress["warm_start"] is None:
        progress["warm_start"] = warm_start_job(args.warm_start_seed, runs, overrides)
        print(f"[{time.perf_counter() - start:5.0f}s] warm start trained", flush=True)
    model = progress["warm_start"]
    jobs = [(warm_measure_job, "warm", seed, runs, overrides, model) for seed in seeds]
    jobs += [(algorithm_job, "algo", seed, algo, runs, overrides, model, args.options)
             for seed in seeds for algo in algos]  # whole seeds finish first  # fmt: skip
    if args.jobs <= 1:
        for function, kind, *job_args in jobs:
            record(kind, function(*job_args))
    else:
        with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn")) as pool:
            pending = {pool.submit(function, *job_args): kind for function, kind, *job_args in jobs}
            for future in as_completed(pending):
                record(pending[future], future.result())
    return write_results(progress, Path(args.output))


def reproduce(command: str) -> str:
    """``command`` without ``--output``, ``--runs``, ``--warm-start`` and ``--report`` (where
    files are changes no figure, and a path of the machine that ran it means nothing to a
    reader; without ``--warm-start`` the command trains the warm start itself)."""
    words, out, skip = shlex.split(command), [], False
    for word in words:
        if skip:
            skip = False
        elif word in ("--output", "--runs", "--warm-start"):
            skip = True
        elif word != "--report" and not word.startswith(("--output=", "--runs=", "--warm-start=")):
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
    warm-start measurement and every algorithm finished (all of them after a whole run)."""
    algos = progress["algos"]
    warm = {w["seed"]: w for w in progress["warm_measures"]}
    done = {(r["seed"], r["algo"]): r for r in progress["runs"]}
    seeds = [s for s in progress["seeds"] if s in warm and all((s, a) in done for a in algos)]
    if not seeds:
        raise SystemExit("no seed has finished its warm-start measurement and every algorithm")
    for r in progress["runs"]:
        r["gain"] = gains(warm[r["seed"]]["heldout"], r["heldout"])
    result = {
        **{k: v for k, v in progress.items() if k not in ("warm_start", "warm_measures", "runs")},
        "command": reproduce(progress["command"]),
        "seeds": seeds,
        "seeds_planned": progress["seeds"],
        "table": summarise(warm, done, algos, seeds),
        "warm_measures": [_light(warm[s]) for s in seeds],
        "runs": [_light(done[(s, a)]) for a in algos for s in seeds],
    }
    output.mkdir(parents=True, exist_ok=True)
    (output / f"{NAME}.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    (output / f"{NAME}.md").write_text(markdown(result), encoding="utf-8")
    plot(result, output / f"{NAME}.png")
    print("\n" + markdown(result))
    print(f"wrote {output / NAME}.json, .md and .png", flush=True)
    return result


def _value(text: str) -> Any:
    """A command-line value as YAML reads it, with ``1e-3`` a float (YAML 1.1 wants ``1.0e-3``)."""
    import yaml

    value = yaml.safe_load(text)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 (default 3)")
    parser.add_argument("--steps", type=int, help="RL steps per run (default: the demo's)")
    parser.add_argument("--algos", nargs="+", help="algorithms (default: all of ALGORITHMS)")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once, one process each")
    parser.add_argument("--output", default=str(RESULTS), help="where the table, JSON, PNG go")
    parser.add_argument("--runs", default="runs/algorithms_demo", help="the run folders")
    parser.add_argument(
        "--warm-start-seed", type=int, default=0, help="the seed of the one warm start (default 0)"
    )
    parser.add_argument(
        "--warm-start",
        help="a saved warm start to use instead of training it, a model folder "
        "(e.g. a demo run's: runs/demo/train/checkpoints/sft/model)",
    )
    parser.add_argument(
        "--report", action="store_true",
        help="run nothing: write the results from --runs/progress.json (the finished seeds)",
    )  # fmt: skip
    parser.add_argument(
        "--option", action="append", default=[], metavar="NAME=VALUE",
        help="an algorithm option (YAML value) for every algorithm whose config has the field, "
        "e.g. critic_learning_rate=1e-3; the others list it in 'dropped' (repeatable)",
    )  # fmt: skip
    for name in SETTING_FLAGS:
        kind = float if name in FLOAT_FLAGS else int
        parser.add_argument(
            "--" + name.replace("_", "-"), type=kind, help=f"the demo's {name} (default: its)"
        )
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    if args.seeds < 1 or args.jobs < 1 or (args.steps is not None and args.steps < 1):
        parser.error("--seeds, --jobs and --steps must be at least 1")
    args.argv = argv
    args.options = {}
    for item in args.option:
        name, sep, value = item.partition("=")
        if not sep or not name:
            parser.error(f"--option {item!r}: expected NAME=VALUE")
        args.options[name] = _value(value)
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
