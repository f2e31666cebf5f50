"""A synthetic search world: fictional entities, the facts that relate them, and its corpus.

:class:`SearchWorld` is generated from a seed. It holds fictional countries, cities, people,
universities, companies, products and festivals, each with a made-up name (unique within the
world, one rare word or a rare word plus a common one such as "Academy"), attributes (years,
rivers, mascots, industries…) and relations (a company's founder and headquarters, a city's
mayor, a product's maker…). The world's corpus has one encyclopaedia-style document per
entity, stating every fact about it, and mentioning the entities related to it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from arft_envs.tasks.base import Task
from arft_envs.tasks.search.clues import render_clue
from arft_envs.tasks.search.relations import (
    _CATEGORIES,
    _CODAS,
    _FIRST_NAMES,
    _INDUSTRIES,
    _MASCOTS,
    _OCCUPATIONS,
    _ONSETS,
    _SUFFIXES,
    _TAILS,
    _VOWELS,
    COUNTS,
    KINDS,
    RELATIONS,
)
from arft_envs.tools.search.base import Document
from arft_envs.tools.search.bm25 import BM25Search


@dataclass
class Entity:
    """One fictional entity: its kind, unique name, document url, and facts about it."""

    kind: str
    name: str
    url: str
    facts: dict[str, str] = field(default_factory=dict)
    mentions: list[str] = field(default_factory=list)  # sentences about it in others' facts


class SearchWorld:
    """A world of fictional entities and its corpus, generated from ``seed``.

    ``scale`` multiplies the number of entities (about 84 documents per unit).
    """

    def __init__(self, seed: int = 0, scale: int = 1):
        if seed < 0 or scale < 1:
            raise ValueError(f"need seed >= 0 and scale >= 1, got {seed}, {scale}")
        self.seed, self.scale = int(seed), int(scale)
        self.corpus_id = f"search-world:{self.seed}:{self.scale}"
        rng = np.random.default_rng([self.seed, self.scale, 0])
        self._used: set[str] = set()
        self.entities: dict[str, list[Entity]] = {}
        for kind in KINDS:
            self.entities[kind] = [self._new(rng, kind) for _ in range(COUNTS[kind] * self.scale)]
        self._relate(rng)
        self.by_name = {e.name: e for group in self.entities.values() for e in group}
        self.documents, self.fact_docs = self._write_documents(rng)
        self._bm25: BM25Search | None = None

    # ---------------------------------------------------------------- generation

    def _word(self, rng: np.random.Generator, kind: str) -> str:
        while True:
            syllables = int(rng.integers(1, 3))
            word = "".join(
                _pick(rng, _ONSETS) + _pick(rng, _VOWELS) + _pick(rng, _CODAS)
                for _ in range(syllables)
            ) + _pick(rng, _SUFFIXES[kind])
            word = re.sub(r"(.)\1\1+", r"\1\1", word)
            if 5 <= len(word) <= 11 and word not in self._used:
                self._used.add(word)
                return word.capitalize()

    def _new(self, rng: np.random.Generator, kind: str) -> Entity:
        if kind == "person":
            name = f"{_pick(rng, _FIRST_NAMES)} {self._word(rng, 'person')}"
        elif kind in _TAILS:
            name = f"{self._word(rng, kind)} {_pick(rng, _TAILS[kind])}"
        else:
            name = self._word(rng, kind)
        slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
        return Entity(kind, name, f"world://{self.seed}/{self.scale}/{kind}/{slug}")

    def _relate(self, rng: np.random.Generator) -> None:
        e = self.entities

        def some(kind: str) -> Entity:
            return _pick(rng, e[kind])

        people = list(e["person"])
        order = rng.permutation(len(people))
        roles = iter(people[i] for i in order)  # mayors, founders and chiefs are all different
        for country in e["country"]:
            country.facts["currency"] = f"{self._word(rng, 'currency')} crown"
        for i, country in enumerate(e["country"]):
            country.facts["capital"] = e["city"][i].name
        for i, city in enumerate(e["city"]):
            city.facts["country"] = e["country"][i % len(e["country"])].name
            city.facts["mayor"] = next(roles).name
            city.facts["river"] = f"{self._word(rng, 'river')} River"
            city.facts["founded"] = str(int(rng.integers(900, 1800)))
        for university in e["university"]:
            university.facts["city"] = some("city").name
            university.facts["founded"] = str(int(rng.integers(1300, 1950)))
            university.facts["mascot"] = _pick(rng, _MASCOTS)
        for company in e["company"]:
            company.facts["founder"] = next(roles).name
            company.facts["headquarters"] = some("city").name
            company.facts["ceo"] = next(roles).name
            company.facts["founded"] = str(int(rng.integers(1850, 2015)))
            company.facts["industry"] = _pick(rng, _INDUSTRIES)
        for product in e["product"]:
            product.facts["maker"] = some("company").name
            product.facts["launched"] = str(int(rng.integers(1960, 2024)))
            product.facts["category"] = _pick(rng, _CATEGORIES)
        for person in people:
            person.facts["born"] = str(int(rng.integers(1900, 2000)))
            person.facts["birthplace"] = some("city").name
            person.facts["alma_mater"] = some("university").name
            person.facts["occupation"] = _pick(rng, _OCCUPATIONS)
        for festival in e["festival"]:
            festival.facts["city"] = some("city").name
            festival.facts["organiser"] = some("company").name
            festival.facts["first_held"] = str(int(rng.integers(1950, 2020)))

    def _write_documents(self, rng: np.random.Generator):
        """One document per entity; which documents state which (entity, relation) fact."""
        fact_docs: dict[tuple[str, str], list[str]] = {}
        for group in self.entities.values():
            for entity in group:
                for relation, value in entity.facts.items():
                    rel = RELATIONS.get(entity.kind, {}).get(relation)
                    fact_docs[(entity.name, relation)] = [entity.url]
                    if rel is not None and rel.mention and value in self.by_name:
                        other = self.by_name[value]
                        other.mentions.append(rel.mention.format(n=entity.name, v=value))
                        fact_docs[(entity.name, relation)].append(other.url)
        documents = []
        for group in self.entities.values():
            for entity in group:
                sentences = [_intro(entity)]
                for relation, value in entity.facts.items():
                    rel = RELATIONS.get(entity.kind, {}).get(relation)
                    sentence = rel and rel.sentence.format(n=entity.name, v=value)
                    if sentence and sentence != sentences[0]:
                        sentences.append(sentence)
                rest = sentences[1:] + entity.mentions
                rest = [rest[i] for i in rng.permutation(len(rest))]
                documents.append(Document(entity.name, " ".join([sentences[0], *rest]), entity.url))
        return documents, fact_docs

    # ---------------------------------------------------------------- searching and tasks

    def bm25(self) -> BM25Search:
        """BM25 over this world's corpus (built once)."""
        if self._bm25 is None:
            self._bm25 = BM25Search(self.documents)
        return self._bm25

    def task(
        self,
        task_id: str,
        draw: dict[str, Any],
        split: str,
        source: str = "synthetic-search",
    ) -> Task:
        """A :class:`Task` from one :func:`~arft_envs.tasks.search.questions.question` draw."""
        clue = draw["clue"]
        meta = {
            key: draw[key]
            for key in ("gold_queries", "gold_docs", "gold_steps", "gold_plan", "hops", "entity")
        }
        meta.update(
            clue=clue.kind if clue else None,
            corpus=self.documents,
            corpus_id=self.corpus_id,
            source=source,
        )
        images = [partial(render_clue, clue)] if clue else []
        return Task(task_id, draw["question"], [draw["answer"]], images, split, meta)


def _intro(entity: Entity) -> str:
    f = entity.facts
    if entity.kind == "person":
        job = f["occupation"]
        return f"{entity.name} is {'an' if job[0] in 'aeiou' else 'a'} {job}."
    if entity.kind == "product":
        item = f["category"]
        return f"{entity.name} is {'an' if item[0] in 'aeiou' else 'a'} {item}."
    if entity.kind == "company":
        return f"{entity.name} is a company in the {f['industry']} industry."
    return f"{entity.name} is a {entity.kind}."


def _pick(rng: np.random.Generator, options: Sequence):
    return options[int(rng.integers(len(options)))]
