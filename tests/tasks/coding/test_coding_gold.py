"""MAT-Coding gold trajectories: strict-format steps, code that really restores the image, and
the scripted expert that replays them."""

from __future__ import annotations

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
from arft_envs.tasks.base import ListTaskSource, Task
from arft_envs.tasks.coding.official import SPLIT_CLASSES, load_coding_rows, load_mat_coding
from arft_envs.tasks.coding.synthetic import SyntheticCoding

ALL_CLASSES = {c for classes in SPLIT_CLASSES.values() for c in classes}


def mae(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float32) - b.astype(np.float32)).mean())


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
