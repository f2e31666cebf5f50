"""Drawing a multi-hop question over a search world: the chain, its wording, and its gold steps.

A question starts from one entity that only the image names (a company logo, a product
label, a city's welcome sign, a festival poster or a university banner), or that the question
names when it is text-only. It then follows relations: 1 hop for the ``simple`` split ("Who
founded the company whose logo is shown in the image?"), 2–3 hops for ``hard`` ("In which year
was the founder of the company that makes the product shown in the image born?"). Every hop
has a gold search query ("Quorvane founder") that is checked, when the question is drawn, to
bring a document stating the hop's fact into the BM25 top ``k`` over the world's corpus and
to earn the live query reward (:func:`~arft_envs.rewards.retrieval_credit`), so a
scripted expert replaying the gold steps always finds the answer at the maximum return.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from arft_envs.rewards import retrieval_credit
from arft_envs.tasks.search.clues import Clue
from arft_envs.tasks.search.relations import _VISUAL, CLUES, NAMED, RELATIONS
from arft_envs.tasks.search.world import Entity, _pick

if TYPE_CHECKING:
    from arft_envs.tasks.search.world import SearchWorld

SPLITS = ("simple", "hard")  # simple: 1 hop; hard: 2-3 hops
DEFAULT_K = 4  # the top-k in which every gold query must retrieve its fact

Hop = tuple[Entity, str]  # an entity and the relation the question follows from it


def question(
    world: SearchWorld,
    rng: np.random.Generator,
    hops: int,
    text_only: bool = False,
    k: int = DEFAULT_K,
) -> dict[str, Any] | None:
    """A random ``hops``-hop question over ``world`` whose gold queries all retrieve their fact
    in the BM25 top ``k``; ``None`` when the draw fails (draw again).

    The result holds ``question``, ``answer``, ``gold_queries``, ``gold_docs`` (per hop, the
    urls of the documents stating its fact), ``gold_steps``, ``gold_plan``, ``hops``,
    ``entity`` (the start entity's name), ``clue`` (``None`` when text-only) and ``chain``.
    """
    chain = _chain(world, rng, hops)
    if chain is None:
        return None
    start, (last, last_relation) = chain[0][0], chain[-1]
    answer = last.facts[last_relation]
    docs = [list(world.fact_docs[(e.name, r)]) for e, r in chain]
    queries = _gold_queries(world, chain, docs, k)
    if queries is None:
        return None
    clue_kind = CLUES[start.kind][0]
    return {
        "question": _wording(chain, text_only),
        "answer": answer,
        "gold_queries": queries,
        "gold_docs": docs,
        "gold_steps": _gold_steps(chain, queries, answer, text_only),
        "gold_plan": ["search"] * hops + ["answer"],
        "hops": hops,
        "entity": start.name,
        "clue": None if text_only else Clue(clue_kind, start.name, int(rng.integers(2**31))),
        "chain": [(e.name, r) for e, r in chain],
    }


def _chain(world: SearchWorld, rng: np.random.Generator, hops: int) -> list[Hop] | None:
    """A random walk of ``hops`` relations from a visual start entity; ``None`` when it gets
    stuck or loops back ("the mayor of the city of its mayor")."""
    entity = _pick(rng, world.entities[_pick(rng, _VISUAL)])
    seen, chain = [entity], []
    for hop in range(hops):
        relation = _next_relation(rng, entity, last=hop == hops - 1)
        if relation is None:
            return None
        value = entity.facts[relation]
        if any(value == e.name for e in seen):
            return None
        chain.append((entity, relation))
        if hop < hops - 1:
            entity = world.by_name[value]
            seen.append(entity)
    return chain


def _next_relation(rng: np.random.Generator, entity: Entity, last: bool) -> str | None:
    """A relation to follow from ``entity``: any of its facts for the last hop, else one that
    leads to another entity a question can describe."""
    options = [
        r
        for r, rel in RELATIONS[entity.kind].items()
        if r in entity.facts
        and (last or rel.noun is not None)
        and (last or rel.target in RELATIONS)
    ]
    return _pick(rng, sorted(options)) if options else None


def _wording(chain: list[Hop], text_only: bool) -> str:
    """The question text: the start entity's reference, wrapped in each hop's noun phrase."""
    start = chain[0][0]
    subject = NAMED[start.kind].format(n=start.name) if text_only else CLUES[start.kind][1]
    for entity, relation in chain[:-1]:
        subject = RELATIONS[entity.kind][relation].noun.format(s=subject)
    last, relation = chain[-1]
    text = RELATIONS[last.kind][relation].question.format(s=subject)
    return text[0].upper() + text[1:]


def _gold_queries(
    world: SearchWorld, chain: list[Hop], docs: list[list[str]], k: int
) -> list[str] | None:
    """Each hop's gold query, or ``None`` unless every one brings a document stating its fact
    into the BM25 top ``k`` and earns the live query reward."""
    bm25, used, credited = world.bm25(), set(), set()
    queries = []
    for hop, (entity, relation) in enumerate(chain):
        query = RELATIONS[entity.kind][relation].query.format(n=entity.name)
        found = [r.url for r in bm25.search(query, k)]
        if not set(found) & set(docs[hop]):
            return None  # the query must show this hop's fact
        if retrieval_credit(found, docs, used, credited) is None:
            return None  # and earn the live query reward
        queries.append(query)
    return queries


def _gold_steps(chain: list[Hop], queries: list[str], answer: str, text_only: bool) -> list[str]:
    """The expert's strict-format turns: one ``<search>`` per hop, then the ``<answer>``."""
    start = chain[0][0]
    facts = [RELATIONS[e.kind][r].sentence.format(n=e.name, v=e.facts[r]) for e, r in chain]
    steps = []
    for i, (entity, relation) in enumerate(chain):
        need = RELATIONS[entity.kind][relation].need.format(n=entity.name)
        if i == 0:
            seen = (
                f"The question is about {NAMED[start.kind].format(n=start.name)}."
                if text_only
                else f"The image shows {CLUES[start.kind][2].format(n=start.name)}."
            )
            think = f"{seen} First I need to find {need}."
        else:
            think = f"The search results say: {facts[i - 1]} Next I need to find {need}."
        steps.append(f"<think> {think} </think>\n<search> {queries[i]} </search>")
    steps.append(
        f"<think> The search results say: {facts[-1]} So the answer is {answer}. </think>\n"
        f"<answer> {answer} </answer>"
    )
    return steps
