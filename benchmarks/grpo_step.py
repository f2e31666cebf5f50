"""Seconds per step of every arft algorithm (GRPO, PPO, RLOO, REINFORCE++, DAPO, GSPO,
Dr. GRPO) on one single-turn workload of the tiny model on CPU, and TRL's GRPOTrainer on the
same workload, measured in the same run; and GRPO's multi-turn step split by phase.

The measurements, each in its own process (so that each peak RSS is its own):

- ``arft-multi``: arft's step on ``EasyMATCoding-v0`` — multi-turn episodes whose OpenCV code
  really runs in the sandbox, in ``make demo``'s setting (two groups of 8 per step). The tiny
  model is warm-started first as in the demo (untimed) so that episodes hold real code turns.
  Split: generation, tool execution (the env's ``step``), reference forward, forward/backward
  (with the optimizer), the rest.
- ``arft-single`` and ``trl-single``: the same tiny model, prompts, group size (G = 8, two
  prompts per step), completion length (64 tokens), β = 0.04, lr 1e-6, temperature 1.0, one
  update per batch and float32 compute, in arft's trainer and in ``trl.GRPOTrainer`` (TRL's
  defaults otherwise). Single-turn text, since that is what both support. The two run
  alternately ``--repeats`` times (arft, TRL, arft, TRL, …), so that a change of the machine's
  load falls on both; each side's figure is its median run, and the ratio is TRL's seconds
  over arft's, also given per repeat and in CPU seconds (``time.process_time``, the steadier
  figure on a shared machine).

  What each side does in a step, both at their defaults:

  - arft: samples the 16 completions with its own decode loop
    (:func:`agents.policy.generation.decode_loop`: each group's prompt prefilled once, then
    one token at a time through :class:`~agents.policy.generation.LeanDecoder` over
    preallocated KV buffers, the log-probs of the sampled tokens recorded as it goes);
    scores them with the frozen reference (one forward pass, chunked log-probs from the
    decoder's hidden states, :mod:`agents.models.logprobs`); then one forward and backward
    pass of the policy (GRPO loss, token entropy logged) and one AdamW step. With one update
    per batch the ratio's "old" log-probs are the current ones detached, so no extra pass.
  - TRL: samples with ``model.generate`` (transformers), scores the completions with its
    reference model (β > 0), skips the old-log-prob pass as well (``num_iterations=1`` and
    generation aligned with the optimizer step), then one forward and backward pass
    (its default ``loss_type="dapo"``, entropy logged) and one AdamW step.
- ``arft-<algo>``: the same single-turn workload with each other algorithm at its defaults
  (PPO's includes its critic's forward, and forward and backward, and its own optimizer; DAPO
  may roll out more groups when a group's rewards are all equal). The ratio is to GRPO's step.

The first ``--warmup`` steps of each are not timed. One thread per process (the tiny model
does not gain from more, and a shared machine makes extra threads contend).

    python benchmarks/grpo_step.py [--steps 6] [--warmup 2] [--repeats 3] [--parts arft-single ...]

Writes ``benchmarks/results/grpo_step.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
PROMPTS = [
    f"Task {i}: write the digit {i % 10}, then describe it in a sentence." for i in range(64)
]
GROUP = 8
PROMPTS_PER_STEP = 2
COMPLETION_TOKENS = 64
# Both sides compute in float32: arft's mixed_precision "no", TRL's bf16=False. (On a CPU
# with native bf16, arft's "auto" and TRL's default would both pick bf16 autocast, which at
# the tiny model's sizes only adds casts: both sides are slower in it.)
PRECISION = "no"


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---------------------------------------------------------------------- a single-turn env


def _register_prompt_env() -> None:
    import gymnasium as gym
    from gymnasium.envs.registration import register, registry

    from arft_envs.spaces import Conversation, Utf8Text

    class PromptEnv(gym.Env):
        """One user prompt, one reply; reward = reply length / 200 (the TRL side's too)."""

        metadata = {"render_modes": []}

        def __init__(self):
            self.action_space = Utf8Text(4096)
            self.observation_space = Conversation(max_messages=3, max_images=0)

        def reset(self, *, seed=None, options=None):
            super().reset(seed=seed)
            options = options or {}
            index = (
                int(options["task_id"])
                if "task_id" in options
                else int(self.np_random.integers(len(PROMPTS)))
            )
            text = {"type": "text", "text": PROMPTS[index]}
            self.messages = [{"role": "user", "content": (text,)}]
            return {"messages": tuple(self.messages), "images": ()}, {"task_id": str(index)}

        def step(self, action):
            reply = {"role": "assistant", "content": ({"type": "text", "text": action},)}
            self.messages.append(reply)
            reward = len(action) / 200
            obs = {"messages": tuple(self.messages), "images": ()}
            return obs, reward, True, False, {"reward_components": {"length": reward}}

    if "BenchPrompt-v0" not in registry:
        register(id="BenchPrompt-v0", entry_point=PromptEnv, disable_env_checker=True)


# ---------------------------------------------------------------------- the three parts


def part_arft_multi(steps: int, warmup: int, out: Path) -> dict:
    import dataclasses

    from agents.demo import DemoSettings
    from agents.training import Trainer

    # The demo's setting and warm start, so that episodes hold real (mostly working) code turns.
    demo = DemoSettings(output=str(out), groups_per_step=PROMPTS_PER_STEP, steps=warmup + steps)
    config = dataclasses.replace(
        demo.train_config(), output=str(out), save_every=0, sample_every=0,
        report_to=("none",), progress_bar=False,
    )  # fmt: skip
    trainer = Trainer(config)
    trainer.setup()
    start = time.perf_counter()
    trainer.warm_start()
    warm = time.perf_counter() - start
    trainer.run()
    trainer.close()
    rows = _rows(out)[warmup:]
    keys = ("generation", "tools", "reference", "forward_backward", "step")
    split = {k: _mean(r[f"time/{k}"] for r in rows) for k in keys}
    split["other"] = split["step"] - sum(split[k] for k in keys[:-1])
    return {
        "seconds_per_step": split["step"],
        "split": split,
        "episodes_per_step": config.episodes_per_step,
        "model_tokens_per_step": _mean(r["tokens/model"] for r in rows),
        "turns_per_episode": _mean(r["turns"] for r in rows),
        "tool_calls_ok_per_step": _mean(r.get("reward/code", 0.0) for r in rows)
        * config.episodes_per_step,
        "warm_start_seconds": warm,
        "peak_rss_mb": _peak_rss_mb(),
    }


def part_arft_single(steps: int, warmup: int, out: Path, algo: str = "grpo") -> dict:
    from agents.training import TrainConfig, Trainer

    cpu: list[float] = []

    class CpuClock(Trainer):
        """The trainer, with each step's CPU seconds (``time.process_time``) beside its wall
        seconds: on a machine shared with other work the CPU time of a one-thread process is
        the steadier figure."""

        def train_step(self, step):
            start = time.process_time()
            try:
                return super().train_step(step)
            finally:
                cpu.append(time.process_time() - start)

    _register_prompt_env()
    values = dict(
        algo=algo,
        env="BenchPrompt-v0",
        output=str(out),
        steps=warmup + steps,
        group_size=GROUP,
        groups_per_step=PROMPTS_PER_STEP,
        max_new_tokens=COMPLETION_TOKENS,
        max_turns=1,
        learning_rate=1e-6,
        save_every=0,
        sample_every=0,
        report_to=("none",),
        progress_bar=False,
        mixed_precision=PRECISION,
    )
    if algo == "grpo":
        values["beta"] = 0.04  # TRL's side has the same KL term
    CpuClock(TrainConfig.from_dict(values)).train()
    rows = _rows(out)[warmup:]
    keys = ("generation", "reference", "forward_backward", "step")
    return {
        "seconds_per_step": _mean(r["time/step"] for r in rows),
        "cpu_seconds_per_step": _mean(cpu[warmup:]),
        "split": {k: _mean(r[f"time/{k}"] for r in rows) for k in keys},
        "completion_tokens": _mean(r["tokens/per_turn"] for r in rows),
        "peak_rss_mb": _peak_rss_mb(),
    }


def part_trl_single(steps: int, warmup: int, out: Path) -> dict:
    try:
        import trl
        from datasets import Dataset
        from transformers import TrainerCallback
    except ImportError as err:
        return {"skipped": f"trl is not installed ({err}); `pip install trl` to compare"}
    from transformers import AutoTokenizer

    from agents.models.tiny import save_tiny

    # TRL loads its reference model from the policy's path, so the tiny model is saved first.
    path = save_tiny(out / "tiny", seed=0)
    tokenizer = AutoTokenizer.from_pretrained(path)
    dataset = Dataset.from_list([{"prompt": [{"role": "user", "content": p}]} for p in PROMPTS])

    def length_reward(completions, **kwargs):
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        return [len(t) / 200 for t in texts]

    class Clock(TrainerCallback):
        def __init__(self):
            self.times: list[float] = []
            self.cpu: list[float] = []
            self.lengths: list[float] = []

        def on_step_begin(self, args, state, control, **kwargs):
            self.start = time.perf_counter()
            self.cpu_start = time.process_time()

        def on_step_end(self, args, state, control, **kwargs):
            self.times.append(time.perf_counter() - self.start)
            self.cpu.append(time.process_time() - self.cpu_start)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "completions/mean_length" in logs:
                self.lengths.append(float(logs["completions/mean_length"]))

    clock = Clock()
    config = trl.GRPOConfig(
        output_dir=str(out),
        per_device_train_batch_size=GROUP * PROMPTS_PER_STEP,
        num_generations=GROUP,
        max_completion_length=COMPLETION_TOKENS,
        temperature=1.0,
        beta=0.04,
        learning_rate=1e-6,
        num_iterations=1,
        max_steps=warmup + steps,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        bf16=PRECISION == "bf16",
        seed=0,
        dataloader_num_workers=0,
        disable_tqdm=True,
        model_init_kwargs={"dtype": "float32"},
    )
    trainer = trl.GRPOTrainer(
        model=str(path),
        reward_funcs=length_reward,
        args=config,
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=[clock],
    )
    trainer.train()
    times = clock.times[warmup:]
    return {
        "seconds_per_step": _mean(times),
        "cpu_seconds_per_step": _mean(clock.cpu[warmup:]),
        "completion_tokens": _mean(clock.lengths[warmup:]) if clock.lengths else None,
        "trl_version": trl.__version__,
        "peak_rss_mb": _peak_rss_mb(),
    }


ALGOS = ("ppo", "rloo", "reinforce_pp", "dapo", "gspo", "dr_grpo")
PARTS = {
    "arft-multi": part_arft_multi,
    "arft-single": part_arft_single,
    "trl-single": part_trl_single,
    **{f"arft-{a}": (lambda s, w, o, a=a: part_arft_single(s, w, o, algo=a)) for a in ALGOS},
}


PAIR = ("arft-single", "trl-single")


def _median_run(runs: list[dict]) -> dict:
    """The run of median seconds per step (a failed run if none succeeded), with every run's
    wall and CPU seconds beside it."""
    done = sorted((r for r in runs if "seconds_per_step" in r), key=lambda r: r["seconds_per_step"])
    if not done:
        return runs[0]
    median = dict(done[(len(done) - 1) // 2])
    median["repeats_seconds_per_step"] = [r.get("seconds_per_step") for r in runs]
    median["repeats_cpu_seconds_per_step"] = [r.get("cpu_seconds_per_step") for r in runs]
    return median


def _rows(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if x.strip()]


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values) if values else float("nan")


# ---------------------------------------------------------------------- driver


def run_part(name: str, steps: int, warmup: int) -> dict:
    """Run one part in a fresh process and return its JSON."""
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "result.json"
        env = dict(os.environ, OMP_NUM_THREADS="1")
        cmd = [
            sys.executable, __file__, "--part", name, "--steps", str(steps),
            "--warmup", str(warmup), "--result", str(result), "--workdir", tmp,
        ]  # fmt: skip
        start = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = (proc.stdout + proc.stderr)[-3000:]
            return {"error": f"exit {proc.returncode}", "log_tail": tail}
        data = json.loads(result.read_text())
        data["wall_seconds"] = time.perf_counter() - start
        return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=6, help="timed steps per part")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--part", choices=sorted(PARTS), help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    parser.add_argument("--output", default=str(RESULTS / "grpo_step.json"))
    parser.add_argument("--parts", nargs="+", choices=sorted(PARTS), default=list(PARTS),
                        help="measure only these parts (default: all)")  # fmt: skip
    parser.add_argument("--repeats", type=int, default=3,
                        help="arft-single and trl-single run alternately this many times; "
                        "each side's figure is its median run")  # fmt: skip
    args = parser.parse_args(argv)

    if args.part:  # child process
        import torch

        torch.set_num_threads(1)
        work = Path(args.workdir) / args.part
        data = PARTS[args.part](args.steps, args.warmup, work)
        shutil.rmtree(work, ignore_errors=True)
        Path(args.result).write_text(json.dumps(data))
        return 0

    skipped = {"skipped": "not in --parts"}
    results = {}
    for name in PARTS:
        if name in PAIR:
            continue
        results[name] = run_part(name, args.steps, args.warmup) if name in args.parts else skipped
    # The compared pair alternates (arft, TRL, arft, TRL, ...), so that a change in the
    # machine's load during the run falls on both sides alike.
    runs: dict[str, list[dict]] = {name: [] for name in PAIR if name in args.parts}
    for _ in range(max(args.repeats, 1)):
        for name in runs:
            runs[name].append(run_part(name, args.steps, args.warmup))
    for name in PAIR:
        results[name] = _median_run(runs[name]) if name in runs else skipped
    results = {name: results[name] for name in PARTS}
    arft, trl_ = results["arft-single"], results["trl-single"]
    ratio = cpu_ratio = None
    per_repeat = []
    if "seconds_per_step" in arft and "seconds_per_step" in trl_:
        ratio = trl_["seconds_per_step"] / arft["seconds_per_step"]
        cpu_ratio = trl_["cpu_seconds_per_step"] / arft["cpu_seconds_per_step"]
        per_repeat = [
            t["seconds_per_step"] / a["seconds_per_step"]
            for a, t in zip(runs["arft-single"], runs["trl-single"], strict=True)
            if "seconds_per_step" in a and "seconds_per_step" in t
        ]
    over_grpo = {
        a: results[f"arft-{a}"]["seconds_per_step"] / arft["seconds_per_step"]
        for a in ALGOS
        if "seconds_per_step" in results[f"arft-{a}"] and "seconds_per_step" in arft
    }
    summary = {
        "benchmark": "grpo_step",
        "machine": {
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
        },
        "settings": {
            "steps": args.steps,
            "warmup": args.warmup,
            "group_size": GROUP,
            "prompts_per_step": PROMPTS_PER_STEP,
            "completion_tokens": COMPLETION_TOKENS,
            "threads": 1,
            "repeats": args.repeats,
            "precision": PRECISION,
        },
        "results": results,
        "trl_over_arft": ratio,
        "trl_over_arft_cpu": cpu_ratio,
        "trl_over_arft_per_repeat": per_repeat,
        "load_average": os.getloadavg(),
        "algorithm_over_grpo": over_grpo,
    }
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2))
    _print_table(summary)
    print(f"\nwrote {out}")
    return 0


