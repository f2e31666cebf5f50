"""The training configuration: one dataclass, validated once, the one source of the CLI's flags.

:class:`TrainConfig` holds what every on-policy algorithm shares: the env and model, the
rollout, the update schedule, the optimiser, the warm start, checkpoints and logs. An algorithm
adds its own section by subclassing it (``GRPOConfig`` in :mod:`agents.algorithms.grpo`), so a
config file and the command line stay flat (``beta: 0.04``, ``--beta 0.04``) while each
algorithm's keys live in the algorithm's file. ``algo`` names the algorithm;
:meth:`TrainConfig.from_dict` builds the right class from it.

Every field carries its help text and, where it has a fixed set of values, its choices
(:func:`field_choices`); validation (:mod:`agents.training.validation`) lists every problem at
once, each with its fix. The smaller configs other modules take
(:class:`agents.rollout.RolloutConfig`, :class:`agents.policy.LoraSettings`,
:class:`agents.images.ImageBudget`) are *derived* from a TrainConfig by field name
(:func:`derive`), never copied field by field.
"""

from __future__ import annotations

import copy
import difflib
import importlib
import importlib.util
import typing
from collections.abc import Callable
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any, TypeVar

from agents.policy import DTYPES
from agents.training.augment import AUGMENTATIONS
from agents.training.curriculum import CURRICULA
from agents.training.filtering import DATA_FILTERS
from agents.training.kl_control import KL_CONTROLS

if TYPE_CHECKING:
    from agents.algorithms.base import Algorithm

LR_SCHEDULES = ("linear", "constant", "cosine")
MIXED_PRECISIONS = ("auto", "no", "bf16", "fp16")
REPORTERS = ("tensorboard", "wandb", "none")
VECTORIZATION_MODES = ("sync", "async")
DEFAULT_ALGO = "grpo"
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


def option(
    default: Any,
    help: str,
    *,
    choices: tuple[str, ...] | Callable[[], tuple[str, ...]] | None = None,
    hint: str = "",
) -> Any:
    """A config field with its help text and, optionally, its allowed values (a tuple, or a
    function returning one for choices known only at run time) and a hint shown when a value
    is not among them."""
    metadata = {"help": help, "choices": choices, "hint": hint}
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def algorithm_names() -> tuple[str, ...]:
    """The registered algorithm names (:data:`agents.algorithms.ALGORITHMS`)."""
    return tuple(_algorithms())


def algorithm_class(name: str) -> type[Algorithm]:
    """The :class:`agents.algorithms.base.Algorithm` registered as ``name``; a
    :class:`ConfigError` listing the known names otherwise."""
    algorithms = _algorithms()
    if name not in algorithms:
        close = difflib.get_close_matches(name, list(algorithms), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"unknown algo {name!r}{hint}; known algorithms: {', '.join(algorithms)}")
    return algorithms[name]


def _algorithms() -> dict[str, type[Algorithm]]:
    # Imported here, not at the top: agents.algorithms builds its config sections on this module.
    return importlib.import_module("agents.algorithms").ALGORITHMS


