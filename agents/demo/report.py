"""The demo's outputs for a reader: the training reward curve as a PNG
(:func:`plot_rewards`) and the held-out table printed at the end (:func:`print_summary`,
with the tool calls of each phase by status)."""

from __future__ import annotations

import json
from collections.abc import Sequence
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
    """``reward_curve.png``: :func:`reward_figure` saved as a PNG."""
    fig = reward_figure(run_dir, results)
    import matplotlib.pyplot as plt

    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def reward_figure(run_dir: str | Path, results: dict | None = None):
    """The training reward per GRPO step (mean and a moving average, on an axis fitted to the
    data; the diagnosis reward, when logged, on its own 0–1 axis at the right) and, with
    ``results``, the held-out success at each phase beside it: a matplotlib figure."""
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
            1, 2, figsize=(10.5, 4.2), dpi=110, gridspec_kw={"width_ratios": [2.2, 1]}
        )
    else:
        fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    lines = ax.plot(steps, reward, color="#9ab", lw=1, label="episode return (step mean)")
    window = max(1, len(reward) // 8)
    if len(reward) >= window > 1:
        smooth = np.convolve(reward, np.ones(window) / window, mode="valid")
        lines += ax.plot(
            steps[window - 1 :], smooth, color="#136", lw=2, label=f"moving average ({window})"
        )
    ax.set_xlabel("GRPO step")
    ax.set_ylabel("episode return")
    low, high = float(np.min(reward)), float(np.max(reward))
    pad = max((high - low) * 0.1, 0.05)
    ax.set_ylim(low - pad, high + pad)  # the change visible, not a 0..max axis
    ax.grid(alpha=0.3)
    if "reward/problem" in rows[0]:
        # The diagnosis reward is 0 or 1 per episode: on the return's axis it would lie far
        # below the fitted range, so it has an axis of its own.
        right = ax.twinx()
        lines += right.plot(
            steps,
            [r.get("reward/problem", np.nan) for r in rows],
            color="#c63",
            lw=1,
            alpha=0.8,
            label="diagnosis reward (right axis)",
        )
        right.set_ylim(0, 1.05)
        right.set_ylabel("diagnosis reward (step mean)", color="#c63")
        right.tick_params(axis="y", colors="#c63")
    ax.legend(  # below the axis, where it hides no data
        lines,
        [line.get_label() for line in lines],
        fontsize=8,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.14),
        ncol=3,
        frameon=False,
    )
    title = "EasyMATCoding-v0: tiny model, SFT warm start then GRPO"
    ax.set_title(title + "\ntraining reward per step", fontsize=9)
    if points:
        _plot_heldout(side, points, results)
    fig.tight_layout()
    return fig


#: How the right panel names each phase of :func:`heldout_points`.
PHASE_LABELS = {"untrained": "untrained", "sft": "after SFT", "grpo": "after GRPO"}


def _plot_heldout(side, points: list[tuple[str, float, float]], results: dict) -> None:
    """Held-out success per phase, sampled and greedy, each point labelled with its value;
    the two labels of a phase never overlap (the higher above, the lower below; side by side
    when the values are close)."""
    x = np.arange(len(points))
    series = ((1, "sampled", "#136"), (2, "greedy", "#c63"))
    for column, label, color in series:
        side.plot(x, [p[column] for p in points], "o-", color=color, label=label)
    for i, (_, sampled, greedy) in enumerate(points):
        close = not np.isfinite(greedy) or abs(sampled - greedy) < 0.08
        for value, other, color, sign in (
            (sampled, greedy, "#136", -1),
            (greedy, sampled, "#c63", 1),
        ):
            if not np.isfinite(value):
                continue
            if close:  # side by side: sampled at the left, greedy at the right
                offset, ha, va = (sign * 7, 0), "left" if sign > 0 else "right", "center"
            else:  # the higher value's label above its point, the lower's below
                up = value > other
                offset, ha, va = (0, 7 if up else -7), "center", "bottom" if up else "top"
            side.annotate(f"{value:.2f}", (i, value), textcoords="offset points",
                          xytext=offset, ha=ha, va=va, fontsize=8, color=color)  # fmt: skip
    side.set_xticks(x, [PHASE_LABELS.get(p[0], p[0]) for p in points])
    side.set_xlim(-0.6, len(points) - 0.4)
    side.set_ylim(-0.1, 1.12)
    side.set_ylabel("held-out success")
    first = next(iter(results.values()))
    counts = ", ".join(f"{mode} {e.episodes}" for mode, e in first.items() if e.episodes)
    side.set_title(
        "held-out success per phase" + (f"\n(episodes per point: {counts})" if counts else ""),
        fontsize=9,
    )
    side.grid(alpha=0.3)
    side.legend(fontsize=8, loc="upper left")


#: The columns of the held-out table, in order (``repaired``: a code turn measurably restored
#: the image, :func:`agents.demo.measure.repaired`).
TABLE_KEYS = (
    "success", "diagnosis", "well_formed", "code_ran", "repaired", "answer_f1", "mean_return",
)  # fmt: skip


def _print_tool_calls(counts: dict[str, dict[str, int] | None]) -> None:
    """Tool calls of each phase by status, one column a status (a summary without counts,
    written before they were kept, prints nothing)."""
    counts = {name: c for name, c in counts.items() if c is not None}
    if not counts:
        return
    statuses = sorted({s for c in counts.values() for s in c}, key=lambda s: (s != "ok", s))
    if not statuses:
        print("tool calls: none in any phase")
        return
    print(f"{'tool calls':<11}" + "".join(f"{s:>12}" for s in statuses))
    for name, c in counts.items():
        print(f"{name:<11}" + "".join(f"{c.get(s, 0):>12}" for s in statuses))


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
        _print_tool_calls({name: row[mode].get("tool_status") for name, row in rows.items()})
    for mode, gain in summary.get("grpo_minus_sft", {}).items():
        low, high = gain["ci95"]
        print(
            f"GRPO - SFT, {mode}: {gain['gain']:+.3f} (95% bootstrap interval over "
            f"{gain['tasks']} tasks: {low:+.3f} to {high:+.3f})"
        )
    print(f"\nwall time {summary['seconds']:.0f}s")


def page_summary(
    sampled, greedy=None, shown: int | None = None, verdicts: Sequence[tuple[bool, str]] = ()
) -> list[tuple[str, str]]:
    """The held-out page's opening table, over *all* of an evaluation's episodes (the page
    shows a few): each success rate with its count, ``repaired``, answer F1, the tool calls by
    status, greedy success, and how many episodes the page shows and how many of those pass."""
    n = sampled.episodes

    def rate(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f} ({round(value * n)} of {n})"

    rows = [
        ("episodes (sampled)", str(n)),
        ("success", rate(sampled.success)),
        ("diagnosis exact", rate(sampled.diagnosis)),
        ("every turn well-formed, answered", rate(sampled.well_formed)),
        ("repair code ran", rate(sampled.code_ran)),
        ("image measurably repaired", rate(sampled.repaired)),
        ("answer F1 (mean)", f"{sampled.answer_f1:.3f}"),
        ("tool calls by status", format_statuses(sampled.tool_status)),
    ]
    if greedy is not None:
        rows.append(("success, greedy", f"{greedy.success:.3f} of {greedy.episodes}"))
    if shown is not None:
        passed = sum(bool(v[0]) for v in verdicts)
        rows.append(("shown below", f"{shown} (one per task), {passed} pass"))
    return rows
