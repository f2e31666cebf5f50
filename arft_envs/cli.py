"""The torch-free ``arft`` subcommands: ``envs``, ``score``, ``play`` and ``serve``.

``agents.cli`` owns the ``arft`` entry point and delegates these here, so scoring a file or
playing an environment never needs torch.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_env_commands(subparsers) -> None:
    """Register ``envs``, ``score``, ``play`` and ``serve`` on an argparse subparsers object."""
    p = subparsers.add_parser("envs", help="list the registered environments")
    p.set_defaults(func=cmd_envs)

    p = subparsers.add_parser("score", help="score a prediction file with the paper's metric")
    p.add_argument("file", help="JSON list of {pred_answer, gt, ...} items")
    p.add_argument("--benchmark", required=True, choices=["mat-search", "mat-coding", "multihop"])
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_score)

    p = subparsers.add_parser("play", help="play an environment by hand or with the expert")
    p.add_argument("env_id")
    p.add_argument("--expert", action="store_true", help="let the scripted expert act")
    p.add_argument("--episodes", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--report", help="write the episodes as an HTML page here")
    add_env_arg(p)
    p.set_defaults(func=cmd_play)

    p = subparsers.add_parser(
        "serve", help="serve an environment over OpenEnv's protocol (pip install arft[serve])"
    )
    p.add_argument("env_id")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback)")
    p.add_argument("--port", type=int, default=8000, help="port to bind; 0 picks a free one")
    p.add_argument("--max-sessions", type=int, default=8, help="concurrent sessions (one env each)")
    p.add_argument(
        "--expert-hints",
        action="store_true",
        help="put the scripted expert's next turn in each observation (demos and tests only)",
    )
    add_env_arg(p)
    p.set_defaults(func=cmd_serve)


def add_env_arg(parser, to: str = "") -> None:
    """The repeatable ``--env-arg KEY=VALUE`` flag (read with :func:`parse_env_args`); ``to``
    says where the keyword arguments go besides gym.make."""
    parser.add_argument(
        "--env-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"keyword argument for gym.make{to} (value parsed as JSON when possible)",
    )


def parse_env_args(pairs: list[str]) -> dict:
    """``["k=v", …]`` → kwargs; values are JSON when they parse, else strings."""
    kwargs = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"--env-arg expects KEY=VALUE, got {pair!r}")
        try:
            kwargs[key] = json.loads(value)
        except json.JSONDecodeError:
            kwargs[key] = value
    return kwargs


def cmd_envs(args) -> int:
    """Print each registered id, a one-sentence summary, and where its tasks come from."""
    import arft_envs

    for env_id in sorted(arft_envs.ENV_SPECS):
        summary, source = env_summary(env_id)
        print(f"{env_id:<20} {summary}\n{'':<20} tasks: {source}")
    return 0


def env_summary(env_id: str) -> tuple[str, str]:
    """The first sentence of the env's description (whole, never cut) and its data source:
    a multi-hop id's own ``DATASET_SUMMARY`` line when its module has one."""
    import gymnasium as gym
    from gymnasium.envs.registration import load_env_creator

    spec = gym.spec(env_id)
    try:
        creator = load_env_creator(spec.entry_point)
    except (ImportError, AttributeError) as err:
        return f"(unavailable: {err})", "-"
    per_dataset = getattr(sys.modules[creator.__module__], "DATASET_SUMMARY", {})
    dataset = spec.kwargs.get("dataset")
    if dataset in per_dataset:
        return per_dataset[dataset]
    text = (creator.__doc__ or "").split("## Description", 1)[-1].split("##", 1)[0]
    summary = _first_sentence(text) or env_id
    import inspect

    try:
        takes_data = "data" in inspect.signature(creator).parameters
    except (TypeError, ValueError):
        takes_data = False
    source = "offline, a seeded synthetic generator"
    if takes_data:
        source += "; data=FILE for the benchmark's file"
    return summary, source


def _first_sentence(text: str) -> str:
    """The first sentence of reST ``text`` on one line, roles and backquotes removed."""
    import re

    flat = " ".join(text.split())
    flat = re.sub(r":\w+:`~?(?:[\w.]+\.)?([\w]+)`", r"\1", flat).replace("``", "")
    match = re.search(r"(?<!e\.g)(?<!i\.e)[.!?](?=\s|$)", flat)
    return flat[: match.end()] if match else flat


def cmd_score(args) -> int:
    from arft_envs.scoring import PredictionFileError, score_file

    try:
        score = score_file(args.file, args.benchmark)
    except PredictionFileError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(score.to_dict(), indent=2))
    else:
        print(f"{Path(args.file).name} ({args.benchmark}, ×100)")
        print(score.format())
    return 0


def cmd_play(args) -> int:
    import gymnasium as gym

    import arft_envs  # noqa: F401
    from arft_envs.report import play_episode, write_report

    env = gym.make(args.env_id, render_mode="ansi", **parse_env_args(args.env_arg))
    if args.expert:
        from arft_envs.experts import ScriptedExpert

        policy = ScriptedExpert()
    else:
        policy = _human_policy
    records = []
    for episode in range(args.episodes):
        record = play_episode(env, _echo(policy), seed=args.seed + episode)
        info = record.info
        print(
            f"episode {episode}: return {sum(record.rewards):.2f} in {info['turns']} turns; "
            f"answer={info['answer']!r} golds={info['golds']} f1={info['f1']:.2f}"
        )
        records.append(record)
    if args.report:
        print(f"wrote {write_report(args.report, records, title=f'arft play {args.env_id}')}")
    env.close()
    return 0


def cmd_serve(args) -> int:
    import gymnasium as gym

    try:
        from arft_envs.integrations.openenv import serve
    except ImportError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.max_sessions < 1:
        print(f"error: --max-sessions must be >= 1, got {args.max_sessions}", file=sys.stderr)
        return 2
    try:
        serve(
            args.env_id,
            parse_env_args(args.env_arg),
            host=args.host,
            port=args.port,
            max_sessions=args.max_sessions,
            expert_hints=args.expert_hints,
        )
    except (ValueError, TypeError, OSError, gym.error.Error) as err:
        print(f"error: arft serve {args.env_id}: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


def _echo(policy):
    def act(obs, env):
        last = obs["messages"][-1]
        images = sum(1 for p in last["content"] if p["type"] == "image")
        text = "".join(p["text"] for p in last["content"] if p["type"] == "text")
        tag = f" [+{images} image(s)]" if images else ""
        print(f"\n--- {last['role']}{tag}\n{text[-2000:]}")
        action = policy(obs, env)
        print(f"--- assistant\n{action}")
        return action

    return act


def _human_policy(obs, env) -> str:
    print("\nYour turn (end with an empty line):")
    lines = []
    for line in sys.stdin:
        if not line.strip():
            break
        lines.append(line.rstrip("\n"))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """A torch-free ``arft`` with only the env commands (used when agents is unavailable)."""
    parser = argparse.ArgumentParser(prog="arft")
    add_env_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
