"""Table-driven tests of the paper's reward functions (paper.md §3)."""

import pytest

from arft_envs import rewards as R

CODE_STEP = "<think>rotate</think>\n<code>\n```python\nimport cv2\n```\n</code>"


@pytest.mark.parametrize(
    "text,expected",
    [
        ("The  Cat!", "cat"),
        ("an apple, a pear", "apple pear"),
        ("Theory", "theory"),
        ("  U.S.A. ", "usa"),
        ("", ""),
    ],
)
def test_normalize_answer(text, expected):
    assert R.normalize_answer(text) == expected


@pytest.mark.parametrize(
    "pred,gold,expected",
    [
        ("paris", "Paris", 1.0),
        ("the cat sat", "cat", 2 * 0.5 * 1.0 / 1.5),
        ("dog", "cat", 0.0),
        ("", "cat", 0.0),
        # set overlap counts "a b" once, precision divides by all 3 predicted tokens
        ("x x y", "x y", 2 * (2 / 3) * 1.0 / (2 / 3 + 1.0)),
    ],
)
def test_f1_set(pred, gold, expected):
    assert R.f1_set(pred, gold) == pytest.approx(expected)


def test_f1_counter_differs_from_set_on_repeats():
    assert R.f1_counter("x x y", "x y") == pytest.approx(2 * (2 / 3) / (2 / 3 + 1))
    assert R.f1_counter("x x", "x x") == 1.0
    assert R.f1_set("x x", "x x") == pytest.approx(2 * 0.5 * 0.5 / 1.0)


@pytest.mark.parametrize(
    "pred,golds,expected",
    [
        ("Paris", ["paris", "Lyon"], (1.0, 1.0)),
        ("x x", ["x x"], (1.0, 1.0)),  # EM forces F1 = 1 despite the set-F1 quirk
        ("big cat", "cat", (pytest.approx(2 / 3), 0.0)),
        (None, ["a"], (0.0, 0.0)),
        ("a", [], (0.0, 0.0)),
        ("cat", ["dog", "cat dog"], (pytest.approx(2 / 3), 0.0)),
    ],
)
def test_score_answer(pred, golds, expected):
    assert R.score_answer(pred, golds) == expected


@pytest.mark.parametrize(
    "completion,kind,expected",
    [
        ("<think>a</think><answer>b</answer>", "answer", 1.0),
        ("<think>a</think>\n<answer>b</answer>", "answer", 1.0),
        ("<answer>b</answer>", "answer", 0.0),  # the paper requires <think>
        (" <think>a</think><answer>b</answer>", "answer", 0.0),  # fullmatch: no leading space
        ("<think>a</think><answer>b</answer>\n", "answer", 0.0),
        ("<think>a</think><think>c</think><answer>b</answer>", "answer", 0.0),
        (CODE_STEP, "code", 1.0),
        ("<think>a</think><code>import cv2</code>", "code", 0.0),  # needs the fence
        ("<think>a</think><problem> {'dark', 'blur'} </problem>", "problem", 1.0),
        ("<think>a</think><problem>dark</problem>", "problem", 0.0),
        ("<think>a</think><answer>b</answer>", "problem", 0.0),
    ],
)
def test_coding_format_reward(completion, kind, expected):
    assert R.format_reward(completion, kind, task="coding") == expected


@pytest.mark.parametrize(
    "completion,expected",
    [
        ("<think>a</think><search>q</search>", 1.0),
        ("<think>a</think><answer>b</answer>", 1.0),
        ("<search>q</search>", 0.0),
        ("<think>a</think><search>q</search><search>r</search>", 0.0),
        ("<think>a</think>nothing", 0.0),
    ],
)
def test_search_format_reward(completion, expected):
    assert R.format_reward(completion, "ignored", task="search") == expected


def test_format_reward_rejects_unknown_arguments():
    with pytest.raises(ValueError, match="task must be"):
        R.format_reward("x", "answer", task="chess")
    with pytest.raises(ValueError, match="unknown step kind"):
        R.format_reward("x", "dance")


@pytest.mark.parametrize(
    "pred,gold,expected",
    [
        (["dark"], ["dark"], 1.0),
        (["dark", "rotation90"], ["rotation90", "dark"], 1.0),
        (["rotation90"], ["rotation90", "dark"], 0.5),
        (["rotation180"], ["rotation180", "noise"], 0.5),
        (["rotation180"], ["rotation90", "noise"], 0.0),
        (["dark"], ["rotation90", "dark"], 0.0),  # half credit is for the rotation only
        (["blur"], ["dark"], 0.0),
        ([], ["none"], 0.0),
    ],
)
def test_problem_reward(pred, gold, expected):
    assert R.problem_reward(pred, gold) == expected


def test_code_reward_modes():
    assert R.code_reward("paper") == 0.9
    assert R.code_reward("paper", False) == 0.9
    assert R.code_reward("live", True) == 1.0
    assert R.code_reward("live", False) == 0.0
    with pytest.raises(ValueError):
        R.code_reward("mystery")


