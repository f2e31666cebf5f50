"""The real-model demo (``make demo-real``): its hasty annotator, its F1 gains and intervals,
its one source of settings, and a miniature run of the real SmolLM2-135M-Instruct."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest

from agents.demo.measure import paired_task_gain
from agents.demo.real import (
    CONFIG,
    HastyExpert,
    RealSettings,
    across_seeds,
    finished_seed,
    hasty_turn,
    load_config,
    main,
)
from agents.demo.real.__main__ import SeedProcessDied, _run_side_by_side, train_and_select
from arft_envs.rewards import score_answer
from arft_envs.tasks.search.styles import DatasetStyleSearch


def _answer(turn: str) -> str:
    return turn.split("<answer>")[1].split("</answer>")[0].strip()


def test_the_hasty_annotator_answers_after_one_search_on_a_fixed_share_of_tasks():
    tasks = DatasetStyleSearch("hotpotqa")
    drawn = [tasks.make(seed) for seed in range(300)]
    expert = HastyExpert(0.4)
    hasty = [expert.is_hasty(t) for t in drawn]
    assert 0.32 < np.mean(hasty) < 0.48  # ~0.4 of them
    assert [expert.is_hasty(t) for t in drawn] == hasty  # a task is always annotated alike
    bridge = [t for t in drawn if t.meta["shape"] == "bridge"][:20]
    for task in bridge:
        turn = hasty_turn(task)
        # the bridge entity, which the second gold query is about: never the answer
        assert task.meta["gold_queries"][1].startswith(_answer(turn) + " ")
        assert score_answer(_answer(turn), task.answers)[0] == 0.0
        assert turn.startswith("<think> The search results say: ")


@pytest.mark.parametrize("hasty", [0.0, 1.0])
def test_the_hasty_annotator_plays_gold_or_stops_after_the_first_search(hasty):
    env = gym.make("HotpotQA-v0", k=1, on_format_error="terminate")
    expert = HastyExpert(hasty)
    for seed in range(6):
        obs, info = env.reset(seed=seed)
        done = False
        while not done:
            obs, _, terminated, truncated, info = env.step(expert(obs, env))
            done = terminated or truncated
        if hasty:  # one search, then the bridge entity (or one comparison entity)
            assert info["turns"] == 2 and info["episode_return"] < 4.0
        else:  # the gold trajectory: both hops, the right answer, the best return
            assert info["turns"] == 3 and info["episode_return"] == 4.0
    env.close()


def test_per_task_f1_gain_resamples_tasks_and_needs_the_same_tasks():
    before = {f"t{i}": 0.0 for i in range(20)}
    after = {f"t{i}": 1.0 if i < 15 else 0.0 for i in range(20)}
    gain = paired_task_gain(before, after)
    assert gain["gain"] == pytest.approx(0.75) and gain["tasks"] == 20
    low, high = gain["ci95"]
    assert 0.0 < low < 0.75 < high <= 1.0
    same = paired_task_gain(before, before)
    assert same["gain"] == 0.0 and same["ci95"] == [0.0, 0.0]
    with pytest.raises(ValueError, match="same"):
        paired_task_gain(before, {"other": 1.0})


def test_across_seeds_pools_the_seeds_and_gives_a_t_interval_of_their_means():
    tasks = [f"t{i}" for i in range(10)]
    seeds = [
        {"sft": dict.fromkeys(tasks, 0.0), "grpo": {t: float(i < k) for i, t in enumerate(tasks)}}
        for k in (4, 6, 8)
    ]
    out = across_seeds(seeds)
    assert out["seeds"] == 3 and out["gain"] == pytest.approx(0.6)
    low, high = out["t_ci95"]  # mean 0.6, sd 0.2, t(2) = 4.303: 0.6 ± 0.497
    assert low == pytest.approx(0.6 - 4.303 * 0.2 / 3**0.5, abs=1e-3)
    assert high == pytest.approx(0.6 + 4.303 * 0.2 / 3**0.5, abs=1e-3)
    pooled = out["pooled_ci95"]
    assert 0.0 < pooled[0] < 0.6 < pooled[1] < 1.0
    assert "t_ci95" not in across_seeds(seeds[:1])


def test_the_demo_trains_the_config_file_but_for_its_own_knobs(tmp_path):
    settings = RealSettings(output=str(tmp_path), steps=3)
    values = load_config(CONFIG)
    config = settings.train_config(seed=5)
    own = {"output", "seed", "save_every", "sample_every", "progress_bar", "num_envs", "steps"}
    for key, value in values.items():
        if key not in own and key != "gradient_accumulation_steps":
            got = getattr(config, key)
            assert (list(got) if isinstance(got, tuple) else got) == value, key
    assert config.seed == 5 and config.steps == 3
    assert config.output == str(tmp_path / "seed_5" / "train")
    assert config.model == "smollm2-135m" and config.env == "HotpotQA-v0"


@pytest.mark.parametrize(
    ("argv", "named"),
    [(["--heldout", "0"], "--heldout"), (["--model", "no/such/model.gguf"], "no/such/model.gguf")],
)
def test_a_bad_flag_value_is_one_clear_message(capsys, argv, named):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert named in err and "Traceback" not in err


def test_a_miniature_real_model_demo_writes_its_outputs(tmp_path, capsys):
    """The real SmolLM2-135M-Instruct through every phase, at the smallest budgets."""
    flags = dict(
        output=tmp_path, seeds=0, parallel=1, heldout=1, eval_samples=1, steps=1,
        sft_steps=1, sft_episodes=2, sft_batch_size=2, group_size=2, groups_per_step=1,
        validation=1,
    )  # fmt: skip
    argv = [f for key, value in flags.items() for f in ("--" + key.replace("_", "-"), str(value))]
    assert main(argv) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["env"] == "HotpotQA-v0" and summary["settings"]["model"] == "smollm2-135m"
    (seed,) = summary["seeds"]
    assert seed["seed"] == 0 and list(seed["heldout"]) == ["untrained", "sft", "grpo"]
    for phase in seed["heldout"].values():
        for mode in ("sampled", "greedy"):
            assert set(phase[mode]) == {
                "f1",
                "em",
                "well_formed",
                "two_searches",
                "two_search_f1",
                "mean_return",
            }
            assert 0.0 <= phase[mode]["f1"] <= 1.0
            # the F1 of the episodes that searched twice: None exactly when none did
            assert (phase[mode]["two_search_f1"] is None) == (phase[mode]["two_searches"] == 0)
    assert seed["episodes_per_eval"] == {"sampled": 1, "greedy": 1}
    assert seed["grpo_minus_sft"]["greedy"]["tasks"] == 1
    assert len(seed["train_rewards"]) == 1
    # the one validation question scored the warm start and step 1; one of them was kept
    assert [c["step"] for c in seed["validation"]] == [0, 1] and seed["kept_step"] in (0, 1)
    assert 0 < seed["trainable_weights"] < 134_600_000
    assert summary["grpo_minus_sft"]["sampled"]["seeds"] == 1
    assert summary["seconds"] > 0 and summary["peak_rss_mb"] > 0
    assert (tmp_path / "reward_curve.png").read_bytes()[:4] == b"\x89PNG"
    page = (tmp_path / "seed_0" / "heldout.html").read_text()
    assert "HotpotQA-v0" in page
    assert (tmp_path / "seed_0" / "train" / "metrics.jsonl").is_file()
    assert (tmp_path / "seed_0" / "train" / "final" / "config.json").is_file()
    assert not (tmp_path / "seed_0" / "train" / "checkpoints").exists()
    defaults = RealSettings()
    assert defaults.steps > 1 and defaults.seeds == (0, 1, 2)  # the real demo is bigger
    # a rerun with the same settings reuses the finished seed (no model is loaded) ...
    assert main(argv) == 0
    assert "seed 0] finished by an earlier run" in capsys.readouterr().out
    assert json.loads((tmp_path / "summary.json").read_text())["seeds"] == summary["seeds"]
    # ... and one with other settings does not
    other = RealSettings(**{**flags, "output": str(tmp_path), "seeds": (0,), "steps": 2})
    assert finished_seed(other, 0) is None
    assert finished_seed(RealSettings(**{**flags, "output": str(tmp_path), "seeds": (0,)}), 0)


def test_a_seed_process_that_ends_without_its_result_fails_the_run_and_names_it(tmp_path):
    # each seed's process fails at once (no such model): the run stops, it does not wait
    settings = RealSettings(output=str(tmp_path), seeds=(0, 1), model="no/such/model.gguf")
    with pytest.raises(SeedProcessDied, match=r"seed [01]'s process ended with exit code 1"):
        _run_side_by_side(settings, [0, 1], workers=2)


class _StepTrainer:
    """A stand-in trainer whose one weight is its step count (a GRPO step: +1), so the model
    left behind names the step it holds."""

    def __init__(self):
        import torch

        self.policy = type("P", (), {})()
        self.policy.model = torch.nn.Linear(1, 1, bias=False)
        torch.nn.init.zeros_(self.policy.model.weight)
        self.step, self.runs = 0, []

    def run(self, until=None):
        self.runs.append(until)
        end = 10 if until is None else until
        with __import__("torch").no_grad():
            self.policy.model.weight += end - self.step
        self.step = end


@pytest.mark.parametrize(
    ("scores", "kept"),
    [
        ({0: 0.5, 4: 0.6, 8: 0.3, 10: 0.2}, 4),  # a collapse after step 4: step 4's model
        ({0: 0.5, 4: 0.1, 8: 0.2, 10: 0.4}, 0),  # RL never beat the warm start: the warm start
        ({0: 0.1, 4: 0.6, 8: 0.6, 10: 0.6}, 10),  # a tie: the later step
    ],
)
def test_the_validation_questions_choose_the_step_a_seed_keeps(tmp_path, scores, kept):
    settings = RealSettings(output=str(tmp_path), steps=10, validate_every=4, validation=8)
    assert settings.checked_steps() == [0, 4, 8, 10]
    trainer = _StepTrainer()

    def score(label):  # the model's weight is the step it holds: score that step
        return scores[int(trainer.policy.model.weight.item())]

    out = train_and_select(trainer, settings, score, say=lambda text: None)
    assert trainer.runs == [4, 8, 10]
    assert out["kept_step"] == kept and trainer.policy.model.weight.item() == kept
    assert out["validation"] == [{"step": s, "f1": v} for s, v in scores.items()]
    # without validation questions: straight to the last step, which is kept
    plain = _StepTrainer()
    none = RealSettings(output=str(tmp_path), steps=10, validation=0)
    out = train_and_select(plain, none, score, say=lambda text: None)
    assert plain.runs == [None] and out == {"validation": [], "kept_step": 10}
