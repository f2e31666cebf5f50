"""Play one expert episode of an arft env served over OpenEnv, with OpenEnv's own client.

    python examples/openenv_client.py                       # starts `arft serve` itself
    python examples/openenv_client.py --url http://HOST:PORT  # or joins a running one
                                                             # (started with --expert-hints)

The server runs the real env (sandboxed code, tool deadlines); this script only sends text
turns over a WebSocket and reads observations back, images included, bit for bit. The
"expert" is the server's scripted demonstrator (``--expert-hints``): each observation carries
its next turn, which this client sends back. A trainer would send its model's turn instead.
"""

from __future__ import annotations

import argparse
import contextlib

from arft_envs.integrations.openenv import ArftEnvClient, spawn_server, to_gym_observation


def play(url: str, seed: int) -> float:
    """One episode over OpenEnv; returns its return."""
    client = ArftEnvClient(base_url=url, message_timeout_s=300).sync()
    with client:
        result = client.reset(seed=seed)
        total = 0.0
        while not result.done:
            observation = result.observation
            if observation.expert_action is None:
                raise SystemExit("the server sends no expert turns: start it with --expert-hints")
            result = client.step(observation.expert_action)
            total += result.reward
            last = result.observation.messages[-1]
            text = "".join(p.get("text", "") for p in last["content"])
            print(f"turn {result.observation.info['turn']}: reward {result.reward:+.2f} "
                  f"({last['role']}: {text[:70]!r})")  # fmt: skip
        final = to_gym_observation(result.observation)
        info = result.observation.info
        print(f"images received: {len(final['images'])} "
              f"(shapes {[im.shape for im in final['images']]})")  # fmt: skip
        print(f"answer={info.get('answer')!r} golds={info.get('golds')} f1={info.get('f1')}")
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--env", default="MATCoding-v0", help="env id to serve")
    parser.add_argument("--url", help="a running `arft serve --expert-hints` to join")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.url:
        server = contextlib.nullcontext(args.url)
    else:
        server = spawn_server(args.env, expert_hints=True)
    with server as url:
        print(f"OpenEnv server: {url}")
        episode_return = play(url, args.seed)
    print(f"episode return over OpenEnv: {episode_return:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
