"""Table-driven tests of the action grammar."""

import pytest

from arft_envs.actions import Answer, FormatError, ToolCall, parse_action, parse_problem_set

VALID = [
    ("<answer>42</answer>", Answer("42")),
    ("<think>easy</think><answer> 42 </answer>", Answer("42", "easy")),
    ("  <think>a\nb</think>\n\n<answer>x\ny</answer>\n", Answer("x\ny", "a\nb")),
    ("<search>capital of France</search>", ToolCall("search", "capital of France")),
    ("<think>t</think> <search> q </search>", ToolCall("search", "q", "t")),
    (
        "<think>r</think><problem> {'rotation90', 'dark'} </problem>",
        ToolCall("problem", "{'rotation90', 'dark'}", "r"),
    ),
    ("<code>print(1)</code>", ToolCall("code", "print(1)")),
    ("<code>\n```python\nx = 1\nprint(x)\n```\n</code>", ToolCall("code", "x = 1\nprint(x)")),
    ("<code>```\nprint(2)\n```</code>", ToolCall("code", "print(2)")),
    ("<answer>a < b and c > d</answer>", Answer("a < b and c > d")),
    ("<answer>中文答案 🙂</answer>", Answer("中文答案 🙂")),
    ("<answer></answer>", Answer("")),
]


@pytest.mark.parametrize("text,expected", VALID)
def test_valid_actions(text, expected):
    assert parse_action(text) == expected


INVALID = [
    ("", "empty"),
    ("   \n", "empty"),
    ("just words", "No action found"),
    ("<foo>bar</foo>", "'<foo>' is not an action tag"),
    ("<answer>1</answer><answer>2</answer>", "Exactly one action"),
    ("<search>q</search><answer>a</answer>", "Exactly one action"),
    ("<answer>unclosed", "Unbalanced tag <answer>"),
    ("text before <answer>a</answer>", "Only whitespace may appear outside the tags"),
    ("<answer>a</answer> trailing", "Only whitespace"),
    ("<think>x</think>", "No action found"),
    ("<think>a<answer>b</answer></think><answer>c</answer>", "Exactly one action"),
    ("<problem>rotation90</problem>", "set of quoted names"),
    ("<problem>{}</problem>", "set of quoted names"),
    ("<code>   </code>", "empty"),
    ("<code>```python\n```</code>", "empty"),
    ("<search>  </search>", "empty"),
    ("<ANSWER>x</ANSWER>", "Only whitespace"),
]


@pytest.mark.parametrize("text,fragment", INVALID)
def test_invalid_actions_explain_themselves(text, fragment):
    result = parse_action(text)
    assert isinstance(result, FormatError), result
    assert fragment in result.message


def test_disallowed_tag_names_the_alternatives():
    result = parse_action("<search>x</search>", allowed=("problem", "code", "answer"))
    assert isinstance(result, FormatError)
    assert "<search> is not available" in result.message
    assert "<code>…</code>" in result.message and "<search>…</search>" not in result.message


def test_too_long_and_non_string_actions():
    long = parse_action("<answer>" + "x" * 2_000_000 + "</answer>", max_length=16384)
    assert isinstance(long, FormatError) and "limit is 16384" in long.message
    assert isinstance(parse_action(b"<answer>1</answer>"), FormatError)
    assert isinstance(parse_action(None), FormatError)


@pytest.mark.parametrize(
    "body,expected",
    [
        ("{'dark'}", ("dark",)),
        ("{'rotation90', 'dark'}", ("dark", "rotation90")),
        (" { 'none' } ", ("none",)),
    ],
)
def test_parse_problem_set(body, expected):
    assert parse_problem_set(body) == expected
