"""MATCoding-v0 throughput: expert episodes/s, answer-only vs code turns, sandbox vs bare exec.

One run, three measurements, each next to its baseline from the same run:
1. expert episodes per second on synthetic MATCoding-v0 tasks (with their real code turns);
2. per-turn cost of an answer-only turn versus a code turn (the code runs in the sandbox);
3. per-call cost of ``Sandbox.run`` versus a bare in-process ``exec`` of the same snippet.

Usage: ``python benchmarks/env_throughput.py [--episodes 60] [--calls 100]``. Prints a table
and writes ``benchmarks/results/env_throughput.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import gymnasium as gym
import numpy as np

import arft_envs  # noqa: F401
from arft_envs.experts import ScriptedExpert

SNIPPET = (
    "import cv2\nimg = cv2.imread('path_to_input_image.jpg')\n"
    "img = cv2.rotate(img, cv2.ROTATE_90_CLOCKWISE)\n"
    "cv2.imwrite('path_to_output_image.jpg', img)"
)


def pct(values, q):
    return float(np.percentile(np.asarray(values) * 1000, q))


def expert_episodes(env, n):
    expert = ScriptedExpert()
    answer_turns, code_turns, other_turns = [], [], []
    start = time.perf_counter()
    for seed in range(n):
        obs, _ = env.reset(seed=seed)
        done = False
        while not done:
            action = expert(obs, env)
            t0 = time.perf_counter()
            obs, _, terminated, truncated, info = env.step(action)
            dt = time.perf_counter() - t0
            {"answer": answer_turns, "code": code_turns}.get(
                info["action_kind"], other_turns
            ).append(dt)
            done = terminated or truncated
    return n / (time.perf_counter() - start), answer_turns, code_turns, other_turns


def bare_exec(image, n):
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        cwd = os.getcwd()
        os.chdir(tmp)
        try:
            for _ in range(n):
                t0 = time.perf_counter()
                cv2.imwrite("path_to_input_image.jpg", image[:, :, ::-1])
                exec(compile(SNIPPET, "<bench>", "exec"), {})
                out = cv2.imread("path_to_output_image.jpg")
                assert out is not None
                times.append(time.perf_counter() - t0)
        finally:
            os.chdir(cwd)
    return times


def sandbox_calls(sandbox, image, n):
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        result = sandbox.run(SNIPPET, files={"path_to_input_image.jpg": image})
        assert result.status == "ok", result.describe()
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=60)
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument(
        "--out", default=str(Path(__file__).parent / "results" / "env_throughput.json")
    )
    args = parser.parse_args()

    env = gym.make("MATCoding-v0")
    expert_episodes(env, 3)  # warm the sandbox workers
    eps, answer_t, code_t, other_t = expert_episodes(env, args.episodes)
    obs, _ = env.reset(seed=0)
    image = obs["images"][0]
    sandbox = env.unwrapped.sandbox
    sandbox_calls(sandbox, image, 5)
    bare = bare_exec(image, args.calls)
    boxed = sandbox_calls(sandbox, image, args.calls)

    rows = [
        ("answer-only turn", statistics.median(answer_t), answer_t),
        ("problem turn", statistics.median(other_t), other_t),
        ("code turn (sandboxed)", statistics.median(code_t), code_t),
        ("bare in-process exec", statistics.median(bare), bare),
        ("Sandbox.run", statistics.median(boxed), boxed),
    ]
    print(
        f"MATCoding-v0 expert episodes/s: {eps:.1f}  ({args.episodes} episodes, image {image.shape})"
    )
    print(f"{'measurement':<24} {'n':>5} {'median ms':>10} {'p95 ms':>9}")
    for name, _, values in rows:
        print(f"{name:<24} {len(values):>5} {pct(values, 50):>10.2f} {pct(values, 95):>9.2f}")
    code_vs_answer = statistics.median(code_t) / statistics.median(answer_t)
    sandbox_vs_bare = statistics.median(boxed) / statistics.median(bare)
    print(f"ratio code turn / answer turn (median): {code_vs_answer:.1f}x")
    print(f"ratio Sandbox.run / bare exec (median): {sandbox_vs_bare:.1f}x")
    result = {
        "episodes_per_s": eps,
        "sandbox_level": getattr(sandbox, "level", None),
        "rows": {
            name: {"n": len(v), "median_ms": pct(v, 50), "p95_ms": pct(v, 95)}
            for name, _, v in rows
        },
        "ratio_code_over_answer": code_vs_answer,
        "ratio_sandbox_over_bare_exec": sandbox_vs_bare,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
