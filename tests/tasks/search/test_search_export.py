"""Writing synthetic search tasks in the official formats, and reading them back."""

from __future__ import annotations

import json

from arft_envs.tasks.search.export import benchmark_tasks, write_mat_search, write_search_rows
from arft_envs.tasks.search.official import load_mat_search, load_search_rows
from arft_envs.tasks.search.synthetic import SyntheticSearch, stepwise_rows
from arft_envs.tools.search import BM25Search, load_corpus


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
