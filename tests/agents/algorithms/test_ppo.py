"""PPO: GAE per token and per turn, the clipped value loss, whitening and explained variance
against hand-computed values; the critic; learning; the value model learning a learnable
value; checkpoints, kill-and-resume and two DDP processes with the critic."""

import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from accelerate_train import launch, script_env
from learning import assert_learns, train

from agents.algorithms.ppo import (
    ValueModel,
    discounted_returns,
    explained_variance,
    gae,
    masked_whiten,
    turn_gae,
    value_loss,
)


def test_gae_by_hand():
    rewards = torch.tensor([[0.0, 0.0, 1.0, 0.0]])
    values = torch.tensor([[0.5, 0.6, 0.7, 9.0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    adv, ret = gae(rewards, values, mask, gamma=0.9, lam=0.8)
    d2 = 1.0 - 0.7  # last valid step: next value 0
    d1 = 0.0 + 0.9 * 0.7 - 0.6
    d0 = 0.0 + 0.9 * 0.6 - 0.5
    a2 = d2
    a1 = d1 + 0.72 * a2
    a0 = d0 + 0.72 * a1
    assert adv.tolist()[0] == pytest.approx([a0, a1, a2, 0.0])
    assert ret.tolist()[0][:3] == pytest.approx([a0 + 0.5, a1 + 0.6, a2 + 0.7])


def test_value_loss_clipping():
    values = torch.tensor([[2.0]])
    old = torch.tensor([[1.0]])
    returns = torch.tensor([[1.0]])
    # unclipped (2-1)^2 = 1; clipped value 1.2 -> 0.04; max = 1 -> 0.5
    assert value_loss(values, old, returns, torch.ones(1, 1), clip=0.2).item() == pytest.approx(0.5)
    returns = torch.tensor([[3.0]])
    # unclipped 1; clipped (1.2-3)^2 = 3.24 -> max 3.24 -> 1.62
    assert value_loss(values, old, returns, torch.ones(1, 1), clip=0.2).item() == pytest.approx(
        1.62
    )


# ---------------------------------------------------------------------- more maths


def test_turn_level_gae_over_turns_by_hand():
    # one episode of two turns: rewards 0 then 1, values 0.5 and 0.8, γ = 1, λ = 0.5
    adv, ret = turn_gae(torch.tensor([[0.0, 1.0]]), torch.tensor([[0.5, 0.8]]),
                        torch.ones(1, 2), gamma=1.0, lam=0.5)  # fmt: skip
    a1 = 1.0 - 0.8  # last turn: δ = r - V
    a0 = (0.0 + 0.8 - 0.5) + 0.5 * a1
    assert adv.tolist()[0] == pytest.approx([a0, a1])
    assert ret.tolist()[0] == pytest.approx([a0 + 0.5, a1 + 0.8])


def test_gae_passes_through_tool_tokens_and_discounted_returns_are_gae_without_values():
    rewards = torch.tensor([[0.0, 5.0, 1.0]])  # the middle step is a tool token (masked)
    values = torch.tensor([[0.5, 9.0, 0.25]])
    mask = torch.tensor([[1, 0, 1]])
    adv, _ = gae(rewards, values, mask, gamma=1.0, lam=1.0)
    assert adv.tolist()[0] == pytest.approx([1.0 - 0.5, 0.0, 1.0 - 0.25])
    assert discounted_returns(rewards, mask, 0.5).tolist()[0] == pytest.approx([0.5, 0.0, 1.0])


def test_whitening_and_explained_variance_by_hand():
    x = torch.tensor([[1.0, 3.0, 100.0]])
    mask = torch.tensor([[1, 1, 0]])
    assert masked_whiten(x, mask).tolist()[0] == pytest.approx([-1.0, 1.0, 0.0], abs=1e-6)
    returns = torch.tensor([[0.0, 2.0, 4.0, 7.0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    # residuals (0, 1, -1): var 2/3; var of returns 8/3 -> 1 - 1/4
    values = torch.tensor([[0.0, 1.0, 5.0, 0.0]])
    assert explained_variance(values, returns, mask) == pytest.approx(0.75)
    assert explained_variance(returns, returns, mask) == pytest.approx(1.0)
    assert math.isnan(explained_variance(values, torch.ones(1, 4), mask))


def test_the_critic_starts_at_zero_and_values_the_state_before_each_token(tiny_policy):
    from agents.training.batch import token_batch

    critic = ValueModel.from_policy(tiny_policy.model)
    assert all(p.requires_grad for p in critic.parameters())
    assert critic.backbone is not tiny_policy.model.base_model  # a copy
    t = _trajectories(tiny_policy, 2)
    batch, _ = token_batch(tiny_policy, t)
    assert critic(**batch).abs().sum() == 0  # zero head
    torch.nn.init.ones_(critic.head.weight)
    values = critic(**batch)
    hidden = critic.backbone(**batch, use_cache=False).last_hidden_state.sum(-1)
    assert values[:, 0].abs().sum() == 0
    torch.testing.assert_close(values[:, 1:], hidden[:, :-1] + critic.head.bias)


def _trajectories(policy, n):
    from agents.rollout import RolloutConfig, collect, make_envs

    envs = make_envs("ArftTestLength-v0", n, "sync")
    config = RolloutConfig(group_size=n, max_new_tokens=4, max_turns=1, seed=0)
    out = collect(policy, envs, config, groups=1, env_id="ArftTestLength-v0")
    envs.close()
    return out


# ---------------------------------------------------------------------- runs


def test_ppo_raises_the_reward_of_the_toy_task(tiny_policy, tmp_path):
    assert_learns(train("ppo", tiny_policy, tmp_path, 30, critic_learning_rate=1e-2))


def test_ppo_value_loss_falls_and_explains_the_return_of_a_learnable_value(tiny_policy, tmp_path):
    # ArftTestPrize-v0: the return is half the prize the prompt names, whatever the reply
    rows = train("ppo", tiny_policy, tmp_path, 30, env="ArftTestPrize-v0", env_kwargs={},
                 groups_per_step=6, inner_epochs=4, critic_learning_rate=1e-3, lam=1.0)  # fmt: skip
    loss = [r["value/loss"] for r in rows]
    ev = [r["value/explained_variance"] for r in rows[-5:]]
    assert np.mean(loss[-5:]) < np.mean(loss[:5]) / 5, loss
    assert np.nanmean(ev) > 0.5 and min(ev) > 0, ev
    for key in ("value/mse", "value/mean", "critic/grad_norm", "critic/lr"):
        assert math.isfinite(rows[-1][key]), key


def test_ppo_checkpoints_hold_the_critic_beside_the_policy(tiny_policy, tmp_path):
    train("ppo", tiny_policy, tmp_path, 1, save_every=1)
    checkpoint = tmp_path / "checkpoints" / "step_000001"
    for name in ("model.safetensors", "model_1.safetensors", "optimizer.bin", "optimizer_1.bin",
                 "scheduler.bin", "scheduler_1.bin"):  # fmt: skip
        assert (checkpoint / name).is_file(), name
    from safetensors.torch import load_file

    assert "head.weight" in load_file(str(checkpoint / "model_1.safetensors"))


SCRIPT = Path(__file__).with_name("ppo_train.py")


def test_ppo_killed_and_resumed_continues_exactly(tmp_path):
    steps = 4
    killed = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, str(SCRIPT), str(killed), str(steps)], env=script_env(),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    marker = killed / "checkpoints" / "step_000002" / "trainer_state.json"
    deadline = time.time() + 180
    while not marker.exists():
        assert process.poll() is None, process.stdout.read().decode()[-2000:]
        assert time.time() < deadline, "no checkpoint of step 2 within 180 s"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = sorted(int(p.name.split("_")[1]) for p in (killed / "checkpoints").glob("step_*"))
    assert max(done) < steps, "the run finished before it was killed; nothing to resume"
    resumed = subprocess.run([sys.executable, str(SCRIPT), str(killed), str(steps), "--resume"],
                             env=script_env(), capture_output=True, text=True, timeout=300)  # fmt: skip
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert "resumed from" in resumed.stdout
    clean = tmp_path / "clean"
    subprocess.run([sys.executable, str(SCRIPT), str(clean), str(steps)], env=script_env(), check=True,
                   capture_output=True, timeout=300)  # fmt: skip
    rows = [
        [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        for run in (killed, clean)
    ]
    assert [r["step"] for r in rows[0]] == list(range(1, steps + 1))
    for a, b in zip(*rows, strict=True):
        for key in ("reward_mean", "loss", "value/loss", "value/explained_variance"):
            assert a[key] == b[key] or (math.isnan(a[key]) and math.isnan(b[key])), key
    # policy and critic weights both continue exactly
    assert (killed / "weights_rank0.sha256").read_text() == (
        clean / "weights_rank0.sha256"
    ).read_text()


def test_ppo_on_two_ddp_processes_keeps_policy_and_critic_identical(tmp_path):
    result = launch(SCRIPT, str(tmp_path), "2")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    digests = [(tmp_path / f"weights_rank{r}.sha256").read_text().split() for r in (0, 1)]
    assert digests[0] == digests[1] and len(digests[0]) == 2  # policy and critic
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2] and all(r["episodes"] == 16 for r in rows)
    assert all(math.isfinite(r["critic/grad_norm"]) for r in rows)
