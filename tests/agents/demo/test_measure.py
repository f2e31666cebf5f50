"""The demo's repair and tool-health measures: ``repaired`` from each code turn's
``info["repair"]`` (kept per turn on the trajectory), tool calls counted by status, and both
in the held-out table."""

from __future__ import annotations

import dataclasses

import gymnasium as gym

from agents.demo.measure import Evaluation, episode_success, repaired, tool_status_counts
from agents.demo.report import print_summary
from agents.rollout.trajectory import load_trajectories, save_trajectories
from agents.training.warm_start import expert_episode
from arft_envs.tasks.coding.easy import ENV_ID

_CODE = (
    "<think> fix it </think>\n<code>\n```python\nimport cv2\n"
    "img = cv2.imread('path_to_input_image.jpg')\n{body}"
    "cv2.imwrite('path_to_output_image.jpg', out)\n```\n</code>"
)


def _scripted(policy, env, seed, code_bodies):
    """An episode that diagnoses right, runs each of ``code_bodies`` as a code turn, answers."""
    turns = [None, *[_CODE.format(body=b) for b in code_bodies], None]

    def expert(obs, e):
        k = sum(m["role"] == "assistant" for m in e.unwrapped.messages)
        gold = e.unwrapped.task.meta["gold_steps"]
        if k == 0:
            return gold[0]
        return turns[k] if k < len(turns) - 1 else gold[-1]

    return expert_episode(policy, env, seed=seed, expert=expert)


def test_repaired_needs_a_code_turn_that_restored_the_image(tiny_policy, tmp_path):
    env = gym.make(ENV_ID, degradations=["dark"], holdout=1, max_turns=5)
    gold = expert_episode(tiny_policy, env, seed=1)
    # the code runs and writes an image, but the image is as dark as before
    noop = _scripted(tiny_policy, env, 1, ["out = img\n"])
    crash = _scripted(tiny_policy, env, 1, ["out = img[None] + undefined_name\n"])
    # a failed first try, then the gold repair
    retry = _scripted(
        tiny_policy,
        env,
        1,
        ["out = undefined_name\n", "out = cv2.convertScaleAbs(img, alpha=4.0)\n"],
    )
    env.close()
    assert [len(t.turn_infos) for t in (gold, noop, crash, retry)] == [3, 3, 3, 4]
    assert gold.turn_infos[1]["repair"]["improved"] is True
    assert "repair" not in gold.turn_infos[0] and "repair" not in gold.turn_infos[2]
    assert gold.turn_infos[2] == {**gold.turn_infos[2], "answer": gold.info["answer"]}

    flags = {name: episode_success(t) for name, t in
             (("gold", gold), ("noop", noop), ("crash", crash), ("retry", retry))}  # fmt: skip
    assert flags["gold"]["repaired"] is True and flags["gold"]["success"] is True
    assert flags["noop"]["code_ran"] is True and flags["noop"]["repaired"] is False
    assert noop.turn_infos[1]["repair"]["improved"] is False
    assert flags["crash"]["code_ran"] is False and flags["crash"]["repaired"] is False
    assert flags["retry"]["repaired"] is True
    # nothing to repair: True; no clean image to measure against: None
    nothing = dataclasses.replace(noop, info={**noop.info, "degradations": ["none"]})
    assert episode_success(nothing)["repaired"] is True
    unmeasured = [{**i, "repair": None} if "repair" in i else i for i in noop.turn_infos]
    assert repaired(dataclasses.replace(noop, turn_infos=unmeasured)) is None

    assert tool_status_counts([gold, noop]) == {"ok": 4}
    counts = tool_status_counts([gold, crash, retry])
    assert counts["ok"] == 2 + 1 + 2 and sum(counts.values()) == 2 + 2 + 3
    assert set(counts) - {"ok"} and "ok" == next(iter(counts))  # most frequent first

    from agents.demo.__main__ import _verdict

    passed, why = _verdict(flags["noop"], noop)  # the page says what the code did
    assert passed and why.endswith("the code did not restore the image (SSIM 0.37 → 0.37)")
    assert "restored the image (SSIM 0.37 → 1.00)" in _verdict(flags["gold"], gold)[1]
    assert "SSIM" not in _verdict(flags["crash"], crash)[1]
    assert "reading" not in _verdict(flags["gold"], gold)[1]  # the gold answer reads right
    misread = dataclasses.replace(gold, info={**gold.info, "answer": "E", "f1": 0.0})
    passed, why = _verdict(flags["gold"], misread)
    assert passed and why.endswith(
        f"read 'E', not {gold.info['golds'][0]!r} (reading is not part of success)"
    )

    save_trajectories([retry], tmp_path / "t.jsonl")  # per-turn infos survive the file
    assert load_trajectories(tmp_path / "t.jsonl")[0].turn_infos == retry.turn_infos


