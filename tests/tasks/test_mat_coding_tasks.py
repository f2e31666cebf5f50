"""MAT-Coding tasks: the benchmark and stepwise loaders, the synthetic generator, the expert."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from arft_envs.actions import Answer, ToolCall, parse_action, parse_problem_set
from arft_envs.core import AgenticEnv, ToolOutcome
from arft_envs.experts import ExpertError, ScriptedExpert
from arft_envs.rewards import coding_accuracy_reward, format_reward, score_answer
from arft_envs.tasks.base import DatasetError, ListTaskSource, Task
from arft_envs.tasks.mat_coding import (
    SPLIT_CLASSES,
    SyntheticCoding,
    load_coding_rows,
    load_mat_coding,
)

ALL_CLASSES = {c for classes in SPLIT_CLASSES.values() for c in classes}


@pytest.fixture(scope="module")
def demo(shared_data) -> Path:
    return shared_data / "mat_coding_demo" / "coding_case.json"


def write_json(path: Path, rows) -> Path:
    path.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    return path


def mae(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float32) - b.astype(np.float32)).mean())


# ============================================================================ official benchmark


def test_demo_names_the_missing_image_file_row_and_field(demo):
    with pytest.raises(DatasetError) as err:
        load_mat_coding(demo)
    assert (err.value.row, err.value.field) == (0, "ori_image_path")
    assert "rotation180_1_ori.png" in str(err.value)
    assert str(demo) in str(err.value)
    assert "check_images=False" in str(err.value)


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
    (images / "crop_13_proc.png").unlink()
    with pytest.raises(DatasetError) as err:
        load_mat_coding(path, image_root=images)
    assert (err.value.row, err.value.field) == (5, "processed_image_path")
    assert "crop_13_proc.png" in str(err.value)
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


# ============================================================================ the generator


def test_same_seed_same_task_and_pixels():
    a, b = SyntheticCoding().make(7), SyntheticCoding().make(7)
    assert (a.id, a.question, a.answers, a.split) == (b.id, b.question, b.answers, b.split)
    assert a.meta == b.meta
    assert np.array_equal(a.load_images()[0], b.load_images()[0])
    again = SyntheticCoding().get(a.id)
    assert np.array_equal(again.load_images()[0], a.load_images()[0])
    source = SyntheticCoding()
    first = source.sample(np.random.default_rng(3))
    assert first.id == source.sample(np.random.default_rng(3)).id


def test_different_seeds_differ():
    tasks = [SyntheticCoding().make(seed) for seed in range(12)]
    assert len({t.id for t in tasks}) == 12
    assert len({(t.question, t.answers[0]) for t in tasks}) > 8
    images = [t.load_images()[0] for t in tasks[:4]]
    assert not any(np.array_equal(images[0], other) for other in images[1:])


def test_images_are_lazy_uint8_rgb():
    task = SyntheticCoding().make(1)
    assert callable(task.images[0]) and task._cache is None
    (image,) = task.load_images()
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert not image.flags.writeable
    assert sorted(image.shape[:2]) == [384, 512]


def test_get_rebuilds_any_split_and_rejects_foreign_ids():
    hard = SyntheticCoding("hard").make(5)
    assert SyntheticCoding("all").get(hard.id).meta == hard.meta
    with pytest.raises(KeyError, match="synth-coding"):
        SyntheticCoding().get("12")


def test_constructor_validation():
    with pytest.raises(ValueError, match="split"):
        SyntheticCoding(split="easy")
    with pytest.raises(ValueError, match="content"):
        SyntheticCoding(content="emoji")
    with pytest.raises(ValueError, match="image_size"):
        SyntheticCoding(image_size=(32, 32))


@pytest.mark.parametrize("split", ["simple", "hard", "all"])
def test_every_degradation_class_appears_in_its_split(split):
    source = SyntheticCoding(split)
    tasks = [source.make(seed) for seed in range(400)]
    classes = {tuple(t.meta["degradations"]) for t in tasks}
    expected = ALL_CLASSES if split == "all" else set(SPLIT_CLASSES[split])
    assert classes == expected
    for task in tasks:
        names = tuple(task.meta["degradations"])
        assert names in SPLIT_CLASSES[task.split]
        assert task.meta["gold_plan"] == (
            ["problem", "answer"] if names == ("none",) else ["problem", "code", "answer"]
        )
    if split == "hard":
        assert all(len(c) == 2 and c[0].startswith("rotation") for c in classes - {("crop",)})


@pytest.mark.parametrize("content", ["glyph", "number", "word", "phrase", "lines", "sign"])
def test_each_content_kind(content):
    source = SyntheticCoding(content=content, image_size=(256, 320))
    for seed in range(6):
        task = source.make(seed)
        assert task.meta["content"] == content
        assert task.answers[0].strip() and "\n" not in task.answers[0]
        assert task.load_images()[0].shape[2] == 3


def test_gold_steps_parse_and_score_full_marks():
    for split in ("simple", "hard", "all"):
        for seed in range(60):
            task = SyntheticCoding(split).make(seed)
            steps = task.meta["gold_steps"]
            assert len(steps) == len(task.meta["gold_plan"])
            for step, kind in zip(steps, task.meta["gold_plan"], strict=True):
                action = parse_action(step)
                assert not hasattr(action, "message"), (task.id, step, action)
                assert format_reward(step, kind) == 1.0, (task.id, step)
                expected = 0.9 if kind == "code" else 1.0
                assert coding_accuracy_reward(step, step) == expected, (task.id, step)
            problem = parse_action(steps[0])
            assert isinstance(problem, ToolCall) and problem.name == "problem"
            assert list(parse_problem_set(problem.argument)) == sorted(task.meta["degradations"])
            answer = parse_action(steps[-1])
            assert isinstance(answer, Answer)
            assert score_answer(answer.text, task.answers, chinese=True) == (1.0, 1.0)
            if "code" in task.meta["gold_plan"]:
                code = parse_action(steps[1]).argument
                assert "'path_to_input_image.jpg'" in code and "'path_to_output_image.jpg'" in code


# ----------------------------------------------------------------------------- gold code restores


def _seeds_per_class(per_class: int) -> list[int]:
    """Seeds of split="all" covering every degradation class ``per_class`` times."""
    source, chosen, counts = SyntheticCoding(), [], {}
    seed = 0
    while any(counts.get(c, 0) < per_class for c in ALL_CLASSES):
        names = tuple(source.make(seed).meta["degradations"])
        if counts.get(names, 0) < per_class:
            counts[names] = counts.get(names, 0) + 1
            chosen.append(seed)
        seed += 1
    return chosen


def _run_gold_code(code: str, image: np.ndarray, workdir: Path) -> np.ndarray:
    """Run ``code`` in-process in ``workdir``, with the image as the input file; RGB result."""
    workdir.mkdir()
    # PNG bytes under the .jpg name: cv2.imread goes by content, so the input is exact
    cv2.imwrite(str(workdir / "in.png"), image[:, :, ::-1])
    (workdir / "in.png").rename(workdir / "path_to_input_image.jpg")
    cwd = os.getcwd()
    os.chdir(workdir)
    try:
        exec(compile(code, "<gold code>", "exec"), {})
    finally:
        os.chdir(cwd)
    out = cv2.imread(str(workdir / "path_to_output_image.jpg"))
    assert out is not None, "the gold code wrote no image"
    return out[:, :, ::-1]


def _edge_energy(image: np.ndarray) -> float:
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    return float(
        np.abs(cv2.Sobel(grey, cv2.CV_32F, 1, 0)).mean()
        + np.abs(cv2.Sobel(grey, cv2.CV_32F, 0, 1)).mean()
    )


_UNROTATE = {
    "cw": cv2.ROTATE_90_COUNTERCLOCKWISE,
    "ccw": cv2.ROTATE_90_CLOCKWISE,
    "180": cv2.ROTATE_180,
}


def test_gold_code_really_restores_the_image(tmp_path):
    source = SyntheticCoding()
    seeds = _seeds_per_class(3)
    assert len(seeds) >= 40
    for seed in seeds:
        task = source.make(seed)
        names = set(task.meta["degradations"])
        d = task.meta["degradation"]
        degraded, clean = task.load_images()[0], source.clean_image(task)
        if names == {"none"}:
            assert np.array_equal(degraded, clean)
            continue
        code = parse_action(task.meta["gold_steps"][1]).argument
        out = _run_gold_code(code, degraded, tmp_path / str(seed))
        where = f"{task.id} {sorted(names)}"
        if names == {"crop"}:
            assert np.array_equal(degraded, clean), "crop items show the undegraded image"
            h, w = clean.shape[:2]
            x1, y1, x2, y2 = task.meta["bbox"]
            region = clean[y1 * h // 1000 : y2 * h // 1000, x1 * w // 1000 : x2 * w // 1000]
            expected = cv2.resize(region, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
            assert out.shape == expected.shape, where
            assert mae(out, expected) < 3.0, where  # equal up to the JPEG output
            continue
        assert out.shape == clean.shape, f"{where}: orientation not restored"
        # the degraded image, turned upright, isolates what the photometric fix must undo
        upright = cv2.rotate(degraded, _UNROTATE[d.rotation]) if d.rotation else degraded
        assert mae(out, clean) < mae(upright, clean) + 2.0, where
        if names <= {"rotation90", "rotation180"}:
            assert mae(out, clean) < 2.0, where
        if names & {"dark", "overexposure"}:
            assert mae(upright, clean) > 40, f"{where}: too weak to matter"
            assert abs(out.mean() - clean.mean()) < 3.0, where
            assert mae(out, clean) < 4.0, where
        if "blur" in names:
            sharpness = _edge_energy(clean)
            assert _edge_energy(upright) < 0.8 * sharpness, f"{where}: too weak to matter"
            assert _edge_energy(out) > 0.85 * sharpness, where
            assert mae(out, clean) < mae(upright, clean), where
        if "noise" in names:
            assert mae(out, clean) < 0.45 * mae(upright, clean), where


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
    # the written copy is a proper benchmark: its errors name a missing image too
    os.remove(tmp_path / "bench" / rows[3]["ori_image_path"])
    with pytest.raises(DatasetError) as err:
        load_mat_coding(path)
    assert (err.value.row, err.value.field) == (3, "ori_image_path")


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


# ============================================================================ the scripted expert


class _EchoEnv(AgenticEnv):
    """A minimal tool env: every tool call succeeds with a fixed reply (no real tool)."""

    action_tags = ("problem", "code", "search", "answer")

    def _initial_messages(self, task, images):
        return [{"role": "user", "content": ({"type": "text", "text": task.question},)}]

    def _run_tool(self, call, action):
        return ToolOutcome(f"ran {call.name}", reward_components={"format": 1.0})

    def _answer_components(self, answer, action, f1, em):
        return {"answer": f1}


@pytest.mark.parametrize("split", ["simple", "hard"])
def test_expert_replays_the_gold_trajectory(split):
    env = _EchoEnv(SyntheticCoding(split))
    expert = ScriptedExpert()
    for seed in range(6):
        obs, _ = env.reset(seed=seed)
        done, turns = False, 0
        while not done:
            action = expert(obs, env)
            assert action == env.task.meta["gold_steps"][turns]
            obs, _, terminated, truncated, info = env.step(action)
            turns, done = turns + 1, terminated or truncated
        assert terminated and info["f1"] == 1.0 and info["format_errors"] == 0
        assert turns == len(env.task.meta["gold_plan"])


def test_expert_works_for_any_task_with_gold_steps():
    task = Task(
        "s1",
        "Who?",
        ["Ada"],
        meta={
            "gold_steps": ["<think> look </think>\n<search> q </search>", "<answer> Ada </answer>"]
        },
    )
    env = _EchoEnv(ListTaskSource([task]))
    obs, _ = env.reset(seed=0)
    assert ScriptedExpert().act(env) == task.meta["gold_steps"][0]
    obs, *_ = env.step(ScriptedExpert()(obs, env))
    assert ScriptedExpert()(obs, env) == "<answer> Ada </answer>"
    env.step("<answer> Ada </answer>")
    with pytest.raises(ExpertError, match="2 gold steps"):
        ScriptedExpert().act(env)


def test_expert_refuses_tasks_without_gold_steps(demo):
    (task,) = load_mat_coding(demo, split="simple", check_images=False)[:1]
    env = SimpleNamespace(unwrapped=SimpleNamespace(task=task, messages=()))
    with pytest.raises(ExpertError, match="no gold steps"):
        ScriptedExpert().act(env)
    with pytest.raises(ExpertError, match="reset"):
        ScriptedExpert().act(SimpleNamespace(task=None))


def test_expert_on_a_stepwise_row(tmp_path):
    path = SyntheticCoding().write_stepwise(tmp_path / "rows.json", 2, seed=0)
    for row in load_coding_rows(path):
        env = SimpleNamespace(task=row, messages=())
        action = ScriptedExpert().act(env)
        assert action == row.meta["gt"]
        assert format_reward(action, row.meta["row_type"][len("pre_") :]) == 1.0
