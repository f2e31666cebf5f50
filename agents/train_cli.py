"""``arft train``: GRPO (with an optional SFT warm start) from flags and a config file.

    arft train --env MATCoding-v0 --model tiny --steps 100 --output runs/x
    arft train --config configs/grpo_tiny.yaml --output runs/x --beta 0.0
    arft train --output runs/x --resume --steps 200          # continue (and extend) a run
    accelerate launch --num_processes 4 -m agents.cli train --config ...   # several processes

Every :class:`agents.trainer.TrainConfig` field is a flag (``--group-size``, ``--lora``,
``--no-lora``, ``--report-to tensorboard wandb``, …; ``--env-arg KEY=VALUE`` fills
``env_kwargs``). Values are layered: the run's saved ``config.json`` (with ``--resume``), then
``--config FILE`` (YAML or JSON, the same keys), then the flags. Everything is checked before
a model is loaded; a bad flag or value fails with what is allowed.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
import typing
from pathlib import Path
from typing import Any

# Fields with a fixed set of values: argparse lists them in its error message.
_CHOICES = {
    "aggregation": ("token-mean", "seq-mean-token-mean", "dr-grpo"),
    "lr_schedule": ("linear", "constant", "cosine"),
    "mixed_precision": ("auto", "no", "bf16", "fp16"),
    "dtype": ("float32", "bfloat16", "float16"),
    "vectorization": ("sync", "async"),
}
# The flags the issue names come first in --help.
_LEADING = ("env", "model", "steps", "output", "sft_steps")


class _TrainParser(argparse.ArgumentParser):
    """Rejects unknown flags itself, naming the closest real flag, instead of leaving them
    to the top-level parser (whose message does not say which flags ``train`` has)."""

    def parse_known_args(self, args=None, namespace=None):
        namespace, extras = super().parse_known_args(args, namespace)
        if extras:
            flags = [s for action in self._actions for s in action.option_strings]
            hints = []
            for extra in extras:
                if extra.startswith("-"):
                    close = difflib.get_close_matches(extra.split("=")[0], flags, n=1)
                    if close:
                        hints.append(f"{extra} -> did you mean {close[0]}?")
            self.error(
                f"unrecognized arguments: {' '.join(extras)}"
                + (f" ({'; '.join(hints)})" if hints else "")
                + ". Every TrainConfig field is a flag; see 'arft train --help'"
            )
        return namespace, extras


def add_train_command(subparsers) -> argparse.ArgumentParser:
    """Register ``train`` on an argparse subparsers object; returns its parser."""
    from agents.trainer import TrainConfig

    parser = subparsers.add_parser(
        "train",
        help="train a policy with GRPO against an env (optional SFT warm start)",
        description=__doc__.split("\n\n")[0],
        epilog="Values: saved config (--resume) < --config FILE < flags.",
    )
    parser.__class__ = _TrainParser  # subparsers.add_parser cannot take a parser class
    parser.add_argument("--config", metavar="FILE", help="YAML or JSON file of config keys")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --output from its latest checkpoint",
    )
    parser.add_argument(
        "--env-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="keyword argument for gym.make, added to env_kwargs (JSON value when it parses)",
    )
    hints = typing.get_type_hints(TrainConfig)
    names = TrainConfig.field_names()
    ordered = [n for n in _LEADING if n in names] + [n for n in names if n not in _LEADING]
    for name in ordered:
        if name == "env_kwargs":
            continue
        _add_field(parser, name, hints[name], TrainConfig.help_text(name))
    parser.set_defaults(func=cmd_train, _parser=parser)
    return parser


def _add_field(parser: argparse.ArgumentParser, name: str, hint: Any, help_text: str) -> None:
    from agents.trainer import _coerce, _type_name

    flag = "--" + name.replace("_", "-")
    kwargs: dict[str, Any] = {"dest": name, "default": argparse.SUPPRESS, "help": help_text}
    if hint is bool:
        parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kwargs)
        return
    if typing.get_origin(hint) is tuple:
        parser.add_argument(flag, nargs="+", metavar="VALUE", **kwargs)
        return

    def convert(text: str, hint=hint) -> Any:
        try:
            return _coerce(text, hint)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"expected {_type_name(hint)}, got {text!r}") from None

    convert.__name__ = _type_name(hint)
    if name in _CHOICES:
        kwargs["choices"] = _CHOICES[name]
    parser.add_argument(flag, type=convert, metavar=name.upper(), **kwargs)


def load_config_file(path: str | Path) -> dict[str, Any]:
    """The keys of a YAML (``.yaml``/``.yml``) or JSON config file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ValueError(f"--config {path}: cannot read the file ({err.strerror})") from None
    if path.suffix in (".yaml", ".yml"):
        import yaml

        try:
            values = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise ValueError(f"--config {path}: not valid YAML ({err})") from None
    else:
        try:
            values = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(
                f"--config {path}: not valid JSON ({err.msg} at line {err.lineno}); use a "
                ".json file, or .yaml/.yml for YAML"
            ) from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ValueError(f"--config {path}: expected a mapping of config keys at the top level")
    return values


def resolve_config(args: argparse.Namespace):
    """The :class:`TrainConfig` of parsed ``arft train`` arguments (no model is loaded)."""
    from agents.trainer import TrainConfig
    from arft_envs.cli import parse_env_args

    values: dict[str, Any] = {}
    flags = {k: v for k, v in vars(args).items() if k in TrainConfig.field_names()}
    output = flags.get("output")
    if args.config:
        file_values = load_config_file(args.config)
        TrainConfig.check_keys(file_values, source=f"--config {args.config}")
        output = output or file_values.get("output")
        values.update(file_values)
    if args.resume and output:
        saved = Path(output) / "config.json"
        if saved.is_file():
            saved_values = json.loads(saved.read_text(encoding="utf-8"))
            TrainConfig.check_keys(saved_values, source=str(saved))
            values = {**saved_values, **values}
    values.update(flags)
    if args.env_arg:
        values["env_kwargs"] = {**values.get("env_kwargs", {}), **parse_env_args(args.env_arg)}
    return TrainConfig.from_dict(values, source="arft train")


def cmd_train(args: argparse.Namespace) -> int:
    from agents.trainer import ConfigError

    try:
        config = resolve_config(args)
    except (ConfigError, ValueError) as err:
        print(f"arft train: error: {err}", file=sys.stderr)
        return 2
    from agents.trainer import GRPOTrainer

    resume = bool(args.resume)
    if resume and not (Path(config.output) / "config.json").is_file():
        print(f"arft train: nothing to resume in {config.output}; starting a new run")
    trainer = GRPOTrainer(config, resume=resume)
    try:
        metrics = trainer.train()
    except ConfigError as err:
        print(f"arft train: error: {err}", file=sys.stderr)
        return 2
    if trainer.is_main:
        keys = ("step", "reward_mean", "reward_std", "f1", "kl", "loss", "time/step")
        print("last step: " + ", ".join(f"{k}={metrics[k]:.4g}" for k in keys if k in metrics))
        print(f"run folder: {config.output}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m agents.train_cli …``: the ``train`` command alone."""
    parser = argparse.ArgumentParser(prog="arft")
    add_train_command(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["train", *(sys.argv[1:] if argv is None else argv)])
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
