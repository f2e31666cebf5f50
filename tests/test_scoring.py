"""The paper's evaluation metric: the README's reference numbers and the Chinese normaliser."""

from __future__ import annotations

from pathlib import Path

import pytest

from arft_envs.rewards import (
    answer_tokens,
    exact_match,
    f1_counter,
    f1_set,
    normalize_answer_zh,
    score_answer,
)
from arft_envs.scoring import score_file

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
PREDICTIONS = SHARED / "data" / "reference_predictions"

# shared/data/README.md: file, benchmark, (F1, EM) overall, then simple and hard where given.
REFERENCE = [
    (
        "7b_step200_mat_search_web_n4.json",
        "mat-search",
        {"all": (63.77, 55.33), "simple": (71.78, 66.67), "hard": (55.77, 44.00)},
    ),
    (
        "7b_mat_coding_grpo_step1400.json",
        "mat-coding",
        {"all": (50.67, 34.50), "simple": (60.10, 51.43), "hard": (45.60, 25.38)},
    ),
    ("7b_step200_2wiki_web_n4.json", "multihop", {"all": (63.09, 51.99)}),
    ("7b_step200_hotpotqa_web_n4.json", "multihop", {"all": (48.01, 36.48)}),
    ("7b_step200_musique_web_n4.json", "multihop", {"all": (22.71, 14.07)}),
    ("7b_step200_bamboogle_web_n4.json", "multihop", {"all": (60.15, 48.80)}),
]


@pytest.mark.skipif(
    not SHARED.is_dir(), reason=f"shared data folder {SHARED} is absent (not in this checkout)"
)
@pytest.mark.parametrize(
    ("filename", "benchmark", "expected"), REFERENCE, ids=[r[0] for r in REFERENCE]
)
def test_reference_predictions_reproduce_readme_table(filename, benchmark, expected):
    score = score_file(PREDICTIONS / filename, benchmark)
    splits = {"all": score.overall, **score.splits}
    assert set(splits) == set(expected)
    for name, (f1, em) in expected.items():
        assert round(splits[name].f1, 2) == pytest.approx(f1, abs=1e-9), (name, "F1")
        assert round(splits[name].em, 2) == pytest.approx(em, abs=1e-9), (name, "EM")
    assert score.warnings == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # text without CJK: SQuAD rules plus the Chinese punctuation list
        ("The Red Tent!", "red tent"),
        ("An  apple\n pie", "apple pie"),
        ("60°", "60°"),  # '°' is not punctuation here
        ("（Ａ）： ok｡", "ａ ok"),  # full-width letters are only lower-cased
        # text with CJK: only ASCII spaces go; articles, newlines and U+3000 stay
        ("沁和园 PARK ELEVEN", "沁和园parkeleven"),
        ("TGR\nVIP\n咨询热线", "tgr\nvip\n咨询热线"),
        ("The 苹果", "the苹果"),
        ("a\u3000发票", "a\u3000发票"),
        ("{'金额': '贰元整'}", "金额贰元整"),
        ("【发票号码】：“0299”。", "发票号码0299"),
        ("……发票——", "……发票——"),  # not in the evaluation's punctuation list
        ("", ""),
    ],
)
def test_normalize_answer_zh(text, expected):
    assert normalize_answer_zh(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Peter Pan", ["peter", "pan"]),
        ("软件 工程", ["软", "件", "工", "程"]),
        ("TGR\n沁和园", ["t", "g", "r", "\n", "沁", "和", "园"]),
    ],
)
def test_answer_tokens_chinese(text, expected):
    assert answer_tokens(text, chinese=True) == expected


@pytest.mark.parametrize(
    ("prediction", "gold", "expected"),
    [
        # a CJK gold makes a non-CJK prediction count characters, spaces included:
        # {'7','1'} of 8 predicted and 4 gold characters
        ("71% agree", "71% 的人", 1 / 3),
        # the newline is a token of the gold only: P = 1, R = 6/7
        ("TGR 沁和园", "TGR\n沁和园", 12 / 13),
        # token sets: P = 1/2, R = 1/3
        ("哈哈", "哈哈哈", 0.4),
        ("Peter Pan", "Peter Rabbit", 0.5),
        ("发票", "cape", 0.0),
    ],
)
def test_f1_set_chinese(prediction, gold, expected):
    assert f1_set(prediction, gold, chinese=True) == pytest.approx(expected)


def test_f1_counter_chinese_counts_repeats():
    assert f1_counter("哈哈", "哈哈哈", chinese=True) == pytest.approx(0.8)


@pytest.mark.parametrize(
    ("prediction", "golds", "expected"),
    [
        ("发票 号码", ["发票号码"], (1.0, 1.0)),
        ('{"金额": "贰元整"}', ["{'金额': '贰元整'}"], (1.0, 1.0)),
        ("The 苹果", ["苹果"], (4 / 7, 0.0)),  # articles stay in CJK text: P = 2/5
        (None, ["发票"], (0.0, 0.0)),
        ("A、B、C", ["ABCD"], (0.0, 0.0)),
    ],
)
def test_score_answer_chinese(prediction, golds, expected):
    f1, em = score_answer(prediction, golds, chinese=True)
    assert (f1, em) == pytest.approx(expected)
    if prediction is not None:
        assert em == max(exact_match(prediction, g, chinese=True) for g in golds)


# ---------------------------------------------------------------------- recorded splits


def _item(pred: str, gold: str, split: str | None) -> dict:
    item = {"id": gold, "pred_answer": pred, "gt": [gold], "query": "q"}
    if split is not None:
        item["split"] = split
    return item


def test_recorded_splits_replace_the_fixed_slices():
    from arft_envs.scoring import score_predictions

    # what arft eval writes for a mixed draw: hard and simple interleaved, 4 items
    items = [
        _item("a", "a", "hard"),
        _item("x", "b", "simple"),
        _item("c", "c", "hard"),
        _item("d", "d", "simple"),
    ]
    score = score_predictions(items, "mat-coding")
    assert list(score.splits) == ["simple", "hard"]
    assert (score.splits["simple"].n, score.splits["hard"].n) == (2, 2)
    assert (score.splits["simple"].em, score.splits["hard"].em) == (50.0, 100.0)
    assert not score.warnings
    # without recorded splits (the released files) the first 70 items are "simple"
    bare = score_predictions([{**i, "split": None} for i in items], "mat-coding")
    assert (bare.splits["simple"].n, bare.splits["hard"].n) == (4, 0)
    # a multihop file with recorded splits reports them too
    assert list(score_predictions(items, "multihop").splits) == ["simple", "hard"]


def test_partly_recorded_splits_fall_back_with_a_warning():
    from arft_envs.scoring import score_predictions

    items = [_item("a", "a", "hard"), _item("b", "b", None)]
    score = score_predictions(items, "mat-search")
    assert (score.splits["simple"].n, score.splits["hard"].n) == (2, 0)
    assert any("row 1" in w for w in score.warnings)


def test_a_split_that_is_not_a_string_names_the_row(tmp_path):
    import json

    from arft_envs.scoring import PredictionFileError

    path = tmp_path / "preds.json"
    path.write_text(json.dumps([_item("a", "a", "hard"), {**_item("b", "b", None), "split": 3}]))
    with pytest.raises(PredictionFileError, match=r"row 1: field 'split'"):
        score_file(path, "multihop")
