"""Run one evaluation rollout of an arft env through ``verifiers`` (0.4), offline.

    python examples/verifiers_eval.py                               # MATCoding-v0, tag format
    python examples/verifiers_eval.py --env HotpotQA-v0 --action-format tool_calls
    python examples/verifiers_eval.py --model smollm2-135m --env HotpotQA-v0
    python examples/verifiers_eval.py --url http://HOST:PORT/v1 --model NAME   # any server

verifiers drives the episode: its env (``arft_envs.integrations.verifiers``) resets the arft
env and relays turns, each model call goes through verifiers' interception server to the
model, and the reward on the verifiers trace is the arft env's own episode return. The tools
really run (the code sandbox, the search index).

The model is real: a local ``agents.policy.Policy`` (``--model``: ``tiny``, ``tiny-qwen``,
``smollm2-135m``, a checkpoint folder) served by an OpenAI-compatible chat endpoint on
127.0.0.1 that this script starts (``chat_server``). The tiny models are untrained, so
their reward is what random text earns (format errors cost nothing and earn nothing); a
trained checkpoint earns more. ``--url`` points the rollout at a server you run instead.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from typing import Any

import gymnasium as gym

from arft_envs.integrations.verifiers import chat_server, env_config, from_wire


def policy_responder(policy, stop_strings, max_new_tokens: int, temperature: float):
    """``respond(request) -> assistant message`` for :func:`chat_server`, by ``policy``: the
    request's chat is rendered with arft's own template code (images included), one turn is
    sampled, and in a request with ``tools`` the family's parser reads its native calls."""
    from agents.rollout.config import RolloutConfig
    from agents.rollout.episode import EpisodeBuilder

    config = RolloutConfig(max_new_tokens=max_new_tokens, temperature=temperature)

    def respond(body: dict[str, Any]) -> dict[str, Any]:
        messages, images = from_wire(body["messages"])
        calling = policy.tool_calling(body["tools"]) if body.get("tools") else None
        builder = EpisodeBuilder(
            policy,
            config,
            {"messages": messages, "images": images},
            {},
            env_id="verifiers",
            group=0,
            index=0,
            seed=None,
            tools=calling.tools if calling else None,
        )
        (gen,) = policy.generate(
            [builder.model_input()],
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            stop_strings=calling.stop_strings if calling else stop_strings,
            tool_calling=calling,
        )
        action = calling.action(gen.text) if calling else gen.text
        if isinstance(action, str):
            return {"content": action}
        return {"content": action["content"], "tool_calls": action["tool_calls"]}

    return respond


async def rollout(env_id: str, seed: int, env_kwargs: dict, url: str, model: str):
    """One verifiers episode of ``env_id`` reset with ``seed``; returns its trace."""
    import verifiers.v1 as vf

    env = vf.load_environment(env_config(env_id, seeds=[seed], **env_kwargs))
    client = vf.EvalClientConfig(base_url=url, api_key_var="ARFT_VERIFIERS_API_KEY")
    ctx = vf.ModelContext(model=model, client=client)
    async with env.serving():
        (slot,) = env.slots(next(iter(env.taskset)))
        episode = await env.run_slot(slot, ctx)
    (trace,) = episode.traces
    if not episode.ok:
        errors = [f"{e.type}: {e.message}" for e in [*episode.errors, *trace.errors]]
        raise SystemExit(f"the verifiers episode failed: {'; '.join(errors)}")
    return trace


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--env", default="MATCoding-v0", help="arft env id")
    parser.add_argument("--action-format", default="tags", choices=("tags", "tool_calls"))
    parser.add_argument("--seed", type=int, default=0, help="env.reset seed of the task")
    parser.add_argument("--model", default="tiny", help="a Policy name or path (or, with "
                        "--url, the model name the server expects)")  # fmt: skip
    parser.add_argument("--url", help="an OpenAI-compatible base URL (…/v1) to use instead")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--temperature", type=float, default=0.0, help="0: greedy")
    args = parser.parse_args(argv)

    env_kwargs = {"action_format": args.action_format}
    try:
        gym.spec(args.env)
    except gym.error.Error as err:
        raise SystemExit(f"--env: {err}") from None
    if args.url:
        server = contextlib.nullcontext(args.url)
    else:
        import torch

        from agents.policy import Policy
        from agents.policy.generation import ACTION_STOP_STRINGS

        torch.set_num_threads(1)
        torch.manual_seed(args.seed)
        policy = Policy.from_pretrained(args.model)
        probe = gym.make(args.env, **env_kwargs)
        tags = getattr(probe.unwrapped, "action_tags", ())
        stops = tuple(f"</{t}>" for t in tags) or ACTION_STOP_STRINGS
        probe.close()
        respond = policy_responder(policy, stops, args.max_new_tokens, args.temperature)
        server = chat_server(respond, model=args.model)
    with server as url:
        print(f"model server: {url} ({args.model})")
        trace = asyncio.run(rollout(args.env, args.seed, env_kwargs, url, args.model))
    for k, node in enumerate(n for n in trace.nodes if n.sampled):
        message = node.message
        calls = [f"{c.name}({c.arguments})" for c in message.tool_calls or ()]
        print(f"turn {k + 1}: {(message.content or '')[:70]!r} {' '.join(calls)[:70]}")
    metrics = {k: round(v, 3) for k, v in trace.metrics.items()}
    print(f"metrics: {metrics}")
    print(f"verifiers reward (the env's episode return): {trace.reward:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
