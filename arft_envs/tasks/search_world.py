"""A synthetic MAT-Search: fictional worlds, their encyclopaedia, and multi-hop visual questions.

Each world is generated from a seed. It holds fictional countries, cities, people,
universities, companies, products and festivals, each with a made-up name (unique within
the world, one rare word or a rare word plus a common one such as "Academy"), attributes
(years, rivers, mascots, industries…) and relations (a company's founder and headquarters,
a city's mayor, a product's maker…). The world's corpus has one encyclopaedia-style document
per entity, stating every fact about it, and mentioning the entities related to it.

A question starts from one entity that only the image names: a company logo, a product
label, a city's welcome sign, a festival poster or a university banner. It then follows
relations: 1 hop for the ``simple`` split ("Who founded the company whose logo is shown in
the image?"), 2–3 hops for ``hard`` ("In which year was the founder of the company that makes
the product shown in the image born?"). Every hop has a gold search query
("Quorvane founder") that is checked, at generation time, to bring a document stating the
hop's fact into the BM25 top ``k`` over the world's corpus, and to earn the live query reward
(:func:`~arft_envs.tools.search.base.retrieval_credit`), so a scripted expert replaying
``meta["gold_steps"]`` always finds the answer at the maximum return.

``text_only=True`` names the start entity in the question instead ("Who founded the company
Quorvane?") and makes no image: the synthetic stand-in for text-only multi-hop QA.

Task ``meta``: ``gold_queries`` (one per hop), ``gold_steps`` (full strict-format turns, then
the answer turn), ``gold_plan``, ``gold_docs`` (per hop, the urls of the documents stating
its fact), ``corpus`` (the world's documents), ``corpus_id``, ``hops``, ``entity``, ``clue``.
:func:`write_mat_search` writes tasks in the official MAT-Search format plus the corpus, and
:func:`write_search_rows` writes the paper's one-row-per-step training format.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache, partial
from pathlib import Path
from typing import Any

import numpy as np

from arft_envs.tasks.base import Task
from arft_envs.tools.search.base import Document, format_results, retrieval_credit
from arft_envs.tools.search.bm25 import BM25Search

SPLITS = ("simple", "hard")
DEFAULT_K = 4
IMAGE_SIZE = (384, 512)  # H, W

# ----------------------------------------------------------------------------- the schema

KINDS = ("country", "city", "person", "university", "company", "product", "festival")
# Entities per world at scale 1.
COUNTS = {
    "country": 3,
    "city": 10,
    "person": 36,
    "university": 5,
    "company": 10,
    "product": 14,
    "festival": 6,
}


@dataclass(frozen=True)
class Relation:
    """One fact type: how its document states it, how a question asks for it, its query.

    ``noun`` describes the related entity from its subject (only for entity-valued facts, so
    questions can chain through them); ``question`` asks for the value; ``query`` is the gold
    search; ``sentence`` states the fact in the subject's document, ``mention`` (optional) in
    the value entity's document; ``need`` is the expert's plan for the hop.
    """

    target: str  # an entity kind, or "year" / "word"
    question: str
    query: str
    sentence: str
    need: str
    noun: str | None = None
    mention: str | None = None


RELATIONS: dict[str, dict[str, Relation]] = {
    "company": {
        "founder": Relation(
            "person",
            "Who founded {s}?",
            "{n} founder",
            "The founder of {n} is {v}.",
            "who founded {n}",
            "the founder of {s}",
            "{v} is the founder of {n}.",
        ),
        "headquarters": Relation(
            "city",
            "In which city is {s} headquartered?",
            "{n} headquarters",
            "{n} has its headquarters in {v}.",
            "where {n} has its headquarters",
            "the city where {s} is headquartered",
            "{n} has its headquarters in {v}.",
        ),
        "ceo": Relation(
            "person",
            "Who is the chief executive of {s}?",
            "{n} chief executive",
            "The chief executive of {n} is {v}.",
            "who the chief executive of {n} is",
            "the chief executive of {s}",
            "{v} is the chief executive of {n}.",
        ),
        "founded": Relation(
            "year",
            "In which year was {s} founded?",
            "{n} founded year",
            "{n} was founded in {v}.",
            "when {n} was founded",
        ),
        "industry": Relation(
            "word",
            "In which industry does {s} operate?",
            "{n} industry",
            "{n} is a company in the {v} industry.",
            "which industry {n} is in",
        ),
    },
    "product": {
        "maker": Relation(
            "company",
            "Which company makes {s}?",
            "{n} maker",
            "The maker of {n} is {v}.",
            "which company makes {n}",
            "the company that makes {s}",
            "{v} is the maker of {n}.",
        ),
        "launched": Relation(
            "year",
            "In which year was {s} launched?",
            "{n} launched year",
            "{n} was launched in {v}.",
            "when {n} was launched",
        ),
    },
    "city": {
        "country": Relation(
            "country",
            "In which country is {s}?",
            "{n} country",
            "{n} is a city in the country of {v}.",
            "which country {n} is in",
            "the country of {s}",
        ),
        "mayor": Relation(
            "person",
            "Who is the mayor of {s}?",
            "{n} mayor",
            "The mayor of {n} is {v}.",
            "who the mayor of {n} is",
            "the mayor of {s}",
            "{v} is the mayor of {n}.",
        ),
        "river": Relation(
            "word",
            "Which river flows through {s}?",
            "{n} river",
            "The {v} flows through {n}.",
            "which river flows through {n}",
        ),
        "founded": Relation(
            "year",
            "In which year was {s} founded?",
            "{n} founded year",
            "{n} was founded in {v}.",
            "when {n} was founded",
        ),
    },
    "country": {
        "capital": Relation(
            "city",
            "What is the capital of {s}?",
            "{n} capital",
            "The capital of {n} is {v}.",
            "what the capital of {n} is",
            "the capital of {s}",
            "{v} is the capital of {n}.",
        ),
        "currency": Relation(
            "word",
            "What is the currency of {s}?",
            "{n} currency",
            "The currency of {n} is the {v}.",
            "what the currency of {n} is",
        ),
    },
    "person": {
        "birthplace": Relation(
            "city",
            "In which city was {s} born?",
            "{n} birthplace",
            "The birthplace of {n} is {v}.",
            "where {n} was born",
            "the birthplace of {s}",
        ),
        "born": Relation(
            "year",
            "In which year was {s} born?",
            "{n} born year",
            "{n} was born in {v}.",
            "when {n} was born",
        ),
        "alma_mater": Relation(
            "university",
            "At which university did {s} study?",
            "{n} studied university",
            "{n} studied at {v}.",
            "where {n} studied",
            "the university where {s} studied",
        ),
    },
    "university": {
        "city": Relation(
            "city",
            "In which city is {s} located?",
            "{n} located city",
            "{n} is located in the city of {v}.",
            "where {n} is located",
            "the city where {s} is located",
            "{n} is located in the city of {v}.",
        ),
        "founded": Relation(
            "year",
            "In which year was {s} founded?",
            "{n} founded year",
            "{n} was founded in {v}.",
            "when {n} was founded",
        ),
        "mascot": Relation(
            "word",
            "What is the mascot of {s}?",
            "{n} mascot",
            "The mascot of {n} is the {v}.",
            "what the mascot of {n} is",
        ),
    },
    "festival": {
        "city": Relation(
            "city",
            "In which city is {s} held?",
            "{n} host city",
            "The host city of {n} is {v}.",
            "which city hosts {n}",
            "the city that hosts {s}",
            "{v} is the host city of {n}.",
        ),
        "organiser": Relation(
            "company",
            "Which company organises {s}?",
            "{n} organiser",
            "The organiser of {n} is {v}.",
            "which company organises {n}",
            "the company that organises {s}",
            "{v} is the organiser of {n}.",
        ),
        "first_held": Relation(
            "year",
            "In which year was {s} first held?",
            "{n} first held year",
            "{n} was first held in {v}.",
            "when {n} was first held",
        ),
    },
}

# The image that names each kind of start entity, and how a question refers to it.
CLUES = {
    "company": ("logo", "the company whose logo is shown in the image", "the logo of {n}"),
    "product": ("label", "the product whose label is shown in the image", "the label of {n}"),
    "city": ("sign", "the city named on the sign in the image", "a welcome sign for {n}"),
    "festival": ("poster", "the festival advertised on the poster", "a poster for {n}"),
    "university": ("banner", "the university on the banner in the image", "a banner of {n}"),
}
# How a text-only question names its start entity.
NAMED = {
    "company": "the company {n}",
    "product": "the product {n}",
    "city": "the city of {n}",
    "festival": "{n}",
    "university": "{n}",
}

_INDUSTRIES = (
    "robotics", "textile", "shipping", "pharmaceutical", "aerospace", "coffee", "solar energy",
    "publishing", "semiconductor", "furniture", "shipbuilding", "cosmetics", "insurance", "toy",
)  # fmt: skip
_MASCOTS = (
    "heron", "lynx", "otter", "falcon", "badger", "stag", "wolf", "crane", "tortoise", "raven",
    "ibex", "marten", "pelican", "bison",
)  # fmt: skip
_CATEGORIES = (
    "electric bicycle", "smartwatch", "tea kettle", "camera drone", "running shoe", "synthesizer",
    "backpack", "espresso machine", "desk lamp", "telescope", "sewing machine", "kayak",
)  # fmt: skip
_OCCUPATIONS = (
    "architect", "chemist", "novelist", "engineer", "painter", "economist", "astronomer",
    "composer", "surgeon", "geologist", "historian", "sculptor",
)  # fmt: skip
_FIRST_NAMES = (
    "Aldric", "Mirela", "Tovan", "Sefa", "Oriel", "Kasimir", "Ysolde", "Bram", "Ilse", "Dorian",
    "Nerys", "Calder", "Ottilie", "Ruan", "Esmé", "Hale", "Liora", "Perrin", "Zuri", "Anselm",
    "Maelis", "Tamsin", "Ivo", "Clio",
)  # fmt: skip

# Syllables for made-up names; suffixes give each kind a recognisable flavour.
_ONSETS = (
    "b", "br", "c", "cr", "d", "dr", "f", "fl", "g", "gr", "h", "k", "kr", "l", "m", "n", "p",
    "pr", "qu", "r", "s", "sk", "st", "t", "th", "tr", "v", "vr", "w", "z", "zh",
)  # fmt: skip
_VOWELS = ("a", "e", "i", "o", "u", "ae", "ei", "ou", "y")
_CODAS = ("", "", "n", "r", "l", "s", "th", "x", "m", "nd", "rk", "v")
_SUFFIXES = {
    "country": ("ia", "ovia", "estan", "aria", "onia"),
    "city": ("ora", "heim", "ford", "grad", "mere", "wick", "ton", "ara"),
    "person": ("son", "ar", "ell", "ov", "ski", "ez", "ane", "ric", "wyn"),
    "university": ("ton", "wick", "mont", "dale", "field"),
    "company": ("ex", "ion", "ora", "ix", "tek", "ly", "on", "ia"),
    "product": ("o", "a", "ix", "on", "ex", "i"),
    "festival": ("fall", "tide", "song", "light", "gate", "bloom"),
    "river": ("", "an", "el", "is"),
    "currency": ("", "o", "en"),
}
_TAILS = {
    "university": ("Academy", "University", "Institute", "College"),
    "festival": ("Festival",),
}
_VISUAL = tuple(CLUES)


@dataclass
class Entity:
    kind: str
    name: str
    url: str
    facts: dict[str, str] = field(default_factory=dict)
    mentions: list[str] = field(default_factory=list)  # sentences about it in others' facts


@dataclass(frozen=True)
class Clue:
    """What an image shows: the start entity's name in a rendered logo/label/sign/poster/banner."""

    kind: str  # logo, label, sign, poster, banner
    name: str
    style: int  # seed of colours and layout


