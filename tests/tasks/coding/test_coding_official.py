"""The MAT-Coding benchmark and stepwise-row loaders: what they read, and errors that say where."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from arft_envs.errors import DatasetError
from arft_envs.tasks.coding.official import load_coding_rows, load_mat_coding


def write_json(path: Path, rows) -> Path:
    path.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    return path


# ============================================================================ official benchmark


def test_demo_loads_with_the_default_image_check(demo):
    # the sample ships only the image each row uses (the original of crop items, else the
    # processed one), and that is what the check covers
    tasks = load_mat_coding(demo)
    assert [t.id for t in tasks] == ["12", "22", "63", "71", "119", "124"]
    assert all(Path(t.images[0]).is_file() for t in tasks)


def test_missing_used_image_names_the_file_row_and_field(demo, tmp_path):
    rows = json.loads(demo.read_text(encoding="utf-8"))
    rows[0]["processed_image_path"] = "gone_proc.png"  # row 0 (rotation180) uses this one
    path = write_json(tmp_path / "bench.json", rows)
    with pytest.raises(DatasetError) as err:
        load_mat_coding(path, image_root=demo.parent)
    assert (err.value.row, err.value.field) == (0, "processed_image_path")
    assert "gone_proc.png" in str(err.value) and str(path) in str(err.value)
    assert "check_images=False" in str(err.value)


def test_image_missing_at_decode_names_the_file_row_and_field(demo, tmp_path):
    rows = json.loads(demo.read_text(encoding="utf-8"))
    rows[4]["ori_image_path"] = "gone_ori.png"  # row 4 is a crop item: it uses the original
    path = write_json(tmp_path / "bench.json", rows)
    tasks = load_mat_coding(path, image_root=demo.parent, check_images=False)
    with pytest.raises(DatasetError) as err:
        tasks[4].load_images()
    assert (err.value.path, err.value.row, err.value.field) == (str(path), 4, "ori_image_path")
    message = str(err.value)
    assert "image file not found" in message and "gone_ori.png" in message
    assert "'119'" in message  # the task id


def test_image_missing_at_reset_names_the_file_row_and_field(demo, tmp_path):
    import gymnasium as gym

    import arft_envs  # noqa: F401

    rows = json.loads(demo.read_text(encoding="utf-8"))
    rows[1]["processed_image_path"] = "gone_proc.png"
    path = write_json(tmp_path / "bench.json", rows)
    env = gym.make("MATCoding-v0", data=str(path), image_root=str(demo.parent), check_images=False)
    with pytest.raises(DatasetError) as err:
        env.reset(options={"task_id": "22"})
    env.close()
    assert (err.value.row, err.value.field) == (1, "processed_image_path")
    assert str(path) in str(err.value) and "gone_proc.png" in str(err.value)


def test_demo_loads_with_deferred_image_check(demo):
    tasks = load_mat_coding(demo, check_images=False)
    assert [t.id for t in tasks] == ["12", "22", "63", "71", "119", "124"]
    by_id = {t.id: t for t in tasks}
    assert by_id["71"].meta["degradations"] == ["rotation90", "dark"]
    assert by_id["71"].split == "hard"
    assert by_id["63"].meta["gold_plan"] == ["problem", "answer"]
    assert by_id["12"].meta["gold_plan"] == ["problem", "code", "answer"]
    assert by_id["124"].answers == ["Spaghetti\nGOEMON"]
    assert all(t.meta["source"] == "mat-coding" and "gold_steps" not in t.meta for t in tasks)
    # crop items show the undegraded original, the others the processed image (paper §4.3)
    assert by_id["119"].images == [demo.parent / "crop_8_ori.png"]
    assert by_id["12"].images == [demo.parent / "rotation180_1_proc.png"]
    assert all(t._cache is None for t in tasks)  # nothing decoded yet
    for task in tasks:  # every input image of the demo is present
        (image,) = task.load_images()
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3


def test_demo_split_filter(demo):
    simple = load_mat_coding(demo, split="simple", check_images=False)
    hard = load_mat_coding(demo, split="hard", check_images=False)
    assert [t.id for t in simple] == ["12", "22", "63"]
    assert [t.id for t in hard] == ["71", "119", "124"]
    with pytest.raises(ValueError, match="split"):
        load_mat_coding(demo, split="medium")


def test_image_root_and_a_complete_copy(demo, tmp_path):
    rows = json.loads(demo.read_text(encoding="utf-8"))
    images = tmp_path / "imgs"
    images.mkdir()
    for row in rows:
        for field in ("ori_image_path", "processed_image_path"):
            (images / row[field]).write_bytes(b"")  # existence is what is checked
    path = write_json(tmp_path / "bench.json", rows)
    tasks = load_mat_coding(path, image_root=images)
    assert tasks[0].images == [images / "rotation180_1_proc.png"]
    (images / "crop_13_proc.png").unlink()  # row 5 is a crop item: it does not use this one
    assert len(load_mat_coding(path, image_root=images)) == 6
    (images / "crop_13_ori.png").unlink()
    with pytest.raises(DatasetError) as err:
        load_mat_coding(path, image_root=images)
    assert (err.value.row, err.value.field) == (5, "ori_image_path")
    assert "crop_13_ori.png" in str(err.value)
    # a missing image in a filtered-out row is not checked
    assert len(load_mat_coding(path, split="simple", image_root=images)) == 3


@pytest.mark.parametrize(
    "text, message",
    [
        ('[{"id": 1,', "not valid JSON"),
        ('{"id": 1}', "expected a JSON list"),
        ("", "not valid JSON"),
    ],
)
def test_broken_json_names_the_file(tmp_path, text, message):
    path = tmp_path / "broken.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DatasetError, match=message) as err:
        load_mat_coding(path)
    assert str(path) in str(err.value)


def test_missing_or_unreadable_file(tmp_path):
    with pytest.raises(DatasetError, match="file not found"):
        load_mat_coding(tmp_path / "nope.json")
    with pytest.raises(DatasetError, match="directory"):
        load_mat_coding(tmp_path)
    (tmp_path / "latin1.json").write_bytes(b"[\xff]")
    with pytest.raises(DatasetError, match="cannot read"):
        load_mat_coding(tmp_path / "latin1.json")


def _bad_rows():
    """(row edit, field named in the error) pairs; each breaks row 2 of the demo."""
    return [
        (lambda r: r.pop("answers"), "answers"),
        (lambda r: r.pop("id"), "id"),
        (lambda r: r.pop("type"), "type"),
        (lambda r: r.update(answers="Uncommon Valor"), "answers"),
        (lambda r: r.update(answers=[]), "answers"),
        (lambda r: r.update(answers=[["nested"]]), "answers"),
        (lambda r: r.update(question=7), "question"),
        (lambda r: r.update(question="  "), "question"),
        (lambda r: r.update(type=["fog"]), "type"),
        (lambda r: r.update(type="none"), "type"),
        (lambda r: r.update(split="medium"), "split"),
        (lambda r: r.update(id=True), "id"),
        (lambda r: r.update(id=12), "id"),  # duplicate of row 0
        (lambda r: r.update(processed_image_path=None), "processed_image_path"),
        (lambda r: r.update(gold_steps="<answer> x </answer>"), "gold_steps"),
    ]


@pytest.mark.parametrize("edit, field", _bad_rows())
def test_bad_row_names_row_and_field(demo, tmp_path, edit, field):
    rows = json.loads(demo.read_text(encoding="utf-8"))
    edit(rows[2])
    path = write_json(tmp_path / "bad.json", rows)
    with pytest.raises(DatasetError) as err:
        load_mat_coding(path, check_images=False)
    assert (err.value.path, err.value.row, err.value.field) == (str(path), 2, field)
    assert f"row 2: field {field!r}" in str(err.value)


def test_row_that_is_not_an_object(tmp_path):
    path = write_json(tmp_path / "bad.json", [["id", 1]])
    with pytest.raises(DatasetError, match="row 0: expected a JSON object"):
        load_mat_coding(path)


def test_numeric_answers_are_accepted_as_text(demo, tmp_path):
    rows = json.loads(demo.read_text(encoding="utf-8"))
    rows[0]["answers"] = [81, 2.5]
    tasks = load_mat_coding(write_json(tmp_path / "b.json", rows), check_images=False)
    assert tasks[0].answers == ["81", "2.5"]


# ============================================================================ stepwise rows


def _rows(image="img.png"):
    return [
        {
            "type": "pre_problem",
            "image_path": image,
            "problem": "<query> What number is shown? </query>",
            "context": "",
            "solution": "<problem> {'dark'} </problem>",
            "gt": "<think> dark </think>\n<problem> {'dark'} </problem>",
        },
        {
            "type": "pre_code",
            "image_path": image,
            "problem": "<query> What number is shown? </query>",
            "context": "<think> dark </think>\n<problem> {'dark'} </problem>",
            "solution": "<code>\n```python\nprint(1)\n```\n</code>",
            "gt": "<think> fix </think>\n<code>\n```python\nprint(1)\n```\n</code>",
        },
        {
            "type": "pre_answer",
            "image_path": image,
            "problem": "<query> What number is shown? </query>",
            "context": "earlier steps",
            "solution": "<answer> 81 </answer>",
        },
    ]


def test_load_coding_rows(tmp_path):
    (tmp_path / "img.png").write_bytes(b"")
    tasks = load_coding_rows(write_json(tmp_path / "rows.json", _rows()))
    assert [t.meta["row_type"] for t in tasks] == ["pre_problem", "pre_code", "pre_answer"]
    assert [t.answers for t in tasks] == [[], [], ["81"]]
    assert tasks[0].meta["prompt_text"] == "<query> What number is shown? </query>"
    assert tasks[2].meta["prompt_text"] == "<query> What number is shown? </query>\nearlier steps"
    assert tasks[1].meta["gold_step"].startswith("<code>")
    assert tasks[2].meta["gt"] == "<answer> 81 </answer>"  # gt defaults to the solution
    assert tasks[0].images == [tmp_path / "img.png"]


@pytest.mark.parametrize(
    "index, edit, field",
    [
        (0, lambda r: r.update(type="pre_search"), "type"),
        (1, lambda r: r.pop("solution"), "solution"),
        (1, lambda r: r.update(solution="<answer> 81 </answer>"), "solution"),
        (2, lambda r: r.update(context=None), "context"),
        (2, lambda r: r.pop("image_path"), "image_path"),
        (2, lambda r: r.update(image_path="missing.png"), "image_path"),
        (0, lambda r: r.update(problem=["q"]), "problem"),
    ],
)
def test_bad_coding_row(tmp_path, index, edit, field):
    (tmp_path / "img.png").write_bytes(b"")
    rows = _rows()
    edit(rows[index])
    path = write_json(tmp_path / "rows.json", rows)
    with pytest.raises(DatasetError) as err:
        load_coding_rows(path)
    assert (err.value.row, err.value.field) == (index, field)


def test_coding_rows_defer_image_check(tmp_path):
    path = write_json(tmp_path / "rows.json", _rows("absent.png"))
    assert len(load_coding_rows(path, check_images=False)) == 3
