"""Validation of a :class:`~agents.training.config.TrainConfig`: every problem at once, each
with its fix, read section by section.

- the fields with a fixed set of values (their ``choices``, :func:`choice_problems`);
- the ranges of the numeric fields, one row each in :data:`BOUNDS` with why where the reason
  is not plain (:func:`bound_problems`; an algorithm's section passes its own rows);
- how a step's episodes split into minibatches and micro-batches, and the context length;
- where metrics go (``report_to``, and wandb installed when named);
- the env (registered, or ``module:Env-v0`` importable) and the model (:mod:`agents.models.
  registry` can load it);
- the training enhancements' own options (:func:`agents.training.enhancements.config_problems`).

:func:`config_problems` is what ``TrainConfig.__post_init__`` raises a
:class:`~agents.training.config.ConfigError` with, when it lists anything.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
from collections.abc import Callable, Sequence
from dataclasses import fields
from typing import Any

from agents.training.config import (
    REPORTERS,
    TrainConfig,
    algorithm_class,
    algorithm_names,
    env_name,
    field_choices,
)


def config_problems(cfg: TrainConfig) -> list[str]:
    """Every problem of the base fields of ``cfg``, section by section (empty: it can run)."""
    from agents.training.enhancements import config_problems as enhancement_problems

    return [
        *choice_problems(cfg),
        *_algo_problems(cfg),
        *bound_problems(cfg, BOUNDS),
        *_batch_problems(cfg),
        *_report_problems(cfg),
        *_source_problems(cfg),
        *enhancement_problems(cfg),
    ]


# What a bound in BOUNDS means; a value that breaks one reads
# "<field> must be <bound><why>, got <value>".
_BOUND_TESTS: dict[str, Callable[[Any], bool]] = {
    ">= 0": lambda v: v >= 0,
    ">= 1": lambda v: v >= 1,
    ">= 2": lambda v: v >= 2,
    "> 0": lambda v: v > 0,
    "in (0, 1]": lambda v: 0 < v <= 1,
    "in [0, 1)": lambda v: 0 <= v < 1,
    ">= 1 or None": lambda v: v is None or v >= 1,
}

# (field, bound, why): the range of each numeric field of TrainConfig, and why where the
# reason is not plain.
BOUNDS: tuple[tuple[str, str, str], ...] = (
    ("steps", ">= 1", ""),
    ("group_size", ">= 2", " (GRPO compares the episodes of a group; the paper uses 8)"),
    ("groups_per_step", ">= 1", ""),
    ("inner_epochs", ">= 1", ""),
    (
        "temperature",
        "> 0",
        " for RL (greedy decoding makes every member of a group the same, so no advantage)",
    ),  # fmt: skip
    ("top_p", "in (0, 1]", ""),
    ("max_turns", ">= 1", ""),
    ("max_new_tokens", ">= 1", ""),
    ("max_image_tokens", ">= 1", ""),
    ("learning_rate", "> 0", ""),
    ("warmup_steps", ">= 0", ""),
    ("weight_decay", ">= 0", ""),
    ("max_grad_norm", ">= 0", " (0: no clipping)"),
    ("lora_r", ">= 1", ""),
    ("lora_alpha", ">= 1", ""),
    ("lora_dropout", "in [0, 1)", ""),
    ("num_envs", ">= 1 or None", " (None: one env per episode of a step)"),
    ("sft_steps", ">= 0", " (0: no warm start)"),
    ("sft_learning_rate", "> 0", ""),
    ("sft_batch_size", ">= 1", ""),
    ("sft_micro_batch_size", ">= 1 or None", ""),
    ("sft_episodes", ">= 1", ""),
    ("save_every", ">= 0", " (0: at the end only)"),
    ("keep_checkpoints", ">= 1", ""),
    ("sample_every", ">= 0", " (0: never)"),
    ("sample_episodes", ">= 1", ""),
    ("tool_collapse_fraction", "in [0, 1)", " (0: never warn)"),
)


def bound_problems(config: Any, bounds: Sequence[tuple[str, str, str]]) -> list[str]:
    """The fields of ``config`` outside their bound, one message each (see :data:`BOUNDS`)."""
    problems = []
    for name, bound, why in bounds:
        value = getattr(config, name)
        if not _BOUND_TESTS[bound](value):
            problems.append(f"{name} must be {bound}{why}, got {value!r}")
    return problems


def choice_problems(config: Any) -> list[str]:
    """The fields of ``config`` whose value is not among their choices."""
    problems = []
    for f in fields(config):
        allowed = field_choices(type(config), f.name)
        value = getattr(config, f.name)
        if allowed is not None and value not in allowed:
            problems.append(
                f"{f.name} must be one of {', '.join(allowed)}, got {value!r}"
                + f.metadata.get("hint", "")
            )
    return problems


def _algo_problems(cfg: TrainConfig) -> list[str]:
    if cfg.algo not in algorithm_names() or type(cfg) is TrainConfig:
        return []  # an unknown algo is a choice problem
    expected = algorithm_class(cfg.algo).config_class
    if isinstance(cfg, expected):
        return []
    return [
        f"algo {cfg.algo!r} takes a {expected.__name__}, not a {type(cfg).__name__}; build the "
        "config with TrainConfig.from_dict (it picks the class from algo)"
    ]


def _batch_problems(cfg: TrainConfig) -> list[str]:
    """How a step's episodes split into minibatches and micro-batches, and the context."""
    problems = []
    episodes = cfg.group_size * cfg.groups_per_step
    if cfg.num_minibatches < 1 or episodes % cfg.num_minibatches:
        problems.append(
            f"num_minibatches ({cfg.num_minibatches}) must divide the {episodes} episodes of a "
            "step (group_size × groups_per_step)"
        )
    per_minibatch = episodes // max(cfg.num_minibatches, 1)
    accumulation = cfg.gradient_accumulation_steps
    if accumulation < 1 or per_minibatch % accumulation:
        problems.append(
            f"gradient_accumulation_steps ({accumulation}) must divide the {per_minibatch} "
            "episodes of a minibatch"
        )
    context = cfg.max_context_tokens
    if context is not None and context <= cfg.max_new_tokens:
        problems.append(
            f"max_context_tokens ({context}) must exceed max_new_tokens ({cfg.max_new_tokens}), "
            "or be None (the model's own context)"
        )
    return problems


def _report_problems(cfg: TrainConfig) -> list[str]:
    problems = []
    unknown = [r for r in cfg.report_to if r not in REPORTERS]
    if unknown:
        problems.append(f"report_to entries must be among {', '.join(REPORTERS)}, got {unknown}")
    if "wandb" in cfg.report_to and importlib.util.find_spec("wandb") is None:
        problems.append(
            "report_to includes 'wandb' but wandb is not installed: `pip install wandb` "
            "(and `wandb login`), or leave wandb out of report_to"
        )
    return problems


def _source_problems(cfg: TrainConfig) -> list[str]:
    """The env and the model: registered, importable, loadable."""
    from agents.models.registry import model_problem

    problems = [] if isinstance(cfg.env_kwargs, dict) else ["env_kwargs must be a mapping"]
    return problems + [p for p in (model_problem(cfg.model), _env_problem(cfg.env)) if p]


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
        ours = ", ".join(sorted(importlib.import_module("arft_envs").ENV_SPECS))
        return (
            f"env {env_id!r} is not registered ({type(err).__name__}).{hint} arft ids: {ours}; "
            "a third-party env can be named as 'module:Env-v0'"
        )
    return None
