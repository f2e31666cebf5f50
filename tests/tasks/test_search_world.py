"""The synthetic MAT-Search world: reproducible, searchable, and written in the official formats."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from arft_envs.rewards import score_answer
from arft_envs.tasks.multihop import load_mat_search, load_search_rows
from arft_envs.tasks.search_world import (
    _FIRST_NAMES,
    CLUES,
    SearchWorld,
    SyntheticSearch,
    benchmark_tasks,
    render_clue,
    stepwise_rows,
    write_mat_search,
    write_search_rows,
)
from arft_envs.tools.search import BM25Search, load_corpus


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


def test_tasks_are_deterministic_and_rebuilt_from_their_ids():
    source = SyntheticSearch()
    rng1, rng2 = np.random.default_rng(3), np.random.default_rng(3)
    t1, t2 = source.sample(rng1), source.sample(rng2)
    assert (t1.id, t1.question, t1.answers) == (t2.id, t2.question, t2.answers)
    again = source.get(t1.id)
    assert again.meta["gold_steps"] == t1.meta["gold_steps"]
    assert np.array_equal(again.load_images()[0], t1.load_images()[0])
    with pytest.raises(KeyError, match="synth-search-all-123"):
        source.get("nonsense")


@pytest.mark.parametrize("split", ["simple", "hard"])
def test_splits_have_the_right_number_of_hops(split):
    source = SyntheticSearch(split=split)
    hops = {source.make(seed).meta["hops"] for seed in range(40)}
    assert hops == ({1} if split == "simple" else {2, 3})


def test_gold_queries_retrieve_their_facts_and_the_answer_is_in_the_last_one():
    source = SyntheticSearch()
    for seed in range(60):
        task = source.make(seed)
        index = BM25Search(task.meta["corpus"])
        texts = []
        for query, gold in zip(task.meta["gold_queries"], task.meta["gold_docs"], strict=True):
            results = index.search(query, 4)
            assert {r.url for r in results} & set(gold), (task.id, query)
            texts.append(" ".join(r.text for r in results if r.url in gold))
        assert task.answers[0] in texts[-1]
        assert task.answers[0] not in task.question


def test_gold_steps_follow_the_papers_strict_format():
    task = SyntheticSearch(split="hard").make(11)
    steps, plan = task.meta["gold_steps"], task.meta["gold_plan"]
    assert plan == ["search"] * task.meta["hops"] + ["answer"]
    assert len(steps) == len(plan)
    for step, kind in zip(steps, plan, strict=True):
        assert re.fullmatch(rf"<think>.*?</think>\n<{kind}>.*?</{kind}>", step, re.DOTALL)
    assert re.search(r"<answer> (.*) </answer>", steps[-1])[1] == task.answers[0]
    assert score_answer(task.answers[0], task.answers) == (1.0, 1.0)


def test_images_name_the_entity_and_text_only_tasks_have_none():
    task = SyntheticSearch().make(2)
    (image,) = task.load_images()
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert image.std() > 10  # not a blank canvas
    assert task.meta["clue"] in {clue for clue, _, _ in CLUES.values()}
    assert "image" in task.question or "poster" in task.question
    text = SyntheticSearch(text_only=True).make(2)
    assert text.images == [] and text.meta["entity"] in text.question
    assert text.id.startswith("synth-text-")


@pytest.mark.parametrize("kind", ["logo", "label", "sign", "poster", "banner"])
def test_every_clue_kind_renders(kind):
    from arft_envs.tasks.search_world import Clue

    image = render_clue(Clue(kind, "Quorvane Festival", 7), size=(256, 320))
    assert image.shape == (256, 320, 3)
    assert np.array_equal(image, render_clue(Clue(kind, "Quorvane Festival", 7), size=(256, 320)))


def test_official_format_roundtrip(tmp_path):
    path = write_mat_search(tmp_path, n=12, seed=4)
    rows = json.loads(path.read_text())
    assert [r["id"] for r in rows] == list(range(1, 13))
    assert set(rows[0]) >= {"id", "question", "answer", "image_path"}
    tasks = load_mat_search(path)
    assert [t.split for t in tasks] == ["simple"] * 6 + ["hard"] * 6
    assert tasks[0].meta["gold_steps"] == rows[0]["gold_steps"]
    assert tasks[0].load_images()[0].shape == (384, 512, 3)
    corpus = load_corpus(tmp_path / "corpus.jsonl")
    index = BM25Search(corpus)
    for task in tasks:
        last = task.meta["gold_queries"][-1]
        assert any(task.answers[0] in r.text for r in index.search(last, 4))
    assert len(load_mat_search(path, split="hard")) == 6


def test_benchmark_questions_are_distinct():
    tasks, world = benchmark_tasks(60, seed=1)
    asked = {(t.meta["entity"], t.question) for t in tasks}
    assert len(asked) == 60
    assert all(t.meta["corpus_id"] == world.corpus_id for t in tasks)


def test_stepwise_rows_roundtrip(tmp_path):
    task = SyntheticSearch(split="hard").make(5)
    rows = stepwise_rows(task)
    assert len(rows) == task.meta["hops"] + 1
    assert rows[0]["problem"] == f"<query> {task.question} </query>"
    assert rows[1]["problem"].count("<information>") == 1
    assert rows[-1]["solution"] == f"<answer> {task.answers[0]} </answer>"
    path = write_search_rows(tmp_path / "rft_agent_search.json", n=4, seed=0)
    loaded = load_search_rows(path)
    written = json.loads(path.read_text())
    assert len(loaded) == len(written) >= 8
    assert loaded[0].meta["gold_step"] == written[0]["solution"]
    assert loaded[0].load_images()[0].ndim == 3
