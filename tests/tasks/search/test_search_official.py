"""The official MAT-Search readers: the benchmark (images checked, split by position) and the
stepwise rows."""

from __future__ import annotations

import pytest
from shared_helpers import write_rows

from arft_envs.errors import DatasetError
from arft_envs.tasks.search.official import load_mat_search, load_search_rows


def test_mat_search_loader_checks_images_and_splits(tmp_path):
    rows = [
        {"id": i, "question": f"q{i}", "answer": f"a{i}", "image_path": f"img/{i}.png"}
        for i in range(1, 5)
    ]
    path = write_rows(tmp_path / "MAT-Search.json", rows)
    with pytest.raises(DatasetError, match=r"row 0: field 'image_path': image file not found"):
        load_mat_search(path)
    tasks = load_mat_search(path, check_images=False)
    assert [t.split for t in tasks] == ["simple", "simple", "hard", "hard"]
    assert tasks[0].answers == ["a1"] and tasks[0].id == "1"
    assert [t.id for t in load_mat_search(path, "hard", check_images=False)] == ["3", "4"]


def test_search_rows_loader(tmp_path):
    rows = [
        {
            "image_path": "a.png",
            "problem": "<query> Who? </query>",
            "solution": "<search> x </search>",
        },
        {
            "image_path": "a.png",
            "problem": "<query> Who? </query>\n<think> t </think>\n<search> x </search>\n<information> 1. Content: y </information>",
            "solution": "<answer> Telmoria </answer>",
        },
    ]
    tasks = load_search_rows(write_rows(tmp_path / "rows.json", rows))
    assert [t.question for t in tasks] == ["Who?", "Who?"]
    assert tasks[0].answers == [] and tasks[1].answers == ["Telmoria"]
    assert tasks[1].meta["gold_step"] == "<answer> Telmoria </answer>"
    bad = write_rows(
        tmp_path / "bad_rows.json", [{"image_path": "a", "problem": "p", "solution": "none"}]
    )
    with pytest.raises(DatasetError, match=r"row 0: field 'solution'"):
        load_search_rows(bad)
