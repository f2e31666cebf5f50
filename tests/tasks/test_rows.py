"""Dataset rows: the three file formats, and a row accessor whose every failure says where."""

from __future__ import annotations

import json

import pytest

from arft_envs.errors import DatasetError
from arft_envs.tasks.rows import Row, read_json_list, read_rows


def test_read_rows_reads_json_lists_json_lines_and_csv(tmp_path):
    rows = [{"q": "a"}, {"q": "b"}]
    (tmp_path / "l.json").write_text("  \n" + json.dumps(rows))
    (tmp_path / "l.jsonl").write_text(json.dumps(rows[0]) + "\n\n" + json.dumps(rows[1]) + "\n")
    (tmp_path / "l.csv").write_text("\ufeffq\na\nb\n", encoding="utf-8")
    assert list(read_rows(tmp_path / "l.json")) == [(0, rows[0]), (1, rows[1])]
    assert list(read_rows(tmp_path / "l.jsonl")) == [(1, rows[0]), (3, rows[1])]  # line numbers
    assert list(read_rows(tmp_path / "l.csv")) == [(0, {"q": "a"}), (1, {"q": "b"})]


def test_readers_name_the_file_and_what_is_wrong(tmp_path):
    with pytest.raises(DatasetError, match="is a directory; pass the path of the data file"):
        list(read_rows(tmp_path))
    with pytest.raises(DatasetError, match="is a directory; pass the path of the JSON file"):
        read_json_list(tmp_path)
    (tmp_path / "obj.json").write_text('{"a": 1}')
    with pytest.raises(DatasetError, match=r"obj.json: expected a JSON list of rows, got a dict"):
        read_json_list(tmp_path / "obj.json")
    (tmp_path / "ok.json").write_text("[1]")
    assert read_json_list(str(tmp_path / "ok.json")) == (tmp_path / "ok.json", [1])


def test_exact_accessors(tmp_path):
    row = Row(tmp_path / "f.json", 4, {"id": 7, "q": " x ", "tags": ["a", 2], "k": "b"})
    assert row.ident("id") == "7" and row.text("q") == " x "  # as written
    assert row.text("absent", default="d") == "d"
    assert row.strings("tags", allow_numbers=True) == ["a", "2"]
    assert row.choice("k", ("a", "b")) == "b"
    with pytest.raises(DatasetError) as err:
        row.strings("tags")
    assert (err.value.row, err.value.field) == (4, "tags")
    with pytest.raises(DatasetError, match=r"f.json: row 4: field 'nope': missing field"):
        row.text("nope")
    with pytest.raises(DatasetError, match=r"unknown value 'b'; expected one of \['a'\]"):
        row.choice("k", ("a",))


def test_find_accessors_take_the_first_alias_in_the_row_or_its_metadata(tmp_path):
    raw = {"Question": " Who? ", "qid": 3, "answer": "Ada", "metadata": {"answer_aliases": ["A"]}}
    row = Row(tmp_path / "f.jsonl", "line 2", raw)
    assert row.find("query", "question") == ("Question", " Who? ")
    assert row.find_text("query", "question") == "Who?"
    assert row.find_ident(9) == "3"
    assert Row(tmp_path / "f", 0, {}).find_ident(9) == "9"
    assert row.answers() == ["Ada", "A"]
    assert row.find("absent") == (None, None)
    with pytest.raises(DatasetError, match=r"row line 2: missing field; expected one of \['x'\]"):
        row.find_text("x")


def test_a_row_that_is_not_an_object(tmp_path):
    with pytest.raises(DatasetError, match=r"row 0: expected a JSON object, got a list"):
        Row(tmp_path / "f.json", 0, [1])
    with pytest.raises(DatasetError, match=r"row 1: expected an object, got a int"):
        Row(tmp_path / "f.json", 1, 5, kind="an object")
