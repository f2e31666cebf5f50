"""Rollout throughput of the tiny model on CPU: batched versus one episode at a time, and the
peak memory of a 5-turn MATCoding episode with a new image every turn.

One run, three measurements, each next to its baseline from the same run:
1. sampled MATCoding-v0 episodes (the tiny model, 5 turns each, ``--new-tokens`` per turn),
   with all episodes batched across ``--batch`` env slots, versus the same number of
   episodes with one slot (one episode at a time): tokens/s, episodes/s and their ratio;
2. the share of wall time spent in generation (the rest is env steps, sandbox included, and
   token bookkeeping);
3. peak resident memory over a scripted 5-turn MATCoding episode whose four code turns each
   bring back a new image, plus the log-prob forward pass over its trajectory, against the
   resident memory after loading the model.

Usage: ``python benchmarks/rollout_throughput.py [--episodes 16] [--batch 8] [--threads 1]``.
Prints a table and writes ``benchmarks/results/rollout_throughput.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time
from pathlib import Path

import torch

import arft_envs  # noqa: F401
from agents.policy import Generation, Policy
from agents.rollout import RolloutConfig, collect, make_envs

CODE = (
    "<think> Step {k}: rotate the image. </think>\n<code>\n```python\nimport cv2\n"
    "img = cv2.imread('path_to_input_image.jpg')\nimg = cv2.rotate(img, cv2.ROTATE_90_CLOCKWISE)\n"
    "cv2.imwrite('path_to_output_image.jpg', img)\n```\n</code>"
)
SCRIPT = [
    "<think> The text runs sideways. </think>\n<problem> {'rotation90'} </problem>",
    *[CODE.format(k=k) for k in range(1, 4)],
    "<think> Done. </think>\n<answer> STUDIO </answer>",
]


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed_rollout(policy: Policy, episodes: int, slots: int, new_tokens: int, seed: int):
    """(seconds, generated tokens, episodes, seconds in generation) of one rollout."""
    envs = make_envs("MATCoding-v0", slots)
    generate = policy.generate
    spent = [0.0]

    def timed_generate(*args, **kwargs):
        t0 = time.perf_counter()
        out = generate(*args, **kwargs)
        spent[0] += time.perf_counter() - t0
        return out

    policy.generate = timed_generate
    config = RolloutConfig(max_new_tokens=new_tokens, stop_strings=(), seed=seed)
    try:
        t0 = time.perf_counter()
        trajectories = collect(policy, envs, config, groups=episodes)
        seconds = time.perf_counter() - t0
    finally:
        del policy.generate
        envs.close()
    tokens = sum(sum(t.assistant_mask) for t in trajectories)
    turns = sum(t.num_turns for t in trajectories)
    return seconds, tokens, len(trajectories), spent[0], turns


def scripted_episode_memory(policy: Policy) -> dict:
    """Peak RSS over a scripted 5-turn episode with a new image per code turn."""
    calls = [0]

    def scripted(inputs, **kwargs):
        out = []
        for _ in inputs:
            text = SCRIPT[min(calls[0], len(SCRIPT) - 1)]
            calls[0] += 1
            ids = policy.encode(text)
            out.append(Generation(ids, [0.0] * len(ids), text, "stop"))
        return out

    envs = make_envs("MATCoding-v0", 1)
    policy.generate = scripted
    before = rss_mib()
    try:
        t0 = time.perf_counter()
        [trajectory] = collect(policy, envs, RolloutConfig(), groups=1)
        logprobs = policy.sequence_logprobs([trajectory.model_input()], [trajectory.assistant_mask])
        seconds = time.perf_counter() - t0
    finally:
        del policy.generate
        envs.close()
    assert len(logprobs[0]) == len(trajectory.input_ids)
    return {
        "turns": trajectory.num_turns,
        "images": len(trajectory.images),
        "sequence_tokens": len(trajectory.input_ids),
        "image_tokens": trajectory.input_ids.count(policy.image_token_id),
        "rss_before_mib": before,
        "peak_rss_mib": peak_rss_mib(),
        "seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=16)
    parser.add_argument("--batch", type=int, default=8, help="env slots of the batched run")
    parser.add_argument("--new-tokens", type=int, default=48, help="tokens per turn")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out", default=str(Path(__file__).parent / "results" / "rollout_throughput.json")
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    rss_start = rss_mib()
    policy = Policy.from_pretrained("tiny", device="cpu")
    rss_loaded = rss_mib()
    memory = scripted_episode_memory(policy)  # first, so the peak is this episode's
    timed_rollout(policy, 2, 2, 8, seed=99)  # warm-up: sandbox workers, allocator, kernels

    runs = {}
    for name, slots in (("one at a time", 1), (f"batched ({args.batch} slots)", args.batch)):
        seconds, tokens, episodes, gen_seconds, turns = timed_rollout(
            policy, args.episodes, slots, args.new_tokens, args.seed
        )
        runs[name] = {
            "slots": slots,
            "episodes": episodes,
            "turns": turns,
            "tokens": tokens,
            "seconds": seconds,
            "tokens_per_s": tokens / seconds,
            "episodes_per_s": episodes / seconds,
            "generation_share": gen_seconds / seconds,
        }
    base, batched = runs["one at a time"], runs[f"batched ({args.batch} slots)"]
    ratio_tokens = batched["tokens_per_s"] / base["tokens_per_s"]
    ratio_episodes = batched["episodes_per_s"] / base["episodes_per_s"]

    print(
        f"tiny model ({sum(p.numel() for p in policy.model.parameters()) / 1e6:.2f} M params), "
        f"CPU, {args.threads} thread(s), MATCoding-v0, {args.new_tokens} tokens/turn, "
        f"5 turns/episode"
    )
    print(
        f"{'run':<22} {'episodes':>8} {'tokens':>7} {'s':>7} {'tok/s':>8} {'ep/s':>6} {'gen %':>6}"
    )
    for name, r in runs.items():
        print(
            f"{name:<22} {r['episodes']:>8} {r['tokens']:>7} {r['seconds']:>7.2f} "
            f"{r['tokens_per_s']:>8.0f} {r['episodes_per_s']:>6.2f} "
            f"{100 * r['generation_share']:>5.0f}%"
        )
    print(
        f"ratio batched / one at a time: tokens/s {ratio_tokens:.2f}x, episodes/s {ratio_episodes:.2f}x"
    )
    print(
        f"scripted 5-turn episode, {memory['images']} images ({memory['image_tokens']} image "
        f"tokens of {memory['sequence_tokens']}): peak RSS {memory['peak_rss_mib']:.0f} MiB, "
        f"RSS after loading the model {rss_loaded:.0f} MiB (process start {rss_start:.0f} MiB)"
    )
    result = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "threads": args.threads,
        },
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "runs": runs,
        "ratio_batched_over_sequential": {
            "tokens_per_s": ratio_tokens,
            "episodes_per_s": ratio_episodes,
        },
        "memory": {**memory, "rss_after_load_mib": rss_loaded, "rss_process_start_mib": rss_start},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
