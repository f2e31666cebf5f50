"""The TRL adapter's stepwise dataset rows and reward functions (real env, real sandbox)."""

from __future__ import annotations

import pytest

pytest.importorskip("datasets")

from arft_envs.integrations.trl import completion_text, reward_functions, stepwise_dataset
from arft_envs.rewards import CODING_KINDS, step_kind


@pytest.fixture(scope="module")
def rows():
    return stepwise_dataset("MATCoding-v0", n=12, seed=0)


def _row_of_kind(rows, kind):
    for i, g in enumerate(rows["gold_step"]):
        if step_kind(g, CODING_KINDS) == kind:
            return rows[i]
    pytest.fail(f"no {kind} row among the first {len(rows)} stepwise rows")


def test_rows_are_trl_conversational_multimodal(rows):
    row = rows[0]
    assert set(rows.column_names) == {"prompt", "images", "gold_step", "task_id"}
    user = row["prompt"][-1]
    assert user["role"] == "user"
    placeholders = [p for p in user["content"] if p["type"] == "image"]
    assert len(placeholders) == len(row["images"]) >= 1
    assert any(p["type"] == "text" and "<query>" in p["text"] for p in user["content"])
    assert row["images"][0].size[0] > 0
    assert len(set(rows["task_id"])) == len(rows)


def test_correct_diagnosis_scores_more_than_wrong(rows):
    row = _row_of_kind(rows, "problem")
    fmt, acc = reward_functions("live")
    good = [{"role": "assistant", "content": row["gold_step"]}]
    wrong = [{"role": "assistant", "content": "<think> x </think>\n<problem> {'crop'} </problem>"}]
    if "crop" in row["gold_step"]:
        wrong[0]["content"] = "<think> x </think>\n<problem> {'dark'} </problem>"
    kw = {"gold_step": [row["gold_step"]] * 2, "images": [row["images"]] * 2}
    scores = [
        f + a
        for f, a in zip(
            fmt(completions=[good, wrong], **kw), acc(completions=[good, wrong], **kw), strict=True
        )
    ]
    assert scores[0] > scores[1]


def test_live_code_runs_in_the_sandbox(rows):
    row = _row_of_kind(rows, "code")
    _, acc = reward_functions("live")
    _, paper_acc = reward_functions("paper")
    runs = row["gold_step"]
    crashes = runs.replace("cv2.imwrite(", "raise SystemExit(1); cv2.imwrite(")
    no_write = runs.replace("cv2.imwrite(", "print(")
    kw = {"gold_step": [row["gold_step"]] * 3, "images": [row["images"]] * 3}
    assert acc(completions=[runs, crashes, no_write], **kw) == [1.0, 0.0, 0.0]
    assert paper_acc(completions=[runs, crashes, no_write], **kw) == [0.9, 0.9, 0.9]


def test_bad_completions_score_zero_and_never_raise(rows):
    fmt, acc = reward_functions("live")
    bad = [
        "",
        "\x00" * 50,
        "<code>```python\nwhile True: pass",
        [{"role": "assistant", "content": []}],
    ]
    n = len(bad)
    kw = {"gold_step": list(rows["gold_step"][:n]), "images": list(rows["images"][:n])}
    assert all(s == 0.0 for s in acc(completions=bad, **kw))
    assert len(fmt(completions=bad, **kw)) == n
    assert (
        completion_text([{"role": "assistant", "content": [{"type": "text", "text": "a"}]}]) == "a"
    )


def test_environment_factory_tools_step_the_env_and_reward_comes_from_it():
    from transformers.utils import get_json_schema

    from arft_envs.integrations.trl import environment_factory

    cls = environment_factory("MATCoding-v0")
    schema = get_json_schema(cls.problem)["function"]
    assert schema["name"] == "problem" and schema["parameters"]["required"] == ["problems"]
    assert {"problem", "code", "answer"} <= set(dir(cls))

    right, wrong = cls(), cls()
    assert "<query>" in right.reset(seed=0)[-1]["text"]
    wrong.reset(seed=0)
    gold = right.env.unwrapped.task
    right.problem(problems=list(gold.meta["degradations"]))
    wrong.problem(problems=["crop"] if "crop" not in gold.meta["degradations"] else ["dark"])
    assert right.get_reward() > wrong.get_reward()
    reply = right.code(
        code="import cv2\nimg = cv2.imread('path_to_input_image.jpg')\n"
        "cv2.imwrite('path_to_output_image.jpg', img)\n"
    )
    assert "processed image" in reply[-1]["text"]
    before = right.get_reward()
    right.answer(answer=gold.answers[0])
    assert right.get_reward() > before and right.done
    assert "over" in right.answer(answer="again")


def test_rows_of_chosen_kinds():
    rows = stepwise_dataset("MATCoding-v0", n=3, seed=0, kinds=("answer",))
    assert [step_kind(g, CODING_KINDS) for g in rows["gold_step"]] == ["answer"] * 3
    with pytest.raises(ValueError, match="kinds must be among"):
        stepwise_dataset("MATCoding-v0", n=1, kinds=("search",))


