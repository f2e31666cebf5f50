"""GRPO against live environments, on accelerate: one loop for a CPU, one GPU, or many processes.

Visual-ARFT trains with GRPO on pre-split, single-turn rows and never runs a tool (paper.md
§3.4–3.5). Here every step plays whole episodes against a registered env, tools executed for
real, and learns from their returns:

1. **Rollout.** Each process plays ``groups_per_step`` groups of ``group_size`` episodes with
   the current policy (:func:`agents.rollout.collect`). The members of a group share a task.
   The tasks come from a seed stream fixed by ``(seed, step, process)``: the step counter is
   the data position, so a resumed run sees exactly the tasks it would have seen.
2. **Advantages.** Each episode's return (the sum of its turns' rewards) is compared with its
   group: ``(R - mean_g) / (std_g + 1e-4)`` (or unscaled, Dr. GRPO). Every model token of the
   episode gets that advantage.
3. **Reference.** With ``beta > 0``, the k3 KL is taken to the model as it was when RL started:
   a frozen copy, or under LoRA the same network with its adapters switched off.
4. **Update.** ``inner_epochs`` passes over the step's episodes, each split into
   ``num_minibatches`` optimizer updates; a minibatch is processed in
   ``gradient_accumulation_steps`` micro-batches whose gradients add up to the minibatch's.
   With one epoch and one minibatch (the paper) the importance ratio is exactly 1.
5. **Log, sample, checkpoint.** A line per step in ``metrics.jsonl`` (and tensorboard, wandb);
   every ``sample_every`` steps an HTML page of episodes; every ``save_every`` steps a
   checkpoint that ``resume=True`` continues from, neither repeating nor skipping a step.

An optional supervised warm start (:mod:`agents.sft`) runs first when ``sft_steps > 0``.

Run layout (``output``)::

    config.json            the resolved TrainConfig
    metrics.jsonl          one JSON line per RL step (sft_metrics.jsonl for the warm start)
    tensorboard/           event files (report_to includes "tensorboard")
    samples/step_*.html    episodes with their turns' text, images and rewards
    checkpoints/sft/model  the warm-started model (the RL reference when sft_steps > 0)
    checkpoints/step_*/    model or adapters, optimizer, scheduler, RNG, trainer_state.json
    final/                 the trained model (adapters under LoRA)
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import json
import math
import os
import shutil
import time
import typing
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents.algorithms.grpo import (
    AGGREGATIONS,
    group_advantages,
    policy_loss,
    turn_advantages,
)
from agents.images import ImageBudget
from agents.policy import DTYPES, LoraSettings, Policy
from agents.rollout import RolloutConfig, Trajectory, collect, make_envs
from agents.sft import sft_loss

LR_SCHEDULES = ("linear", "constant", "cosine")
CREDITS = ("episode", "turn")
MIXED_PRECISIONS = ("auto", "no", "bf16", "fp16")
REPORTERS = ("tensorboard", "wandb", "none")
VECTORIZATION_MODES = ("sync", "async")
# Expert episodes of the warm start reset with seeds from here on, far from the RL stream.
SFT_SEED_BASE = 1 << 40
# Fields a resumed run may change: they decide how long it runs and what it writes, not what
# a step computes. (Changing `steps` re-plans the learning-rate decay over the new total.)
RESUMABLE_FIELDS = frozenset(
    {
        "steps",
        "save_every",
        "keep_checkpoints",
        "sample_every",
        "sample_episodes",
        "report_to",
        "wandb_project",
        "progress_bar",
        "output",
    }
)


class ConfigError(ValueError):
    """A training configuration that cannot run; the message lists every problem and the fix."""


def _f(default: Any, help: str, **kwargs: Any):
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: copy.deepcopy(default), metadata={"help": help})
    return field(default=default, metadata={"help": help}, **kwargs)


@dataclass
class TrainConfig:
    """Everything a training run needs. Defaults follow the paper (paper.md §5) where it has
    one: G = 8, β = 0.04, lr 1e-6 decayed linearly to 0 with no warm-up, gradient clipping at
    1.0, temperature 1.0, one update per batch, sequence-mean-then-batch-mean loss.

    Build from a file and flags with :meth:`from_dict`; ``help_text(name)`` gives a field's
    help (the CLI shows it).
    """

    # ---------------------------------------------------------------- what and where
    env: str = _f("MATCoding-v0", "environment id (any registered id, or 'module:Env-v0')")
    env_kwargs: dict[str, Any] = _f({}, "keyword arguments for gym.make")
    model: str = _f("tiny", "'tiny' (built offline) or a local checkpoint folder")
    output: str = _f("runs/train", "run directory: metrics, checkpoints, samples, final model")
    steps: int = _f(100, "RL steps (one rollout batch each)")
    seed: int = _f(0, "seeds the task stream, sampling, and the tiny model's weights")
    # ---------------------------------------------------------------- GRPO
    group_size: int = _f(8, "episodes per task (G); advantages compare within a group")
    groups_per_step: int = _f(2, "tasks per step on each process")
    beta: float = _f(0.04, "weight of the k3 KL to the reference model (0 drops the reference)")
    scale_advantages: bool = _f(True, "divide by the group std (False: Dr. GRPO, unscaled)")
    credit: str = _f(
        "episode",
        "what a token's advantage compares: 'episode' (its episode's return, the paper's GRPO) "
        "or 'turn' (its turn's own reward against the group's same-numbered turns, as in the "
        "paper's one-row-per-step data)",
    )
    aggregation: str = _f(
        "seq-mean-token-mean",
        "loss reduction: seq-mean-token-mean (the paper: mean per episode, then over episodes), "
        "token-mean (every token weighs the same, so short episodes — e.g. ones a format error "
        "ended — do not weigh more per token), or dr-grpo (sum over a constant)",
    )
    clip_low: float = _f(0.2, "PPO clip range below 1 (active only with several updates)")
    clip_high: float | None = _f(None, "PPO clip range above 1 (None: same as clip_low)")
    inner_epochs: int = _f(1, "passes over each step's episodes (paper: 1)")
    num_minibatches: int = _f(1, "optimizer updates per pass; they split the episodes")
    gradient_accumulation_steps: int = _f(
        1, "micro-batches per minibatch (memory); gradients add up to the minibatch's"
    )
    # ---------------------------------------------------------------- sampling
    temperature: float = _f(1.0, "sampling temperature (paper: 1.0)")
    top_p: float = _f(1.0, "nucleus sampling; log-probs stay those of the full distribution")
    max_turns: int = _f(5, "turn cap per episode (paper: 5)")
    max_new_tokens: int = _f(256, "tokens per turn (paper: 256)")
    max_context_tokens: int | None = _f(None, "longest episode in tokens (None: the model's)")
    max_image_tokens: int = _f(16384, "image-token budget per episode (agents.images)")
    # ---------------------------------------------------------------- optimisation
    learning_rate: float = _f(1e-6, "peak learning rate of AdamW (paper: 1e-6)")
    lr_schedule: str = _f("linear", f"decay to 0 over the run: one of {', '.join(LR_SCHEDULES)}")
    warmup_steps: int = _f(0, "optimizer updates of linear warm-up (paper: 0)")
    weight_decay: float = _f(0.0, "AdamW weight decay (paper: 0)")
    max_grad_norm: float = _f(1.0, "clip the gradient norm to this (0: no clipping)")
    # ---------------------------------------------------------------- model
    dtype: str = _f("float32", "weights and optimizer state: float32, bfloat16 or float16")
    mixed_precision: str = _f(
        "auto", "compute precision: auto (bf16 on a GPU that has it, else no), no, bf16, fp16"
    )
    lora: bool = _f(False, "train LoRA adapters instead of all weights")
    lora_r: int = _f(16, "LoRA rank")
    lora_alpha: int = _f(32, "LoRA alpha")
    lora_dropout: float = _f(0.05, "LoRA dropout")
    gradient_checkpointing: bool = _f(False, "recompute activations in backward (less memory)")
    # ---------------------------------------------------------------- environments
    num_envs: int | None = _f(None, "envs per process (None: one per episode of a step)")
    vectorization: str = _f("sync", "sync (one process) or async (a subprocess per env)")
    # ---------------------------------------------------------------- supervised warm start
    sft_steps: int = _f(0, "supervised steps on scripted-expert episodes before RL (0: none)")
    sft_learning_rate: float = _f(1e-4, "AdamW learning rate of the warm start (linear decay)")
    sft_batch_size: int = _f(8, "expert episodes per warm-start step on each process")
    sft_episodes: int = _f(64, "expert episodes to learn from (spread over processes)")
    # ---------------------------------------------------------------- checkpoints and logs
    save_every: int = _f(50, "checkpoint every this many steps (and at the end; 0: end only)")
    keep_checkpoints: int = _f(2, "step checkpoints kept (older ones are deleted)")
    sample_every: int = _f(50, "write an HTML page of episodes every this many steps (0: never)")
    sample_episodes: int = _f(4, "episodes on each sample page")
    log_entropy: bool = _f(True, "log the policy entropy on model tokens")
    report_to: tuple[str, ...] = _f(
        ("tensorboard",), "where metrics go besides metrics.jsonl: tensorboard, wandb, none"
    )
    wandb_project: str = _f("arft", "wandb project (report_to includes wandb)")
    progress_bar: bool = _f(True, "show a progress bar")

    def __post_init__(self):
        if isinstance(self.report_to, str):
            self.report_to = tuple(p.strip() for p in self.report_to.split(",") if p.strip())
        self.report_to = tuple(self.report_to)
        problems = self._problems()
        if problems:
            raise ConfigError(
                "invalid training configuration:\n" + "\n".join(f"  - {p}" for p in problems)
            )

    # ------------------------------------------------------------------ validation

    def _problems(self) -> list[str]:
        p: list[str] = []

        def need(ok: bool, message: str) -> None:
            if not ok:
                p.append(message)

        need(self.steps >= 1, f"steps must be >= 1, got {self.steps}")
        need(
            self.group_size >= 2,
            f"group_size must be >= 2 (GRPO compares the episodes of a group; the paper uses "
            f"8), got {self.group_size}",
        )
        need(self.groups_per_step >= 1, f"groups_per_step must be >= 1, got {self.groups_per_step}")
        need(self.beta >= 0, f"beta must be >= 0 (0 turns the KL term off), got {self.beta}")
        need(
            self.credit in CREDITS,
            f"credit must be one of {', '.join(CREDITS)}, got {self.credit!r}",
        )
        need(
            self.aggregation in AGGREGATIONS,
            f"aggregation must be one of {', '.join(AGGREGATIONS)}, got {self.aggregation!r}",
        )
        need(0 < self.clip_low < 1, f"clip_low must be in (0, 1), got {self.clip_low}")
        need(
            self.clip_high is None or self.clip_high > 0,
            f"clip_high must be > 0 or None, got {self.clip_high}",
        )
        need(self.inner_epochs >= 1, f"inner_epochs must be >= 1, got {self.inner_epochs}")
        episodes = self.group_size * self.groups_per_step
        need(
            self.num_minibatches >= 1 and episodes % max(self.num_minibatches, 1) == 0,
            f"num_minibatches ({self.num_minibatches}) must divide the {episodes} episodes of a "
            "step (group_size × groups_per_step)",
        )
        per_minibatch = episodes // max(self.num_minibatches, 1)
        need(
            self.gradient_accumulation_steps >= 1
            and per_minibatch % max(self.gradient_accumulation_steps, 1) == 0,
            f"gradient_accumulation_steps ({self.gradient_accumulation_steps}) must divide the "
            f"{per_minibatch} episodes of a minibatch",
        )
        need(
            self.temperature > 0,
            f"temperature must be > 0 for RL (greedy decoding makes every member of a group "
            f"the same, so no advantage); got {self.temperature}",
        )
        need(0 < self.top_p <= 1, f"top_p must be in (0, 1], got {self.top_p}")
        need(self.max_turns >= 1, f"max_turns must be >= 1, got {self.max_turns}")
        need(self.max_new_tokens >= 1, f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        need(
            self.max_context_tokens is None or self.max_context_tokens > self.max_new_tokens,
            "max_context_tokens must exceed max_new_tokens (or be None)",
        )
        need(self.max_image_tokens >= 1, "max_image_tokens must be >= 1")
        need(self.learning_rate > 0, f"learning_rate must be > 0, got {self.learning_rate}")
        need(
            self.lr_schedule in LR_SCHEDULES,
            f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {self.lr_schedule!r}",
        )
        need(self.warmup_steps >= 0, f"warmup_steps must be >= 0, got {self.warmup_steps}")
        need(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}")
        need(self.max_grad_norm >= 0, f"max_grad_norm must be >= 0, got {self.max_grad_norm}")
        need(
            self.dtype in DTYPES,
            f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r} (float32 master "
            "weights are usual: bf16 weights round away updates as small as lr 1e-6)",
        )
        need(
            self.mixed_precision in MIXED_PRECISIONS,
            f"mixed_precision must be one of {', '.join(MIXED_PRECISIONS)}, "
            f"got {self.mixed_precision!r}",
        )
        need(self.lora_r >= 1, f"lora_r must be >= 1, got {self.lora_r}")
        need(self.lora_alpha >= 1, f"lora_alpha must be >= 1, got {self.lora_alpha}")
        need(0 <= self.lora_dropout < 1, f"lora_dropout must be in [0, 1), got {self.lora_dropout}")
        need(self.num_envs is None or self.num_envs >= 1, "num_envs must be >= 1 or None")
        need(
            self.vectorization in VECTORIZATION_MODES,
            f"vectorization must be one of {', '.join(VECTORIZATION_MODES)}, "
            f"got {self.vectorization!r}",
        )
        need(self.sft_steps >= 0, f"sft_steps must be >= 0, got {self.sft_steps}")
        need(self.sft_learning_rate > 0, "sft_learning_rate must be > 0")
        need(self.sft_batch_size >= 1, "sft_batch_size must be >= 1")
        need(self.sft_episodes >= 1, "sft_episodes must be >= 1")
        need(self.save_every >= 0, f"save_every must be >= 0, got {self.save_every}")
        need(self.keep_checkpoints >= 1, "keep_checkpoints must be >= 1")
        need(self.sample_every >= 0, "sample_every must be >= 0")
        need(self.sample_episodes >= 1, "sample_episodes must be >= 1")
        unknown = [r for r in self.report_to if r not in REPORTERS]
        need(not unknown, f"report_to entries must be among {', '.join(REPORTERS)}, got {unknown}")
        if "wandb" in self.report_to:
            import importlib.util

            need(
                importlib.util.find_spec("wandb") is not None,
                "report_to includes 'wandb' but wandb is not installed: `pip install wandb` "
                "(and `wandb login`), or leave wandb out of report_to",
            )
        need(isinstance(self.env_kwargs, dict), "env_kwargs must be a mapping")
        model_problem = _model_problem(self.model)
        if model_problem:
            p.append(model_problem)
        env_problem = _env_problem(self.env)
        if env_problem:
            p.append(env_problem)
        return p

    # ------------------------------------------------------------------ building

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def help_text(cls, name: str) -> str:
        return next(f.metadata.get("help", "") for f in fields(cls) if f.name == name)

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> TrainConfig:
        """A config from plain values (a parsed YAML/JSON file, CLI flags). Unknown keys and
        values of the wrong type fail with the allowed names or the expected type."""
        cls.check_keys(values, source)
        problems = []
        hints = typing.get_type_hints(cls)
        coerced = {}
        for key, value in values.items():
            try:
                coerced[key] = _coerce(value, hints[key])
            except (TypeError, ValueError):
                problems.append(f"{source}: {key} must be {_type_name(hints[key])}, got {value!r}")
        if problems:
            raise ConfigError(
                "invalid training configuration:\n" + "\n".join(f"  - {p}" for p in problems)
            )
        return cls(**coerced)

    @classmethod
    def check_keys(cls, values: dict[str, Any], source: str = "config") -> None:
        """Raise :class:`ConfigError` naming unknown keys, the closest known ones, and all."""
        names = cls.field_names()
        problems = []
        for key in values:
            if key not in names:
                close = difflib.get_close_matches(key, names, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                problems.append(f"{source}: unknown key {key!r}{hint}")
        if problems:
            problems.append(f"allowed keys: {', '.join(names)}")
            raise ConfigError(
                "invalid training configuration:\n" + "\n".join(f"  - {p}" for p in problems)
            )

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["report_to"] = list(self.report_to)
        return out

    @property
    def episodes_per_step(self) -> int:
        """Episodes each process plays per step."""
        return self.group_size * self.groups_per_step

    @property
    def updates_per_step(self) -> int:
        return self.inner_epochs * self.num_minibatches


def _model_problem(model: str) -> str | None:
    if model == "tiny":
        return None
    path = Path(model)
    if not path.is_dir():
        return (
            f"model must be 'tiny' or a local checkpoint folder; {model!r} is not a folder "
            "(arft never downloads weights: download the checkpoint yourself and pass its path)"
        )
    if not (path / "config.json").is_file():
        return f"model folder {model!r} has no config.json; pass a Hugging Face checkpoint folder"
    return None


def env_name(env_id: str) -> str:
    """The registry id of ``env_id``; for ``module:Env-v0`` the module (which registers the
    env) is imported first, as ``gym.make`` does."""
    import importlib

    import arft_envs  # noqa: F401  (registers the ids)

    module, sep, name = env_id.rpartition(":")
    if sep:
        importlib.import_module(module)
        return name
    return env_id


def _env_problem(env_id: str) -> str | None:
    import gymnasium as gym

    try:
        name = env_name(env_id)
    except ImportError as err:
        return f"env {env_id!r}: cannot import its module ({err})"
    try:
        gym.spec(name)
    except Exception as err:  # gymnasium raises several error types for unknown ids
        ids = sorted(gym.registry)
        close = difflib.get_close_matches(env_id, ids, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        ours = ", ".join(sorted(__import__("arft_envs").ENV_SPECS))
        return (
            f"env {env_id!r} is not registered ({type(err).__name__}).{hint} arft ids: {ours}; "
            "a third-party env can be named as 'module:Env-v0'"
        )
    return None


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def _coerce(value: Any, hint: Any) -> Any:
    """``value`` checked (and gently converted) to the field type ``hint``."""
    args = typing.get_args(hint)
    origin = typing.get_origin(hint)
    if args and type(None) in args:  # X | None
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        inner = [a for a in args if a is not type(None)][0]
        return _coerce(value, inner)
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no"):
            return value.lower() in ("true", "1", "yes")
        raise TypeError
    if hint is int:
        if isinstance(value, bool):
            raise TypeError
        if isinstance(value, float) and not value.is_integer():
            raise TypeError
        return int(value)
    if hint is float:
        if isinstance(value, bool):
            raise TypeError
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise TypeError
        return value
    if origin is tuple:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise TypeError
        return tuple(str(v) for v in value)
    if origin is dict:
        if not isinstance(value, dict):
            raise TypeError
        return dict(value)
    return value


# ============================================================================ the trainer


class _Clock:
    """Seconds spent per named activity within one step."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

    def wrap(self, name: str, fn):
        def timed(*args, **kwargs):
            with self(name):
                return fn(*args, **kwargs)

        return timed


