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
    p.add_argument(
        "--env-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="keyword argument for gym.make (JSON value when it parses)",
    )
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
    p.add_argument("--json", action="store_true", help="print the scores as JSON")
    p.set_defaults(func=cmd_eval)


def cmd_eval(args) -> int:
    """Run ``arft eval``."""
    from arft_envs.cli import parse_env_args

    env_kwargs = parse_env_args(args.env_arg)
    if args.split is not None:
        env_kwargs["split"] = args.split
    if args.episodes is not None and args.episodes < 1:
        raise SystemExit("--episodes must be >= 1")

    import gymnasium as gym

    import arft_envs  # noqa: F401  (registers the ids)
    from agents.evaluate import evaluate, write_predictions
    from agents.images import ImageBudget
    from agents.policy import Policy
    from agents.rollout import RolloutConfig, save_trajectories

    if args.env.split(":")[-1] not in gym.registry and ":" not in args.env:
        import difflib

        close = difflib.get_close_matches(args.env, list(gym.registry), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        print(f"error: unknown env id {args.env!r}{hint}", file=sys.stderr)
        return 2
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
    )
    path = write_predictions(result.predictions, args.output)
    if args.trajectories:
        save_trajectories(result.trajectories, args.trajectories)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(result.format())
        print(f"wrote {path}")
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


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
