"""PPO with a learned value model: GAE per token or per turn, the clipped policy surrogate,
and the clipped value loss.

**The critic is a separate model**, not a value head on the policy: a copy of the policy's
backbone (the transformer without its output layer, vision tower included) with a scalar head
initialised to zero (:class:`ValueModel`). Why separate:

- the value regression's gradients do not flow into the policy's weights, so no value-loss
  coefficient has to balance the two objectives, and the policy's update is the same maths as
  the other algorithms' (GRPO's path and its chunked log-probs stay untouched);
- the critic keeps its own optimizer and learning rate (a critic usually wants a larger one),
  its own gradient clipping, and could be a different (smaller) model later;
- under LoRA the policy trains adapters while the critic trains in full (a copy with the
  adapters merged), the usual split in verl and OpenRLHF.

The price is a second network: one more forward (no grad) to value the rollout and one more
forward and backward in each update. The loop prepares the critic with accelerate like the
policy (DDP-wrapped, gradients synchronised), steps it on the same accumulation boundaries and
checkpoints it (``model_1.safetensors``, ``optimizer_1.bin``) — see
:meth:`agents.algorithms.base.Algorithm.trained_models`.

The maths (B sequences, T steps: tokens or turns; ``mask`` (B,T) marks valid steps):

    δ_t   = r_t + γ·V_{t+1} - V_t            (V after the last valid step = 0)
    A_t   = δ_t + γλ·A_{t+1}                 (over valid steps; masked steps are transparent)
    R_t   = A_t + V_t                        (the value target)
    L_V   = ½·mean max((V - R)², (clip(V, V_old ± ε_V) - R)²)

Per token, r_t is the turn's reward on the turn's last model token (minus an optional k1 KL to
the reference on every model token) and V_t is the critic's value of the state before token t
(the hidden state at t-1, aligned with the log-probs). Per turn, the steps are the episode's
turns: V_k is the value before turn k's first token, r_k the turn's reward, and every token of
turn k gets A_k.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from agents.algorithms.base import Algorithm, Loss, Scores, TrainedModel, algo_option
from agents.algorithms.group import aggregation_weight, clip_problems
from agents.algorithms.grpo import policy_loss
from agents.training.batch import micro_batches, pad, token_batch
from agents.training.config import TrainConfig, option

if TYPE_CHECKING:
    from agents.policy import Policy
    from agents.rollout import Trajectory
    from agents.training.batch import MicroBatch

GAE_LEVELS = ("token", "turn")


# ============================================================================ pure functions


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor,
    gamma: float = 1.0,
    lam: float = 0.95,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over the valid steps of each sequence.

    rewards, values, mask: (B,T). Steps where ``mask`` is 0 are skipped (their advantage is
    0) and the value after the last valid step is 0 (the episode ended). Returns
    ``(advantages, returns)``, both (B,T), with ``returns = advantages + values``.
    """
    mask = mask.to(values.dtype)
    advantages = torch.zeros_like(values)
    next_value = torch.zeros_like(values[:, 0])  # (B,)
    running = torch.zeros_like(values[:, 0])
    for t in reversed(range(values.shape[1])):
        m = mask[:, t]
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        # a masked step is transparent: the running sum and next value pass through it
        running = m * (delta + gamma * lam * running) + (1 - m) * running
        advantages[:, t] = running * m
        next_value = m * values[:, t] + (1 - m) * next_value
    return advantages, advantages + values


def discounted_returns(
    rewards: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0
) -> torch.Tensor:
    """Return-to-go over valid steps, ``G_t = Σ_{s>=t valid} γ^(#valid steps between) r_s``:
    GAE with V = 0 and λ = 1. (B,T) -> (B,T), 0 at masked steps."""
    advantages, _ = gae(rewards, torch.zeros_like(rewards), mask, gamma=gamma, lam=1.0)
    return advantages


