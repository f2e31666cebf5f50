"""The real-model demo's report: the figure (training return per GRPO step and held-out F1
per phase, every seed), the printed table, and each held-out episode's mark on its page."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from agents.demo.real.measure import f1, searches, well_formed

PHASES = ("untrained", "sft", "grpo")
MODES = ("sampled", "greedy")


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
    for seed in summary["seeds"]:
        if seed.get("validation"):
            curve = ", ".join(f"{c['step']}: {c['f1']:.3f}" for c in seed["validation"])
            print(
                f"seed {seed['seed']} kept GRPO step {seed['kept_step']} "
                f"(validation F1 greedy by step: {curve})"
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


def verdict(trajectory) -> tuple[bool, str]:
    """A held-out episode's pass/fail mark for its page: answer F1 of at least 0.5."""
    score, hops = f1(trajectory), searches(trajectory)
    if not well_formed(trajectory):
        return False, f"a malformed turn or no answer ({hops} searches)"
    return score >= 0.5, f"answer F1 {score:.2f} after {hops} searches"
