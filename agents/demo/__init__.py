"""``make demo`` (``python -m agents.demo``): a tiny model learns an agentic tool-use loop on a
CPU, in minutes; see :mod:`agents.demo.__main__` for what it does and measures.

- :mod:`~agents.demo.__main__`: :class:`DemoSettings`, :func:`run_demo`, :func:`main`;
- :mod:`~agents.demo.annotator`: :class:`MislabellingExpert`, the noisy warm-start annotator;
- :mod:`~agents.demo.measure`: :class:`Evaluation`, :func:`episode_success`,
  :func:`evaluate_success`, :func:`paired_gain`;
- :mod:`~agents.demo.report`: :func:`plot_rewards`, :func:`print_summary`.

The easy setting itself is an env like the others: ``EasyMATCoding-v0``
(:mod:`arft_envs.tasks.coding.easy`, :func:`arft_envs.envs.mat_coding.make_easy_env`).
"""

from __future__ import annotations

from typing import Any

from agents.demo.annotator import MislabellingExpert
from agents.demo.measure import (
    Evaluation,
    episode_success,
    evaluate_success,
    gold_kind,
    paired_gain,
)
from agents.demo.report import plot_rewards, print_summary

_RUNNER = ("CONFIG", "DemoSettings", "load_config", "main", "run_demo")


def __getattr__(name: str) -> Any:
    # The runner lives in __main__ so that `python -m agents.demo` runs it; importing it here
    # eagerly would load that module twice under `-m`.
    if name in _RUNNER:
        from agents.demo import __main__ as runner

        return getattr(runner, name)
    raise AttributeError(f"module 'agents.demo' has no attribute {name!r}")


__all__ = [
    "CONFIG",
    "DemoSettings",
    "Evaluation",
    "MislabellingExpert",
    "episode_success",
    "evaluate_success",
    "gold_kind",
    "load_config",
    "main",
    "paired_gain",
    "plot_rewards",
    "print_summary",
    "run_demo",
]
