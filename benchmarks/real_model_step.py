"""One GRPO step and one SFT warm-start step of a real-vocabulary model on CPU: seconds split
into generation / tools / forward-backward, tokens per second and peak RSS, for full-vocabulary
and chunked log-probs (:mod:`agents.models.logprobs`) and for float32 and bf16 autocast, side
by side in the same run.

The GRPO step: 2 HotpotQA-v0 tasks × G = 8 episodes of one turn, 128 new tokens at most,
sampled at temperature 1 with a fixed seed through the rollout (:func:`agents.rollout.collect`:
the env's search tool runs on what the model writes; that is the ``tools`` time); then the
policy-gradient loss with an entropy bonus (group-relative advantages of the episode returns),
scored ``--micro-batch`` episodes at a time with the gradients accumulated (the trainer's
``gradient_accumulation_steps``), gradient clipping at 1.0 and an AdamW step. No reference
model (β = 0 needs none). The SFT step: ``--sft-batch`` HotpotQA-v0 expert episodes (the
warm start's :func:`agents.training.warm_start.sft_backward`, ``--sft-micro-batch`` at a time)
and an AdamW step.

Memory is that of a steady step: AdamW's two moment buffers exist before the step starts, as
from the second step of a run on (the first step would allocate them only after the
backward, and look 1 GB smaller than every later one). The optimizer runs one parameter at a
time (``foreach=False``), so its temporaries are one tensor's size. glibc is told
(``MALLOC_MMAP_THRESHOLD_``) to give large blocks back when they are freed, so RSS follows
what is alive (without it, freed activations and logits stay resident).

Each (model, step, mode, precision) runs in its own process, so that each peak RSS is its
own; SmolLM2 is converted from its GGUF file to a checkpoint folder once, before them.

    python benchmarks/real_model_step.py [--models smollm2-135m tiny-qwen] [--threads N]
        [--precisions fp32 bf16] [--no-gradient-checkpointing] [--micro-batch 4]

Writes ``benchmarks/results/real_model_step.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
MODES = ("full", "chunked")
ENV = "HotpotQA-v0"
MMAP_THRESHOLD = str(1 << 20)  # bytes: blocks from 1 MiB up are mapped, and unmapped on free


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _load(model_name: str, checkpointing: bool):
    from agents.policy import Policy

    return Policy.from_pretrained(
        model_name, device="cpu", dtype="float32", gradient_checkpointing=checkpointing
    )


def _optimizer(model):
    """AdamW as the trainer builds it, its moment buffers allocated (a steady step's memory)."""
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-6, weight_decay=0.0, foreach=False)
    for p in params:
        p.grad = torch.zeros_like(p)
    optimizer.step()  # lr × 0 / (0 + eps) = 0: the weights do not move
    optimizer.zero_grad(set_to_none=True)
    return params, optimizer