def _print_table(summary: dict) -> None:
    r = summary["results"]
    multi = r["arft-multi"]
    print("Algorithm steps, tiny model, CPU, 1 thread")
    print(f"\n{'arft GRPO, multi-turn EasyMATCoding-v0':<44}{'s/step':>9}{'share':>8}")
    if "skipped" in multi:
        print(f"  skipped: {multi['skipped']}")
    elif "split" in multi:
        total = multi["seconds_per_step"]
        for key in ("generation", "tools", "reference", "forward_backward", "other"):
            value = multi["split"][key]
            print(f"  {key:<42}{value:>9.3f}{value / total:>8.0%}")
        print(f"  {'step':<42}{total:>9.3f}")
        print(
            f"  ({multi['episodes_per_step']} episodes, {multi['turns_per_episode']:.1f} turns "
            f"each, {multi['model_tokens_per_step']:.0f} model tokens, "
            f"{multi['tool_calls_ok_per_step']:.1f} code runs that wrote an image per step; "
            f"peak RSS {multi['peak_rss_mb']:.0f} MB)"
        )
    else:
        print(f"  failed: {multi.get('error')}\n{multi.get('log_tail', '')}")
    print(
        f"\n{'single-turn, G=8 × 2 prompts, 64 tokens':<44}{'s/step':>9}{'cpu s':>8}"
        f"{'tokens':>8}{'RSS MB':>9}"
    )
    for name in ("arft-single", "trl-single"):
        row = r[name]
        if "seconds_per_step" in row:
            tokens = row.get("completion_tokens")
            tokens = f"{tokens:>8.1f}" if tokens is not None else f"{'?':>8}"
            print(
                f"  {name:<42}{row['seconds_per_step']:>9.3f}{row['cpu_seconds_per_step']:>8.3f}"
                f"{tokens}{row['peak_rss_mb']:>9.0f}"
            )
        else:
            reason = row.get("skipped") or row.get("error")
            print(f"  {name:<42} skipped: {reason}")
            if row.get("log_tail"):
                print(row["log_tail"])
    ratio = summary["trl_over_arft"]
    if ratio is not None:
        print(f"\nTRL seconds per step / arft seconds per step = {ratio:.2f} (median runs)")
        each = ", ".join(f"{x:.2f}" for x in summary["trl_over_arft_per_repeat"])
        print(f"the same for each alternating repeat          = {each}")
        print(f"the same in CPU seconds (time.process_time)   = {summary['trl_over_arft_cpu']:.2f}")
        print("load average (1, 5, 15 min) at the end: {:.1f} {:.1f} {:.1f}".format(
            *summary["load_average"]))  # fmt: skip
    else:
        print("\nno ratio: one side did not run (see above)")
    print(f"\n{'every algorithm, same workload':<30}{'s/step':>9}{'x GRPO':>8}{'RSS MB':>9}")
    grpo = r["arft-single"].get("seconds_per_step")
    for name in ("arft-single", *(f"arft-{a}" for a in ALGOS)):
        row = r[name]
        label = "grpo" if name == "arft-single" else name.removeprefix("arft-")
        if "seconds_per_step" in row and grpo:
            sec = row["seconds_per_step"]
            print(f"  {label:<28}{sec:>9.3f}{sec / grpo:>8.2f}{row['peak_rss_mb']:>9.0f}")
        else:
            print(f"  {label:<28} skipped: {row.get('skipped') or row.get('error')}")


if __name__ == "__main__":
    sys.exit(main())
