"""The training loop running GRPO: the loss against a hand computation, every parameter moving,
learning on a toy task, checkpoints and logs. (The config is in test_train_config.py;
kill-and-resume and two-process DDP are in test_trainer_distributed.py.)"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from accelerate_train import fresh, small_config, weights_digest

from agents.training import ConfigError, TrainConfig, Trainer, lr_factor, make_accelerator
from agents.training.batch import token_batch

# ---------------------------------------------------------------------- schedule


def test_lr_schedules():
    assert [lr_factor(i, 4, 0, "linear") for i in range(4)] == [1.0, 0.75, 0.5, 0.25]
    assert [lr_factor(i, 4, 2, "linear") for i in range(4)] == [0.5, 1.0, 1.0, 0.5]
    assert lr_factor(3, 4, 0, "constant") == 1.0
    assert lr_factor(2, 4, 0, "cosine") == pytest.approx(0.5)


# ---------------------------------------------------------------------- the maths of a step


@pytest.mark.parametrize(
    "aggregation, credit",
    [("token-mean", "episode"), ("seq-mean-token-mean", "episode"), ("token-mean", "turn")],
)
def test_advantages_loss_and_gradient_match_a_hand_computation(
    tiny_policy, tmp_path, aggregation, credit
):
    cfg = small_config(
        tmp_path,
        1,
        beta=0.1,
        aggregation=aggregation,
        credit=credit,
        gradient_accumulation_steps=2,
        max_grad_norm=0.0,
        mixed_precision="no",  # the hand computation below is float32
    )
    trainer = Trainer(cfg, policy=fresh(tiny_policy))
    trainer.setup()
    trainer._prepare_rl()
    policy = trainer.policy
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # a reference that differs, so that the KL term is not zero
        for p in trainer.reference.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=generator))
    batch = trainer.rollout(1)

    # advantages: (R - mean_group) / (unbiased std_group + 1e-4), groups of 4 in order
    returns = np.array([t.episode_return for t in batch])
    expected = []
    for g in range(2):
        group = returns[4 * g : 4 * g + 4]
        expected += list((group - group.mean()) / (group.std(ddof=1) + 1e-4))
    advantages = trainer.advantages(batch)
    if credit == "turn":  # one turn per episode here: each sampled token carries A, others 0
        for t, row, a in zip(batch, advantages, expected, strict=True):
            ((start, end),) = t.turn_spans
            assert row[start:end].tolist() == pytest.approx([a] * (end - start), abs=1e-5)
            assert row[:start].abs().sum() == 0 and row[end:].abs().sum() == 0
        advantages = torch.tensor(expected, dtype=torch.float32)  # for the hand loss below
        per_episode = advantages
        advantages = trainer.advantages(batch)
    else:
        assert advantages.tolist() == pytest.approx(expected, rel=1e-5, abs=1e-6)
        per_episode = advantages

    # the loss on the whole batch at once: ratio exp(logp - sg(logp)) (= 1) times A, plus β·k3
    model = policy.model
    ids, mask = token_batch(policy, batch)
    logp, _ = policy.forward_logprobs(ids, mask=mask)
    with torch.no_grad():
        ref, _ = policy.forward_logprobs(ids, mask=mask, model=trainer.reference)
    delta = ref - logp
    per_token = -torch.exp(logp - logp.detach()) * per_episode[:, None] + 0.1 * (
        torch.exp(delta) - delta - 1
    )
    m = mask.float()
    if aggregation == "token-mean":
        hand = (per_token * m).sum() / m.sum()
    else:
        hand = ((per_token * m).sum(1) / m.sum(1)).mean()
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    grads = torch.autograd.grad(hand, [dict(model.named_parameters())[n] for n in names])
    model.zero_grad(set_to_none=True)

    seen = {}
    original_step = trainer.optimizer.step

    def record_then_step(*args, **kwargs):
        seen.update({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
        return original_step(*args, **kwargs)

    trainer.optimizer.step = record_then_step
    ref_logp, old = trainer.reference_logprobs(batch)
    stats = trainer.update(batch, advantages, ref_logp, old, step=1)
    assert stats["loss"] == pytest.approx(hand.item(), rel=1e-4, abs=1e-6)
    assert stats["kl"] > 0
    assert stats["ratio_mean"] == pytest.approx(1.0)
    for name, grad in zip(names, grads, strict=True):
        torch.testing.assert_close(seen[name], grad, rtol=1e-3, atol=1e-7, msg=name)
    trainer.close()


def test_turn_credit_gives_each_turn_its_own_advantage(tiny_policy, tmp_path):
    cfg = small_config(tmp_path, 1, env="ToyText-v0", env_kwargs={"max_turns": 3}, max_turns=3)
    trainer = Trainer(cfg, policy=fresh(tiny_policy))
    trainer.setup()
    trainer._prepare_rl()
    batch = trainer.rollout(1)
    for i, t in enumerate(batch):  # rewards by hand: turn 0 varies, turn 1 is equal, turn 2 not
        t.rewards = [float(i % 4), 1.0, float(i % 2)][: len(t.turn_spans)]
    trainer.config.credit = "turn"
    rows = trainer.advantages(batch)
    for g in range(2):
        members = batch[4 * g : 4 * g + 4]
        for k in range(3):
            values = np.array([t.rewards[k] for t in members if len(t.rewards) > k])
            hand = (values - values.mean()) / (values.std(ddof=1) + 1e-4)
            reached = [(t, rows[batch.index(t)]) for t in members if len(t.rewards) > k]
            for (t, row), a in zip(reached, hand, strict=True):
                start, end = t.turn_spans[k]
                assert row[start:end].tolist() == pytest.approx([a] * (end - start), abs=1e-5)
    for t, row in zip(batch, rows, strict=True):  # prompt and tool tokens carry none
        outside = torch.ones(len(t.input_ids), dtype=torch.bool)
        for start, end in t.turn_spans:
            outside[start:end] = False
        assert row[outside].abs().sum() == 0
    assert any(row.abs().sum() > 0 for row in rows)
    stats = trainer.update(batch, rows, *trainer.reference_logprobs(batch), step=1)
    assert math.isfinite(stats["loss"])
    trainer.close()


# ---------------------------------------------------------------------- every parameter moves


def _trainable(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def test_every_parameter_changes_after_one_step_full_finetune(tiny_policy, tmp_path):
    cfg = small_config(tmp_path, 1, save_every=0)
    trainer = Trainer(cfg, policy=fresh(tiny_policy))
    trainer.setup()
    before = _trainable(trainer.policy.model)
    trainer.run()
    after = _trainable(trainer.policy.model)
    assert len(before) > 50  # language model and vision tower
    assert any(".visual." in n or n.startswith("model.visual") for n in before)
    unchanged = [n for n in before if torch.equal(before[n], after[n])]
    assert not unchanged, f"parameters that did not move: {unchanged}"
    assert trainer.last_metrics["grad_norm"] > 0
    trainer.close()


def test_every_lora_parameter_changes_and_the_base_does_not(tiny_policy, tmp_path):
    # LoRA's B starts at zero, so A gets no gradient in the first update: two updates.
    cfg = small_config(tmp_path, 1, lora=True, lora_r=4, inner_epochs=2, save_every=0)
    trainer = Trainer(cfg, policy=fresh(tiny_policy))
    trainer.setup()
    trainer._prepare_rl()  # adds the adapters
    model = trainer.policy.model
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer.run()
    after = dict(model.named_parameters())
    trainable = {n for n, p in after.items() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    unchanged = [n for n in trainable if torch.equal(after[n], before[n])]
    assert not unchanged, f"adapters that did not move: {unchanged}"
    moved = [n for n in after if n not in trainable and not torch.equal(after[n], before[n])]
    assert not moved, f"frozen weights that moved: {moved}"
    # the reference is the base with the adapters off: KL is measurable after the updates
    assert trainer.last_metrics["kl"] > 0
    trainer.close()


# ---------------------------------------------------------------------- learning


def test_reward_rises_on_a_learnable_toy_env(tiny_policy, tmp_path):
    """Write the digit the prompt names (3 or 7): a random model does it 30% of the time."""
    cfg = small_config(
        tmp_path,
        30,
        env="ArftTestDigit-v0",
        env_kwargs={"digits": "37"},
        group_size=8,
        groups_per_step=4,
        max_new_tokens=3,
        learning_rate=1e-2,
        lr_schedule="constant",
        beta=0.0,
        save_every=0,
    )
    trainer = Trainer(cfg, policy=fresh(tiny_policy))
    trainer.train()
    rewards = [
        json.loads(line)["reward_mean"]
        for line in (tmp_path / "metrics.jsonl").read_text().splitlines()
    ]
    first, last = np.mean(rewards[:5]), np.mean(rewards[-5:])
    assert last >= 0.8 and last >= first + 0.3, rewards


# ---------------------------------------------------------------------- runs on disk


def test_run_folder_logs_samples_checkpoints(tiny_policy, tmp_path):
    cfg = small_config(
        tmp_path, 2, save_every=1, keep_checkpoints=1, sample_every=2, report_to=("tensorboard",)
    )
    trainer = Trainer(cfg, policy=fresh(tiny_policy))
    trainer.train()
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [1, 2]
    for key in (
        "reward_mean", "reward_std", "reward/score", "f1", "loss", "kl", "clip_fraction",
        "entropy", "grad_norm", "lr", "tokens/model", "time/generation", "time/tools",
        "time/forward_backward",
    ):  # fmt: skip
        assert key in lines[0] and math.isfinite(lines[0][key]), key
    assert lines[0]["lr"] == pytest.approx(1e-3) and lines[1]["lr"] == pytest.approx(5e-4)
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["step_000002"]
    checkpoint = tmp_path / "checkpoints" / "step_000002"
    for name in ("model.safetensors", "optimizer.bin", "scheduler.bin", "random_states_0.pkl"):
        assert (checkpoint / name).is_file(), name
    assert json.loads((checkpoint / "trainer_state.json").read_text())["step"] == 2
    page = (tmp_path / "samples" / "step_000002.html").read_text()
    assert page.count("<div class='ep ") == cfg.sample_episodes and "data:image/png" in page
    assert list((tmp_path / "tensorboard" / "grpo").glob("events.out.tfevents.*"))
    assert (tmp_path / "final" / "model.safetensors").is_file()


def test_resume_refuses_other_settings_and_fresh_runs_refuse_old_folders(tiny_policy, tmp_path):
    Trainer(small_config(tmp_path, 1), policy=fresh(tiny_policy)).train()
    with pytest.raises(ConfigError, match="pass --resume to continue"):
        Trainer(small_config(tmp_path, 2), policy=fresh(tiny_policy)).setup()
    with pytest.raises(ConfigError, match=r"beta: 0.04 -> 0.0"):
        Trainer(small_config(tmp_path, 2, beta=0.0), resume=True).setup()


def test_lora_checkpoint_holds_only_adapters_and_resumes(tiny_policy, tmp_path):
    cfg = small_config(tmp_path, 1, lora=True, lora_r=4)
    first = Trainer(cfg, policy=fresh(tiny_policy))
    first.train()
    digest = weights_digest(first.policy.model)
    from safetensors.torch import load_file

    saved = load_file(str(tmp_path / "checkpoints" / "step_000001" / "model.safetensors"))
    assert saved and all("lora_" in k for k in saved)
    second = Trainer(small_config(tmp_path, 1, lora=True, lora_r=4), resume=True)
    second.setup()
    second._prepare_rl()
    assert second.step == 1
    assert weights_digest(second.policy.model) == digest
    second.close()


@pytest.mark.parametrize("var", ["ACCELERATE_USE_FSDP", "ACCELERATE_USE_DEEPSPEED"])
def test_sharding_without_a_gpu_is_refused_rather_than_run_as_ddp(monkeypatch, var):
    # What `accelerate launch --config_file configs/accelerate_fsdp.yaml` sets, on a CPU box.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv(var, "true")
    with pytest.raises(RuntimeError, match="no GPU is visible.*--multi_gpu"):
        make_accelerator(TrainConfig())


def test_a_bare_train_config_runs_its_algorithm_with_the_sections_defaults(tmp_path):
    from agents.algorithms import GRPO, GRPOConfig

    base = TrainConfig(output=str(tmp_path), steps=3, report_to=("none",), progress_bar=False)
    trainer = Trainer(base)
    assert type(trainer.config) is GRPOConfig and isinstance(trainer.algorithm, GRPO)
    assert trainer.config.steps == 3 and trainer.config.beta == GRPOConfig().beta
    assert trainer.algorithm.config is trainer.config