def _update(params, optimizer) -> None:
    import torch

    torch.nn.utils.clip_grad_norm_(params, 1.0, foreach=False)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def grpo_child(policy, args, autocast) -> dict:
    """One GRPO step: rollout (generation + tools), scoring by micro-batches, AdamW."""
    import torch

    from agents.rollout import RolloutConfig, collect, make_envs
    from agents.training.batch import micro_batches, token_batch
    from agents.training.metrics import Clock, TimedEnvs, TimedPolicy

    params, optimizer = _optimizer(policy.model)
    envs = make_envs(ENV, 2 * args.group, copy_observations=False)
    config = RolloutConfig(
        group_size=args.group, max_new_tokens=args.new_tokens, temperature=1.0, max_turns=1,
        seed=0,
    )  # fmt: skip
    clock = Clock()
    policy.model.eval()
    with torch.no_grad(), autocast():
        episodes = collect(TimedPolicy(policy, clock), TimedEnvs(envs, clock), config, groups=2)
    envs.close()
    rss_rollout = _rss_mb()
    returns = torch.tensor([t.episode_return for t in episodes]).view(2, args.group)
    std = returns.std(1, keepdim=True)
    adv = ((returns - returns.mean(1, keepdim=True)) / (std + 1e-4)).view(-1)
    if not bool(adv.abs().sum()):  # every return equal: a fixed score, so the step has work
        score = torch.tensor([float(sum(t.assistant_mask) % 7) for t in episodes]).view(2, -1)
        adv = (score - score.mean(1, keepdim=True)) / (score.std(1, keepdim=True) + 1e-4)
        adv = adv.view(-1)
    tokens = sum(sum(t.assistant_mask) for t in episodes)
    policy.model.train()
    t0 = time.perf_counter()
    total = 0.0
    for chunk in micro_batches(list(range(len(episodes))), -(-len(episodes) // args.micro_batch)):
        batch, mask = token_batch(policy, [episodes[i] for i in chunk])
        with autocast():
            logp, entropy = policy.forward_logprobs(batch, mask=mask, return_entropy=True)
        a = adv[chunk][:, None]
        loss = (-(a * logp * mask).sum() - 0.01 * (entropy * mask).sum()) / tokens
        loss.backward()
        total += float(loss)
    rss_backward = _rss_mb()
    _update(params, optimizer)
    fb_s = time.perf_counter() - t0
    gen_s = clock.seconds.get("generation", 0.0)
    tools_s = clock.seconds.get("tools", 0.0)
    new = sum(sum(t.assistant_mask) for t in episodes)
    return {
        "generation_s": gen_s,
        "tools_s": tools_s,
        "forward_backward_s": fb_s,
        "step_s": gen_s + tools_s + fb_s,
        "new_tokens": new,
        "scored_tokens": int(sum(len(t.input_ids) for t in episodes)),
        "mean_return": float(returns.mean()),
        "generation_tok_s": new / max(gen_s, 1e-9),
        "forward_backward_tok_s": sum(len(t.input_ids) for t in episodes) / fb_s,
        "peak_rss_after_rollout_mb": rss_rollout,
        "peak_rss_after_backward_mb": rss_backward,
        "loss": total,
    }


def sft_child(policy, args, autocast) -> dict:
    """One warm-start step on expert episodes, ``--sft-micro-batch`` at a time."""
    from agents.rollout import RolloutConfig
    from agents.training.warm_start import SFT_SEED_BASE, expert_trajectories, sft_backward

    params, optimizer = _optimizer(policy.model)
    seeds = [SFT_SEED_BASE + i for i in range(args.sft_batch)]
    t0 = time.perf_counter()
    demos = expert_trajectories(
        policy, ENV, seeds, config=RolloutConfig(max_new_tokens=max(args.new_tokens, 512))
    )
    tools_s = time.perf_counter() - t0
    policy.model.train()
    t0 = time.perf_counter()

    class _Autocast:  # the accelerator-shaped object sft_backward takes, without accelerate
        def autocast(self):
            return autocast()

        def no_sync(self, _model):
            import contextlib

            return contextlib.nullcontext()

        def backward(self, loss):
            loss.backward()

    loss, tokens = sft_backward(policy, demos, args.sft_micro_batch, accelerator=_Autocast())
    rss_backward = _rss_mb()
    _update(params, optimizer)
    fb_s = time.perf_counter() - t0
    scored = sum(len(t.input_ids) for t in demos)
    return {
        "generation_s": 0.0,
        "tools_s": tools_s,
        "forward_backward_s": fb_s,
        "step_s": tools_s + fb_s,
        "new_tokens": 0,
        "scored_tokens": scored,
        "trained_tokens": tokens,
        "generation_tok_s": 0.0,
        "forward_backward_tok_s": scored / fb_s,
        "peak_rss_after_backward_mb": rss_backward,
        "loss": float(loss),
    }


def child(model_name: str, step: str, mode: str, precision: str, args) -> dict:
    """One measured step in this process; returns its figures."""
    import contextlib

    import torch

    torch.set_num_threads(args.threads)
    from agents.models.logprobs import use_full_logits

    t0 = time.perf_counter()
    policy = _load(model_name, args.gradient_checkpointing)
    load_s = time.perf_counter() - t0
    rss_loaded = _rss_mb()
    use_full_logits(policy.model, mode == "full")

    def autocast():
        if precision == "bf16":
            return torch.autocast("cpu", dtype=torch.bfloat16, cache_enabled=args.autocast_cache)
        return contextlib.nullcontext()

    run = grpo_child if step == "grpo" else sft_child
    figures = run(policy, args, autocast)
    return {
        "model": model_name,
        "step": step,
        "mode": mode,
        "precision": precision,
        "threads": args.threads,
        "gradient_checkpointing": args.gradient_checkpointing,
        "micro_batch": args.micro_batch if step == "grpo" else args.sft_micro_batch,
        "autocast_cache": args.autocast_cache,
        "vocab": int(policy.model.get_output_embeddings().weight.shape[0]),
        "params_m": sum(p.numel() for p in policy.model.parameters()) / 1e6,
        "load_s": load_s,
        "rss_loaded_mb": rss_loaded,
        **figures,
        "peak_rss_mb": _rss_mb(),
    }


def _convert(model_name: str, folder: Path) -> str:
    """A checkpoint folder of ``model_name`` (GGUF models: dequantised once, so that each
    child loads in seconds); other models are loaded by name."""
    if not model_name.startswith("smollm2"):
        return model_name
    if not (folder / "config.json").is_file():
        code = (
            "import sys; from agents.policy import Policy; "
            "Policy.from_pretrained(sys.argv[1], device='cpu', dtype='float32')"
            ".save_pretrained(sys.argv[2])"
        )
        subprocess.run([sys.executable, "-c", code, model_name, str(folder)], check=True)
    return str(folder)


def _runs(args) -> list[tuple[str, str, str, str, int]]:
    """(model, step, mode, precision, micro-batch) of every measurement."""
    runs = []
    for model in args.models:
        for precision in args.precisions if "grpo" in args.steps else ():
            for mode in args.modes:
                runs.append((model, "grpo", mode, precision, args.micro_batch))
        if "sft" in args.steps:
            for precision in args.precisions:
                for micro in args.sft_micro_batches:
                    if precision != args.precisions[0] and micro != args.sft_micro_batches[0]:
                        continue  # the micro-batch comparison in the first precision only
                    runs.append((model, "sft", "chunked", precision, micro))
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["smollm2-135m", "tiny-qwen"])
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--micro-batch", type=int, default=4, help="episodes per scoring pass")
    parser.add_argument("--steps", nargs="+", default=["grpo", "sft"], help="grpo and/or sft")
    parser.add_argument("--sft-batch", type=int, default=8, help="expert episodes of the step")
    parser.add_argument(
        "--sft-micro-batches", nargs="+", type=int, default=[1, 8],
        help="expert episodes per forward pass (the first in every precision, others in fp32)",
    )  # fmt: skip
    parser.add_argument("--threads", type=int, default=None, help="default: default_cpu_threads()")
    parser.add_argument(
        "--no-gradient-checkpointing",
        dest="gradient_checkpointing",
        action="store_false",
        help="keep every layer's activations for backward (TrainConfig.gradient_checkpointing)",
    )
    parser.add_argument("--modes", nargs="+", default=list(MODES), help="full and/or chunked")
    parser.add_argument(
        "--no-autocast-cache",
        dest="autocast_cache",
        action="store_false",
        help="bf16: cast each weight where it is used instead of keeping a bf16 copy of all "
        "of them for the pass (torch.autocast cache_enabled=False; less memory)",
    )
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=RESULTS / "real_model_step.json")
    args = parser.parse_args(argv)
    if args.threads is None:
        from agents.models.logprobs import default_cpu_threads

        args.threads = default_cpu_threads()
    if args.child:
        model, step, mode, precision, micro = args.child
        if step == "grpo":
            args.micro_batch = int(micro)
        else:
            args.sft_micro_batch = int(micro)
        print(json.dumps(child(model, step, mode, precision, args)))
        return 0
    rows = []
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    env["MALLOC_MMAP_THRESHOLD_"] = MMAP_THRESHOLD
    with tempfile.TemporaryDirectory(prefix="arft-bench-") as tmp:
        sources = {m: _convert(m, Path(tmp) / m) for m in args.models}
        for model, step, mode, precision, micro in _runs(args):
            cmd = [
                sys.executable, __file__, "--child", sources[model], step, mode, precision,
                str(micro), "--group", str(args.group), "--new-tokens", str(args.new_tokens),
                "--sft-batch", str(args.sft_batch), "--threads", str(args.threads),
                *([] if args.gradient_checkpointing else ["--no-gradient-checkpointing"]),
                *([] if args.autocast_cache else ["--no-autocast-cache"]),
            ]  # fmt: skip
            done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
            if done.returncode:
                print(done.stderr[-3000:], file=sys.stderr)
                raise SystemExit(f"{model} {step} {mode} {precision}: failed ({done.returncode})")
            row = json.loads(done.stdout.strip().splitlines()[-1])
            row["model"] = model
            rows.append(row)
            print(_line(row), flush=True)
    print(_HEAD)
    print("-" * len(_HEAD))
    for r in rows:
        print(_line(r))
    ratios = {}
    both = set(args.modes) == set(MODES) and "grpo" in args.steps
    for model in args.models if both else ():
        for precision in args.precisions:
            full, chunked = (
                next(
                    r
                    for r in rows
                    if (r["model"], r["step"], r["mode"], r["precision"])
                    == (model, "grpo", m, precision)
                )
                for m in MODES
            )
            ratios[f"{model} {precision}"] = {
                "peak_rss_full_over_chunked": full["peak_rss_mb"] / chunked["peak_rss_mb"],
                "forward_backward_full_over_chunked": full["forward_backward_s"]
                / chunked["forward_backward_s"],
            }
        if len(args.precisions) > 1:
            fp32, bf16 = (
                next(
                    r
                    for r in rows
                    if (r["model"], r["step"], r["mode"], r["precision"])
                    == (model, "grpo", "chunked", p)
                )
                for p in ("fp32", "bf16")
            )
            ratios[f"{model} chunked"] = {
                "generation_fp32_over_bf16": fp32["generation_s"] / bf16["generation_s"],
                "forward_backward_fp32_over_bf16": fp32["forward_backward_s"]
                / bf16["forward_backward_s"],
            }
    for key, r in ratios.items():
        print(key + ": " + ", ".join(f"{k} {v:.2f}" for k, v in r.items()))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "threads": args.threads,
        "load_average": os.getloadavg(),
    }
    args.out.write_text(json.dumps({"meta": meta, "rows": rows, "ratios": ratios}, indent=2))
    print(f"wrote {args.out}")
    return 0


_HEAD = (
    f"{'model':<14}{'step':<6}{'mode':<9}{'prec':<6}{'micro':>6}{'gen s':>8}{'tools s':>9}"
    f"{'f+b s':>8}{'gen tok/s':>11}{'f+b tok/s':>11}{'peak RSS MB':>13}"
)


def _line(r: dict) -> str:
    return (
        f"{r['model']:<14}{r['step']:<6}{r['mode']:<9}{r['precision']:<6}{r['micro_batch']:>6}"
        f"{r['generation_s']:>8.1f}{r['tools_s']:>9.1f}{r['forward_backward_s']:>8.1f}"
        f"{r['generation_tok_s']:>11.1f}{r['forward_backward_tok_s']:>11.1f}"
        f"{r['peak_rss_mb']:>13.0f}"
    )


if __name__ == "__main__":
    raise SystemExit(main())