CODE = (
    "import cv2\nimg = cv2.imread('path_to_input_image.jpg')\n"
    "cv2.imwrite('path_to_output_image.jpg', cv2.flip(img, 1))\n"
)


def test_environment_factory_returns_the_env_images_as_trl_blocks():
    import numpy as np

    from arft_envs.integrations.trl import environment_factory

    env = environment_factory("MATCoding-v0")()
    opening = env.reset(seed=0)
    u = env.env.unwrapped
    assert [b["type"] for b in opening] == ["image", "text", "text"]  # image, system, query
    assert np.array_equal(np.asarray(opening[0]["image"]), u.images[0])
    assert "<query>" in opening[2]["text"] and "problem" in opening[1]["text"]
    assert isinstance(env.problem(problems=["none"]), str)  # a text-only reply stays text
    reply = env.code(code=CODE)
    images = [b["image"] for b in reply if b["type"] == "image"]
    assert len(images) == 1 and len(u.images) == 2
    assert np.array_equal(np.asarray(images[0]), u.images[-1])
    assert not np.array_equal(np.asarray(images[0]), u.images[0])  # the code's output
    assert any("processed image" in b.get("text", "") for b in reply)

    text_env = environment_factory("MATCoding-v0", images=False)()
    assert isinstance(text_env.reset(seed=0), str)
    assert isinstance(text_env.code(code=CODE), str)


def test_trl_template_and_processor_take_a_tool_image():
    """TRL's qwen3_vl template renders the tool reply's image, and the processor turns
    both images (the task's and the repaired one) into pixel values, as TRL's tool loop
    does for a VLM."""
    pytest.importorskip("trl")
    from trl.chat_template_utils import qwen3_vl_chat_template
    from trl.data_utils import prepare_multimodal_messages

    from agents.models.tiny_qwen import save_tiny_qwen
    from arft_envs.integrations.trl import environment_factory, qwen_vl_processor

    env = environment_factory("MATCoding-v0")()
    opening = env.reset(seed=0)
    reply = env.code(code=CODE)
    call = {"type": "function", "function": {"name": "code", "arguments": {"code": CODE}}}
    messages = [
        {"role": "user", "content": opening},
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "name": "code", "content": reply},
    ]
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        processor = qwen_vl_processor(save_tiny_qwen(tmp), chat_template=qwen3_vl_chat_template)
    out = processor.apply_chat_template(
        prepare_multimodal_messages(messages),
        tokenize=True,
        return_dict=True,
        add_generation_prompt=True,
    )
    text = processor.tokenizer.decode(out["input_ids"][0])
    assert text.count("<|vision_start|>") == 2
    assert text.index("<tool_response>") < text.rindex("<|vision_start|>")
    assert out["image_grid_thw"].shape[0] == 2


def test_warm_start_rows_are_grpo_prompts_and_the_expert_call():
    """Each warm-start row is the prompt GRPOTrainer renders for the episode (the row's
    prompt, the env's opening turn, TRL's tools block, one image placeholder per image)
    and a completion that TRL's own parser reads back as the expert's first call."""
    pytest.importorskip("trl")
    import tempfile

    from datasets import Dataset
    from trl.chat_template_utils import add_response_schema, parse_response, qwen3_vl_chat_template

    from agents.models.tiny_qwen import save_tiny_qwen
    from arft_envs.experts import ScriptedExpert
    from arft_envs.integrations.trl import (
        environment_factory,
        qwen_vl_processor,
        warm_start_dataset,
    )

    with tempfile.TemporaryDirectory() as tmp:
        processor = qwen_vl_processor(save_tiny_qwen(tmp), chat_template=qwen3_vl_chat_template)
    environment = environment_factory("MATCoding-v0")
    task = "Repair the image."
    dataset = Dataset.from_dict(
        {"prompt": [[{"role": "user", "content": task}]] * 2, "seed": [0, 1]}
    )
    rows = warm_start_dataset(environment, dataset, processor)
    assert rows.column_names == ["prompt", "completion", "images"] and len(rows) == 2

    add_response_schema(processor)
    env = environment()
    for seed, row in zip([0, 1], rows, strict=True):
        prompt = row["prompt"]
        assert prompt.startswith("<|im_start|>system\n# Tools") and "<tools>" in prompt
        for name in ("problem", "code", "answer"):
            assert f'"name": "{name}"' in prompt
        assert prompt.endswith("<|im_start|>assistant\n")
        user = prompt[prompt.index("<|im_start|>user\n") :]
        assert user.startswith(f"<|im_start|>user\n{task}<|vision_start|>")  # row, then image
        assert prompt.count("<|image_pad|>") == len(row["images"]) == 1
        env.reset(seed=seed)
        assert "<query>" in prompt and env.env.unwrapped.task.question in prompt
        expert = ScriptedExpert().act(env.env)["tool_calls"]
        tokenizer = processor.tokenizer
        ids, prefix = tokenizer(row["completion"])["input_ids"], tokenizer(prompt)["input_ids"]
        parsed = parse_response(tokenizer, ids, prefix=prefix)  # as GRPOTrainer parses
        assert parsed["tool_calls"] == expert, row["completion"]
