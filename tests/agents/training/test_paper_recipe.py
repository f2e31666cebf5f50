"""The paper's recipe: the two configs say what the authors trained with, the coding
trainer's ground-truth injection on stepwise rows made from the real MAT-Coding items in
../shared/data (the gold text scored, the sampled tokens kept), and `arft train --config
configs/paper_*.yaml` runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from accelerate_train import fresh, small_config

from agents.cli import train as train_cli
from agents.training import ConfigError, TrainConfig, Trainer
from agents.training.paper import INJECTED_FLAG, injected_members

REPO = Path(__file__).resolve().parents[3]
CONFIGS = REPO / "configs"


def test_injected_members_are_seeded_and_in_the_group():
    a = injected_members(5, 100, 8)
    assert a == injected_members(5, 100, 8) and a != injected_members(6, 100, 8)
    assert set(a) <= set(range(8)) and len(set(a)) == 8  # every index drawn over 100 groups


@pytest.mark.parametrize("name, inject", [("paper_coding", True), ("paper_search", False)])
def test_the_configs_are_the_authors_settings(name, inject):
    values = train_cli.load_config_file(CONFIGS / f"{name}.yaml")
    cfg = TrainConfig.from_dict(values)
    assert cfg.algo == "grpo"
    assert cfg.env_kwargs == {"mode": "stepwise", "reward_mode": "paper"}
    assert (cfg.group_size, cfg.beta, cfg.temperature, cfg.top_p) == (8, 0.04, 1.0, 1.0)
    assert (cfg.inner_epochs, cfg.num_minibatches) == (1, 1)  # one update per batch
    assert (cfg.learning_rate, cfg.lr_schedule, cfg.warmup_steps) == (1e-6, "linear", 0)
    assert (cfg.max_new_tokens, cfg.max_turns, cfg.credit) == (256, 1, "episode")
    assert (cfg.aggregation, cfg.scale_advantages) == ("seq-mean-token-mean", True)
    assert cfg.inject_gold is inject


def test_inject_gold_needs_stepwise_rows():
    with pytest.raises(ConfigError, match="needs env_kwargs mode: stepwise"):
        TrainConfig.from_dict({"inject_gold": True})


def _rows_from_the_real_items(shared_data: Path, out: Path) -> Path:
    """Stepwise rows (rft_agent_code_1_2k.json format) of the six real MAT-Coding items: a
    pre_problem row per item and a pre_answer row per one-line answer, on the real images
    present (the json names some absent ones: the crop items' originals are used there)."""
    demo = shared_data / "mat_coding_demo"
    items = json.loads((demo / "coding_case.json").read_text(encoding="utf-8"))
    rows = []
    for item in items:
        name = item["ori_image_path" if item["type"] == ["crop"] else "processed_image_path"]
        image = demo / name
        assert image.is_file(), image
        problems = ", ".join(f"'{p}'" for p in item["type"])
        query = f"<query> {item['question']} </query>"
        step = f"<problem> {{{problems}}} </problem>"
        rows.append({
            "id": f"{item['id']}-problem", "type": "pre_problem", "image_path": str(image),
            "problem": query, "solution": step,
            "gt": f"<think> I look at what is wrong with the image. </think>\n{step}",
        })  # fmt: skip
        answer = item["answers"][0]
        if "\n" not in answer:
            rows.append({
                "id": f"{item['id']}-answer", "type": "pre_answer", "image_path": str(image),
                "problem": query, "context": f"<think> ... </think>\n{step}",
                "solution": f"<answer> {answer} </answer>",
                "gt": f"<think> The image reads clearly now. </think>\n<answer> {answer} </answer>",
            })  # fmt: skip
    path = out / "rft_agent_code_rows.json"
    path.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    return path


def _config(output, rows: Path, inject: bool):
    return small_config(
        output,
        1,
        env="MATCoding-v0",
        env_kwargs={"data": str(rows), "mode": "stepwise", "reward_mode": "paper"},
        inject_gold=inject,
        group_size=4,
        groups_per_step=2,
        max_new_tokens=8,
        max_image_tokens=64,
    )


def test_gold_injection_on_the_real_rows(tiny_policy, tmp_path, shared_data):
    rows = _rows_from_the_real_items(shared_data, tmp_path)
    batches = {}
    for inject in (True, False):
        trainer = Trainer(_config(tmp_path / str(inject), rows, inject), policy=fresh(tiny_policy))
        trainer.setup()
        trainer._prepare_rl()
        batches[inject] = (trainer.rollout(1), trainer)
    batch, trainer = batches[True]
    plain, _ = batches[False]
    members = injected_members(trainer.rollout_config(1).seed, 2, 4)
    gts = {r["id"]: r["gt"] for r in json.loads(rows.read_text(encoding="utf-8"))}
    policy = trainer.policy
    for g in range(2):
        group = batch[4 * g : 4 * g + 4]
        injected = [m for m, t in enumerate(group) if INJECTED_FLAG in t.flags]
        assert injected == [members[g]]
        t = group[members[g]]
        # its text is the row's gt, scored by the env as the authors' reward functions do
        assert t.actions == [gts[t.task_id]]
        assert t.reward_components == [{"format": 1.0, "accuracy": 1.0}]
        assert t.rewards == [2.0]
        # ... while its tokens and log-probs are those the model sampled
        same = plain[4 * g + members[g]]
        assert t.input_ids == same.input_ids and t.old_logprobs == same.old_logprobs
        assert t.info["sampled_action"] == same.actions[0] != t.actions[0]
        start, end = t.turn_spans[0]
        assert policy.decode(t.input_ids[start:end]) != gts[t.task_id]
        for m, other in enumerate(group):
            if m != members[g]:  # the others are untouched
                assert other.rewards == plain[4 * g + m].rewards
                assert other.actions == plain[4 * g + m].actions
        # the advantage: (R - mean) / (std + 1e-4) with the injected reward in the group
        returns = torch.tensor([x.episode_return for x in group])
        expected = (returns - returns.mean()) / (returns.std() + 1e-4)
        adv = trainer.advantages(batch)[4 * g : 4 * g + 4]
        assert adv.tolist() == pytest.approx(expected.tolist(), rel=1e-5)
        assert adv[members[g]] == adv.max()  # 2.0 is the most a step can earn
    for _, tr in batches.values():
        tr.close()


@pytest.mark.parametrize("name", ["paper_coding", "paper_search"])
def test_arft_train_runs_the_paper_configs(tmp_path, name):
    out = tmp_path / "run"
    argv = [
        "--config", str(CONFIGS / f"{name}.yaml"), "--model", "tiny", "--steps", "2",
        "--output", str(out), "--group-size", "2", "--groups-per-step", "1",
        "--gradient-accumulation-steps", "1", "--max-new-tokens", "8",
        "--max-image-tokens", "64", "--no-progress-bar", "--report-to", "none",
        "--no-gradient-checkpointing",
    ]  # fmt: skip
    assert train_cli.main(argv) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    saved = json.loads((out / "config.json").read_text())
    assert saved["env_kwargs"] == {"mode": "stepwise", "reward_mode": "paper"}
    assert all(r["turns"] == 1.0 for r in rows)  # one step of a gold trajectory per prompt
    if name == "paper_coding":
        assert [r["inject/episodes"] for r in rows] == [1.0, 1.0]  # one per group
    else:
        assert all("inject/episodes" not in r for r in rows)
    assert (out / "final").is_dir()
