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

import contextlib
import math
import shutil
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from agents.policy import Generation, Policy
from agents.rollout import EpisodeBuilder, RolloutConfig, Trajectory
from agents.training.batch import micro_batches, token_batch
from agents.training.config import TrainConfig, derive, env_name
from agents.training.metrics import MetricsWriter
from agents.training.optim import attach_lora
from agents.training.run_dir import RunDir

# Expert episodes of the warm start reset with seeds from here on, far from the RL stream.
SFT_SEED_BASE = 1 << 40


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

    base = getattr(env, "unwrapped", env)
    tools = None
    if getattr(base, "action_format", "tags") == "tool_calls":
        # native calls: the expert writes the Hermes text a rollout would sample, and the
        # episode renders the env's tools as a rollout does (the template audited first)
        tools = policy.tool_calling(base.tool_schemas).tools
        expert = expert or ScriptedExpert(raw=True)
    expert = expert or ScriptedExpert()
    config = config or RolloutConfig()
    obs, info = env.reset(seed=seed, options=options)
    episode = EpisodeBuilder(
        policy, config, obs, info, env_id=env_id, group=index, index=index, seed=seed, tools=tools
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
    bar: Any = None,
) -> list[Trajectory]:
    """Expert episodes on ``env_id``, one per reset seed; ``bar`` (a tqdm bar, or None) is
    advanced by each finished episode."""
    import gymnasium as gym

    import arft_envs  # noqa: F401  (registers the ids)

    env = gym.make(env_id, **(env_kwargs or {}))
    episodes = []
    try:
        for i, s in enumerate(seeds):
            episodes.append(
                expert_episode(
                    policy, env, seed=int(s), expert=expert, config=config, env_id=env_id, index=i
                )
            )
            if bar is not None:
                bar.update(1)
        return episodes
    finally:
        env.close()


def sft_loss(
    policy: Policy,
    trajectories: Sequence[Trajectory],
    model: Any = None,
    tokens: int | None = None,
) -> tuple[torch.Tensor, int]:
    """``(loss, tokens)``: the mean negative log-likelihood of the trajectories' model turns
    (every model token weighs the same), and how many tokens it averages over.

    ``tokens`` divides the summed NLL instead of the trajectories' own token count: a
    micro-batch's share of a larger batch's mean (see :func:`sft_backward`)."""
    batch, mask = token_batch(policy, trajectories)
    logp, _ = policy.forward_logprobs(batch, mask=mask, model=model)
    count = int(mask.sum())
    tokens = count if tokens is None else tokens
    return -(logp * mask).sum() / max(tokens, 1), tokens


def sft_micro_batch(config: TrainConfig) -> int:
    """Expert episodes per forward pass of the warm start: ``sft_micro_batch_size``, else
    ``sft_batch_size`` split over ``gradient_accumulation_steps`` (rounded up)."""
    if config.sft_micro_batch_size:
        return config.sft_micro_batch_size
    return math.ceil(config.sft_batch_size / config.gradient_accumulation_steps)


def sft_backward(
    policy: Policy,
    trajectories: Sequence[Trajectory],
    micro_batch: int,
    *,
    accelerator=None,
    model: Any = None,
) -> tuple[torch.Tensor, int]:
    """Backward of :func:`sft_loss` over ``trajectories``, ``micro_batch`` episodes per
    forward pass; returns the batch's ``(loss, tokens)`` (the loss detached).

    Each micro-batch's summed NLL is divided by the whole batch's token count, so the
    gradients that add up are those of one pass over the whole batch (within float
    rounding), while the activations alive at once are one micro-batch's: peak memory is set
    by ``micro_batch``. Under DDP (``accelerator`` given) gradients are synchronised on the
    last micro-batch only; the forward passes run under the accelerator's autocast."""
    tokens = sum(sum(t.assistant_mask) for t in trajectories)
    chunks = micro_batches(range(len(trajectories)), math.ceil(len(trajectories) / micro_batch))
    total = torch.zeros(())
    for k, chunk in enumerate(chunks):
        last = k == len(chunks) - 1
        no_sync = (
            contextlib.nullcontext() if accelerator is None or last else accelerator.no_sync(model)
        )
        autocast = contextlib.nullcontext() if accelerator is None else accelerator.autocast()
        with no_sync:
            with autocast:
                loss, _ = sft_loss(
                    policy, [trajectories[i] for i in chunk], model=model, tokens=tokens
                )
            if accelerator is None:
                loss.backward()
            else:
                accelerator.backward(loss)
        total = total + loss.detach().float().cpu()
    return total, tokens


