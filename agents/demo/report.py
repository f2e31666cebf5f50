"""The demo's outputs for a reader: the training reward curve as a PNG
(:func:`plot_rewards`) and the held-out table printed at the end (:func:`print_summary`,
with the tool calls of each phase by status)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def heldout_points(results: dict | None) -> list[tuple[str, float, float]]:
    """``(phase, sampled success, greedy success)`` of each held-out evaluation, in order
    (untrained, SFT, GRPO): the right panel of :func:`plot_rewards`."""
    out = []
    for name, evaluations in (results or {}).items():
        sampled, greedy = evaluations["sampled"], evaluations.get("greedy")
        out.append((name, float(sampled.success), float(greedy.success if greedy else np.nan)))
    return out


def plot_rewards(run_dir: str | Path, path: str | Path, results: dict | None = None) -> Path:
    """The training reward per GRPO step (mean and a moving average; the axis fitted to the
    data) and, with ``results``, the held-out success at each phase beside it, as a PNG."""
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
    points = heldout_points(results)
    if points:
        fig, (ax, side) = plt.subplots(
            1, 2, figsize=(10, 4), dpi=110, gridspec_kw={"width_ratios": [2.2, 1]}
        )
    else:
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
    low, high = float(np.min(reward)), float(np.max(reward))
    pad = max((high - low) * 0.1, 0.05)
    ax.set_ylim(low - pad, high + pad)  # the change visible, not a 0..max axis
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if points:
        x = np.arange(len(points))
        for column, label, color in ((1, "sampled", "#136"), (2, "greedy", "#c63")):
            values = [p[column] for p in points]
            side.plot(x, values, "o-", color=color, label=label)
            for i, v in enumerate(values):
                side.annotate(f"{v:.2f}", (i, v), textcoords="offset points", xytext=(0, 6),
                              ha="center", fontsize=8, color=color)  # fmt: skip
        side.set_xticks(x, [p[0] for p in points])
        side.set_ylim(0, 1.05)
        side.set_ylabel("held-out success")
        side.set_title("held-out success per phase", fontsize=9)
        side.grid(alpha=0.3)
        side.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


#: The columns of the held-out table, in order (``repaired``: a code turn measurably restored
#: the image, :func:`agents.demo.measure.repaired`).
TABLE_KEYS = (
    "success", "diagnosis", "well_formed", "code_ran", "repaired", "answer_f1", "mean_return",
)  # fmt: skip


def format_rate(value: float | None, width: int = 0) -> str:
    """A rate to three decimals, ``n/a`` for None (nothing measured)."""
    return f"{'n/a' if value is None else f'{value:.3f}':>{width}}"


def format_statuses(counts: dict[str, int]) -> str:
    """Tool calls by status as ``"180 ok, 12 error"`` (``"none"`` without calls)."""
    return ", ".join(f"{n} {status}" for status, n in counts.items()) or "none"


def print_summary(summary: dict) -> None:
    """Print the held-out rates of each phase (sampled and greedy), its tool calls by status,
    and GRPO − SFT."""
    rows = summary["heldout"]
    settings = summary["settings"]
    counts = summary["episodes_per_eval"]
    for mode, label in (
        ("sampled", f"sampled at T={settings['temperature']}, {counts['sampled']} episodes"),
        ("greedy", f"greedy, {counts['greedy']} episodes"),
    ):
        print(f"\nheld-out, {label}")
        keys = [k for k in TABLE_KEYS if any(k in row[mode] for row in rows.values())]
        print(f"{'':<11}" + "".join(f"{k:>12}" for k in keys))
        for name, row in rows.items():
            print(f"{name:<11}" + "".join(format_rate(row[mode].get(k), 12) for k in keys))
        for name, row in rows.items():
            if "tool_status" in row[mode]:
                print(f"  tool calls, {name:<9}: {format_statuses(row[mode]['tool_status'])}")
    for mode, gain in summary.get("grpo_minus_sft", {}).items():
        low, high = gain["ci95"]
        print(
            f"GRPO - SFT, {mode}: {gain['gain']:+.3f} (95% bootstrap interval over "
            f"{gain['tasks']} tasks: {low:+.3f} to {high:+.3f})"
        )
    print(f"\nwall time {summary['seconds']:.0f}s")
