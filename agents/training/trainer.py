"""The on-policy loop, the same for every algorithm: rollout → advantages → scores of the
frozen models → optimizer updates → metrics → checkpoint (see :mod:`agents.training`).

What an algorithm computes (its advantages, its loss, the models it needs) comes from its
:class:`~agents.algorithms.base.Algorithm`, picked by ``config.algo``.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from accelerate.utils import set_seed

from agents.images import ImageBudget
from agents.policy import Policy
from agents.rollout import RolloutConfig, Trajectory, collect, make_envs
from agents.rollout.trajectory import write_trajectory_page
from agents.training.batch import Advantages, MicroBatch, micro_batches, pad, select, token_batch
from agents.training.config import ConfigError, TrainConfig, algorithm_class, derive, env_name
from agents.training.distributed import adapters_only, generation_weights, make_accelerator
from agents.training.enhancements import Enhancements
from agents.training.metrics import (
    Clock,
    MetricsWriter,
    TimedEnvs,
    TimedPolicy,
    TrainingHealth,
    step_metrics,
)
from agents.training.optim import attach_lora, make_optimizer, replan_lr
from agents.training.run_dir import RunDir
from agents.training.sampling import refill_groups
from agents.training.warm_start import warm_start

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from agents.algorithms.base import Algorithm, Scores


class Trainer:
    """Runs a :class:`TrainConfig`: optional SFT warm start, then RL steps with checkpoints.

    ``train()`` does everything; ``setup()``, ``warm_start()``, ``run()`` and ``finish()`` are
    its parts, for callers that evaluate in between (the demo). ``policy`` may be passed in
    (tests reuse one tiny model); otherwise it is loaded from ``config.model``. ``expert``,
    ``expert(obs, env) -> turn``, writes the warm start's demonstrations (default: the env's
    gold turns, :class:`arft_envs.experts.ScriptedExpert`). A bare :class:`TrainConfig` runs
    with its algorithm's defaults (it becomes that algorithm's config class).
    """

    def __init__(
        self,
        config: TrainConfig,
        *,
        resume: bool = False,
        policy: Policy | None = None,
        accelerator=None,
        expert: Callable[[Any, Any], str] | None = None,
    ):
        algo = algorithm_class(config.algo)
        if not isinstance(config, algo.config_class):
            config = algo.config_class(**{k: getattr(config, k) for k in config.field_names()})
        if config.kl_control != "fixed":  # the KL controller moves beta: keep the caller's
            config = copy.copy(config)
        self.config = config
        self.algorithm: Algorithm = algo(config)
        # curriculum, KL control, augmentation, data filter, gold injection (all off: no-ops)
        self.enhancements = Enhancements(config, self._make_plain_env)
        self.expert = expert
        self.resume = resume
        self.output = Path(config.output)
        self.accelerator = accelerator or make_accelerator(config)
        self.run_dir = RunDir(self.output, self.accelerator)
        self.writer = MetricsWriter(self.output, config, self.is_main)
        self.policy: Policy | None = policy
        self.step = 0
        self._ready = False
        self._resume_from: Path | None = None
        self._envs = None
        self.models: dict[str, torch.nn.Module] = {}
        self.train_model = None
        self.optimizer = None
        self.scheduler = None
        self._params: list[torch.nn.Parameter] = []
        # models that train beside the policy (Algorithm.trained_models), prepared: by name
        self.trained: dict[str, _Trained] = {}
        self._sampling_stats: dict[str, float] = {}
        self.last_metrics: dict[str, Any] = {}
        self.health = TrainingHealth(getattr(config, "tool_collapse_fraction", 0.5))

    # ------------------------------------------------------------------ properties

    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process

    @property
    def reference(self) -> torch.nn.Module | None:
        """The frozen reference model of the KL term (None under LoRA or without one)."""
        return self.models.get("reference")

    def _print(self, *args) -> None:
        if self.is_main:
            print(*args, flush=True)

    # ------------------------------------------------------------------ the whole run

    def train(self) -> dict[str, Any]:
        """Warm start (if asked), then RL to ``config.steps``; returns the last step's metrics."""
        self.setup()
        self.warm_start()
        self.run()
        self.finish()
        return self.last_metrics

    def setup(self) -> None:
        """Prepare the run directory, load the model, and decide where a resume starts."""
        cfg = self.config
        self.run_dir.write_config(cfg, self.resume)
        set_seed(cfg.seed)
        checkpoint = self.run_dir.latest_checkpoint() if self.resume else None
        sft_done = self.run_dir.sft_done()
        if checkpoint is not None and cfg.sft_steps > 0 and not sft_done:
            raise ConfigError(
                f"{self.output}: found {checkpoint.name} but no completed warm start in "
                f"{self.run_dir.sft_model}; the run directory is inconsistent — start a new "
                "--output"
            )
        base = str(self.run_dir.sft_model) if cfg.sft_steps > 0 and sft_done else cfg.model
        if self.policy is None or base != cfg.model:
            self.policy = Policy.from_pretrained(
                base,
                dtype=cfg.dtype,
                device=self.accelerator.device,
                gradient_checkpointing=cfg.gradient_checkpointing,
                image_budget=derive(ImageBudget, cfg),
                seed=cfg.seed,
            )
        else:
            self.policy.model.to(self.accelerator.device)
        self._resume_from = checkpoint
        self._ready = True

    def warm_start(self) -> None:
        """Supervised steps on expert episodes (``sft_steps``); skipped when already done."""
        if self.config.sft_steps == 0 or self.run_dir.sft_done():
            return
        warm_start(
            self.policy, self.config, self.accelerator, self.run_dir, self.writer, self.expert
        )

    # ------------------------------------------------------------------ RL

    def _prepare_rl(self) -> None:
        cfg = self.config
        acc = self.accelerator
        if cfg.lora:
            attach_lora(self.policy, cfg)
        self.models = self.algorithm.extra_models(self.policy)
        params = [p for p in self.policy.model.parameters() if p.requires_grad]
        if not params:
            raise RuntimeError("the model has no trainable parameters")
        optimizer, scheduler = make_optimizer(params, cfg)
        if cfg.lora:
            acc.register_save_state_pre_hook(adapters_only)
        self.train_model, self.optimizer, self.scheduler = acc.prepare(
            self.policy.model, optimizer, scheduler
        )
        self._params = params
        self._prepare_trained_models()
        if self.enhancements.stateful:  # the KL coefficient, the curriculum's stage
            acc.register_for_checkpointing(self.enhancements)
        if self._resume_from is not None:
            acc.load_state(str(self._resume_from), strict=not cfg.lora)
            self.step = RunDir.checkpoint_step(self._resume_from)
            replan_lr(self.optimizer, self.scheduler)
            for t in self.trained.values():
                replan_lr(t.optimizer, t.scheduler)
            self._print(f"resumed from {self._resume_from} at step {self.step}")
        self.run_dir.truncate_jsonl("metrics.jsonl", "step", self.step)
        self.writer.open(self.algorithm.name, purge_step=self.step + 1)
        self._envs = self._make_envs()

    def _prepare_trained_models(self) -> None:
        """Prepare the algorithm's trained models after the policy (so that the policy's
        checkpoint files keep their names), each with its own AdamW and schedule, then bind
        the algorithm to the prepared run."""
        cfg = self.config
        acc = self.accelerator
        for name, spec in self.algorithm.trained_models(self.policy).items():
            params = [p for p in spec.module.parameters() if p.requires_grad]
            if not params:
                raise RuntimeError(
                    f"the algorithm's trained model {name!r} has no trainable weights"
                )
            optimizer, scheduler = make_optimizer(params, cfg, learning_rate=spec.learning_rate)
            module, optimizer, scheduler = acc.prepare(spec.module, optimizer, scheduler)
            self.trained[name] = _Trained(module, optimizer, scheduler, params, spec.max_grad_norm)
        from agents.algorithms.base import RunContext

        prepared = {name: t.module for name, t in self.trained.items()}
        self.algorithm.bind(
            RunContext(
                policy=self.policy,
                accelerator=acc,
                models={**self.models, **prepared},
                micro_batches=cfg.gradient_accumulation_steps,
            )
        )

    def run(self, until: int | None = None) -> None:
        """RL steps from the current step to ``until`` (default and at most ``config.steps``);
        a caller that checks the model between steps calls it again with a later ``until``."""
        cfg = self.config
        if not self._ready:
            self.setup()
        if self.train_model is None:
            self._prepare_rl()
        end = cfg.steps if until is None else min(until, cfg.steps)
        bar = self.writer.progress(cfg.steps, self.step, self.algorithm.name)
        while self.step < end:
            step = self.step + 1
            metrics = self.train_step(step)
            self.step = step
            self.last_metrics = metrics
            self.writer.log(metrics, "metrics.jsonl", self.algorithm.name, step)
            for warning in self.health.check(metrics):
                logger.warning(warning)
                self._print("warning: " + warning)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(
                    reward=f"{metrics['reward_mean']:.2f}",
                    kl=f"{metrics.get('kl', 0.0):.3f}",
                    tools=f"{metrics.get('tools/calls_per_turn', 0.0):.2f}",
                    ok=f"{metrics.get('tools/ok_rate', 0.0):.2f}",
                )
            if (cfg.save_every and step % cfg.save_every == 0) or step == cfg.steps:
                self.save_checkpoint()
        if bar is not None:
            bar.close()

    def train_step(self, step: int) -> dict[str, Any]:
        """One step: rollout, advantages, reference, updates. Returns the step's metrics."""
        clock = Clock()
        self.enhancements.before_step(step)
        with clock("step"):
            with clock("rollout"):
                trajectories = self.rollout(step, clock)
            # the reference first: an algorithm may put its KL in the rewards (Scores)
            with clock("reference"):
                ref, old = self.reference_logprobs(trajectories)
            with clock("advantages"):
                advantages = self.advantages(trajectories, _scores(reference=ref))
                advantages = self.enhancements.weigh(trajectories, advantages)
            with clock("forward_backward"):
                update = self.update(trajectories, advantages, ref, old, step=step)
            update.update(self._sampling_stats)
            update.update(self.enhancements.step_stats(trajectories))
            if self.config.sample_every and step % self.config.sample_every == 0:
                with clock("samples"):
                    self.write_samples(step, trajectories)
        metrics = step_metrics(step, trajectories, update, clock, self.accelerator)
        metrics.update(self.enhancements.after_step(metrics))
        return metrics

    # ------------------------------------------------------------------ rollout

    def rollout_config(self, step: int) -> RolloutConfig:
        """How this process samples at ``step``: the config's sampling fields, and the step's
        seed."""
        return derive(RolloutConfig, self.config, seed=self.rollout_seed(step))

    def rollout_seed(self, step: int) -> int:
        """The seed of this process's rollout at ``step``: its groups reset with seed + g, so
        steps and processes never share a task seed, and a resumed run replays the stream."""
        cfg = self.config
        acc = self.accelerator
        slot = (step - 1) * acc.num_processes + acc.process_index
        return cfg.seed * 1_000_000_007 + slot * cfg.groups_per_step

    def _make_envs(self):
        cfg = self.config
        return make_envs(
            env_name(cfg.env),
            cfg.num_envs or cfg.episodes_per_step,
            cfg.vectorization,
            copy_observations=False,  # collect() only reads them
            **cfg.env_kwargs,
        )

    def rollout(self, step: int, clock: Clock | None = None) -> list[Trajectory]:
        """This process's episodes for ``step`` (groups contiguous)."""
        clock = clock or Clock()
        if self._envs is None:
            self._envs = self._make_envs()
        self.policy.model.eval()
        weights = generation_weights(self.accelerator, self.train_model)
        with torch.no_grad(), self.accelerator.autocast(), weights:
            trajectories = self._collect(
                self.rollout_config(step), self.config.groups_per_step, clock
            )
        return self.dynamic_sampling(step, trajectories, clock)

    def _collect(self, config: RolloutConfig, groups: int, clock: Clock) -> list[Trajectory]:
        enhancements = self.enhancements
        envs = enhancements.wrap_envs(TimedEnvs(self._envs, clock), config.seed)
        trajectories = collect(
            TimedPolicy(self.policy, clock),
            envs,
            config,
            groups=groups,
            task_ids=enhancements.task_ids(config.seed, groups),
            env_id=self.config.env,
        )
        return enhancements.after_collect(trajectories, envs, config.seed, self.policy)

    def _make_plain_env(self):
        """One env built like the rollout's, not vectorised (the curriculum's task source,
        the gold injection's scorer)."""
        import gymnasium as gym

        cfg = self.config
        return gym.make(env_name(cfg.env), disable_env_checker=True, **cfg.env_kwargs)

    def _keep_groups(self, trajectories: Sequence[Trajectory]) -> list[bool] | None:
        """The algorithm's :meth:`~Algorithm.keep_groups` and the data filter's, both."""
        algorithm_keep = self.algorithm.keep_groups(trajectories)
        return self.enhancements.keep_groups(trajectories, algorithm_keep)

    def dynamic_sampling(
        self, step: int, trajectories: list[Trajectory], clock: Clock
    ) -> list[Trajectory]:
        """The groups the algorithm and the data filter keep, refilled by up to the
        algorithm's ``max_refills`` extra rollouts (:func:`~agents.training.sampling.
        refill_groups`); without a filter the rollout passes through. Its ``sampling/*``
        statistics go into the step's metrics."""
        cfg = self.config

        def collect_more(seed: int, groups: int) -> list[Trajectory]:
            weights = generation_weights(self.accelerator, self.train_model)
            with torch.no_grad(), self.accelerator.autocast(), weights:
                return self._collect(derive(RolloutConfig, cfg, seed=seed), groups, clock)

        out, self._sampling_stats = refill_groups(
            trajectories,
            group_size=cfg.group_size,
            groups=cfg.groups_per_step,
            keep=self._keep_groups,
            collect_more=collect_more,
            max_refills=self.enhancements.max_refills(self.algorithm.max_refills),
            seed=self.rollout_seed(step),
        )
        return out

    # ------------------------------------------------------------------ the update

    def advantages(
        self, trajectories: Sequence[Trajectory], scores: Scores | None = None
    ) -> Advantages:
        """The algorithm's advantages of the step's episodes (``scores``: what the loop
        scored first, :class:`~agents.algorithms.base.Scores`)."""
        return self.algorithm.advantages(trajectories, scores)

    @torch.no_grad()
    def reference_logprobs(
        self, trajectories: Sequence[Trajectory]
    ) -> tuple[list[torch.Tensor] | None, list[torch.Tensor] | None]:
        """Per-episode token log-probs (1-D, one per token) of the reference (when the
        algorithm uses one) and of the policy before any update (several updates per step),
        else None."""
        cfg = self.config
        use_ref = self.algorithm.uses_reference
        need_old = cfg.updates_per_step > 1
        if not use_ref and not need_old:
            return None, None
        ref_out: list[torch.Tensor] = []
        old_out: list[torch.Tensor] = []
        unwrapped = self.accelerator.unwrap_model(self.train_model)
        n = cfg.gradient_accumulation_steps
        for chunk in micro_batches(list(range(len(trajectories))), n):
            items = [trajectories[i] for i in chunk]
            batch, mask = token_batch(self.policy, items)
            with self.accelerator.autocast():
                if use_ref:
                    ref = self._reference_forward(batch, mask, unwrapped)
                    ref_out += [ref[r, : len(t.input_ids)].float() for r, t in enumerate(items)]
                if need_old:
                    old, _ = self.policy.forward_logprobs(
                        batch, temperature=cfg.temperature, mask=mask, model=unwrapped
                    )
                    old_out += [old[r, : len(t.input_ids)].float() for r, t in enumerate(items)]
        return (ref_out if use_ref else None), (old_out if need_old else None)

    def _reference_forward(self, batch, mask, unwrapped) -> torch.Tensor:
        """The reference's log-probs: the policy with its adapters off under LoRA, else the
        frozen copy."""
        temperature = self.config.temperature
        if self.config.lora:
            with unwrapped.disable_adapter():
                ref, _ = self.policy.forward_logprobs(
                    batch, temperature=temperature, mask=mask, model=unwrapped
                )
            return ref
        ref, _ = self.policy.forward_logprobs(
            batch, temperature=temperature, mask=mask, model=self.reference
        )
        return ref

    def update(
        self,
        trajectories: Sequence[Trajectory],
        advantages: Advantages,
        ref: list[torch.Tensor] | None = None,
        old: list[torch.Tensor] | None = None,
        *,
        step: int | None = None,
    ) -> dict[str, float]:
        """The optimizer updates of one step; returns loss statistics averaged over updates.

        ``old`` (per-episode token log-probs before any update) is needed when a step makes
        several updates; with one, the ratio is taken to the current log-probs, detached.
        ``step`` seeds the minibatch shuffling.
        """
        cfg = self.config
        generator = torch.Generator().manual_seed(self.rollout_seed(step or self.step + 1))
        sums: dict[str, float] = {}
        updates = 0
        self.train_model.train()
        for epoch in range(cfg.inner_epochs):
            order = list(range(len(trajectories)))
            if epoch > 0 or cfg.num_minibatches > 1:
                order = torch.randperm(len(trajectories), generator=generator).tolist()
            size = len(order) // cfg.num_minibatches
            for m in range(cfg.num_minibatches):
                minibatch = order[m * size : (m + 1) * size]
                stats = self._minibatch(trajectories, minibatch, advantages, ref, old)
                updates += 1
                for key, value in stats.items():
                    _add(sums, key, value)
        self.train_model.eval()
        return {k: v / max(updates, 1) for k, v in sums.items()}

    def _minibatch(self, trajectories, minibatch, advantages, ref, old) -> dict[str, float]:
        """One optimizer update over the episodes ``minibatch``, in micro-batches whose
        gradients add up (accelerate's accumulation); returns its statistics."""
        cfg = self.config
        acc = self.accelerator
        model = self.train_model
        mb_tokens = sum(sum(trajectories[i].assistant_mask) for i in minibatch)
        trained = list(self.trained.items())
        stats: dict[str, float] = {}
        for chunk in micro_batches(minibatch, cfg.gradient_accumulation_steps):
            items = [trajectories[i] for i in chunk]
            batch, mask = token_batch(self.policy, items)
            length = batch["input_ids"].shape[1]
            # accelerate's idiom: gradients sync (and the optimizer steps) on the last of
            # `gradient_accumulation_steps` micro-batches; DDP, FSDP and DeepSpeed honour it.
            with acc.accumulate(model, *(t.module for _, t in trained)):
                with acc.autocast():
                    logp, entropy = self.policy.forward_logprobs(
                        batch,
                        temperature=cfg.temperature,
                        mask=mask,
                        return_entropy=cfg.log_entropy,
                        model=model,
                    )
                logp = logp.float()
                micro = MicroBatch(
                    index=chunk,
                    trajectories=items,
                    mask=mask,
                    advantages=select(advantages, chunk, length),
                    old_logprobs=logp.detach()
                    if old is None
                    else pad([old[i] for i in chunk], length),
                    ref_logprobs=None if ref is None else pad([ref[i] for i in chunk], length),
                    minibatch_episodes=len(minibatch),
                    minibatch_tokens=mb_tokens,
                    batch=batch,
                )
                loss = self.algorithm.loss(micro, logp)
                weight = self.algorithm.micro_weight(micro)
                # The weights add up to 1 over a minibatch; accelerate (or DeepSpeed) divides
                # by the number of micro-batches, which this undoes.
                acc.backward(loss.value * weight * acc.gradient_accumulation_steps)
                if acc.sync_gradients:
                    max_norm = cfg.max_grad_norm if cfg.max_grad_norm > 0 else math.inf
                    norm = acc.clip_grad_norm_(self._params, max_norm)
                    stats["grad_norm"] = float(norm) if norm is not None else math.nan
                    stats["lr"] = self.scheduler.get_last_lr()[0]
                self.optimizer.step()  # a no-op until the gradients sync
                if acc.sync_gradients:
                    self.scheduler.step()
                self.optimizer.zero_grad(set_to_none=True)
                for name, t in trained:
                    self._step_trained(name, t, stats)
            n_tok = float(mask.sum())
            _add(stats, "loss", float(loss.value.detach()) * weight)
            for key, value in loss.means.items():
                _add(stats, key, value * weight)
            for key, value in loss.token_means.items():
                _add(stats, key, value * n_tok / max(mb_tokens, 1))
            if entropy is not None:
                ent = float((entropy.detach().float() * mask).sum())
                _add(stats, "entropy", ent / max(mb_tokens, 1))
        return stats

    def _step_trained(self, name: str, t: _Trained, stats: dict[str, float]) -> None:
        """Clip and step a trained model's optimizer on the policy's sync boundaries."""
        acc = self.accelerator
        if acc.sync_gradients:
            max_norm = t.max_grad_norm if t.max_grad_norm > 0 else math.inf
            norm = acc.clip_grad_norm_(t.params, max_norm)
            stats[f"{name}/grad_norm"] = float(norm) if norm is not None else math.nan
            stats[f"{name}/lr"] = t.scheduler.get_last_lr()[0]
        t.optimizer.step()
        if acc.sync_gradients:
            t.scheduler.step()
        t.optimizer.zero_grad(set_to_none=True)

    # ------------------------------------------------------------------ outputs

    def write_samples(self, step: int, trajectories: Sequence[Trajectory]) -> Path | None:
        """An HTML page of the step's first episodes: each turn's text, images and reward."""
        if not self.is_main:
            return None
        return write_trajectory_page(
            self.output / "samples" / f"step_{step:06d}.html",
            trajectories[: self.config.sample_episodes],
            title=f"{self.config.env} · step {step}",
        )

    def latest_checkpoint(self) -> Path | None:
        """The newest complete step checkpoint of the run folder, or None."""
        return self.run_dir.latest_checkpoint()

    def save_checkpoint(self) -> Path:
        """Write ``checkpoints/step_N`` of the current step (see :class:`RunDir`)."""
        return self.run_dir.save_checkpoint(self.step, self.config, self.policy)

    def finish(self) -> Path | None:
        """Save the trained model to ``final/`` and close writers and envs."""
        self.accelerator.wait_for_everyone()
        path = None
        if self.is_main and self.train_model is not None:
            path = self.policy.save_pretrained(self.output / "final")
        self.close()
        return path

    def close(self) -> None:
        """Close the metric writers and the envs."""
        self.writer.close()
        self.enhancements.close()
        if self._envs is not None:
            self._envs.close()
            self._envs = None


@dataclass
class _Trained:
    """A prepared model of :meth:`Algorithm.trained_models` with its optimizer and schedule."""

    module: torch.nn.Module
    optimizer: Any
    scheduler: Any
    params: list[torch.nn.Parameter]
    max_grad_norm: float


# The name of the loop when GRPO was its only algorithm; kept for callers of that release.
GRPOTrainer = Trainer


def _scores(**values) -> Scores:
    # imported here: agents.algorithms builds on agents.training, which imports this module
    from agents.algorithms.base import Scores

    return Scores(**values)


def _add(stats: dict[str, float], key: str, value: float) -> None:
    stats[key] = stats.get(key, 0.0) + value
