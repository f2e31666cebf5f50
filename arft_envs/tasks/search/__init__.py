"""A synthetic MAT-Search: fictional worlds, their encyclopaedia, and multi-hop visual questions.

Each world is generated from a seed, with one encyclopaedia-style document per fictional
entity; each question starts from an entity that only the image names and follows 1 hop
(``simple``) or 2–3 hops (``hard``) of relations, every hop with a gold search query checked
to retrieve its fact. ``text_only=True`` names the start entity in the question instead and
makes no image: the synthetic stand-in for text-only multi-hop QA.

Task ``meta``: ``gold_queries`` (one per hop), ``gold_steps`` (full strict-format turns, then
the answer turn), ``gold_plan``, ``gold_docs`` (per hop, the urls of the documents stating
its fact), ``corpus`` (the world's documents), ``corpus_id``, ``hops``, ``entity``, ``clue``.

One module per concept:

- :mod:`.relations`: the schema and lexicon (entity kinds, relations, clue phrases, names);
- :mod:`.world`: :class:`SearchWorld`, its entities, facts and documents;
- :mod:`.questions`: :func:`question`, drawing a question, its gold queries and steps;
- :mod:`.clues`: :class:`Clue` and :func:`render_clue`, the image naming the start entity;
- :mod:`.synthetic`: :class:`SyntheticSearch`, :func:`stepwise_rows` and the stepwise view;
- :mod:`.export`: writing the MAT-Search format, its corpus, and the stepwise rows;
- :mod:`.official`: reading the official MAT-Search files (and what :mod:`.export` wrote).
"""

from arft_envs.tasks.search.clues import IMAGE_SIZE, Clue, render_clue
from arft_envs.tasks.search.export import benchmark_tasks, write_mat_search, write_search_rows
from arft_envs.tasks.search.official import load_mat_search, load_search_rows
from arft_envs.tasks.search.questions import DEFAULT_K, SPLITS, question
from arft_envs.tasks.search.relations import CLUES, COUNTS, KINDS, NAMED, RELATIONS, Relation
from arft_envs.tasks.search.synthetic import StepwiseSynthetic, SyntheticSearch, stepwise_rows
from arft_envs.tasks.search.world import Entity, SearchWorld

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
    "load_mat_search",
    "load_search_rows",
    "question",
    "render_clue",
    "stepwise_rows",
    "write_mat_search",
    "write_search_rows",
]
