"""Supervised warm start: teach the action format from scripted-expert episodes before RL.

A model that never writes a well-formed action gets no reward, so every member of a GRPO group
scores the same and the advantages are all zero: RL has nothing to learn from. A short
supervised phase on expert episodes fixes that. The expert (:class:`arft_envs.experts.
ScriptedExpert`) replays each task's gold turns against the live env, tools included.

The episodes are assembled by the rollout's own token builder (:mod:`agents.rollout`): the
expert's turn takes the place of a sampled one and everything else — the opening prompt, the
tool replies as chat-template deltas, the images under the episode's image budget — is built
exactly as in RL. So the loss falls on the model's own turns only (``assistant_mask``), and a
turn is trained on the very ids a rollout would need to sample to reproduce it: the turn's
text up to its closing tag, where the rollout's stop strings end generation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from agents.policy import Generation, Policy
from agents.rollout import EpisodeBuilder, RolloutConfig, Trajectory


class ExpertTurnTooLong(ValueError):
    """An expert turn has more tokens than a rollout may generate in one turn."""


def expert_episode(
    policy: Policy,
    env,
    *,
    seed: int | None = None,
    options: dict | None = None,
    expert: Callable[[dict, Any], str] | None = None,
    config: RolloutConfig | None = None,
    env_id: str = "",
    index: int = 0,
) -> Trajectory:
    """One episode of ``expert(obs, env) -> turn`` on ``env`` (a single, non-vector env),
    as a :class:`Trajectory` whose model turns are the expert's.

    Raises :class:`ExpertTurnTooLong` when a turn is longer than ``config.max_new_tokens``:
    the model could never produce it in a rollout, so training on it would teach nothing
    usable. ``old_logprobs`` are zeros (nothing was sampled).
    """
    from arft_envs.experts import ScriptedExpert

    expert = expert or ScriptedExpert()
    config = config or RolloutConfig()
    obs, info = env.reset(seed=seed, options=options)
    episode = EpisodeBuilder(
        policy, config, obs, info, env_id=env_id, group=index, index=index, seed=seed
    )
    done = False
    while not done:
        text = expert(obs, env)
        ids = policy.encode(text)
        if len(ids) > config.max_new_tokens:
            raise ExpertTurnTooLong(
                f"{env_id or 'env'} task {info.get('task_id')!r}: expert turn "
                f"{episode.turn + 1} is {len(ids)} tokens, more than max_new_tokens="
                f"{config.max_new_tokens}; raise max_new_tokens (or use shorter gold turns)"
            )
        generation = Generation(ids, [0.0] * len(ids), text, "stop")
        obs, reward, terminated, truncated, info = env.step(text)
        episode.record(generation, obs, reward, terminated, truncated, info)
        done = bool(terminated or truncated)
    return episode.finish()


def expert_trajectories(
    policy: Policy,
    env_id: str,
    seeds: Sequence[int],
    *,
    env_kwargs: dict | None = None,
    config: RolloutConfig | None = None,
    expert: Callable[[dict, Any], str] | None = None,
) -> list[Trajectory]:
    """Expert episodes on ``env_id``, one per reset seed."""
    import gymnasium as gym

    import arft_envs  # noqa: F401  (registers the ids)

    env = gym.make(env_id, **(env_kwargs or {}))
    try:
        return [
            expert_episode(
                policy, env, seed=int(s), expert=expert, config=config, env_id=env_id, index=i
            )
            for i, s in enumerate(seeds)
        ]
    finally:
        env.close()


def token_batch(
    policy: Policy, trajectories: Sequence[Trajectory]
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """``(batch, mask)``: the right-padded model batch of ``trajectories`` and their
    ``assistant_mask`` (B, L) on the policy's device."""
    batch = policy.collate([t.model_input() for t in trajectories])
    mask = torch.zeros_like(batch["input_ids"])
    for row, t in enumerate(trajectories):
        mask[row, : len(t.assistant_mask)] = torch.tensor(t.assistant_mask, device=mask.device)
    return batch, mask


def sft_loss(
    policy: Policy, trajectories: Sequence[Trajectory], model: Any = None
) -> tuple[torch.Tensor, int]:
    """``(loss, tokens)``: the mean negative log-likelihood of the trajectories' model turns
    (every model token weighs the same), and how many tokens it averages over."""
    batch, mask = token_batch(policy, trajectories)
    logp, _ = policy.forward_logprobs(batch, mask=mask, model=model)
    tokens = int(mask.sum())
    return -(logp * mask).sum() / max(tokens, 1), tokens