class _TimedPolicy:
    """The policy as the rollout sees it, with ``generate`` timed."""

    def __init__(self, policy: Policy, clock: _Clock):
        self._policy = policy
        self.generate = clock.wrap("generation", policy.generate)

    def __getattr__(self, name: str):
        return getattr(self._policy, name)


class _TimedEnvs:
    """A vector env whose ``step`` (where the tools run) is timed."""

    def __init__(self, envs, clock: _Clock):
        self._envs = envs
        self.step = clock.wrap("tools", envs.step)

    def __getattr__(self, name: str):
        return getattr(self._envs, name)


class GRPOTrainer:
    """Runs :class:`TrainConfig`: optional SFT warm start, then GRPO steps with checkpoints.

    ``train()`` does everything; ``setup()``, ``warm_start()``, ``run()`` and ``finish()`` are
    its parts, for callers that evaluate in between (the demo). ``policy`` may be passed in
    (tests reuse one tiny model); otherwise it is loaded from ``config.model``. ``expert``,
    ``expert(obs, env) -> turn``, writes the warm start's demonstrations (default: the env's
    gold turns, :class:`arft_envs.experts.ScriptedExpert`).
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
        self.config = config
        self.expert = expert
        self.resume = resume
        self.output = Path(config.output)
        self.accelerator = accelerator or make_accelerator(config)
        self.policy: Policy | None = policy
        self.step = 0
        self.sft_step = 0
        self._ready = False
        self._writers: dict[str, Any] = {}
        self._envs = None
        self.reference = None
        self.train_model = None
        self.optimizer = None
        self.scheduler = None
        self.last_metrics: dict[str, Any] = {}

    # ------------------------------------------------------------------ properties

    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process

    @property
    def checkpoint_root(self) -> Path:
        return self.output / "checkpoints"

    @property
    def sft_model_dir(self) -> Path:
        return self.checkpoint_root / "sft" / "model"

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

    # ------------------------------------------------------------------ setup

    def setup(self) -> None:
        """Prepare the run directory, load the model, and decide where a resume starts."""
        from accelerate.utils import set_seed

        cfg = self.config
        self._check_output()
        set_seed(cfg.seed)
        checkpoint = self.latest_checkpoint() if self.resume else None
        if checkpoint is not None and cfg.sft_steps > 0 and not self._sft_done():
            raise ConfigError(
                f"{self.output}: found {checkpoint.name} but no completed warm start in "
                f"{self.sft_model_dir}; the run directory is inconsistent — start a new --output"
            )
        base = str(self.sft_model_dir) if cfg.sft_steps > 0 and self._sft_done() else cfg.model
        if self.policy is None or base != cfg.model:
            self.policy = Policy.from_pretrained(
                base,
                dtype=cfg.dtype,
                device=self.accelerator.device,
                gradient_checkpointing=cfg.gradient_checkpointing,
                image_budget=ImageBudget(max_image_tokens=cfg.max_image_tokens),
                seed=cfg.seed,
            )
        else:
            self.policy.model.to(self.accelerator.device)
        self._resume_from = checkpoint
        self._ready = True

    def _check_output(self) -> None:
        cfg = self.config
        saved = self.output / "config.json"
        if self.resume and saved.is_file():
            old = json.loads(saved.read_text(encoding="utf-8"))
            new = json.loads(json.dumps(cfg.to_dict()))  # tuples as lists, as saved
            changed = {
                k: (old.get(k), v)
                for k, v in new.items()
                if k not in RESUMABLE_FIELDS and old.get(k, v) != v
            }
            if changed:
                lines = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in changed.items())
                raise ConfigError(
                    f"--resume with settings that change what a step computes ({lines}). A "
                    f"resumed run may only change {', '.join(sorted(RESUMABLE_FIELDS))}; start "
                    "a new --output for the rest"
                )
        elif (
            not self.resume
            and self.checkpoint_root.exists()
            and any(self.checkpoint_root.iterdir())
        ):
            raise ConfigError(
                f"{self.output} already holds a run (checkpoints/); pass --resume to continue "
                "it, or choose another --output"
            )
        if self.is_main:
            self.output.mkdir(parents=True, exist_ok=True)
            tmp = saved.with_suffix(".tmp")
            tmp.write_text(json.dumps(cfg.to_dict(), indent=2), encoding="utf-8")
            os.replace(tmp, saved)
        self.accelerator.wait_for_everyone()

    def _sft_done(self) -> bool:
        return (self.sft_model_dir.parent / "done.json").is_file()

    # ------------------------------------------------------------------ warm start

    def warm_start(self) -> None:
        """Supervised steps on expert episodes (``sft_steps``); skipped when already done."""
        cfg = self.config
        if cfg.sft_steps == 0 or self._sft_done():
            return
        from agents.sft import expert_trajectories

        acc = self.accelerator
        policy = self.policy
        world, rank = acc.num_processes, acc.process_index
        rollout_cfg = self._rollout_config(0)
        seeds = [SFT_SEED_BASE + cfg.seed * 1_000_003 + i for i in range(cfg.sft_episodes)]
        seeds = seeds[rank::world]
        demos = expert_trajectories(
            policy,
            env_name(cfg.env),
            seeds,
            env_kwargs=cfg.env_kwargs,
            config=rollout_cfg,
            expert=self.expert,
        )
        returns = [t.episode_return for t in demos]
        self._print(
            f"warm start: {len(demos) * world} expert episodes (mean return "
            f"{float(np.mean(returns)):.2f}), {cfg.sft_steps} steps"
        )
        if cfg.lora:
            self._add_lora()
        params = [p for p in policy.model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=cfg.sft_learning_rate, weight_decay=0.0)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda i: max(0.0, 1.0 - i / cfg.sft_steps)
        )
        model, optimizer = acc.prepare(policy.model, optimizer)
        accumulation = acc.gradient_accumulation_steps
        acc.gradient_accumulation_steps = 1  # a warm-start step is one batch
        generator = torch.Generator().manual_seed(cfg.seed * 7 + rank)
        if self.is_main:
            _truncate_jsonl(self.output / "sft_metrics.jsonl", "sft_step", 0)
        self._open_writers("sft", purge_step=1)
        bar = self._bar(cfg.sft_steps, 0, "sft")
        for step in range(1, cfg.sft_steps + 1):
            start = time.perf_counter()
            model.train()
            index = torch.randint(
                len(demos), (min(cfg.sft_batch_size, len(demos)),), generator=generator
            )
            with acc.autocast():
                loss, tokens = sft_loss(policy, [demos[i] for i in index.tolist()], model=model)
            acc.backward(loss)
            grad_norm = acc.clip_grad_norm_(params, cfg.max_grad_norm or float("inf"))
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            loss_value = float(acc.reduce(loss.detach(), "mean"))
            self.sft_step = step
            record = {
                "sft_step": step,
                "loss": loss_value,
                "tokens": tokens,
                "grad_norm": float(grad_norm),
                "lr": schedule.get_last_lr()[0],
                "time/step": time.perf_counter() - start,
            }
            self._log(record, "sft_metrics.jsonl", "sft", step)
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
        if self.is_main:
            target = self.sft_model_dir
            if target.parent.exists():
                shutil.rmtree(target.parent)
            policy.save_pretrained(target)
            done = {"sft_steps": cfg.sft_steps, "episodes": len(demos) * world}
            (target.parent / "done.json").write_text(json.dumps(done), encoding="utf-8")
        acc.wait_for_everyone()

    def _add_lora(self) -> None:
        from agents.policy import _apply_lora

        cfg = self.config
        settings = LoraSettings(r=cfg.lora_r, alpha=cfg.lora_alpha, dropout=cfg.lora_dropout)
        self.policy.model = _apply_lora(self.policy.model, settings)

    # ------------------------------------------------------------------ RL

    def _prepare_rl(self) -> None:
        cfg = self.config
        acc = self.accelerator
        policy = self.policy
        if cfg.lora:
            self._add_lora()
        if cfg.beta > 0 and not cfg.lora:
            self.reference = copy.deepcopy(policy.model).eval().requires_grad_(False)
        params = [p for p in policy.model.parameters() if p.requires_grad]
        if not params:
            raise RuntimeError("the model has no trainable parameters")
        optimizer = torch.optim.AdamW(
            params,
            lr=cfg.learning_rate,
            weight_decay=cfg.weight_decay,
            betas=(0.9, 0.999),
            eps=1e-8,
        )
        total = cfg.steps * cfg.updates_per_step
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda i: lr_factor(i, total, cfg.warmup_steps, cfg.lr_schedule)
        )
        if cfg.lora:
            acc.register_save_state_pre_hook(_adapters_only)
        self.train_model, self.optimizer, self.scheduler = acc.prepare(
            policy.model, optimizer, scheduler
        )
        self._params = params
        if self._resume_from is not None:
            acc.load_state(str(self._resume_from), strict=not cfg.lora)
            state = json.loads((self._resume_from / "trainer_state.json").read_text())
            self.step = int(state["step"])
            self._replan_lr()
            self._print(f"resumed from {self._resume_from} at step {self.step}")
        if self.is_main:
            _truncate_jsonl(self.output / "metrics.jsonl", "step", self.step)
        self._open_writers("grpo", purge_step=self.step + 1)
        self._envs = self._make_envs()

    def _replan_lr(self) -> None:
        """After loading a checkpoint, set the learning rate from the schedule of *this* run
        (a resume may extend ``steps``, which re-plans the decay)."""
        schedule = getattr(self.scheduler, "scheduler", self.scheduler)
        for group, factor, base in zip(
            self.optimizer.param_groups, schedule.lr_lambdas, schedule.base_lrs, strict=True
        ):
            group["lr"] = base * factor(schedule.last_epoch)
        schedule._last_lr = [g["lr"] for g in self.optimizer.param_groups]

    def run(self) -> None:
        """RL steps from the current step to ``config.steps``."""
        cfg = self.config
        if not self._ready:
            self.setup()
        if self.train_model is None:
            self._prepare_rl()
        bar = self._bar(cfg.steps, self.step, "grpo")
        while self.step < cfg.steps:
            step = self.step + 1
            metrics = self.train_step(step)
            self.step = step
            self.last_metrics = metrics
            self._log(metrics, "metrics.jsonl", "grpo", step)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(reward=f"{metrics['reward_mean']:.2f}", kl=f"{metrics['kl']:.3f}")
            if (cfg.save_every and step % cfg.save_every == 0) or step == cfg.steps:
                self.save_checkpoint()
        if bar is not None:
            bar.close()

    def train_step(self, step: int) -> dict[str, Any]:
        """One GRPO step: rollout, advantages, reference, updates. Returns the step's metrics."""
        clock = _Clock()
        with clock("step"):
            with clock("rollout"):
                trajectories = self.rollout(step, clock)
            advantages = self.advantages(trajectories)
            with clock("reference"):
                ref, old = self.reference_logprobs(trajectories)
            with clock("forward_backward"):
                update = self.update(trajectories, advantages, ref, old, step=step)
            if self.config.sample_every and step % self.config.sample_every == 0:
                with clock("samples"):
                    self.write_samples(step, trajectories)
        return self._metrics(step, trajectories, update, clock)

    # ------------------------------------------------------------------ rollout

    def _rollout_config(self, step: int) -> RolloutConfig:
        cfg = self.config
        return RolloutConfig(
            group_size=cfg.group_size,
            max_new_tokens=cfg.max_new_tokens,
            temperature=cfg.temperature,
            top_p=cfg.top_p,
            max_turns=cfg.max_turns,
            max_context_tokens=cfg.max_context_tokens,
            seed=self.rollout_seed(step),
        )

    def rollout_seed(self, step: int) -> int:
        """The seed of this process's rollout at ``step``: its groups reset with seed + g, so
        steps and processes never share a task seed, and a resumed run replays the stream."""
        cfg = self.config
        acc = self.accelerator
        slot = (step - 1) * acc.num_processes + acc.process_index
        return cfg.seed * 1_000_000_007 + slot * cfg.groups_per_step

    def _make_envs(self):
        import arft_envs  # noqa: F401

        cfg = self.config
        num_envs = cfg.num_envs or cfg.episodes_per_step
        return make_envs(
            env_name(cfg.env),
            num_envs,
            cfg.vectorization,
            copy_observations=False,  # collect() only reads them
            **cfg.env_kwargs,
        )

    def rollout(self, step: int, clock: _Clock | None = None) -> list[Trajectory]:
        """This process's episodes for ``step`` (groups contiguous)."""
        clock = clock or _Clock()
        if self._envs is None:
            self._envs = self._make_envs()
        self.policy.model.eval()
        with torch.no_grad(), self.accelerator.autocast(), self._generation_weights():
            return collect(
                _TimedPolicy(self.policy, clock),
                _TimedEnvs(self._envs, clock),
                self._rollout_config(step),
                groups=self.config.groups_per_step,
                env_id=self.config.env,
            )

    @contextlib.contextmanager
    def _generation_weights(self):
        """Full weights for generation: gathered under FSDP / ZeRO-3, as-is otherwise."""
        from accelerate.utils import DistributedType

        acc = self.accelerator
        kind = acc.distributed_type
        fsdp1 = kind == DistributedType.FSDP and acc.state.fsdp_plugin.fsdp_version == 1
        if fsdp1 and self.train_model is not None:
            # FSDP2 modules gather their shards in forward hooks; FSDP1 needs this.
            from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

            with FSDP.summon_full_params(self.train_model, writeback=False, recurse=True):
                yield
        elif kind == DistributedType.DEEPSPEED and self.train_model is not None:
            plugin = acc.state.deepspeed_plugin
            if plugin is not None and plugin.zero_stage == 3:
                import deepspeed

                with deepspeed.zero.GatheredParameters(list(self.train_model.parameters())):
                    yield
            else:
                yield
        else:
            yield

    # ------------------------------------------------------------------ losses

    def advantages(self, trajectories: Sequence[Trajectory]) -> torch.Tensor | list[torch.Tensor]:
        """Group-relative advantages: (B,) of the episodes' returns, or with ``credit='turn'``
        one (n_tokens,) row per episode where each sampled token carries its turn's."""
        cfg = self.config
        if cfg.credit == "turn":
            per_turn = turn_advantages(
                [t.rewards for t in trajectories], cfg.group_size, scale=cfg.scale_advantages
            )
            rows = []
            for t, values in zip(trajectories, per_turn, strict=True):
                row = torch.zeros(len(t.input_ids))
                for (start, end), value in zip(t.turn_spans, values, strict=False):
                    row[start:end] = value  # a turn generated but never stepped keeps 0
                rows.append(row)
            return rows
        returns = torch.tensor([t.episode_return for t in trajectories], dtype=torch.float32)
        return group_advantages(returns, cfg.group_size, scale=cfg.scale_advantages)

    def _micro_batches(self, index: Sequence[int]) -> list[list[int]]:
        n = self.config.gradient_accumulation_steps
        size = math.ceil(len(index) / n)
        return [list(index[i : i + size]) for i in range(0, len(index), size)]

    @torch.no_grad()
    def reference_logprobs(
        self, trajectories: Sequence[Trajectory]
    ) -> tuple[list[torch.Tensor] | None, list[torch.Tensor] | None]:
        """Per-episode token log-probs (1-D, one per token) of the reference (``beta > 0``)
        and of the policy before any update (several updates per step), else None."""
        from agents.sft import token_batch

        cfg = self.config
        need_old = cfg.updates_per_step > 1
        if cfg.beta == 0 and not need_old:
            return None, None
        ref_out: list[torch.Tensor] = []
        old_out: list[torch.Tensor] = []
        unwrapped = self.accelerator.unwrap_model(self.train_model)
        for chunk in self._micro_batches(list(range(len(trajectories)))):
            items = [trajectories[i] for i in chunk]
            batch, mask = token_batch(self.policy, items)
            with self.accelerator.autocast():
                if cfg.beta > 0:
                    if cfg.lora:
                        with unwrapped.disable_adapter():
                            ref, _ = self.policy.forward_logprobs(
                                batch, temperature=cfg.temperature, mask=mask, model=unwrapped
                            )
                    else:
                        ref, _ = self.policy.forward_logprobs(
                            batch, temperature=cfg.temperature, mask=mask, model=self.reference
                        )
                    ref_out += [ref[r, : len(t.input_ids)].float() for r, t in enumerate(items)]
                if need_old:
                    old, _ = self.policy.forward_logprobs(
                        batch, temperature=cfg.temperature, mask=mask, model=unwrapped
                    )
                    old_out += [old[r, : len(t.input_ids)].float() for r, t in enumerate(items)]
        return (ref_out if cfg.beta > 0 else None), (old_out if need_old else None)

    def update(
        self,
        trajectories: Sequence[Trajectory],
        advantages: torch.Tensor | list[torch.Tensor],
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
        from agents.sft import token_batch

        cfg = self.config
        acc = self.accelerator
        model = self.train_model
        policy = self.policy
        max_tokens = cfg.max_new_tokens * cfg.max_turns
        generator = torch.Generator().manual_seed(self.rollout_seed(step or self.step + 1))
        sums: dict[str, float] = {}
        updates = 0
        model.train()
        for epoch in range(cfg.inner_epochs):
            order = list(range(len(trajectories)))
            if epoch > 0 or cfg.num_minibatches > 1:
                order = torch.randperm(len(trajectories), generator=generator).tolist()
            size = len(order) // cfg.num_minibatches
            for m in range(cfg.num_minibatches):
                minibatch = order[m * size : (m + 1) * size]
                micro = self._micro_batches(minibatch)
                mb_tokens = sum(sum(trajectories[i].assistant_mask) for i in minibatch)
                stats: dict[str, float] = {}
                for chunk in micro:
                    items = [trajectories[i] for i in chunk]
                    batch, mask = token_batch(policy, items)
                    length = batch["input_ids"].shape[1]
                    # accelerate's idiom: gradients sync (and the optimizer steps) on the last
                    # of `gradient_accumulation_steps` micro-batches; DDP, FSDP and DeepSpeed
                    # all honour it.
                    with acc.accumulate(model):
                        with acc.autocast():
                            logp, entropy = policy.forward_logprobs(
                                batch,
                                temperature=cfg.temperature,
                                mask=mask,
                                return_entropy=cfg.log_entropy,
                                model=model,
                            )
                        logp = logp.float()
                        old_logp = (
                            logp.detach() if old is None else _pad([old[i] for i in chunk], length)
                        )
                        ref_logp = None if ref is None else _pad([ref[i] for i in chunk], length)
                        out = policy_loss(
                            logp,
                            old_logp.to(logp.device),
                            _chunk(advantages, chunk, length).to(logp.device),
                            mask,
                            None if ref_logp is None else ref_logp.to(logp.device),
                            beta=cfg.beta,
                            clip_low=cfg.clip_low,
                            clip_high=cfg.clip_high,
                            aggregation=cfg.aggregation,
                            max_tokens=max_tokens,
                        )
                        if cfg.aggregation == "token-mean":
                            weight = float(mask.sum()) / max(mb_tokens, 1)
                        else:
                            weight = len(chunk) / len(minibatch)
                        # The weights add up to 1 over a minibatch; accelerate (or DeepSpeed)
                        # divides by the number of micro-batches, which this undoes.
                        acc.backward(out.loss * weight * acc.gradient_accumulation_steps)
                        if acc.sync_gradients:
                            max_norm = cfg.max_grad_norm if cfg.max_grad_norm > 0 else math.inf
                            norm = acc.clip_grad_norm_(self._params, max_norm)
                            stats["grad_norm"] = float(norm) if norm is not None else math.nan
                            stats["lr"] = self.scheduler.get_last_lr()[0]
                        self.optimizer.step()  # a no-op until the gradients sync
                        if acc.sync_gradients:
                            self.scheduler.step()
                        self.optimizer.zero_grad(set_to_none=True)
                    n_tok = float(mask.sum())
                    _add(stats, "loss", float(out.loss.detach()) * weight)
                    _add(stats, "policy_loss", out.policy_loss * weight)
                    _add(stats, "kl", out.kl * n_tok / max(mb_tokens, 1))
                    _add(stats, "clip_fraction", out.clip_fraction * n_tok / max(mb_tokens, 1))
                    _add(stats, "ratio_mean", out.ratio_mean * n_tok / max(mb_tokens, 1))
                    if entropy is not None:
                        ent = float((entropy.detach().float() * mask).sum())
                        _add(stats, "entropy", ent / max(mb_tokens, 1))
                updates += 1
                for key, value in stats.items():
                    _add(sums, key, value)
        model.eval()
        return {k: v / max(updates, 1) for k, v in sums.items()}

    # ------------------------------------------------------------------ metrics

    def _metrics(self, step, trajectories, update, clock) -> dict[str, Any]:
        from accelerate.utils import gather_object

        local = {
            "episodes": [_episode_summary(t) for t in trajectories],
            "update": update,
        }
        if self.accelerator.num_processes > 1:
            parts = gather_object([local])
        else:
            parts = [local]
        episodes = [e for part in parts for e in part["episodes"]]
        returns = np.array([e["return"] for e in episodes])
        metrics: dict[str, Any] = {
            "step": step,
            "episodes": len(episodes),
            "reward_mean": float(returns.mean()),
            "reward_std": float(returns.std()),
        }
        names = sorted({k for e in episodes for k in e["components"]})
        for name in names:
            metrics[f"reward/{name}"] = float(
                np.mean([e["components"].get(name, 0.0) for e in episodes])
            )
        for key in ("f1", "em", "turns", "format_errors", "tool_failures", "truncated"):
            metrics[key] = float(np.mean([e[key] for e in episodes]))
        for key in parts[0]["update"]:
            metrics[key] = float(np.mean([p["update"][key] for p in parts]))
        metrics["tokens/model"] = int(sum(e["model_tokens"] for e in episodes))
        metrics["tokens/total"] = int(sum(e["tokens"] for e in episodes))
        metrics["tokens/per_turn"] = metrics["tokens/model"] / max(
            sum(e["turns"] for e in episodes), 1
        )
        metrics["stopped_at_length"] = float(np.mean([e["length_stops"] for e in episodes]))
        seconds = clock.seconds
        for key in ("generation", "tools", "rollout", "reference", "forward_backward", "step"):
            metrics[f"time/{key}"] = round(seconds.get(key, 0.0), 4)
        metrics["time/rollout_other"] = round(
            seconds.get("rollout", 0.0)
            - seconds.get("generation", 0.0)
            - seconds.get("tools", 0.0),
            4,
        )
        return metrics

    # ------------------------------------------------------------------ logging

    def _open_writers(self, phase: str, purge_step: int) -> None:
        """Open the loggers of ``phase`` ("sft" or "grpo"; tensorboard runs
        ``tensorboard/<phase>``), dropping events a killed run wrote at ``purge_step`` and
        later."""
        if not self.is_main:
            return
        cfg = self.config
        if "tensorboard" in cfg.report_to and f"tb/{phase}" not in self._writers:
            from torch.utils.tensorboard import SummaryWriter

            self._writers[f"tb/{phase}"] = SummaryWriter(
                str(self.output / "tensorboard" / phase), purge_step=purge_step
            )
        if "wandb" in cfg.report_to and "wandb" not in self._writers:
            try:
                import wandb
            except ImportError as err:
                raise ImportError(
                    "report_to includes 'wandb' but wandb is not installed: `pip install wandb`"
                ) from err
            run_id_file = self.output / "wandb_run_id"
            run_id = run_id_file.read_text().strip() if run_id_file.is_file() else None
            run = wandb.init(
                project=cfg.wandb_project,
                config=cfg.to_dict(),
                dir=str(self.output),
                id=run_id,
                resume="allow",
            )
            run_id_file.write_text(run.id)
            self._writers["wandb"] = run

    def _log(self, record: dict, filename: str, phase: str, step: int) -> None:
        """One line of ``filename`` and the numeric values to tensorboard and wandb."""
        if not self.is_main:
            return
        with (self.output / filename).open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        scalars = {
            k: v
            for k, v in record.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)
        }
        writer = self._writers.get(f"tb/{phase}")
        if writer is not None:
            for key, value in scalars.items():
                writer.add_scalar(key, value, step)
            writer.flush()
        if "wandb" in self._writers:
            self._writers["wandb"].log({f"{phase}/{k}": v for k, v in scalars.items()})

    def _bar(self, total: int, initial: int, desc: str):
        if not (self.is_main and self.config.progress_bar):
            return None
        from tqdm.auto import tqdm

        return tqdm(total=total, initial=initial, desc=desc, dynamic_ncols=True)

    def write_samples(self, step: int, trajectories: Sequence[Trajectory]) -> Path | None:
        """An HTML page of the step's first episodes: each turn's text, images and reward."""
        if not self.is_main:
            return None
        path = self.output / "samples" / f"step_{step:06d}.html"
        return write_trajectory_page(
            path,
            trajectories[: self.config.sample_episodes],
            title=f"{self.config.env} · step {step}",
        )

    # ------------------------------------------------------------------ checkpoints

    def latest_checkpoint(self) -> Path | None:
        """The newest complete step checkpoint (it holds trainer_state.json), or None."""
        if not self.checkpoint_root.is_dir():
            return None
        done = [
            p
            for p in self.checkpoint_root.glob("step_*")
            if p.is_dir() and (p / "trainer_state.json").is_file()
        ]
        return max(done, key=lambda p: int(p.name.split("_")[1]), default=None)

    def save_checkpoint(self) -> Path:
        """Write ``checkpoints/step_N`` atomically (a temporary folder renamed when complete)
        and keep the newest ``keep_checkpoints``."""
        acc = self.accelerator
        final = self.checkpoint_root / f"step_{self.step:06d}"
        tmp = self.checkpoint_root / f".tmp_step_{self.step:06d}"
        if self.is_main and tmp.exists():
            shutil.rmtree(tmp)
        acc.wait_for_everyone()
        acc.save_state(str(tmp))
        acc.wait_for_everyone()
        if self.is_main:
            state = {"step": self.step, "config": self.config.to_dict(), "time": time.time()}
            (tmp / "trainer_state.json").write_text(json.dumps(state, indent=2))
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
            steps = sorted(
                (p for p in self.checkpoint_root.glob("step_*") if p.is_dir()),
                key=lambda p: int(p.name.split("_")[1]),
            )
            for old in steps[: -self.config.keep_checkpoints]:
                shutil.rmtree(old, ignore_errors=True)
        acc.wait_for_everyone()
        return final

    def finish(self) -> Path | None:
        """Save the trained model to ``final/`` and close writers and envs."""
        acc = self.accelerator
        acc.wait_for_everyone()
        path = None
        if self.is_main and self.train_model is not None:
            path = self.policy.save_pretrained(self.output / "final")
        self.close()
        return path

    def close(self) -> None:
        for name, writer in list(self._writers.items()):
            if name == "wandb":
                writer.finish()
            else:
                writer.close()
        self._writers.clear()
        if self._envs is not None:
            self._envs.close()
            self._envs = None


