"""One GRPO-like step of a real-vocabulary model on CPU: seconds split into generation and
forward/backward, tokens per second and peak RSS, with the full-vocabulary log-probs and the
chunked ones (:mod:`agents.models.logprobs`) side by side in the same run.

The step, on a fixed batch: 2 prompts × G = 8 samples, 128 new tokens each (temperature 1,
seeded, so both log-prob modes see the same tokens); then the policy-gradient loss with an
entropy bonus over the sampled tokens (group-relative advantages of a fixed per-sample score),
backward, and an AdamW step (the optimizer state is part of the memory, as in training; one
parameter at a time unless ``--adamw-foreach``). No
reference model and no tools: this isolates what the vocabulary costs.

Each (model, mode) runs in its own process, so that each peak RSS is its own; ``ratio`` is
the full mode's figure over the chunked one's, measured in this run.

    python benchmarks/real_model_step.py [--models smollm2-135m tiny-qwen] [--threads N]
        [--gradient-checkpointing] [--adamw-foreach]

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
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
MODES = ("full", "chunked")
PROMPTS = (
    "Which city is the capital of the country where the Eiffel Tower stands? Think step by "
    "step, then give the answer in <answer></answer>.",
    "A train leaves at 3 pm and travels 120 km at 60 km/h. When does it arrive? Think step by "
    "step, then give the answer in <answer></answer>.",
)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def child(
    model_name: str,
    mode: str,
    group: int,
    new_tokens: int,
    threads: int,
    checkpointing: bool,
    foreach: bool,
) -> dict:
    """One measured step in this process; returns its figures."""
    import torch

    torch.set_num_threads(threads)
    from agents.models.logprobs import use_full_logits
    from agents.policy import ModelInput, Policy

    t0 = time.perf_counter()
    policy = Policy.from_pretrained(
        model_name, device="cpu", dtype="float32", gradient_checkpointing=checkpointing
    )
    load_s = time.perf_counter() - t0
    rss_loaded = _rss_mb()
    use_full_logits(policy.model, mode == "full")
    system = {"role": "system", "content": ({"type": "text", "text": "You are helpful."},)}
    inputs = []
    for text in PROMPTS:
        user = {"role": "user", "content": ({"type": "text", "text": text},)}
        ids = policy.encode(policy.render([system, user], add_generation_prompt=True))
        inputs += [ModelInput(ids)] * group
    # foreach=False: one parameter at a time, so the step's temporaries are one tensor's size
    # (the default foreach kernels allocate temporaries the size of all the weights together).
    optimizer = torch.optim.AdamW(policy.model.parameters(), lr=1e-6, foreach=foreach)

    torch.manual_seed(0)
    t0 = time.perf_counter()
    gens = policy.generate(inputs, max_new_tokens=new_tokens, temperature=1.0, stop_strings=())
    gen_s = time.perf_counter() - t0
    rss_generation = _rss_mb()
    new = sum(len(g.token_ids) for g in gens)

    full = [ModelInput(x.input_ids + g.token_ids) for x, g in zip(inputs, gens, strict=True)]
    masks = [
        [0] * len(x.input_ids) + [1] * len(g.token_ids) for x, g in zip(inputs, gens, strict=True)
    ]
    batch = policy.collate(full)
    mask = torch.zeros_like(batch["input_ids"])
    for row, m in enumerate(masks):
        mask[row, : len(m)] = torch.tensor(m)
    score = torch.tensor([float(len(g.token_ids) % 7) for g in gens]).view(len(PROMPTS), group)
    adv = ((score - score.mean(1, keepdim=True)) / (score.std(1, keepdim=True) + 1e-4)).view(-1)
    policy.model.train()
    t0 = time.perf_counter()
    logp, entropy = policy.forward_logprobs(batch, mask=mask, return_entropy=True)
    n = mask.sum().clamp(min=1)
    loss = -(adv[:, None] * logp).sum() / n - 0.01 * entropy.sum() / n
    loss.backward()
    rss_backward = _rss_mb()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    fb_s = time.perf_counter() - t0
    return {
        "model": model_name,
        "mode": mode,
        "threads": threads,
        "gradient_checkpointing": checkpointing,
        "vocab": int(policy.model.get_output_embeddings().weight.shape[0]),
        "params_m": sum(p.numel() for p in policy.model.parameters()) / 1e6,
        "batch": list(batch["input_ids"].shape),
        "new_tokens": new,
        "load_s": load_s,
        "generation_s": gen_s,
        "forward_backward_s": fb_s,
        "step_s": gen_s + fb_s,
        "generation_tok_s": new / gen_s,
        "forward_backward_tok_s": int(batch["attention_mask"].sum()) / fb_s,
        "rss_loaded_mb": rss_loaded,
        "peak_rss_after_generation_mb": rss_generation,
        "peak_rss_after_backward_mb": rss_backward,
        "adamw_foreach": foreach,
        "peak_rss_mb": _rss_mb(),
        "loss": float(loss),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["smollm2-135m", "tiny-qwen"])
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=None, help="default: default_cpu_threads()")
    parser.add_argument(
        "--gradient-checkpointing",
        action="store_true",
        help="recompute each layer's activations in backward (TrainConfig.gradient_checkpointing)",
    )
    parser.add_argument(
        "--adamw-foreach",
        action="store_true",
        help="AdamW's foreach kernels (torch's default; faster, more memory at the step)",
    )
    parser.add_argument("--child", nargs=2, metavar=("MODEL", "MODE"), help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=RESULTS / "real_model_step.json")
    args = parser.parse_args(argv)
    if args.threads is None:
        from agents.models.logprobs import default_cpu_threads

        args.threads = default_cpu_threads()
    if args.child:
        figures = child(
            *args.child,
            args.group,
            args.new_tokens,
            args.threads,
            args.gradient_checkpointing,
            args.adamw_foreach,
        )
        print(json.dumps(figures))
        return 0
    rows = []
    for model in args.models:
        for mode in MODES:
            cmd = [
                sys.executable,
                __file__,
                "--child",
                model,
                mode,
                "--group",
                str(args.group),
                "--new-tokens",
                str(args.new_tokens),
                "--threads",
                str(args.threads),
                *(["--gradient-checkpointing"] if args.gradient_checkpointing else []),
                *(["--adamw-foreach"] if args.adamw_foreach else []),
            ]
            env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
            done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
            if done.returncode:
                print(done.stderr[-3000:], file=sys.stderr)
                raise SystemExit(f"{model} {mode}: the measurement failed (exit {done.returncode})")
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    head = (
        f"{'model':<14}{'mode':<9}{'gen s':>8}{'fwd+bwd s':>11}{'step s':>8}"
        f"{'gen tok/s':>11}{'f+b tok/s':>11}{'peak RSS MB':>13}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r['model']:<14}{r['mode']:<9}{r['generation_s']:>8.1f}"
            f"{r['forward_backward_s']:>11.1f}{r['step_s']:>8.1f}{r['generation_tok_s']:>11.1f}"
            f"{r['forward_backward_tok_s']:>11.1f}{r['peak_rss_mb']:>13.0f}"
        )
    ratios = {}
    for model in args.models:
        full, chunked = (
            next(r for r in rows if r["model"] == model and r["mode"] == m) for m in MODES
        )
        ratios[model] = {
            "peak_rss_full_over_chunked": full["peak_rss_mb"] / chunked["peak_rss_mb"],
            "forward_backward_full_over_chunked": full["forward_backward_s"]
            / chunked["forward_backward_s"],
            "loss_difference": abs(full["loss"] - chunked["loss"]),
        }
        r = ratios[model]
        print(
            f"{model}: peak RSS full/chunked {r['peak_rss_full_over_chunked']:.2f}x, "
            f"fwd+bwd time full/chunked {r['forward_backward_full_over_chunked']:.2f}x, "
            f"|loss difference| {r['loss_difference']:.1e}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"machine": platform.machine(), "cpus": os.cpu_count(), "python": sys.version.split()[0]}
    args.out.write_text(json.dumps({"meta": meta, "rows": rows, "ratios": ratios}, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