def warm_start(
    policy: Policy,
    config: TrainConfig,
    accelerator,
    run_dir: RunDir,
    writer: MetricsWriter,
    expert: Callable[[Any, Any], str] | None = None,
) -> None:
    """``config.sft_steps`` supervised steps on ``config.sft_episodes`` expert episodes
    (spread over the processes), then save the warm-started model (LoRA merged) to
    ``run_dir.sft_model`` and mark it done. ``policy.model`` is the trained model afterwards.
    Logs one ``sft_metrics.jsonl`` line per step.

    A step's ``sft_batch_size`` episodes go through the model :func:`sft_micro_batch` at a
    time (:func:`sft_backward`): one optimizer update per step whatever the micro-batch."""
    cfg = config
    acc = accelerator
    world, rank = acc.num_processes, acc.process_index
    seeds = [SFT_SEED_BASE + cfg.seed * 1_000_003 + i for i in range(cfg.sft_episodes)]
    # real sandboxes and searches run here: tens of seconds before the first SFT step
    bar = writer.progress(len(seeds[rank::world]), 0, "expert episodes")
    try:
        demos = expert_trajectories(
            policy,
            env_name(cfg.env),
            seeds[rank::world],
            env_kwargs=cfg.env_kwargs,
            config=derive(RolloutConfig, cfg, seed=0),
            expert=expert,
            bar=bar,
        )
    finally:
        if bar is not None:
            bar.close()
    if acc.is_main_process:
        returns = [t.episode_return for t in demos]
        print(
            f"warm start: {len(demos) * world} expert episodes (mean return "
            f"{float(np.mean(returns)):.2f}), {cfg.sft_steps} steps",
            flush=True,
        )
    if cfg.lora:
        attach_lora(policy, cfg)
    params = [p for p in policy.model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.sft_learning_rate, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda i: max(0.0, 1.0 - i / cfg.sft_steps)
    )
    model, optimizer = acc.prepare(policy.model, optimizer)
    accumulation = acc.gradient_accumulation_steps
    # sft_backward scales each micro-batch itself; accelerate's own division must not apply
    acc.gradient_accumulation_steps = 1
    micro = sft_micro_batch(cfg)
    generator = torch.Generator().manual_seed(cfg.seed * 7 + rank)
    run_dir.truncate_jsonl("sft_metrics.jsonl", "sft_step", 0)
    writer.open("sft", purge_step=1)
    bar = writer.progress(cfg.sft_steps, 0, "sft")
    for step in range(1, cfg.sft_steps + 1):
        start = time.perf_counter()
        model.train()
        index = torch.randint(
            len(demos), (min(cfg.sft_batch_size, len(demos)),), generator=generator
        )
        loss, tokens = sft_backward(
            policy, [demos[i] for i in index.tolist()], micro, accelerator=acc, model=model
        )
        grad_norm = acc.clip_grad_norm_(params, cfg.max_grad_norm or float("inf"))
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        loss_value = float(acc.reduce(loss.to(acc.device), "mean"))
        record = {
            "sft_step": step,
            "loss": loss_value,
            "tokens": tokens,
            "grad_norm": float(grad_norm),
            "lr": schedule.get_last_lr()[0],
            "time/step": time.perf_counter() - start,
        }
        writer.log(record, "sft_metrics.jsonl", "sft", step)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss_value:.3f}")
    if bar is not None:
        bar.close()
    model.eval()
    acc.gradient_accumulation_steps = accumulation
    unwrapped = acc.unwrap_model(model)
    acc.free_memory()
    if cfg.lora:
        unwrapped = unwrapped.merge_and_unload()
    policy.model = unwrapped
    if acc.is_main_process:
        target = run_dir.sft_model
        if target.parent.exists():
            shutil.rmtree(target.parent)
        policy.save_pretrained(target)
        run_dir.mark_sft_done({"sft_steps": cfg.sft_steps, "episodes": len(demos) * world})
    acc.wait_for_everyone()