# ============================================================================ helpers


def make_accelerator(config: TrainConfig):
    """An ``Accelerator`` for the config: bf16 autocast where a GPU has it, gradients
    accumulated over ``gradient_accumulation_steps`` micro-batches, the scheduler stepped once
    per optimizer update whatever the number of processes, and DDP told that some parameters
    (the vision tower on text-only batches) may get no gradient."""
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    mixed = config.mixed_precision
    if mixed == "auto":
        mixed = "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
    ddp = DistributedDataParallelKwargs(find_unused_parameters=not config.lora)
    # Several processes and no GPU: accelerate picks DDP over gloo only when told `cpu`.
    cpu = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()
    sharded = [
        name
        for name, var in (
            ("FSDP", "ACCELERATE_USE_FSDP"),
            ("DeepSpeed", "ACCELERATE_USE_DEEPSPEED"),
        )
        if os.environ.get(var, "").lower() in ("1", "true")
    ]
    if cpu and sharded:
        # `cpu=True` would quietly turn the sharded run into plain DDP.
        raise RuntimeError(
            f"{sharded[0]} was requested (accelerate config) but no GPU is visible; accelerate "
            f"shards only on accelerators. On CPU use DDP over gloo: `accelerate launch "
            f"--multi_gpu --num_processes N -m agents.cli train ...`."
        )
    return Accelerator(
        cpu=cpu,
        mixed_precision=mixed,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        step_scheduler_with_optimizer=False,
        kwargs_handlers=[ddp],
    )