# ----------------------------------------------------------------------------- the world


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

    # ---------------------------------------------------------------- questions

    def bm25(self) -> BM25Search:
        """BM25 over this world's corpus (built once)."""
        if self._bm25 is None:
            self._bm25 = BM25Search(self.documents)
        return self._bm25

    def question(
        self, rng: np.random.Generator, hops: int, text_only: bool = False, k: int = DEFAULT_K
    ) -> dict[str, Any] | None:
        """A random ``hops``-hop question whose gold queries all retrieve their fact in the
        BM25 top ``k``; ``None`` when the draw fails (draw again)."""
        start = _pick(rng, self.entities[_pick(rng, _VISUAL)])
        chain = [start]
        relations: list[str] = []
        for hop in range(hops):
            last = hop == hops - 1
            options = [
                r
                for r, rel in RELATIONS[chain[-1].kind].items()
                if r in chain[-1].facts
                and (last or rel.noun is not None)
                and (last or rel.target in RELATIONS)
            ]
            if not options:
                return None
            relation = _pick(rng, sorted(options))
            value = chain[-1].facts[relation]
            if any(value == e.name for e in chain):
                return None  # the chain would loop back ("the mayor of the city of its mayor")
            relations.append(relation)
            if not last:
                chain.append(self.by_name[value])
        answer = chain[-1].facts[relations[-1]]
        clue_kind, phrase, shown = CLUES[start.kind]
        subject = NAMED[start.kind].format(n=start.name) if text_only else phrase
        for entity, relation in zip(chain[:-1], relations[:-1], strict=True):
            subject = RELATIONS[entity.kind][relation].noun.format(s=subject)
        last_rel = RELATIONS[chain[-1].kind][relations[-1]]
        question = last_rel.question.format(s=subject)
        question = question[0].upper() + question[1:]
        queries, facts = [], []
        docs = [list(self.fact_docs[(e.name, r)]) for e, r in zip(chain, relations, strict=True)]
        bm25, used, credited = self.bm25(), set(), set()
        for hop, (entity, relation) in enumerate(zip(chain, relations, strict=True)):
            rel = RELATIONS[entity.kind][relation]
            query = rel.query.format(n=entity.name)
            found = [r.url for r in bm25.search(query, k)]
            if not set(found) & set(docs[hop]):
                return None  # the query must show this hop's fact
            if retrieval_credit(found, docs, used, credited) is None:
                return None  # and earn the live query reward
            queries.append(query)
            facts.append(rel.sentence.format(n=entity.name, v=entity.facts[relation]))
        steps = []
        for i, (entity, relation) in enumerate(zip(chain, relations, strict=True)):
            need = RELATIONS[entity.kind][relation].need.format(n=entity.name)
            if i == 0:
                seen = (
                    f"The question is about {NAMED[start.kind].format(n=start.name)}."
                    if text_only
                    else f"The image shows {shown.format(n=start.name)}."
                )
                think = f"{seen} First I need to find {need}."
            else:
                think = f"The search results say: {facts[i - 1]} Next I need to find {need}."
            steps.append(f"<think> {think} </think>\n<search> {queries[i]} </search>")
        steps.append(
            f"<think> The search results say: {facts[-1]} So the answer is {answer}. </think>\n"
            f"<answer> {answer} </answer>"
        )
        return {
            "question": question,
            "answer": answer,
            "gold_queries": queries,
            "gold_docs": docs,
            "gold_steps": steps,
            "gold_plan": ["search"] * hops + ["answer"],
            "hops": hops,
            "entity": start.name,
            "clue": None if text_only else Clue(clue_kind, start.name, int(rng.integers(2**31))),
            "chain": [(e.name, r) for e, r in zip(chain, relations, strict=True)],
        }

    def task(
        self,
        task_id: str,
        draw: dict[str, Any],
        split: str,
        source: str = "synthetic-search",
    ) -> Task:
        """A :class:`Task` from one :meth:`question` draw."""
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