@pytest.mark.parametrize("sim,expected", [(0.9, 0.9), (0.5, 0.5), (0.49, 0.0), (-1.0, 0.0)])
def test_search_query_reward_threshold(sim, expected):
    assert R.search_query_reward(sim) == expected


@pytest.mark.parametrize(
    "completion,gold,expected",
    [
        ("<think>x</think><answer>81</answer>", "<answer> 81 </answer>", 1.0),
        ("<think>x</think><code>c</code>", "<answer> 81 </answer>", 0.0),
        ("<think>x</think><code>```python\n```</code>", CODE_STEP, 0.9),
        ("no tags at all", CODE_STEP, 0.9),  # the paper's quirk: code accuracy is constant
        ("<think>x</think><answer>1</answer>", CODE_STEP, 0.0),
        ("<problem> {'dark'} </problem>", "<problem> {'dark'} </problem>", 1.0),
        ("<problem> {'rotation90'} </problem>", "<problem> {'rotation90', 'dark'} </problem>", 0.5),
        ("<answer>x</answer><problem>{'dark'}</problem>", "<problem> {'dark'} </problem>", 0.0),
        # multi-line spans do not match the paper's non-DOTALL regex: whole-text fallback
        ("<answer>8\n1</answer>", "<answer> 81 </answer>", 0.0),
    ],
)
def test_coding_accuracy_reward(completion, gold, expected):
    assert R.coding_accuracy_reward(completion, gold) == pytest.approx(expected)


def test_search_accuracy_reward_uses_similarity_and_threshold():
    def sim(a, b):
        return {("cats", "felines"): 0.8, ("cats", "rockets"): 0.2}[(a, b)]

    assert R.search_accuracy_reward("<search>cats</search>", "<search>felines</search>", sim) == 0.8
    assert R.search_accuracy_reward("<search>cats</search>", "<search>rockets</search>", sim) == 0.0
    assert R.search_accuracy_reward("<answer>a</answer>", "<search>x</search>", sim) == 0.0
    assert R.search_accuracy_reward("<answer>Paris</answer>", "<answer>paris</answer>") == 1.0
    assert R.search_accuracy_reward("<search>p</search>", "<answer>paris</answer>") == 0.0


# ----------------------------------------------------------------------------- paper-mode fixes
# Each case was found by comparing with the authors' functions (paper.md §3.2-3.3).


@pytest.mark.parametrize(
    "completion,expected",
    [
        # "</answer>" before "<answer>": the authors still take the answer branch, which fails
        ("<think>no </answer> yet, then <answer></think><search>q</search>", 0.0),
        ("<think>I will not write </answer> here</think><search>q</search>", 1.0),
        ("<think>an <answer> opens</think><search>q</search>", 1.0),  # one tag only: search
        ("<think>a</think><answer>b</answer>", 1.0),
        ("<think>it said </search> and <search></think><answer>b</answer>", 1.0),
    ],
)
def test_search_format_branches_on_tags_anywhere(completion, expected):
    assert R.format_reward(completion, "search", task="search") == expected


@pytest.mark.parametrize(
    "pred,gold,expected",
    [
        (["rotation90"], ["rotation90", "rotation180"], 0.5),  # rotation90 is tested first
        (["rotation180"], ["rotation90", "rotation180"], 0.0),
        (["rotation90", "rotation180"], ["rotation180", "rotation90"], 1.0),
        (["rotation180"], ["rotation180", "dark"], 0.5),
        (["rotation90"], ["rotation90"], 1.0),
    ],
)
def test_rotation_half_credit_tests_rotation90_first(pred, gold, expected):
    assert R.problem_reward(pred, gold) == expected


@pytest.mark.parametrize(
    "completion,gold,fmt,accuracy",
    [
        # a gold step with no answer/code/problem tag is no coding step: format 0
        ("<think>a</think><answer>b</answer>", "just some text", 0.0, 0.0),
        ("<think>a</think><search>q</search>", "<search>q</search>", 0.0, 0.0),
        ("<think>a</think><answer>q</answer>", "<search>q</search>", 0.0, 0.0),
        # coding kinds keep their patterns
        ("<think>a</think><answer>b</answer>", "<answer>b</answer>", 1.0, 1.0),
        (CODE_STEP, "<think>t</think><code>```python\nx\n```</code>", 1.0, 0.9),
        ("<think>a</think><problem>{'dark'}</problem>", "<problem>{'dark'}</problem>", 1.0, 1.0),
    ],
)
def test_coding_rewards_of_gold_steps_without_a_coding_tag(completion, gold, fmt, accuracy):
    assert R.coding_format_reward(completion, gold) == fmt
    assert R.coding_accuracy_reward(completion, gold) == pytest.approx(accuracy)
    assert R.step_kind(gold, R.CODING_KINDS) in (None, "answer", "code", "problem")