def lr_factor(update: int, total: int, warmup: int, schedule: str) -> float:
    """The learning-rate multiplier at optimizer update ``update`` (0-based) of ``total``."""
    if warmup and update < warmup:
        return (update + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (update - warmup) / max(1, total - warmup))
    if schedule == "linear":
        return 1.0 - progress
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def _adapters_only(models, weights, output_dir) -> None:
    """accelerate save hook under LoRA: keep only the trainable (adapter) weights."""
    for model, state in zip(models, weights, strict=False):
        trainable = {name for name, p in model.named_parameters() if p.requires_grad}
        for key in list(state):
            if key not in trainable and key.removeprefix("module.") not in trainable:
                del state[key]


def _chunk(
    advantages: torch.Tensor | list[torch.Tensor], chunk: Sequence[int], length: int
) -> torch.Tensor:
    """The advantages of ``chunk``: (b,) per episode, or (b, length) per token."""
    if isinstance(advantages, torch.Tensor):
        return advantages[chunk]
    return _pad([advantages[i] for i in chunk], length)


def _pad(rows: Sequence[torch.Tensor], length: int) -> torch.Tensor:
    out = torch.zeros(len(rows), length)
    for r, row in enumerate(rows):
        out[r, : row.numel()] = row
    return out


def _add(stats: dict[str, float], key: str, value: float) -> None:
    stats[key] = stats.get(key, 0.0) + value


