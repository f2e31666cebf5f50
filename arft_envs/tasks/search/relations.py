"""The schema and lexicon of a synthetic search world: entity kinds, relations, clues and names.

Data, read like a schema. :data:`RELATIONS` says, per entity kind, each fact type: how its
document states it, how a question asks for it, its gold search query and how a chain of
questions passes through it. :data:`CLUES` and :data:`NAMED` say how a question refers to its
start entity (by an image, or by name); the word lists below make the fictional names and the
attribute values.
"""

from __future__ import annotations

from dataclasses import dataclass

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
