"""Drawn questions: the hops of each split, gold queries that retrieve their facts, strict steps."""

from __future__ import annotations

import re

import numpy as np
import pytest

from arft_envs.rewards import score_answer
from arft_envs.tasks.search.questions import question
from arft_envs.tasks.search.synthetic import SyntheticSearch
from arft_envs.tasks.search.world import SearchWorld
from arft_envs.tools.search import BM25Search


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


def test_question_is_a_function_of_the_world_and_the_draws():
    world = SearchWorld(3)
    draws = [question(world, np.random.default_rng(seed), 2) for seed in range(30)]
    seed, draw = next((s, d) for s, d in enumerate(draws) if d is not None)
    assert draw == question(world, np.random.default_rng(seed), 2)
    names = [name for name, _ in draw["chain"]]
    assert draw["hops"] == len(names) == len(set(names)) == len(draw["gold_queries"]) == 2
    assert draw["entity"] == names[0] and draw["entity"] not in draw["question"]
    assert draw["clue"].name == draw["entity"]
    text = question(world, np.random.default_rng(seed), 2, text_only=True)
    assert text["chain"] == draw["chain"] and text["clue"] is None
    assert draw["entity"] in text["question"]
    # a draw that gets stuck or loops back says so (None), and the caller draws again
    assert any(question(world, np.random.default_rng(s), 3) is None for s in range(100))