def value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    clip: float | None = 0.2,
) -> torch.Tensor:
    """0.5·max((V-R)², (clip(V, V_old±ε)-R)²), averaged over valid steps. Scalar."""
    mask = mask.to(values.dtype)
    loss = (values - returns) ** 2
    if clip is not None:
        clipped = old_values + torch.clamp(values - old_values, -clip, clip)
        loss = torch.maximum(loss, (clipped - returns) ** 2)
    return 0.5 * (loss * mask).sum() / mask.sum().clamp(min=1)


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """``(x - mean) / (std + eps)`` with mean and (biased) std over the valid entries;
    (B,T) -> (B,T), 0 where ``mask`` is 0."""
    m = mask.to(x.dtype)
    n = m.sum().clamp(min=1)
    mean = (x * m).sum() / n
    var = (((x - mean) * m) ** 2).sum() / n
    return (x - mean) / (var.sqrt() + eps) * m


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> float:
    """``1 - Var(R - V) / Var(R)`` over valid steps: 1 is a perfect critic, 0 one no better
    than a constant, negative a worse one. NaN when the returns do not vary."""
    m = mask.bool()
    r, v = returns[m].double(), values[m].double()
    var_r = r.var(unbiased=False) if r.numel() else torch.tensor(0.0)
    if r.numel() == 0 or float(var_r) == 0.0:
        return float("nan")
    return float(1 - (r - v).var(unbiased=False) / var_r)


def turn_end_rewards(trajectory: Trajectory) -> torch.Tensor:
    """An episode's turn rewards on its tokens: turn k's reward at the last sampled token of
    turn k, 0 elsewhere. (n_tokens,). A turn generated but never stepped has no reward."""
    row = torch.zeros(len(trajectory.input_ids))
    for (start, end), reward in zip(trajectory.turn_spans, trajectory.rewards, strict=False):
        if end > start:
            row[end - 1] += float(reward)
    return row


def turn_positions(turn_spans: Sequence[tuple[int, int]], length: int) -> torch.Tensor:
    """A (length,) 0/1 row marking each turn's first sampled token: where a per-turn critic
    reads the value of the state before the turn."""
    row = torch.zeros(length)
    for start, end in turn_spans:
        if end > start:
            row[start] = 1.0
    return row


def turn_gae(
    turn_rewards: torch.Tensor,
    turn_values: torch.Tensor,
    turn_mask: torch.Tensor,
    gamma: float = 1.0,
    lam: float = 0.95,
) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE over turns: (B,K) rewards, values and mask of the episodes' K turns -> turn
    advantages and returns (B,K). The same recursion as :func:`gae`, one step per turn."""
    return gae(turn_rewards, turn_values, turn_mask, gamma=gamma, lam=lam)


# ============================================================================ the critic


class ValueModel(torch.nn.Module):
    """A critic: a transformer backbone and a scalar head on its last hidden state.

    ``forward(**batch)`` takes the policy's model batch (``collate``) and returns (B, L)
    values aligned with the policy's log-probs: ``values[:, t]`` is the value of the state
    before token t (the head on hidden state t-1), 0 at t = 0.
    """

    def __init__(self, backbone: torch.nn.Module, hidden_size: int):
        super().__init__()
        self.backbone = backbone
        with torch.random.fork_rng(devices=[]):  # the run's RNG stream stays the policy's
            self.head = torch.nn.Linear(hidden_size, 1)
        torch.nn.init.zeros_(self.head.weight)  # V = 0 at the start: advantages = returns
        torch.nn.init.zeros_(self.head.bias)

    @classmethod
    def from_policy(cls, model: torch.nn.Module) -> ValueModel:
        """A critic copied from the policy's network: its backbone (``base_model``, the
        transformer without the output layer; for a LoRA policy, a copy with the adapters
        merged), every weight trainable, float32 head."""
        copied = copy.deepcopy(model)
        if hasattr(copied, "merge_and_unload"):  # a PEFT model: fold the adapters in
            copied = copied.merge_and_unload()
        backbone = copied.base_model
        config = copied.config
        text = config.get_text_config() if hasattr(config, "get_text_config") else config
        backbone.requires_grad_(True)
        critic = cls(backbone, int(text.hidden_size))
        device = next(backbone.parameters()).device
        return critic.to(device)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **extras):
        out = self.backbone(
            input_ids=input_ids, attention_mask=attention_mask, use_cache=False, **extras
        )
        hidden = out.last_hidden_state  # (B, L, H)
        v = self.head(hidden.to(self.head.weight.dtype)).squeeze(-1).float()  # (B, L)
        values = torch.zeros_like(v)
        values[:, 1:] = v[:, :-1]
        return values


# ============================================================================ the algorithm


@dataclass
class PPOConfig(TrainConfig):
    """A PPO run: the shared config plus the critic's and GAE's options."""

    algo: str = algo_option("ppo")
    gamma: float = option(1.0, "discount over steps (tokens or turns)")
    lam: float = option(0.95, "GAE λ: 1 is the Monte-Carlo return, 0 the one-step TD target")
    gae_level: str = option(
        "token",
        "token (a value and an advantage per model token) or turn (per turn: every token of "
        "turn k gets the turn's advantage)",
        choices=GAE_LEVELS,
    )
    whiten_advantages: bool = option(True, "normalise the advantages over the batch's tokens")
    kl_coef: float = option(0.0, "weight of a per-token k1 KL to the reference in the reward")
    clip_low: float = option(0.2, "policy ratio clip range below 1")
    clip_high: float | None = option(None, "policy ratio clip range above 1 (None: clip_low)")
    value_clip: float | None = option(
        0.2, "clip the value's change from the rollout's value to ±this (None: no clipping)"
    )
    critic_learning_rate: float = option(1e-5, "peak learning rate of the critic's AdamW")
    critic_max_grad_norm: float = option(1.0, "clip the critic's gradient norm (0: none)")

    def _problems(self) -> list[str]:
        p = super()._problems() + clip_problems(self.clip_low, self.clip_high)
        if self.kl_coef < 0:
            p.append(f"kl_coef must be >= 0 (0 turns the reward KL off), got {self.kl_coef}")
        if not 0 < self.gamma <= 1:
            p.append(f"gamma must be in (0, 1], got {self.gamma}")
        if not 0 <= self.lam <= 1:
            p.append(f"lam must be in [0, 1], got {self.lam}")
        if self.value_clip is not None and self.value_clip <= 0:
            p.append(f"value_clip must be > 0 or None, got {self.value_clip}")
        if self.critic_learning_rate <= 0:
            p.append(f"critic_learning_rate must be > 0, got {self.critic_learning_rate}")
        if self.critic_max_grad_norm < 0:
            p.append(f"critic_max_grad_norm must be >= 0, got {self.critic_max_grad_norm}")
        return p


@dataclass
class _Targets:
    """The critic's side of one episode, fixed at advantage time (1-D, its length)."""

    old_values: torch.Tensor  # the critic's values at rollout time
    returns: torch.Tensor  # GAE targets
    value_mask: torch.Tensor  # where the value loss applies


