"""System prompts with the reference paper's structure, written in our own words (paper.md §4.1),
and the section that lists a user's extra tools ("tools_section", "with_tools")."""

CODING_SYSTEM_PROMPT = """\
# Role
You are an image-processing assistant that reasons step by step. You receive an image and a \
question about it. The image may be degraded, so you repair it with OpenCV before answering. \
Take exactly one step per turn.

# Steps
1. Diagnose: name every problem of the image as a set chosen from \
{'rotation90', 'rotation180', 'dark', 'overexposure', 'blur', 'noise', 'crop', 'none'}.
2. Repair: write Python (OpenCV) code that fixes the problems. Always read the image from \
'path_to_input_image.jpg' and always save the result to 'path_to_output_image.jpg'. \
The repaired image comes back to you.
3. Answer: give the final answer, as briefly as possible.

# Output format (strict)
Every turn starts with your reasoning in <think> </think>, followed by exactly one of:
<think> ... </think>
<problem> {'problem1', 'problem2'} </problem>

<think> ... </think>
<code>
```python
...
```
</code>

<think> ... </think>
<answer> ... </answer>

If the diagnosis is 'none', skip the code step and answer directly.

# Current reasoning chain:"""

SEARCH_SYSTEM_PROMPT = """\
# Role
You are a multimodal reasoning assistant that works step by step. You receive an image \
(possibly none), a question, and the reasoning chain so far. Solve the question one sub-step \
at a time, using a search engine when you need knowledge you do not have.

# Guiding principles
- In each turn, either issue ONE text-only search query in <search> </search>, or give the \
final answer in <answer> </answer>.
- Always begin with your reasoning in <think> </think>.
- Queries cannot see the image: describe what you need in words, never "the image".
- Do not repeat a query you already issued.
- One action per turn.

# Output format (strict)
<think> ... </think>
<search> ... </search>

<think> ... </think>
<answer> ... </answer>

The answer should be as brief as possible.

# Current reasoning chain:"""

CODING_TIPS = {
    "crop": (
        "We now need to crop the image. Please provide the Python code. Use "
        "[x_min, y_min, x_max, y_max] to represent the bounding box coordinates."
    ),
    "none": (
        "The image has no issues, so no code is needed in the next step. "
        "You can directly provide the answer."
    ),
    "default": (
        "Now that we have identified the issue in the image: {problems}, please proceed to "
        "address it by outputting the python code."
    ),
}

_CHAIN_HEADER = "# Current reasoning chain:"


def tools_section(tools) -> str:
    """The system prompt's section on ``tools`` (objects with ``prompt_usage()``)."""
    lines = ["# More tools", "Besides the steps above, you may call these tools, one per turn:"]
    for tool in tools:
        lines.append("<think> ... </think>\n" + tool.prompt_usage())
    return "\n\n".join(lines)


def with_tools(prompt: str, tools) -> str:
    """``prompt`` with a section on the extra ``tools`` before its reasoning-chain header
    (at its end when it has none); ``prompt`` unchanged when there are no extra tools, so the
    paper's envs keep the paper's prompts exactly."""
    tools = list(tools)
    if not tools:
        return prompt
    section = tools_section(tools)
    head, sep, tail = prompt.rpartition(_CHAIN_HEADER)
    if not sep:
        return f"{prompt}\n\n{section}"
    return f"{head}{section}\n\n{sep}{tail}"


_FORMAT_HEADER = "# Output format (strict)"
TOOL_CALLS_FORMAT = """\
# Output format (function calls)
Every turn is your reasoning, then exactly one call of one of the functions you are given \
(a diagnosis is 'problem', a repair 'code', a query 'search'). Call 'answer' to give the \
final answer; it ends the episode."""


def for_tool_calls(prompt: str) -> str:
    """``prompt`` for ``action_format="tool_calls"``: its tag-format section becomes
    :data:`TOOL_CALLS_FORMAT` (keeping the section's plain-prose hints) and "in <tag> </tag>"
    becomes "with the 'tag' function"; the tools reach the model as JSON schemas."""
    import re

    head, sep, rest = prompt.partition(_FORMAT_HEADER)
    if not sep:
        return f"{prompt}\n\n{TOOL_CALLS_FORMAT}"
    section, chain, tail = rest.rpartition(_CHAIN_HEADER)
    if not chain:
        section, tail = rest, ""
    hints = [
        line
        for line in section.splitlines()
        if line.strip() and "<" not in line and "`" not in line and line.strip() != "..."
    ]
    body = "\n".join([TOOL_CALLS_FORMAT, *hints])
    head = re.sub(r" in <think> </think>", "", head)
    head = re.sub(r"in <(\w+)> </\1>", r"with the '\1' function", head)
    return f"{head}{body}\n\n{chain}{tail}"
