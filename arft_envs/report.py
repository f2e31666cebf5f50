"""A self-contained HTML page of episodes: every turn's text and images, and its reward.

Used by ``make demo``, ``arft play --report`` and the trainer's sample-trajectory pages. The
page embeds images as PNG data URIs, so it is a single file that opens anywhere.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class EpisodeRecord:
    """One episode as a page section: the final observation plus per-turn rewards."""

    title: str
    observation: dict
    rewards: list[float] = field(default_factory=list)
    components: list[dict[str, float]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    #: (passed, reason); ``None``: judged by :func:`episode_verdict`.
    verdict: tuple[bool, str] | None = None


def episode_verdict(record: EpisodeRecord) -> tuple[bool, str]:
    """Whether an episode passed, and why: an answer, no format error, answer F1 1."""
    info = record.info
    if record.verdict is not None:
        return record.verdict
    if info.get("answer") is None:
        return False, "no answer given"
    errors = int(info.get("format_errors", 0) or 0)
    if errors:
        return False, f"{errors} format error(s)"
    f1 = float(info.get("f1", 0.0) or 0.0)
    if f1 < 1.0:
        return False, f"answer F1 {f1:.2f} < 1"
    return True, "answered exactly"


def summary_html(
    episodes: Sequence[EpisodeRecord], rows: Sequence[tuple[str, str]] | None = None
) -> str:
    """The page's opening table: episodes, passed, and the mean of each metric; or ``rows``
    (label, value), a caller's own summary (e.g. of more episodes than the page shows)."""
    if rows is None:
        rows = _summary_rows(episodes)
    cells = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    return f"<table class='summary-table'>{cells}</table>"


def _summary_rows(episodes: Sequence[EpisodeRecord]) -> list[tuple[str, str]]:
    verdicts = [episode_verdict(e) for e in episodes]
    rows = [("episodes", str(len(episodes))), ("passed", f"{sum(v[0] for v in verdicts)}")]
    for key in ("episode_return", "f1", "em", "turns", "format_errors", "tool_failures"):
        values = [float(e.info[key]) for e in episodes if isinstance(e.info.get(key), (int, float))]
        if values:
            rows.append((f"mean {key}", f"{np.mean(values):.3f}"))
    return rows


def _png_data_uri(image: np.ndarray, max_side: int = 384) -> str:
    from PIL import Image

    pil = Image.fromarray(np.asarray(image))
    pil.thumbnail((max_side, max_side))
    buffer = io.BytesIO()
    pil.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


_STYLE = """
body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;color:#222}
.ep{border:1px solid #ccc;border-radius:8px;padding:1em;margin:1.5em 0}
.msg{margin:.6em 0;padding:.5em .8em;border-radius:6px}
.system{background:#f4f4f4;font-size:.8em;max-height:8em;overflow:auto}
.user{background:#eef5ff}.assistant{background:#f0fff0}.tool{background:#fff8e6}
.role{font-weight:600;font-size:.85em;color:#555}.reward{float:right;font-size:.85em;color:#363}
pre{white-space:pre-wrap;word-break:break-word;margin:.3em 0}
img{max-width:320px;border:1px solid #ddd;margin:.3em .3em 0 0}
.summary{font-size:.9em;color:#333}
.verdict{font-size:.7em;padding:.1em .4em;border-radius:4px;color:#fff}
.verdict.pass{background:#2a7}.verdict.fail{background:#c33}.reason{color:#555}
.summary-table{border-collapse:collapse}.summary-table th,.summary-table td{border:1px solid #ccc;padding:.2em .6em;text-align:left}
"""


def episode_html(record: EpisodeRecord) -> str:
    """The HTML section of one episode."""
    images = record.observation["images"]
    passed, reason = episode_verdict(record)
    mark = "pass" if passed else "fail"
    parts = [
        f"<div class='ep {mark}'><h2><span class='verdict {mark}'>{mark.upper()}</span> "
        f"{html.escape(record.title)}</h2><div class='reason'>{html.escape(reason)}</div>"
    ]
    turn = 0
    for m in record.observation["messages"]:
        role = m["role"]
        badge = ""
        if role == "assistant":
            if turn < len(record.rewards):
                comps = record.components[turn] if turn < len(record.components) else {}
                detail = ", ".join(f"{k} {v:.2f}" for k, v in comps.items())
                badge = f"<span class='reward'>reward {record.rewards[turn]:.2f} ({detail})</span>"
            turn += 1
        body = []
        for p in m["content"]:
            if p["type"] == "text":
                body.append(f"<pre>{html.escape(p['text'])}</pre>")
            else:
                body.append(f"<img src='{_png_data_uri(images[p['index']])}'>")
        parts.append(
            f"<div class='msg {role}'>{badge}<div class='role'>{role}</div>{''.join(body)}</div>"
        )
    keys = (
        "answer",
        "golds",
        "f1",
        "em",
        "episode_return",
        "turns",
        "format_errors",
        "tool_failures",
    )
    summary = ", ".join(f"{k}={record.info[k]!r}" for k in keys if k in record.info)
    parts.append(f"<div class='summary'>{html.escape(summary)}</div></div>")
    return "\n".join(parts)


def write_report(
    path: str | Path,
    episodes: Sequence[EpisodeRecord],
    title: str = "arft",
    summary: Sequence[tuple[str, str]] | None = None,
) -> Path:
    """Write ``episodes`` as one HTML page at ``path`` (parents created) and return the path;
    ``summary``: the opening table's rows, in place of :func:`summary_html`'s own."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = "\n".join(episode_html(e) for e in episodes)
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
        f"{summary_html(episodes, summary)}{body}</body></html>"
    )
    path.write_text(page, encoding="utf-8")
    return path


def play_episode(env, policy, *, seed: int | None = None, options: dict | None = None, title=None):
    """Run one episode of ``policy(obs, env) -> action`` and return its :class:`EpisodeRecord`."""
    obs, info = env.reset(seed=seed, options=options)
    rewards, components = [], []
    done = False
    while not done:
        obs, reward, terminated, truncated, info = env.step(policy(obs, env))
        rewards.append(float(reward))
        components.append(dict(info["reward_components"]))
        done = terminated or truncated
    return EpisodeRecord(title or f"task {info['task_id']}", obs, rewards, components, info)