@dataclass
class TrainConfig:
    """What every training run needs, whatever the algorithm. Defaults follow the paper
    (paper.md §5) where it has one: G = 8, lr 1e-6 decayed linearly to 0 with no warm-up,
    gradient clipping at 1.0, temperature 1.0, one update per batch.

    Build from a file and flags with :meth:`from_dict` (it picks the algorithm's subclass from
    ``algo``); ``help_text(name)`` gives a field's help and :func:`field_choices` its values.
    """

    # ---------------------------------------------------------------- what and where
    env: str = option("MATCoding-v0", "environment id (any registered id, or 'module:Env-v0')")
    env_kwargs: dict[str, Any] = option({}, "keyword arguments for gym.make")
    model: str = option(
        "tiny", "'tiny', 'tiny-qwen', 'smollm2-135m', a .gguf file, a checkpoint folder or a hub id"
    )
    output: str = option("runs/train", "run directory: metrics, checkpoints, samples, final model")
    steps: int = option(100, "RL steps (one rollout batch each)")
    seed: int = option(0, "seeds the task stream, sampling, and the tiny model's weights")
    algo: str = option(
        DEFAULT_ALGO,
        "the RL algorithm (agents.algorithms); its own options are listed under its name",
        choices=algorithm_names,
    )
    # ---------------------------------------------------------------- groups and updates
    group_size: int = option(8, "episodes per task (G); advantages compare within a group")
    groups_per_step: int = option(2, "tasks per step on each process")
    inner_epochs: int = option(1, "passes over each step's episodes (paper: 1)")
    num_minibatches: int = option(1, "optimizer updates per pass; they split the episodes")
    gradient_accumulation_steps: int = option(
        1, "micro-batches per minibatch (memory); gradients add up to the minibatch's"
    )
    # ---------------------------------------------------------------- sampling
    temperature: float = option(1.0, "sampling temperature (paper: 1.0)")
    top_p: float = option(1.0, "nucleus sampling; log-probs stay those of the full distribution")
    max_turns: int = option(5, "turn cap per episode (paper: 5)")
    max_new_tokens: int = option(256, "tokens per turn (paper: 256)")
    max_context_tokens: int | None = option(None, "longest episode in tokens (None: the model's)")
    max_image_tokens: int = option(16384, "image-token budget per episode (agents.images)")
    # ---------------------------------------------------------------- optimisation
    learning_rate: float = option(1e-6, "peak learning rate of AdamW (paper: 1e-6)")
    lr_schedule: str = option(
        "linear", f"decay to 0 over the run: one of {', '.join(LR_SCHEDULES)}", choices=LR_SCHEDULES
    )
    warmup_steps: int = option(0, "optimizer updates of linear warm-up (paper: 0)")
    weight_decay: float = option(0.0, "AdamW weight decay (paper: 0)")
    max_grad_norm: float = option(1.0, "clip the gradient norm to this (0: no clipping)")
    # ---------------------------------------------------------------- model
    dtype: str = option(
        "float32",
        "weights and optimizer state: float32, bfloat16 or float16",
        choices=tuple(DTYPES),
        hint=" (float32 master weights are usual: bf16 weights round away updates as small "
        "as lr 1e-6)",
    )
    mixed_precision: str = option(
        "auto",
        "compute precision: auto (bf16 on a GPU that has it, or on a CPU whose /proc/cpuinfo "
        "flags list avx512_bf16 / amx_bf16 (ARM: bf16); else no), no, bf16, fp16",
        choices=MIXED_PRECISIONS,
    )
    lora: bool = option(False, "train LoRA adapters instead of all weights")
    lora_r: int = option(16, "LoRA rank")
    lora_alpha: int = option(32, "LoRA alpha")
    lora_dropout: float = option(0.05, "LoRA dropout")
    gradient_checkpointing: bool = option(False, "recompute activations in backward (less memory)")
    # ---------------------------------------------------------------- environments
    num_envs: int | None = option(None, "envs per process (None: one per episode of a step)")
    vectorization: str = option(
        "sync", "sync (one process) or async (a subprocess per env)", choices=VECTORIZATION_MODES
    )
    # ---------------------------------------------------------------- supervised warm start
    sft_steps: int = option(0, "supervised steps on scripted-expert episodes before RL (0: none)")
    sft_learning_rate: float = option(1e-4, "AdamW learning rate of the warm start (linear decay)")
    sft_batch_size: int = option(8, "expert episodes per warm-start step on each process")
    sft_micro_batch_size: int | None = option(
        None,
        "expert episodes per forward pass of the warm start (memory; None: sft_batch_size / "
        "gradient_accumulation_steps, rounded up); gradients add up to the whole step's",
    )
    sft_episodes: int = option(64, "expert episodes to learn from (spread over processes)")
    # ---------------------------------------------------------------- checkpoints and logs
    save_every: int = option(50, "checkpoint every this many steps (and at the end; 0: end only)")
    keep_checkpoints: int = option(2, "step checkpoints kept (older ones are deleted)")
    sample_every: int = option(
        50, "write an HTML page of episodes every this many steps (0: never)"
    )
    sample_episodes: int = option(4, "episodes on each sample page")
    log_entropy: bool = option(True, "log the policy entropy on model tokens")
    report_to: tuple[str, ...] = option(
        ("tensorboard",), "where metrics go besides metrics.jsonl: tensorboard, wandb, none"
    )
    wandb_project: str = option("arft", "wandb project (report_to includes wandb)")
    progress_bar: bool = option(True, "show a progress bar")
    tool_collapse_fraction: float = option(
        0.5,
        "warn (once) when the tool-call rate falls below this fraction of its first step's "
        "(tool-use collapse; 0: never)",
    )
    # ---------------------------------------------------------------- training enhancements
    # Options any algorithm can use, all off by default (agents.training.enhancements).
    curriculum: str = option(
        "off",
        "a schedule over task difficulty: off, step (a stage every curriculum_stage_steps "
        "steps) or success (next stage once the recent success rate reaches "
        "curriculum_threshold)",
        choices=CURRICULA,
    )
    curriculum_levels: tuple[str, ...] = option(
        ("1", "2"),
        "task difficulties, easy to hard, one stage each: MATSearch hop counts (1-3), "
        "MATCoding degradations per task (1 simple, 2 hard)",
    )
    curriculum_stage_steps: int = option(50, "steps per stage (curriculum=step)")
    curriculum_threshold: float = option(
        0.7, "success rate that moves to the next stage (curriculum=success)"
    )
    curriculum_window: int = option(
        4, "steps the success rate is averaged over (curriculum=success)"
    )
    success_return: float | None = option(
        None,
        "an episode counts as a success (curriculum, data_filter) when its return reaches this; "
        "None: when the env reports an exact match (info em = 1)",
    )
    kl_control: str = option(
        "fixed",
        "the KL weight over the run (beta; PPO's kl_coef): fixed, adaptive (towards kl_target, "
        "Ziegler et al.), linear or cosine (from its configured value to kl_beta_final)",
        choices=KL_CONTROLS,
    )
    kl_target: float = option(0.01, "mean per-token KL the adaptive controller aims at")
    kl_horizon: float = option(
        10000.0, "adaptive KL: episodes over which beta may change by up to 20%"
    )
    kl_beta_final: float = option(0.0, "beta at the last step of a linear or cosine KL schedule")
    augment: str = option(
        "off",
        "rollout noise augmentation (NoisyRollout): off, noise or blur of the task images for "
        "augment_share of each group's episodes; the update uses the clean images",
        choices=AUGMENTATIONS,
    )
    augment_share: float = option(0.5, "share of each group's episodes played on perturbed images")
    augment_strength: float = option(
        16.0, "noise: Gaussian std in 0-255 pixel units; blur: Gaussian sigma in pixels"
    )
    augment_anneal_steps: int = option(
        0, "steps over which the strength falls linearly to 0 (0: constant)"
    )
    data_filter: str = option(
        "off",
        "online filtering of groups whose accuracy is <= filter_low or >= filter_high: off, "
        "skip (left out of the update, refilled up to filter_max_refills) or downweight "
        "(advantages times filter_weight)",
        choices=DATA_FILTERS,
    )
    filter_low: float = option(0.0, "filter groups with this accuracy or less (0: all wrong)")
    filter_high: float = option(1.0, "filter groups with this accuracy or more (1: all correct)")
    filter_weight: float = option(0.1, "advantage weight of a filtered group (downweight)")
    filter_max_refills: int = option(0, "extra rollouts per step to replace skipped groups")
    inject_gold: bool = option(
        False,
        "the authors' coding-trainer quirk (paper.md 3.6): one completion per group has its "
        "text replaced by the row's gt before rewards, keeping its sampled tokens; stepwise "
        "rows only (agents.training.paper)",
    )

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
        """Every problem of this config, each with its fix (:mod:`agents.training.validation`).
        An algorithm's section extends this list (``super()._problems() + ...``; its own
        bounds through :func:`~agents.training.validation.bound_problems`)."""
        from agents.training.validation import config_problems

        return config_problems(self)

    # ------------------------------------------------------------------ building

    @classmethod
    def field_names(cls) -> list[str]:
        """The config keys of this class, in declaration order."""
        return [f.name for f in fields(cls)]

    @classmethod
    def help_text(cls, name: str) -> str:
        """The help text of field ``name``."""
        return next(f.metadata.get("help", "") for f in fields(cls) if f.name == name)

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> TrainConfig:
        """A config from plain values (a parsed YAML/JSON file, CLI flags). On
        :class:`TrainConfig` itself the class is the one of ``values["algo"]`` (default
        ``grpo``). Unknown keys and values of the wrong type fail with the allowed names or
        the expected type."""
        target = cls.class_for(values, source)
        target.check_keys(values, source)
        problems = []
        hints = typing.get_type_hints(target)
        coerced = {}
        for key, value in values.items():
            try:
                coerced[key] = coerce(value, hints[key])
            except (TypeError, ValueError):
                problems.append(f"{source}: {key} must be {type_name(hints[key])}, got {value!r}")
        if problems:
            raise ConfigError(
                "invalid training configuration:\n" + "\n".join(f"  - {p}" for p in problems)
            )
        return target(**coerced)

    @classmethod
    def class_for(cls, values: dict[str, Any], source: str = "config") -> type[TrainConfig]:
        """The config class ``values`` build: on :class:`TrainConfig`, the one of
        ``values["algo"]`` (default ``grpo``); on a subclass, that subclass."""
        if cls is not TrainConfig:
            return cls
        name = values.get("algo", DEFAULT_ALGO)
        try:
            return algorithm_class(str(name)).config_class
        except ConfigError as err:
            raise ConfigError(f"invalid training configuration:\n  - {source}: {err}") from None

    @classmethod
    def check_keys(cls, values: dict[str, Any], source: str = "config") -> None:
        """Raise :class:`ConfigError` naming unknown keys, the closest known ones (or the
        algorithm whose option a key is), and all the allowed keys."""
        names = cls.field_names()
        owners = _section_owners()
        problems = []
        for key in values:
            if key in names:
                continue
            if key in owners:
                hint = f" (an option of algo {' / '.join(owners[key])}; set algo to use it)"
            else:
                close = difflib.get_close_matches(key, names, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(f"{source}: unknown key {key!r}{hint}")
        if problems:
            problems.append(f"allowed keys: {', '.join(names)}")
            raise ConfigError(
                "invalid training configuration:\n" + "\n".join(f"  - {p}" for p in problems)
            )

    def to_dict(self) -> dict[str, Any]:
        """Plain values (tuples as lists), as ``config.json`` holds them."""
        out = asdict(self)
        out["report_to"] = list(self.report_to)
        return out

    @property
    def episodes_per_step(self) -> int:
        """Episodes each process plays per step."""
        return self.group_size * self.groups_per_step

    @property
    def updates_per_step(self) -> int:
        """Optimizer updates per step."""
        return self.inner_epochs * self.num_minibatches


# ---------------------------------------------------------------------- field metadata


def field_choices(cls: type, name: str) -> tuple[str, ...] | None:
    """The allowed values of field ``name`` of config class ``cls``, or None (any value)."""
    for f in fields(cls):
        if f.name == name:
            choices = f.metadata.get("choices")
            return choices() if callable(choices) else choices
    raise KeyError(f"{cls.__name__} has no field {name!r}")


def section_fields(cls: type[TrainConfig]) -> list[str]:
    """The fields ``cls`` adds to :class:`TrainConfig`: its algorithm's own options."""
    base = set(TrainConfig.field_names())
    return [name for name in cls.field_names() if name not in base]


def config_keys() -> set[str]:
    """Every key some algorithm's config accepts (the base fields and every section's)."""
    keys = set(TrainConfig.field_names())
    for algo in _algorithms().values():
        keys.update(algo.config_class.field_names())
    return keys


def _section_owners() -> dict[str, list[str]]:
    owners: dict[str, list[str]] = {}
    for name, algo in _algorithms().items():
        for key in section_fields(algo.config_class):
            owners.setdefault(key, []).append(name)
    return owners


T = TypeVar("T")


def derive(target: type[T], source: Any, prefix: str = "", **overrides: Any) -> T:
    """An instance of the dataclass ``target`` whose fields are read from ``source`` by name
    (``prefix + field``), for the fields ``source`` has; ``overrides`` win. This is how the
    smaller configs (rollout, LoRA, image budget) follow a :class:`TrainConfig` without a
    hand-kept copy of each field: a field of the same name means the same thing."""
    values = {}
    for f in fields(target):
        if f.name in overrides:
            values[f.name] = overrides[f.name]
        elif hasattr(source, prefix + f.name):
            values[f.name] = getattr(source, prefix + f.name)
        elif f.default is MISSING and f.default_factory is MISSING:
            raise TypeError(f"{type(source).__name__} has no {prefix + f.name} for {target}")
    return target(**values)


# ---------------------------------------------------------------------- env ids


def env_name(env_id: str) -> str:
    """The registry id of ``env_id``; for ``module:Env-v0`` the module (which registers the
    env) is imported first, as ``gym.make`` does."""
    import arft_envs  # noqa: F401  (registers the ids)

    module, sep, name = env_id.rpartition(":")
    if sep:
        importlib.import_module(module)
        return name
    return env_id


# ---------------------------------------------------------------------- types


def type_name(hint: Any) -> str:
    """A field type as a user reads it: ``int``, ``float | None``."""
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def coerce(value: Any, hint: Any) -> Any:
    """``value`` checked (and gently converted) to the field type ``hint``; raises
    TypeError or ValueError when it is not one."""
    args = typing.get_args(hint)
    origin = typing.get_origin(hint)
    if args and type(None) in args:  # X | None
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        inner = [a for a in args if a is not type(None)][0]
        return coerce(value, inner)
    if hint is bool:
        return _coerce_bool(value)
    if hint is int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
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


def _coerce_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no"):
        return value.lower() in ("true", "1", "yes")
    raise TypeError
