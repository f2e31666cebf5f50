"""``make demo-real`` (``python -m agents.demo.real``): SmolLM2-135M-Instruct learns multi-hop
search on the offline HotpotQA-v0 with an SFT warm start and then GRPO; see
:mod:`agents.demo.real.__main__` for what it does and measures.

- :mod:`~agents.demo.real.__main__`: :class:`RealSettings`, :func:`run_seed`,
  :func:`run_demo`, :func:`main`;
- :mod:`~agents.demo.real.annotator`: :class:`HastyExpert`, the warm start's annotator;
- :mod:`~agents.demo.real.measure`: :class:`Evaluation`, :func:`evaluate`,
  :func:`across_seeds`;
- :mod:`~agents.demo.real.report`: :func:`plot`, :func:`print_summary`.
"""

from __future__ import annotations

from typing import Any

from agents.demo.real.annotator import HastyExpert, hasty_turn
from agents.demo.real.measure import Evaluation, across_seeds, evaluate
from agents.demo.real.report import plot, print_summary

_RUNNER = (
    "CONFIG",
    "RealSettings",
    "SeedProcessDied",
    "finished_seed",
    "freeze_lower_layers",
    "load_config",
    "main",
    "run_demo",
    "run_seed",
)


def __getattr__(name: str) -> Any:
    # The runner lives in __main__ so that `python -m agents.demo.real` runs it; importing it
    # here eagerly would load that module twice under `-m`.
    if name in _RUNNER:
        from agents.demo.real import __main__ as runner

        return getattr(runner, name)
    raise AttributeError(f"module 'agents.demo.real' has no attribute {name!r}")


__all__ = [
    *_RUNNER,
    "Evaluation",
    "HastyExpert",
    "across_seeds",
    "evaluate",
    "hasty_turn",
    "plot",
    "print_summary",
]
