"""The ``arft`` command.

``arft envs``, ``arft score`` and ``arft play`` need no torch; ``arft eval`` (and ``arft
train``) import torch and transformers only when they run.
"""

from __future__ import annotations

import argparse
import json
import sys


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The ``arft`` parser. ``train``'s many options need torch to list, so they are only
    built when the command line asks for ``train``; other commands stay torch-free."""
    parser = argparse.ArgumentParser(
        prog="arft", description="Agentic reinforcement fine-tuning for vision-language models."
    )
    parser.add_argument("--version", action="version", version=f"arft {_version()}")
    parser.add_argument(
        "--debug",
        action="store_true",
        help="show the traceback of an error instead of its one-line message",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _add_env_commands(sub)
    _add_eval(sub)
    if argv is not None and argv[:1] == ["train"]:
        from agents.cli.train import add_train_command

        add_train_command(sub)
    else:
        sub.add_parser(
            "train", help="train a policy with RL, GRPO by default (see arft train --help)"
        )
    return parser


# ---------------------------------------------------------------------- envs / score / play
# These live in arft_envs.cli so they run without torch.


def _add_env_commands(sub) -> None:
    from arft_envs.cli import add_env_commands

    add_env_commands(sub)


# ---------------------------------------------------------------------- eval


def _add_eval(sub) -> None:
    from arft_envs.cli import add_env_arg

    p = sub.add_parser(
        "eval",
        help="run a policy on an env and score its answers",
        description="Run a policy on an env, print F1/EM (by split) and write predictions "
        "in the paper's format ({id, pred_answer, gt, query}).",
    )
    p.add_argument("--env", required=True, help="env id, e.g. MATCoding-v0")
    p.add_argument(
        "--model",
        required=True,
        help="'tiny', 'tiny-qwen', 'smollm2-135m', a .gguf file, a checkpoint folder or a hub id",
    )
    p.add_argument(
        "--episodes",
        type=int,
        default=None,
        help="episodes to run (default: the whole dataset of a data= env)",
    )
    p.add_argument("--output", required=True, help="prediction file to write (JSON)")
    p.add_argument("--split", default=None, help="env split, e.g. simple or hard")
    p.add_argument("--seed", type=int, default=0, help="seed of sampling and env resets")
    p.add_argument(
        "--max-turns",
        type=int,
        default=None,
        help="turn cap (the env's max_turns when it has one, else the agent's)",
    )
    add_env_arg(p)
    p.add_argument("--num-envs", type=int, default=8, help="parallel envs (batch size)")
    p.add_argument("--vectorization", choices=["sync", "async"], default="sync")
    p.add_argument("--temperature", type=float, default=0.0, help="0 decodes greedily")
    p.add_argument("--max-new-tokens", type=int, default=512, help="tokens per turn at most")
    p.add_argument(
        "--max-image-tokens", type=int, default=16384, help="image-token budget of one episode"
    )
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: best)")
    p.add_argument(
        "--trajectories",
        default=None,
        help="also write the episodes here (JSONL, images beside it)",
    )
    p.add_argument(
        "--report",
        default=None,
        metavar="FILE.html",
        help="also write the episodes as an HTML page (turns, images, rewards), as the demo does",
    )
    p.add_argument(
        "--no-progress",
        dest="progress",
        action="store_false",
        help="no progress bar (it is shown on stderr only when stderr is a terminal)",
    )
    p.add_argument("--json", action="store_true", help="print the scores as JSON")
    p.set_defaults(func=cmd_eval, progress=None)


def cmd_eval(args) -> int:
    """Run ``arft eval``."""
    from arft_envs.cli import parse_env_args

    env_kwargs = parse_env_args(args.env_arg)
    if args.split is not None:
        env_kwargs["split"] = args.split
    if args.episodes is not None and args.episodes < 1:
        raise SystemExit("--episodes must be >= 1")

    import arft_envs  # noqa: F401  (registers the ids)
    from agents.evaluate import evaluate, write_predictions
    from agents.images import ImageBudget
    from agents.policy import Policy
    from agents.rollout import RolloutConfig, save_trajectories

    agent_max_turns = args.max_turns
    if args.max_turns is not None and _accepts(args.env, "max_turns"):
        env_kwargs["max_turns"] = args.max_turns
    config = RolloutConfig(
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        max_turns=agent_max_turns,
        seed=args.seed,
    )
    from agents.models.registry import ModelNotFoundError

    try:
        policy = Policy.from_pretrained(
            args.model,
            dtype=args.dtype,
            device=args.device,
            image_budget=ImageBudget(max_image_tokens=args.max_image_tokens),
            seed=args.seed,
        )
    except ModelNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    result = evaluate(
        policy,
        args.env,
        episodes=args.episodes,
        env_kwargs=env_kwargs,
        config=config,
        num_envs=args.num_envs,
        vectorization_mode=args.vectorization,
        progress=None if args.progress is None else False,
    )
    path = write_predictions(result.predictions, args.output)
    written = [path]
    if args.trajectories:
        written.append(save_trajectories(result.trajectories, args.trajectories))
    if args.report:
        from agents.rollout.trajectory import write_trajectory_page

        title = f"arft eval {args.env} · model {args.model} · {len(result.predictions)} episodes"
        written.append(write_trajectory_page(args.report, result.trajectories, title=title))
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(result.format())
        for item in written:
            print(f"wrote {item}")
    return 0


def _accepts(env_id: str, name: str) -> bool:
    """Whether the env class of ``env_id`` takes the keyword ``name``."""
    import inspect

    import gymnasium as gym
    from gymnasium.envs.registration import load_env_creator

    entry = gym.spec(env_id).entry_point
    creator = load_env_creator(entry) if isinstance(entry, str) else entry
    try:
        params = inspect.signature(creator).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("arft")
    except PackageNotFoundError:
        return "unknown (not installed: pip install -e .)"


def _check_env(args) -> None:
    """Check the env id and ``--env-arg`` keywords of a command before it does any work."""
    from agents.cli.errors import check_env_args, check_env_id
    from arft_envs.cli import parse_env_args

    env_id = getattr(args, "env_id", None) or getattr(args, "env", None)
    if not isinstance(env_id, str):
        return
    check_env_id(env_id)
    check_env_args(env_id, parse_env_args(getattr(args, "env_arg", None) or []))


def main(argv: list[str] | None = None) -> int:
    """``arft …``: run a command; a user error ends with its message on stderr and status 2
    (its traceback only with ``--debug``)."""
    from agents.cli.errors import report

    argv = sys.argv[1:] if argv is None else list(argv)
    # --debug is global: accepted anywhere on the line, the subcommands never see it
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    try:
        if args.command != "train":
            _check_env(args)
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"arft {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `arft envs | head`: the reader left; nothing is wrong
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except SystemExit:
        raise
    except Exception as err:
        if debug:
            raise
        return report(args.command, err)


if __name__ == "__main__":
    raise SystemExit(main())