# ----------------------------------------------------------------------------- task source

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
        draw = world.question(rng, hops, text_only, k)
        if draw is not None:
            kind = "text" if text_only else "search"
            return world.task(f"synth-{kind}-{split}-{seed}", draw, chosen)
    raise RuntimeError(f"no valid question in world {seed} after 200 draws")  # pragma: no cover


# ----------------------------------------------------------------------------- images


def render_clue(clue: Clue, size: tuple[int, int] = IMAGE_SIZE) -> np.ndarray:
    """The image of a clue: an ``H×W×3`` ``uint8`` picture naming the entity."""
    from arft_envs.tasks.render import (
        Panel,
        Scene,
        TextBlock,
        contrasting_colors,
        fit_font_size,
        render_scene,
        shade,
    )

    height, width = size
    rng = np.random.default_rng(clue.style)
    paper, ink = contrasting_colors(rng)
    top = tuple(int(v) for v in rng.integers(40, 220, size=3))
    bottom = shade(top, float(rng.uniform(-0.5, 0.5)))
    items: list = []
    name = clue.name

    def text(value: str, box, max_size: int = 96) -> TextBlock:
        x1, y1, x2, y2 = box
        size_px = fit_font_size(value, x2 - x1, y2 - y1, max_size=max_size)
        return TextBlock(value, box, size_px, ink)

    if clue.kind == "logo":
        top, bottom = paper, shade(paper, -0.1)
        r = int(min(height, width) * 0.2)
        cx, cy = width // 2, int(height * 0.36)
        accent = tuple(int(v) for v in rng.integers(0, 256, size=3))
        radius = r if rng.random() < 0.5 else r // 3
        items.append(Panel((cx - r, cy - r, cx + r, cy + r), accent, ink, 4, radius))
        initial = TextBlock(name[0], (cx - r, cy - r, cx + r, cy + r), int(r * 1.2), paper)
        items.append(initial)
        items.append(
            text(
                name.upper(), (width // 10, int(height * 0.64), width * 9 // 10, int(height * 0.88))
            )
        )
    elif clue.kind == "label":
        m = int(min(height, width) * 0.12)
        items.append(Panel((m, m, width - m, height - m), paper, ink, 5, 18))
        stripe = tuple(int(v) for v in rng.integers(0, 256, size=3))
        items.append(Panel((m, int(height * 0.62), width - m, int(height * 0.7)), stripe))
        items.append(text(name, (m * 2, int(height * 0.25), width - m * 2, int(height * 0.58))))
    elif clue.kind == "sign":
        sign = ((20, 100, 50), (25, 60, 140), (120, 30, 30))[int(rng.integers(3))]
        items.append(Panel((30, 70, width - 30, height - 70), sign, (255, 255, 255), 8, 20))
        white = (255, 255, 255)
        size_px = fit_font_size("Welcome to", width - 160, int(height * 0.12), max_size=40)
        items.append(
            TextBlock("Welcome to", (80, 95, width - 80, int(height * 0.36)), size_px, white)
        )
        size_px = fit_font_size(name.upper(), width - 120, int(height * 0.3), max_size=96)
        items.append(
            TextBlock(
                name.upper(), (60, int(height * 0.38), width - 60, height - 100), size_px, white
            )
        )
    elif clue.kind == "poster":
        for _ in range(4):
            x, y = int(rng.integers(0, width - 80)), int(rng.integers(0, height - 80))
            s = int(rng.integers(40, 120))
            color = tuple(int(v) for v in rng.integers(0, 256, size=3))
            items.append(
                Panel((x, y, min(x + s, width), min(y + s, height)), color, None, 0, s // 2)
            )
        items.append(
            Panel((40, int(height * 0.28), width - 40, int(height * 0.8)), paper, ink, 3, 12)
        )
        items.append(
            text(name.replace(" ", "\n"), (70, int(height * 0.34), width - 70, int(height * 0.74)))
        )
    else:  # banner
        items.append(Panel((width // 6, 10, width * 5 // 6, height - 10), paper, ink, 6, 0))
        r = int(min(height, width) * 0.1)
        cx, cy = width // 2, int(height * 0.22)
        accent = tuple(int(v) for v in rng.integers(0, 256, size=3))
        items.append(Panel((cx - r, cy - r, cx + r, cy + r), accent, ink, 3, r))
        items.append(
            text(
                name.replace(" ", "\n"),
                (width // 6 + 20, int(height * 0.4), width * 5 // 6 - 20, height - 30),
            )
        )
    return render_scene(Scene(height, width, top, bottom, tuple(items)))


# ----------------------------------------------------------------------------- writing files


def benchmark_tasks(n: int, seed: int = 0, text_only: bool = False, k: int = DEFAULT_K):
    """``n`` distinct questions from one world (first half simple, then hard, as MAT-Search
    orders its 150 items) and that world. Questions are distinct in what they ask (start
    entity and relation chain; two images may share a question's wording). The world grows
    with ``n`` so there are enough of them."""
    world = SearchWorld(seed, scale=max(1, -(-n // 40)))
    rng = np.random.default_rng([seed, 2])
    tasks, seen = [], set()
    n_simple = n // 2
    for i in range(n):
        split = "simple" if i < n_simple else "hard"
        for _ in range(1000):
            draw = world.question(
                rng, 1 if split == "simple" else int(rng.integers(2, 4)), text_only, k
            )
            if draw is not None and tuple(draw["chain"]) not in seen:
                break
        else:  # pragma: no cover
            raise RuntimeError(f"could not draw {n} distinct questions from world {seed}")
        seen.add(tuple(draw["chain"]))
        tasks.append(world.task(str(i + 1), draw, split, source="synthetic-search-benchmark"))
    return tasks, world


def write_mat_search(directory: str | Path, n: int = 150, seed: int = 0) -> Path:
    """Write ``n`` synthetic tasks in the official MAT-Search format and return the JSON path.

    ``directory/MAT-Search.json`` holds rows ``{"id", "question", "answer", "image_path"}``
    (plus ``gold_queries`` and ``gold_steps``, which the loader keeps in ``meta``); the
    images go to ``directory/images/`` and the world's documents to
    ``directory/corpus.jsonl`` (search it with ``backend="bm25:…/corpus.jsonl"``).
    """
    from PIL import Image

    from arft_envs.tools.search.base import write_corpus

    directory = Path(directory)
    (directory / "images").mkdir(parents=True, exist_ok=True)
    tasks, world = benchmark_tasks(n, seed)
    rows = []
    for task in tasks:
        image_path = f"images/{task.id}.png"
        Image.fromarray(task.load_images()[0]).save(directory / image_path)
        rows.append(
            {
                "id": int(task.id),
                "question": task.question,
                "answer": task.answers[0],
                "image_path": image_path,
                "gold_queries": task.meta["gold_queries"],
                "gold_steps": task.meta["gold_steps"],
            }
        )
    write_corpus(world.documents, directory / "corpus.jsonl")
    path = directory / "MAT-Search.json"
    path.write_text(json.dumps(rows, ensure_ascii=False, indent=1), encoding="utf-8")
    return path


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


def write_search_rows(path: str | Path, n: int = 20, seed: int = 0) -> Path:
    """Write the stepwise rows of ``n`` synthetic tasks in the ``rft_agent_search_20.json``
    format (``image_path``, ``problem``, ``solution``, plus ``gt``, the full turn) with the
    images beside it; returns ``path``."""
    from PIL import Image

    path = Path(path)
    (path.parent / "images").mkdir(parents=True, exist_ok=True)
    tasks, world = benchmark_tasks(n, seed)
    rows = []
    for task in tasks:
        image_path = f"images/{task.id}.png"
        Image.fromarray(task.load_images()[0]).save(path.parent / image_path)
        for row in stepwise_rows(task, world.bm25()):
            rows.append({"image_path": image_path, **row})
    path.write_text(json.dumps(rows, ensure_ascii=False, indent=1), encoding="utf-8")
    return path
