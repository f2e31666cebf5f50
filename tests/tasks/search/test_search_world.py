"""The synthetic search world: reproducible, uniquely named, every fact stated in its document."""

from __future__ import annotations

from arft_envs.tasks.search.relations import _FIRST_NAMES
from arft_envs.tasks.search.world import SearchWorld


def test_worlds_are_reproducible_and_names_unique():
    a, b = SearchWorld(5), SearchWorld(5)
    assert a.documents == b.documents
    assert a.documents != SearchWorld(6).documents
    names = [d.title for d in a.documents]
    assert len(names) == len(set(names))
    shared = {"Academy", "University", "Institute", "College", "Festival", *_FIRST_NAMES}
    rare = [w for n in names for w in n.split() if w not in shared]  # one made-up word each
    assert len(rare) == len(names) == len(set(rare))
    bigger = SearchWorld(5, scale=3)
    assert len(bigger.documents) == 3 * len(a.documents)
    assert len({d.title for d in bigger.documents}) == len(bigger.documents)


def test_every_fact_is_stated_in_its_document():
    world = SearchWorld(1)
    by_url = {d.url: d for d in world.documents}
    for (name, _relation), urls in world.fact_docs.items():
        subject = world.by_name[name]
        assert subject.url == urls[0]
        assert name in by_url[urls[0]].text