def _episode_summary(t: Trajectory) -> dict[str, Any]:
    components: dict[str, float] = {}
    for turn in t.reward_components:
        for name, value in turn.items():
            components[name] = components.get(name, 0.0) + float(value)
    info = t.info
    return {
        "return": t.episode_return,
        "components": components,
        "f1": float(info.get("f1", 0.0) or 0.0),
        "em": float(info.get("em", 0.0) or 0.0),
        "turns": t.num_turns,
        "format_errors": float(info.get("format_errors", 0) or 0),
        "tool_failures": float(info.get("tool_failures", 0) or 0),
        "truncated": float(t.truncated),
        "model_tokens": int(sum(t.assistant_mask)),
        "tokens": len(t.input_ids),
        "length_stops": float(sum(r == "length" for r in t.finish_reasons)),
    }


def _truncate_jsonl(path: Path, key: str, last: int) -> None:
    """Drop lines whose ``key`` is above ``last`` (steps a killed run logged after its last
    checkpoint), so that after a resume every step appears exactly once."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if int(json.loads(line)[key]) <= last:
                kept.append(line)
        except (ValueError, KeyError, TypeError):
            continue  # a line cut short by the kill
    path.write_text("".join(k + "\n" for k in kept), encoding="utf-8")


def trajectory_record(t: Trajectory, title: str | None = None):
    """An :class:`arft_envs.report.EpisodeRecord` of a trajectory (env images, per-turn
    rewards and the final info)."""
    from arft_envs.report import EpisodeRecord

    title = title or (
        f"task {t.task_id} · episode {t.index} (group {t.group}) · return {t.episode_return:.2f}"
    )
    observation = {"messages": t.messages, "images": t.env_images}
    return EpisodeRecord(title, observation, list(t.rewards), list(t.reward_components), t.info)


def write_trajectory_page(
    path: str | Path, trajectories: Sequence[Trajectory], title: str = "arft"
) -> Path:
    """An HTML page of trajectories (:mod:`arft_envs.report`), one section per episode."""
    from arft_envs.report import write_report

    return write_report(path, [trajectory_record(t) for t in trajectories], title=title)
