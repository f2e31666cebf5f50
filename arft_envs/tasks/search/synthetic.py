"""The synthetic search task source, one fresh world per task, and its one-step (stepwise) view.

:class:`SyntheticSearch` makes unlimited tasks reproducibly from a seed; :func:`stepwise_rows`
turns one task into the paper's one-row-per-step training rows (each with the chain so far
and its real search results), which :class:`StepwiseSynthetic` serves one at a time.
"""

from __future__ import annotations

import re
from functools import lru_cache

import numpy as np

from arft_envs.rewards import step_kind
from arft_envs.tasks.base import StepwiseTaskSource, Task
from arft_envs.tasks.search.questions import DEFAULT_K, SPLITS, question
from arft_envs.tasks.search.world import SearchWorld
from arft_envs.tools.search.base import format_results
from arft_envs.tools.search.bm25 import BM25Search

_ID_RE = re.compile(r"synth-(search|text)-(all|simple|hard)-(\d+)")


class SyntheticSearch:
    """Unlimited synthetic search tasks, one fresh world per task, reproducible from a seed.

    ``split``: ``"simple"`` (1 hop), ``"hard"`` (2–3 hops) or ``"all"`` (half each).
    ``text_only``: name the start entity in the question and make no image. ``scale``: world
    size. ``k``: the top-k in which every gold query must retrieve its fact. Task ids are
    ``synth-search-{split}-{seed}`` (``synth-text-…`` when text-only); :meth:`get` rebuilds a
    task from its id.
    """

    has_gold_queries = True

    def __init__(self, split: str = "all", text_only: bool = False, scale: int = 1, k: int = 4):
        if split not in ("all", *SPLITS):
            raise ValueError(f"split must be 'all', 'simple' or 'hard', got {split!r}")
        self.split, self.text_only, self.scale, self.k = split, bool(text_only), int(scale), int(k)

    def sample(self, rng: np.random.Generator) -> Task:
        """A task from a seed drawn with ``rng``."""
        return self.make(int(rng.integers(2**31)))

    def get(self, task_id: str) -> Task:
        match = _ID_RE.fullmatch(str(task_id))
        if match is None:
            prefix = "text" if self.text_only else "search"
            raise KeyError(
                f"synthetic search ids look like 'synth-{prefix}-{self.split}-123', got {task_id!r}"
            )
        return _make_task(int(match[3]), match[2], match[1] == "text", self.scale, self.k)

    def make(self, seed: int) -> Task:
        """The task for ``seed`` in this source's split."""
        return _make_task(int(seed), self.split, self.text_only, self.scale, self.k)

    def tasks(self, n: int, seed: int = 0) -> list[Task]:
        """``n`` tasks (distinct seeds drawn from ``seed``), simple ones first."""
        rng = np.random.default_rng(seed)
        seeds = rng.choice(2**31, size=n, replace=False) if n else []
        tasks = [self.make(int(s)) for s in seeds]
        return sorted(tasks, key=lambda t: SPLITS.index(t.split))


@lru_cache(maxsize=16)
def _world(seed: int, scale: int) -> SearchWorld:
    return SearchWorld(seed, scale)


def _make_task(seed: int, split: str, text_only: bool, scale: int, k: int) -> Task:
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    world = _world(seed, scale)
    rng = np.random.default_rng([seed, 1])
    chosen = split if split != "all" else SPLITS[int(rng.integers(2))]
    for _ in range(200):
        hops = 1 if chosen == "simple" else int(rng.integers(2, 4))
        draw = question(world, rng, hops, text_only, k)
        if draw is not None:
            kind = "text" if text_only else "search"
            return world.task(f"synth-{kind}-{split}-{seed}", draw, chosen)
    raise RuntimeError(f"no valid question in world {seed} after 200 draws")  # pragma: no cover


# ----------------------------------------------------------------------------- images


def stepwise_rows(task: Task, backend=None, k: int = DEFAULT_K) -> list[dict[str, str]]:
    """The paper's training rows of one task: one per gold step, each with the chain so far.

    ``problem`` is ``<query> … </query>`` followed by the earlier gold turns, each search turn
    followed by the ``<information>`` block its query returns (from ``backend``, default BM25
    over the task's corpus); ``solution`` is the step's action without its ``<think>``.
    """
    backend = backend or BM25Search(task.meta["corpus"])
    chain = [f"<query> {task.question} </query>"]
    rows = []
    for step, query in zip(
        task.meta["gold_steps"], [*task.meta["gold_queries"], None], strict=True
    ):
        action = step[step.index("</think>") + len("</think>") :].strip()
        rows.append({"problem": "\n".join(chain), "solution": action, "gt": step})
        if query is not None:
            chain += [step, format_results(backend.search(query, k))]
    return rows


class StepwiseSynthetic(StepwiseTaskSource):
    """Synthetic stepwise rows: each sampled task is one random gold step of a synthetic task,
    with the chain before it (earlier turns and their real search results) in the prompt."""

    has_gold_queries = True

    def _row(self, task: Task, index: int) -> Task:
        rows = stepwise_rows(task)
        row = rows[index % len(rows)]
        answers = list(task.answers) if step_kind(row["solution"]) == "answer" else []
        meta = {
            "gold_step": row["solution"],
            "gt": row["gt"],
            "prompt_text": row["problem"],
            "source": "synthetic-search-rows",
        }
        return Task(f"{task.id}:{index}", task.question, answers, task.images, task.split, meta)