class PPO(Algorithm):
    """GAE from a learned critic (:class:`ValueModel`), the clipped surrogate and the clipped
    value loss; the critic trains beside the policy."""

    name = "ppo"
    config_class = PPOConfig
    config: PPOConfig

    def __init__(self, config: PPOConfig):
        super().__init__(config)
        self._targets: list[_Targets] = []
        self._explained_variance = float("nan")
        self._kl: float | None = None  # the step's mean per-token k1 KL (kl_coef > 0)

    kl_weight_field = "kl_coef"

    @property
    def reference_in_advantages(self) -> bool:
        return self.uses_reference

    def trained_models(self, policy: Policy) -> dict[str, TrainedModel]:
        cfg = self.config
        critic = ValueModel.from_policy(policy.model)
        return {"critic": TrainedModel(critic, cfg.critic_learning_rate, cfg.critic_max_grad_norm)}

    @property
    def critic(self) -> torch.nn.Module:
        """The prepared critic (accelerate's wrapper under DDP)."""
        if self.run is None or "critic" not in self.run.models:
            raise RuntimeError("PPO's critic is not prepared yet: the training loop binds it")
        return self.run.models["critic"]

    @torch.no_grad()
    def rollout_values(self, trajectories: Sequence[Trajectory]) -> list[torch.Tensor]:
        """The critic's values (1-D per episode) before this step's updates."""
        run = self.run
        critic = run.accelerator.unwrap_model(self.critic)
        was_training = critic.training
        critic.eval()
        out: list[torch.Tensor] = []
        for chunk in micro_batches(list(range(len(trajectories))), run.micro_batches):
            items = [trajectories[i] for i in chunk]
            batch, _ = token_batch(run.policy, items)
            with run.accelerator.autocast():
                values = critic(**batch).float().cpu()
            out += [values[r, : len(t.input_ids)] for r, t in enumerate(items)]
        critic.train(was_training)
        return out

    def advantages(
        self, trajectories: Sequence[Trajectory], scores: Scores | None = None
    ) -> list[torch.Tensor]:
        """Per-token advantages (one row per episode) from GAE over the critic's values; the
        value targets are kept for :meth:`loss`, by the episode's position in the batch."""
        cfg = self.config
        length = max(len(t.input_ids) for t in trajectories)
        values = pad(self.rollout_values(trajectories), length)  # (B,L)
        mask = pad([torch.tensor(t.assistant_mask, dtype=torch.float32) for t in trajectories],
                   length)  # fmt: skip
        rewards = pad([turn_end_rewards(t) for t in trajectories], length)  # (B,L)
        if cfg.kl_coef > 0:
            if scores is None or scores.reference is None:
                raise ValueError("ppo with kl_coef > 0 needs scores.reference (the loop's)")
            old = pad([torch.tensor(t.old_logprobs, dtype=torch.float32) for t in trajectories],
                      length)  # fmt: skip
            kl = (old - pad(scores.reference, length)) * mask  # (B,L) k1 per model token
            rewards = rewards - cfg.kl_coef * kl
            # logged as the step's "kl" (what kl_control='adaptive' reads)
            self._kl = float(kl.sum() / mask.sum().clamp(min=1))
        else:
            self._kl = None
        if cfg.gae_level == "token":
            adv, returns = gae(rewards, values, mask, cfg.gamma, cfg.lam)
            value_mask = mask
        else:
            adv, returns, value_mask = self._turn_level(trajectories, rewards, values, length)
        self._explained_variance = explained_variance(values, returns, value_mask)
        if cfg.whiten_advantages:
            adv = masked_whiten(adv, mask)
        self._targets = [
            _Targets(values[i, :n], returns[i, :n], value_mask[i, :n])
            for i, n in enumerate(len(t.input_ids) for t in trajectories)
        ]
        return [adv[i, : len(t.input_ids)] for i, t in enumerate(trajectories)]

    def _turn_level(self, trajectories, rewards, values, length):
        """GAE over turns: each turn's reward (its tokens' rewards summed) and the value at
        its first token; the turn's advantage spread over its tokens."""
        cfg = self.config
        k_max = max(len(t.turn_spans) for t in trajectories)
        b = len(trajectories)
        turn_r, turn_v, turn_m = torch.zeros(b, k_max), torch.zeros(b, k_max), torch.zeros(b, k_max)
        for i, t in enumerate(trajectories):
            for k, (start, end) in enumerate(t.turn_spans):
                if end > start:
                    turn_r[i, k] = rewards[i, start:end].sum()
                    turn_v[i, k] = values[i, start]
                    turn_m[i, k] = 1.0
        turn_adv, turn_ret = turn_gae(turn_r, turn_v, turn_m, cfg.gamma, cfg.lam)
        adv, returns, value_mask = (torch.zeros(b, length) for _ in range(3))
        for i, t in enumerate(trajectories):
            for k, (start, end) in enumerate(t.turn_spans):
                if end > start:
                    adv[i, start:end] = turn_adv[i, k]
                    returns[i, start] = turn_ret[i, k]
                    value_mask[i, start] = 1.0
        return adv, returns, value_mask

    def loss(self, micro: MicroBatch, logprobs: torch.Tensor) -> Loss:
        """The policy's clipped token-mean surrogate plus the critic's clipped value loss
        (disjoint weights: one backward reaches both)."""
        cfg = self.config
        device = logprobs.device
        pol = policy_loss(
            logprobs, micro.old_logprobs.to(device), micro.advantages.to(device), micro.mask,
            None, beta=0.0, clip_low=cfg.clip_low, clip_high=cfg.clip_high,
            aggregation="token-mean",
        )  # fmt: skip
        if micro.batch is None:
            raise ValueError("PPO's loss needs micro.batch (the loop passes the model batch)")
        length = logprobs.shape[1]
        targets = [self._targets[i] for i in micro.index]
        old_values = pad([x.old_values for x in targets], length).to(device)
        returns = pad([x.returns for x in targets], length).to(device)
        value_mask = pad([x.value_mask for x in targets], length).to(device)
        values = self.critic(**micro.batch).float()  # (b, L), with grad
        v_loss = value_loss(values, old_values, returns, value_mask, cfg.value_clip)
        n_values = float(value_mask.sum())
        with torch.no_grad():
            v_err = float((((values - returns) * value_mask) ** 2).sum() / max(n_values, 1.0))
        return Loss(
            pol.loss + v_loss,
            means={
                "policy_loss": pol.policy_loss,
                "value/explained_variance": self._explained_variance,
            },
            token_means={
                "value/loss": float(v_loss.detach()),
                "value/mse": v_err,
                "value/mean": float((values.detach() * value_mask).sum() / max(n_values, 1.0)),
                "clip_fraction": pol.clip_fraction,
                "ratio_mean": pol.ratio_mean,
                **({} if self._kl is None else {"kl": self._kl}),
            },
        )

    def micro_weight(self, micro: MicroBatch) -> float:
        return aggregation_weight(micro, "token-mean")