def test_the_held_out_table_has_a_repaired_column_and_tool_counts(capsys):
    row = Evaluation(0.5, 0.75, 1.0, 1.0, 0.1, 4.0, 4, repaired=0.25,
                     tool_status={"ok": 7, "error": 1}).row()  # fmt: skip
    assert row["repaired"] == 0.25 and row["tool_status"] == {"ok": 7, "error": 1}
    unmeasured = Evaluation(0, 0, 0, 0, 0, 0, 4).row()
    summary = {
        "settings": {"temperature": 0.7},
        "episodes_per_eval": {"sampled": 4, "greedy": 4},
        "heldout": {"sft": {"sampled": row, "greedy": unmeasured}},
        "seconds": 1.0,
    }
    print_summary(summary)
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if "success" in line)
    assert header.split() == ["success", "diagnosis", "well_formed", "code_ran", "repaired",
                              "answer_f1", "mean_return"]  # fmt: skip
    assert "0.250" in out and "n/a" in out
    lines = out.splitlines()
    calls = [line.split() for line in lines[lines.index(header) + 2 :][:2]]
    assert calls == [["tool", "calls", "ok", "error"], ["sft", "7", "1"]]  # sampled
    assert "tool calls: none in any phase" in out  # greedy


def test_the_page_summary_is_over_every_episode_of_the_evaluation():
    from agents.demo.report import page_summary

    sampled = Evaluation(0.625, 0.8125, 0.75, 0.875, 0.1, 4.5, 16, repaired=0.5,
                         tool_status={"ok": 30, "error": 2})  # fmt: skip
    greedy = Evaluation(0.75, 0, 0, 0, 0, 0, 4)
    rows = dict(page_summary(sampled, greedy, 4, [(True, ""), (False, ""), (True, "")]))
    assert rows["episodes (sampled)"] == "16"
    assert rows["success"] == "0.625 (10 of 16)"
    assert rows["image measurably repaired"] == "0.500 (8 of 16)"
    assert rows["tool calls by status"] == "30 ok, 2 error"
    assert rows["success, greedy"] == "0.750 of 4"
    assert rows["shown below"] == "4 (one per task), 2 pass"
    assert dict(page_summary(Evaluation(0, 0, 0, 0, 0, 0, 4)))["image measurably repaired"] == "n/a"


def test_an_evaluation_draws_a_bar_of_finished_episodes(tiny_policy, capsys):
    from agents.demo.measure import evaluate_success
    from arft_envs.tasks.coding.easy import EasyCoding

    tasks = EasyCoding(["dark"], holdout=2)
    result = evaluate_success(
        tiny_policy, tasks, tasks.holdout_ids, env_kwargs={"degradations": ["dark"],
        "holdout": 2}, samples=2, max_new_tokens=8, max_turns=1, progress=True,
        desc="held-out sft, sampled",
    )  # fmt: skip
    assert result.episodes == 4
    err = capsys.readouterr().err
    assert "held-out sft, sampled" in err and "4/4" in err
    assert "1/4" in err or "2/4" in err  # drawn as episodes finish, not only at the end
