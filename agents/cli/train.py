"""``arft train``: RL (GRPO by default, ``--algo NAME``) with an optional SFT warm start, from
flags and a config file.

    arft train --env MATCoding-v0 --model tiny --steps 100 --output runs/x
    arft train --config configs/grpo_tiny_cpu.yaml --output runs/x --beta 0.0
    arft train --output runs/x --resume --steps 200          # continue (and extend) a run
    accelerate launch --num_processes 4 -m agents.cli train --config ...   # several processes

Every :class:`agents.training.TrainConfig` field is a flag (``--group-size``, ``--lora``,
``--no-lora``, ``--report-to tensorboard wandb``, …; ``--env-arg KEY=VALUE`` fills
``env_kwargs``), and so is every option of every algorithm (``--beta``, ``--credit``: listed
under the algorithm's name, accepted with that ``--algo``). The allowed values of a flag are
the config field's own. Values are layered: the run's saved ``config.json`` (with
``--resume``), then ``--config FILE`` (YAML or JSON, the same keys), then the flags.
Everything is checked before a model is loaded; a bad flag or value fails with what is
allowed.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
import typing
from pathlib import Path
from typing import Any

# The flags the issue names come first in --help.
_LEADING = ("env", "model", "algo", "steps", "output", "sft_steps")


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
    from agents.algorithms import ALGORITHMS
    from agents.training.config import TrainConfig, section_fields
    from arft_envs.cli import add_env_arg

    parser = subparsers.add_parser(
        "train",
        help="train a policy with RL against an env (GRPO by default; optional SFT warm start)",
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
    add_env_arg(parser, to=", added to env_kwargs")
    names = TrainConfig.field_names()
    ordered = [n for n in _LEADING if n in names] + [n for n in names if n not in _LEADING]
    for name in ordered:
        if name != "env_kwargs":
            _add_field(parser, TrainConfig, name)
    added = set(names)
    for algo_name, algo in ALGORITHMS.items():
        own = [n for n in section_fields(algo.config_class) if n not in added]
        group = parser.add_argument_group(f"{algo_name} options (--algo {algo_name})")
        for name in own:
            _add_field(group, algo.config_class, name)
        added.update(own)
    parser.set_defaults(func=cmd_train, _parser=parser)
    return parser


def _add_field(parser, cls: type, name: str) -> None:
    """The flag of config field ``name`` of ``cls``: its type, help and allowed values."""
    from agents.training.config import coerce, field_choices, type_name

    hint = typing.get_type_hints(cls)[name]
    flag = "--" + name.replace("_", "-")
    kwargs: dict[str, Any] = {
        "dest": name,
        "default": argparse.SUPPRESS,
        "help": cls.help_text(name).replace("%", "%%"),  # argparse formats help with %
    }
    if hint is bool:
        parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kwargs)
        return
    if typing.get_origin(hint) is tuple:
        parser.add_argument(flag, nargs="+", metavar="VALUE", **kwargs)
        return

    def convert(text: str, hint=hint) -> Any:
        try:
            return coerce(text, hint)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"expected {type_name(hint)}, got {text!r}") from None

    convert.__name__ = type_name(hint)
    choices = field_choices(cls, name)
    if choices is not None:
        kwargs["choices"] = choices
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
    """The config of parsed ``arft train`` arguments (no model is loaded): a
    :class:`~agents.training.TrainConfig` of the class of its ``algo``."""
    from agents.training.config import TrainConfig, config_keys
    from arft_envs.cli import parse_env_args

    flags = {k: v for k, v in vars(args).items() if k in config_keys()}
    file_values = load_config_file(args.config) if args.config else {}
    output = flags.get("output") or file_values.get("output")
    saved_values: dict[str, Any] = {}
    saved = Path(output) / "config.json" if output else None
    if args.resume and saved is not None and saved.is_file():
        saved_values = json.loads(saved.read_text(encoding="utf-8"))
    values = {**saved_values, **file_values, **flags}
    if args.env_arg:
        values["env_kwargs"] = {**values.get("env_kwargs", {}), **parse_env_args(args.env_arg)}
    target = TrainConfig.class_for(values, source="arft train")
    if args.config:
        target.check_keys(file_values, source=f"--config {args.config}")
    if saved_values:
        target.check_keys(saved_values, source=str(saved))
    return target.from_dict(values, source="arft train")


def cmd_train(args: argparse.Namespace) -> int:
    """Run ``arft train``; 2 with the message on a configuration error."""
    from agents.training import ConfigError, Trainer

    try:
        config = resolve_config(args)
    except (ConfigError, ValueError) as err:
        print(f"arft train: error: {err}", file=sys.stderr)
        return 2
    resume = bool(args.resume)
    if resume and not (Path(config.output) / "config.json").is_file():
        print(f"arft train: nothing to resume in {config.output}; starting a new run")
    trainer = Trainer(config, resume=resume)
    if trainer.is_main:
        # first, so the folder is known while the run goes (metrics, tensorboard, samples)
        print(f"run folder: {Path(config.output).resolve()}", flush=True)
    try:
        metrics = trainer.train()
    except ConfigError as err:
        print(f"arft train: error: {err}", file=sys.stderr)
        return 2
    if trainer.is_main:
        keys = ("step", "reward_mean", "reward_std", "f1", "kl", "loss", "time/step")
        print("last step: " + ", ".join(f"{k}={metrics[k]:.4g}" for k in keys if k in metrics))
        print(f"final model: {Path(config.output).resolve() / 'final'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m agents.cli.train …``: the ``train`` command alone."""
    parser = argparse.ArgumentParser(prog="arft")
    add_train_command(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["train", *(sys.argv[1:] if argv is None else argv)])
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
