"""Deprecated home of the synthetic MAT-Search, kept as a re-export for one release.

The code now lives in the package :mod:`arft_envs.tasks.search` (one module per concept:
``relations``, ``world``, ``questions``, ``clues``, ``synthetic``, ``export``, ``official``);
import from there.
"""

from arft_envs.tasks.search import (
    CLUES,
    COUNTS,
    DEFAULT_K,
    IMAGE_SIZE,
    KINDS,
    NAMED,
    RELATIONS,
    SPLITS,
    Clue,
    Entity,
    Relation,
    SearchWorld,
    StepwiseSynthetic,
    SyntheticSearch,
    benchmark_tasks,
    render_clue,
    stepwise_rows,
    write_mat_search,
    write_search_rows,
)

__all__ = [
    "CLUES",
    "COUNTS",
    "DEFAULT_K",
    "IMAGE_SIZE",
    "KINDS",
    "NAMED",
    "RELATIONS",
    "SPLITS",
    "Clue",
    "Entity",
    "Relation",
    "SearchWorld",
    "StepwiseSynthetic",
    "SyntheticSearch",
    "benchmark_tasks",
    "render_clue",
    "stepwise_rows",
    "write_mat_search",
    "write_search_rows",
]
