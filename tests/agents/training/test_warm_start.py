"""The supervised warm start: expert episodes tokenised exactly as rollouts, loss on the model's
own turns, and a warm start that teaches the tiny model the action format."""

from __future__ import annotations

import json

import gymnasium as gym
import pytest
import torch
from accelerate_train import fresh, small_config

import agents.demo  # noqa: F401  (registers EasyMATCoding-v0)
import arft_envs  # noqa: F401
from agents.policy import Generation
from agents.rollout import RolloutConfig, collect, make_envs
from agents.training.batch import token_batch
from agents.training.warm_start import (
    ExpertTurnTooLong,
    expert_episode,
    expert_trajectories,
    sft_loss,
)
from arft_envs.experts import ScriptedExpert
from arft_envs.rewards import format_reward

EASY = "EasyMATCoding-v0"


class ExpertAsPolicy:
    """The policy as ``collect`` sees it, whose "sampled" turns are the expert's."""

    def __init__(self, policy, envs):
        self._policy, self._envs = policy, envs

    def __getattr__(self, name):
        return getattr(self._policy, name)

    def generate(self, inputs, **kwargs):
        (env,) = self._envs.envs
        text = ScriptedExpert()(None, env)
        ids = self._policy.encode(text)
        return [Generation(ids, [0.0] * len(ids), text, "stop")]


def test_expert_episode_is_token_for_token_a_rollout_of_the_same_turns(tiny_policy):
    env = gym.make(EASY)
    expert = expert_episode(tiny_policy, env, seed=3, config=RolloutConfig(max_new_tokens=256))
    envs = make_envs(EASY, 1)
    (rolled,) = collect(
        ExpertAsPolicy(tiny_policy, envs),
        envs,
        RolloutConfig(max_new_tokens=256, seed=3, check_retokenization=True),
        task_ids=[expert.task_id],
    )
    assert rolled.input_ids == expert.input_ids
    assert rolled.assistant_mask == expert.assistant_mask
    assert rolled.turn_spans == expert.turn_spans
    assert rolled.rewards == expert.rewards == [2.0, 2.0, 2.0]  # format + problem/code/answer
    # the mask covers exactly the expert's turns, each up to its closing tag
    gold = env.unwrapped.tasks.get(expert.task_id).meta["gold_steps"]
    for (start, end), turn in zip(expert.turn_spans, gold, strict=True):
        assert tiny_policy.decode(expert.input_ids[start:end]) == turn
    assert sum(expert.assistant_mask) == sum(end - start for start, end in expert.turn_spans)
    envs.close()


def test_expert_episodes_advance_a_progress_bar_one_finished_episode_at_a_time(tiny_policy):
    class Bar:
        def __init__(self):
            self.counts = []

        def update(self, n):
            self.counts.append(n)

    bar = Bar()
    config = RolloutConfig(max_new_tokens=256)
    demos = expert_trajectories(tiny_policy, EASY, [3, 4], config=config, bar=bar)
    assert len(demos) == 2 and bar.counts == [1, 1]


def test_a_turn_the_rollout_could_not_generate_is_refused(tiny_policy):
    env = gym.make(EASY)
    with pytest.raises(ExpertTurnTooLong, match="raise max_new_tokens"):
        expert_episode(tiny_policy, env, seed=3, config=RolloutConfig(max_new_tokens=8))


def test_sft_loss_is_the_mean_nll_of_model_tokens(tiny_policy):
    env = gym.make(EASY)
    episodes = [expert_episode(tiny_policy, env, seed=s) for s in (1, 2)]
    loss, tokens = sft_loss(tiny_policy, episodes)
    batch, mask = token_batch(tiny_policy, episodes)
    logp, _ = tiny_policy.forward_logprobs(batch)
    assert tokens == sum(sum(e.assistant_mask) for e in episodes) == int(mask.sum())
    assert loss.item() == pytest.approx(-(logp * mask).sum().item() / tokens, rel=1e-5)


def test_a_few_supervised_steps_teach_the_action_format(tiny_policy):
    policy = fresh(tiny_policy)
    env = gym.make(EASY)
    episodes = [expert_episode(policy, env, seed=s) for s in range(4)]
    optimizer = torch.optim.AdamW(policy.model.parameters(), lr=3e-3)
    policy.model.train()
    losses = []
    for _ in range(60):
        loss, _ = sft_loss(policy, episodes)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    policy.model.eval()
    assert losses[-1] < 0.2 * losses[0]
    envs = make_envs(EASY, 1)
    (episode,) = collect(
        policy, envs, RolloutConfig(temperature=0, max_turns=1, max_new_tokens=64),
        task_ids=[episodes[0].task_id],
    )  # fmt: skip
    first = episode.actions[0]
    assert format_reward(first, "problem") == 1.0, first
    envs.close()


def test_warm_start_in_the_trainer_is_the_reference_and_is_not_repeated(tiny_policy, tmp_path):
    from agents.training import Trainer

    cfg = small_config(
        tmp_path, 1, env=EASY, max_new_tokens=128, max_turns=3, sft_steps=3, sft_episodes=4,
        sft_batch_size=2, sft_learning_rate=1e-3,
    )  # fmt: skip
    from arft_envs.experts import ScriptedExpert

    turns = []

    def expert(obs, env):  # the caller's demonstrator writes the warm start's episodes
        turns.append(ScriptedExpert()(obs, env))
        return turns[-1]

    trainer = Trainer(cfg, policy=fresh(tiny_policy), expert=expert)
    trainer.train()
    assert len(turns) >= cfg.sft_episodes  # every episode has at least a diagnosis turn
    rows = [json.loads(x) for x in (tmp_path / "sft_metrics.jsonl").read_text().splitlines()]
    assert [r["sft_step"] for r in rows] == [1, 2, 3]
    assert rows[-1]["loss"] < rows[0]["loss"]
    assert (tmp_path / "checkpoints" / "sft" / "done.json").is_file()
    # RL starts from the warm-started model, which is also the KL reference: KL is 0 then
    first = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])
    assert first["kl"] == pytest.approx(0.0, abs=1e-6)

    resumed = Trainer(small_config(tmp_path, 2, **{
        k: getattr(cfg, k) for k in (
            "env", "max_new_tokens", "max_turns", "sft_steps", "sft_episodes", "sft_batch_size",
            "sft_learning_rate",
        )
    }), resume=True, expert=expert)  # fmt: skip
    calls = len(turns)
    resumed.train()
    assert len(turns) == calls
    rows = (tmp_path / "sft_metrics.jsonl").read_text().splitlines()
    assert len(rows) == 3  # the warm start did not run again
    steps = [json.loads(x)["step"] for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2]
