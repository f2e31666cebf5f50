"""Writing MAT-Coding tasks in both file formats, and reading them back unchanged."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from arft_envs.errors import DatasetError
from arft_envs.rewards import format_reward
from arft_envs.tasks.coding import export
from arft_envs.tasks.coding.official import input_image_field, load_coding_rows, load_mat_coding
from arft_envs.tasks.coding.synthetic import SyntheticCoding

# ----------------------------------------------------------------------------- files round trip


def test_write_then_load_gives_equal_tasks(tmp_path):
    source = SyntheticCoding()
    path = source.write(tmp_path / "bench", n=24, seed=1)
    expected = source.tasks(24, seed=1)
    loaded = load_mat_coding(path)
    assert [t.id for t in loaded] == [t.id for t in expected]
    splits = [t.split for t in loaded]
    assert splits == sorted(splits, key=["simple", "hard"].index)  # benchmark order
    for got, want in zip(loaded, expected, strict=True):
        assert (got.question, got.answers, got.split) == (want.question, want.answers, want.split)
        for key in ("degradations", "gold_plan", "gold_steps"):
            assert got.meta[key] == want.meta[key]
        assert np.array_equal(got.load_images()[0], want.load_images()[0]), got.id
    rows = json.loads(path.read_text(encoding="utf-8"))
    assert set(rows[0]) == {
        "id",
        "question",
        "answers",
        "ori_image_path",
        "processed_image_path",
        "type",
        "split",
        "gold_steps",
    }
    assert len(load_mat_coding(path, split="hard")) == splits.count("hard")
    # the written copy is a proper benchmark: its errors name a missing image too (the one
    # the row uses: the original of a crop item, else the processed image)
    used = input_image_field(rows[3]["type"])
    os.remove(tmp_path / "bench" / rows[3][used])
    with pytest.raises(DatasetError) as err:
        load_mat_coding(path)
    assert (err.value.row, err.value.field) == (3, used)


def test_stepwise_rows_round_trip(tmp_path):
    source = SyntheticCoding()
    rows = source.stepwise_rows(8, seed=2)
    path = source.write_stepwise(tmp_path / "rows" / "rft_agent_code.json", 8, seed=2)
    loaded = load_coding_rows(path)
    tasks = source.tasks(8, seed=2)
    assert len(loaded) == len(rows) == sum(len(t.meta["gold_plan"]) for t in tasks)
    by_task = iter(tasks)
    for row, got in zip(rows, loaded, strict=True):
        assert got.meta["row_type"] == row["type"]
        assert got.meta["gold_step"] == row["solution"]
        assert got.meta["gt"] == row["gt"]
        assert got.meta["context"] == row["context"]
        kind = row["type"][len("pre_") :]
        assert format_reward(row["gt"], kind) == 1.0
        assert row["gt"].endswith(row["solution"])
        if row["type"] == "pre_problem":
            task = next(by_task)
            assert row["context"] == ""
            assert got.meta["prompt_text"] == f"<query> {task.question} </query>"
        if row["type"] == "pre_answer":
            assert got.answers == task.answers
            assert row["context"] == "\n".join(task.meta["gold_steps"][:-1])
            # as in the paper's data, the answer row shows the clean image
            assert np.array_equal(got.load_images()[0], source.clean_image(task))
        else:
            assert np.array_equal(got.load_images()[0], task.load_images()[0])


def test_the_writers_are_functions_over_any_source(tmp_path):
    class Fixed:
        """Not a SyntheticCoding: only the ``tasks`` the writers need."""

        def tasks(self, n, seed=0):
            return SyntheticCoding("hard").tasks(n, seed)

    path = export.write(Fixed(), tmp_path / "a", 3, seed=5)
    same = SyntheticCoding("hard").write(tmp_path / "b", 3, seed=5)
    assert path.read_bytes() == same.read_bytes()
    assert export.stepwise_rows(Fixed(), 3, seed=5) == SyntheticCoding("hard").stepwise_rows(3, 5)
    rows = export.write_stepwise(Fixed(), tmp_path / "c" / "rows.json", 3, seed=5)
    assert [t.meta["gold_step"] for t in load_coding_rows(rows)] == [
        r["solution"] for r in export.stepwise_rows(Fixed(), 3, seed=5)
    ]
