"""Offline stand-ins for the multi-hop QA datasets: one synthetic world and question mix each.

Without ``data=``, ``HotpotQA-v0``, ``2WikiMultihopQA-v0``, ``MuSiQue-v0`` and
``Bamboogle-v0`` serve :class:`DatasetStyleSearch` tasks: text-only questions over a seeded
:class:`~arft_envs.tasks.search.world.SearchWorld` of fictional entities, drawn from a world
of the dataset's own (its seeds are salted per dataset, so the four ids never share entities
or task ids) in the dataset's question shapes:

- ``hotpotqa``: 2-hop *bridge* questions and *comparison* questions ("Which was founded
  earlier, A or B?");
- ``2wiki``: *comparison* questions and 2-hop *inference* (composed) questions;
- ``musique``: 2-, 3- and 4-hop composed chains;
- ``bamboogle``: short 2-hop compositional questions.

Every gold search query is checked, when the question is drawn, to bring its fact into the
BM25 top ``k`` (as for :mod:`~arft_envs.tasks.search.synthetic`), so the scripted expert
answers every task. Task ids are ``synth-{dataset}-{seed}``; :meth:`DatasetStyleSearch.get`
rebuilds a task from its id.
"""

from __future__ import annotations

import re
from functools import lru_cache

import numpy as np

from arft_envs.tasks.base import Task
from arft_envs.tasks.search.questions import DEFAULT_K, question
from arft_envs.tasks.search.relations import NAMED, RELATIONS
from arft_envs.tasks.search.world import SearchWorld

# dataset -> (world salt, the question shapes with their weights)
STYLES: dict[str, tuple[int, dict[str, float]]] = {
    "hotpotqa": (1, {"bridge": 0.6, "comparison": 0.4}),
    "2wiki": (2, {"comparison": 0.5, "inference": 0.5}),
    "musique": (3, {"chain-2": 0.4, "chain-3": 0.35, "chain-4": 0.25}),
    "bamboogle": (4, {"compositional": 1.0}),
}
_HOPS = {"bridge": 2, "inference": 2, "compositional": 2, "chain-2": 2, "chain-3": 3, "chain-4": 4}
_ID_RE = re.compile(r"synth-(hotpotqa|2wiki|musique|bamboogle)-(\d+)")
# the year facts a comparison question compares, per entity kind
_YEARS = {
    kind: [r for r, rel in rels.items() if rel.target == "year"] for kind, rels in RELATIONS.items()
}
_EARLIER = {"founded": "founded earlier", "launched": "launched earlier", "born": "born earlier",
            "first_held": "first held earlier"}  # fmt: skip


class DatasetStyleSearch:
    """Unlimited text-only multi-hop tasks in the style of ``dataset``, reproducible from a
    seed (see the module docstring)."""

    has_gold_queries = True

    def __init__(self, dataset: str, k: int = DEFAULT_K):
        if dataset not in STYLES:
            raise ValueError(f"dataset must be one of {sorted(STYLES)}, got {dataset!r}")
        self.dataset, self.k = dataset, int(k)

    def sample(self, rng: np.random.Generator) -> Task:
        """A task from a seed drawn with ``rng``."""
        return self.make(int(rng.integers(2**31)))

    def get(self, task_id: str) -> Task:
        match = _ID_RE.fullmatch(str(task_id))
        if match is None or match[1] != self.dataset:
            raise KeyError(
                f"{self.dataset} synthetic ids look like 'synth-{self.dataset}-123', "
                f"got {task_id!r}"
            )
        return self.make(int(match[2]))

    def make(self, seed: int) -> Task:
        """The task for ``seed``."""
        return _make_task(self.dataset, int(seed), self.k)


@lru_cache(maxsize=16)
def _world(dataset: str, seed: int) -> SearchWorld:
    salt = STYLES[dataset][0]
    return SearchWorld((seed * 5 + salt) % 2**31)


def _make_task(dataset: str, seed: int, k: int) -> Task:
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    world = _world(dataset, seed)
    rng = np.random.default_rng([seed, STYLES[dataset][0], 7])
    shapes = STYLES[dataset][1]
    names, weights = list(shapes), np.array(list(shapes.values()))
    for _ in range(200):
        shape = names[int(rng.choice(len(names), p=weights / weights.sum()))]
        if shape == "comparison":
            draw = _comparison(world, rng, k)
        else:
            draw = question(world, rng, _HOPS[shape], text_only=True, k=k)
        if draw is not None:
            task = world.task(
                f"synth-{dataset}-{seed}", draw, "test", source=f"synthetic-{dataset}"
            )
            task.meta["shape"] = shape
            return task
    raise RuntimeError(
        f"no valid {dataset} question in world {seed} after 200 draws"
    )  # pragma: no cover


def _comparison(world: SearchWorld, rng: np.random.Generator, k: int) -> dict | None:
    """ "Which was founded earlier, A or B?": two entities of one kind, a year fact each,
    one gold search per entity; ``None`` when the years tie or a query misses its fact."""
    kinds = sorted(kind for kind, years in _YEARS.items() if years and kind in NAMED)
    kind = kinds[int(rng.integers(len(kinds)))]
    relation = _YEARS[kind][int(rng.integers(len(_YEARS[kind])))]
    pool = [e for e in world.entities[kind] if relation in e.facts]
    if len(pool) < 2:
        return None
    a, b = (pool[i] for i in rng.choice(len(pool), size=2, replace=False))
    year_a, year_b = int(a.facts[relation]), int(b.facts[relation])
    if year_a == year_b:
        return None
    answer = a.name if year_a < year_b else b.name
    rel = RELATIONS[kind][relation]
    bm25 = world.bm25()
    queries, docs = [], []
    for entity in (a, b):
        query = rel.query.format(n=entity.name)
        stating = list(world.fact_docs[(entity.name, relation)])
        if not {r.url for r in bm25.search(query, k)} & set(stating):
            return None
        queries.append(query)
        docs.append(stating)
    facts = [rel.sentence.format(n=e.name, v=e.facts[relation]) for e in (a, b)]
    named = [NAMED[kind].format(n=e.name) for e in (a, b)]
    verb = _EARLIER.get(relation, f"earlier by {relation}")
    steps = [
        f"<think> I need the year of {named[0]} first. </think>\n<search> {queries[0]} </search>",
        f"<think> The search results say: {facts[0]} Next I need the year of {named[1]}. "
        f"</think>\n<search> {queries[1]} </search>",
        f"<think> The search results say: {facts[1]} So the answer is {answer}. </think>\n"
        f"<answer> {answer} </answer>",
    ]
    return {
        "question": f"Which was {verb}, {named[0]} or {named[1]}?",
        "answer": answer,
        "gold_queries": queries,
        "gold_docs": docs,
        "gold_steps": steps,
        "gold_plan": ["search", "search", "answer"],
        "hops": 2,
        "entity": a.name,
        "clue": None,
        "chain": [(a.name, relation), (b.name, relation)],
    }
