"""verifiers adapter: any arft env as an environment of Prime Intellect's ``verifiers`` (0.4).

verifiers 0.4 splits an environment into a *taskset* (rows and their rewards), a *harness*
(the program that calls the model) and an ``Env`` (how one task becomes one episode). This
module is all three, one plug-in that verifiers loads by the id ``arft_verifiers``
(:data:`TASKSET_ID`, which :func:`env_config` fills in)::

    import verifiers.v1 as vf
    from arft_envs.integrations.verifiers import env_config

    env = vf.load_environment(env_config("MATCoding-v0", seeds=[0]))
    client = vf.EvalClientConfig(base_url="http://127.0.0.1:8000/v1")  # OpenAI-compatible
    ctx = vf.ModelContext(model="my-model", client=client)
    async with env.serving():
        (slot,) = env.slots(next(iter(env.taskset)))
        episode = await env.run_slot(slot, ctx)
    episode.traces[0].reward   # the arft env's own episode return

- :class:`ArftTaskset`: one task per (env id, seed). A row carries no prompt: the arft env
  makes the opening chat when it resets.
- :class:`ArftEnv`: the arft env's turn loop (``Env.run``). It resets the gym env and relays
  turns: the env's opening messages, then after each model reply ``env.step(reply)`` and the
  env's new messages (tool output, images, format errors), until the episode ends. The tools
  really run (the sandbox, the search index), in a worker thread. The trace's reward is the
  env's episode return (``env_return``, the sum of the env's own rewards); the env's final
  facts (f1, em, turns, tool failures) are the trace's metrics. verifiers has no separate
  rubric object in 0.4: a reward is a number recorded on the trace.
- :class:`ArftChatHarness`: the model side, in process. verifiers' own harnesses each start
  a program with ``uv run`` that fetches its dependencies when it runs (the tool-less ``null``
  harness too); this one makes one chat-completions request per turn through verifiers'
  interception endpoint, which records the turn and forwards it to the run's client (any
  OpenAI-compatible server), so a rollout needs no network beyond the model server.

Images travel as ``image_url`` parts (PNG data URLs) in user and tool messages. In
``action_format="tool_calls"`` the env's function schemas go in the request's ``tools``, the
model's ``tool_calls`` go back to ``env.step`` and the tool's reply comes back as a ``tool``
message answering the first call; in ``"tags"`` the reply text is the action and tool output
comes back as a user message.

:func:`chat_server` serves any ``respond(request) -> assistant message`` callable as an
OpenAI-compatible ``/v1/chat/completions`` endpoint on 127.0.0.1 (standard library only), for
a local model or a scripted policy.

Only this module imports ``verifiers`` (nothing in ``arft_envs`` imports it), so ``import
arft_envs`` stays light. Install it with ``pip install 'arft[verifiers]'``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import gymnasium as gym
import numpy as np
from PIL import Image

try:
    import openai
    import verifiers.v1 as vf
    from pydantic import Field
    from verifiers.v1.dialects.chat import message_to_wire
    from verifiers.v1.runtimes import ProgramResult
except ImportError as err:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "arft_envs.integrations.verifiers needs the verifiers package: pip install "
        f"'arft[verifiers]' (verifiers 0.4, Python 3.11+). Import failed with: {err}"
    ) from err

import arft_envs  # noqa: F401  (registers the env ids)

__all__ = [
    "ArftChatHarness",
    "ArftChatHarnessConfig",
    "ArftEnv",
    "ArftEnvConfig",
    "ArftTask",
    "ArftTaskData",
    "ArftTaskset",
    "ArftTasksetConfig",
    "TASKSET_ID",
    "chat_server",
    "decode_image_url",
    "env_config",
    "from_wire",
    "image_url",
    "to_wire",
]

TASKSET_ID = "arft_verifiers"
"""The id verifiers loads this module by (its taskset, harness and env in one). verifiers
imports a plugin id as a top-level module, so importing this module also registers it
under that name."""
sys.modules.setdefault(TASKSET_ID, sys.modules[__name__])


# ---------------------------------------------------------------------- messages


def image_url(image: np.ndarray) -> str:
    """An RGB uint8 array as a PNG data URL (lossless)."""
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def decode_image_url(url: str) -> np.ndarray:
    """The array behind a base64 ``data:`` image URL (what :func:`image_url` writes)."""
    head, sep, data = url.partition(",")
    if not (sep and head.startswith("data:") and head.endswith(";base64")):
        raise ValueError(f"expected a base64 data: URL for an image, got {url[:40]!r}…")
    image = Image.open(io.BytesIO(base64.b64decode(data)))
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def _wire_content(parts: Sequence[Mapping[str, Any]], images: Sequence[np.ndarray]) -> list:
    out: list[dict[str, Any]] = []
    for part in parts:
        if part["type"] == "image":
            out.append(
                {"type": "image_url", "image_url": {"url": image_url(images[part["index"]])}}
            )
        else:
            out.append({"type": "text", "text": part.get("text", "")})
    return out


def to_wire(
    messages: Sequence[Mapping[str, Any]],
    images: Sequence[np.ndarray],
    call_id: str | None = None,
) -> list[dict[str, Any]]:
    """arft messages (roles system/user/tool, image parts indexing ``images``) as OpenAI
    chat messages. A ``tool`` message becomes the reply to ``call_id`` when the model made a
    native call, else a user message (tag format: the tool output is the next user turn)."""
    wire = []
    for m in messages:
        content = _wire_content(m["content"], images)
        if m["role"] == "tool" and call_id is not None:
            wire.append({"role": "tool", "tool_call_id": call_id, "content": content})
            call_id = None  # one reply per call
        elif m["role"] in ("tool", "user"):
            wire.append({"role": "user", "content": content})
        elif m["role"] == "system":
            text = "".join(p.get("text", "") for p in content if p["type"] == "text")
            wire.append({"role": "system", "content": text})
        else:
            raise ValueError(f"unexpected {m['role']!r} message from the env")
    return wire


def from_wire(messages: Sequence[Mapping[str, Any]]) -> tuple[list[dict], list[np.ndarray]]:
    """OpenAI chat messages (as a server receives them) back into an arft conversation:
    ``(messages, images)`` with image parts indexing ``images``, tool calls with ``arguments``
    as objects. What a model server needs to render the chat with arft's own templates."""
    out: list[dict[str, Any]] = []
    images: list[np.ndarray] = []
    for m in messages:
        content = m.get("content")
        parts: list[dict[str, Any]] = []
        if isinstance(content, str):
            parts.append({"type": "text", "text": content})
        for part in content if isinstance(content, list) else ():
            if part.get("type") == "image_url":
                images.append(decode_image_url(part["image_url"]["url"]))
                parts.append({"type": "image", "index": len(images) - 1})
            elif part.get("type") == "text":
                parts.append({"type": "text", "text": part.get("text", "")})
        message: dict[str, Any] = {"role": m["role"], "content": tuple(parts)}
        calls = m.get("tool_calls") or ()
        if calls:
            message["tool_calls"] = tuple(
                {
                    "type": "function",
                    "function": {
                        "name": c["function"]["name"],
                        "arguments": _arguments(c["function"].get("arguments")),
                    },
                }
                for c in calls
            )
        out.append(message)
    return out, images


def _arguments(raw: Any) -> Any:
    if isinstance(raw, str):
        try:
            return json.loads(raw) if raw.strip() else {}
        except ValueError:
            return raw
    return raw if raw is not None else {}


def _action(reply: vf.AssistantMessage, action_format: str) -> str | dict[str, Any]:
    """What ``env.step`` takes for a model reply: its text (tags), or the assistant message
    with its native calls (tool_calls)."""
    text = reply.content or ""
    if action_format != "tool_calls" or not reply.tool_calls:
        return text
    calls = [
        {"type": "function", "function": {"name": c.name, "arguments": c.arguments}}
        for c in reply.tool_calls
    ]
    return {"role": "assistant", "content": text, "tool_calls": calls}


# ---------------------------------------------------------------------- taskset


class ArftTaskData(vf.TaskData):
    """One episode of an arft env: which env, made how, reset with which seed."""

    env_id: str = "MATCoding-v0"
    seed: int = 0
    env_kwargs: dict[str, Any] = Field(default_factory=dict)
    tools: list[dict[str, Any]] | None = None
    """The env's ``tool_schemas`` (OpenAI function tools) in ``action_format="tool_calls"``,
    set when the episode starts; the harness sends them as the request's ``tools``."""


class ArftTask(vf.Task[ArftTaskData]):
    """An arft episode; its reward is recorded by :class:`ArftEnv` from the env itself."""


class ArftTasksetConfig(vf.TasksetConfig):
    env_id: str = "MATCoding-v0"
    """A registered arft env id (``arft envs`` lists them)."""
    seeds: list[int] = Field(default_factory=lambda: [0])
    """One task per seed, reset with ``env.reset(seed=seed)``."""
    env_kwargs: dict[str, Any] = Field(default_factory=dict)
    """Keyword arguments of ``gym.make`` (e.g. ``{"action_format": "tool_calls"}``)."""


class ArftTaskset(vf.Taskset[ArftTask, ArftTasksetConfig]):
    """One task per seed of one arft env."""

    def load(self) -> Iterator[ArftTask]:
        gym.spec(self.config.env_id)  # an unknown id fails here, naming the closest ones
        for seed in self.config.seeds:
            data = ArftTaskData(
                id=f"{self.config.env_id}/seed-{seed}",
                env_id=self.config.env_id,
                seed=int(seed),
                env_kwargs=dict(self.config.env_kwargs),
            )
            yield ArftTask(data, self.config.task)


# ---------------------------------------------------------------------- harness


class ArftChatHarnessConfig(vf.HarnessConfig):
    id: str = TASKSET_ID


class ArftChatHarness(vf.Harness[ArftChatHarnessConfig]):
    """One chat-completions request per segment, made in process through the rollout's
    interception endpoint (the harness contract allows an in-process loop when every model
    call goes through it). Stateless: each segment sends the whole conversation so far."""

    APPENDS_SYSTEM_PROMPT = True
    SUPPORTS_RESUME = True
    EXECUTES_CODE = False  # the env runs the tools, not the harness
    NEEDS_CONTAINER = False

    async def launch(
        self,
        ctx: vf.ModelContext,
        trace: vf.Trace,
        runtime: vf.Runtime,
        endpoint: str,
        secret: str,
        mcp_urls: dict[str, str],
        data: vf.TaskData,
    ) -> ProgramResult:
        system, prompt = self.resolve_prompt(data)
        messages: list[dict[str, Any]] = []
        if system:
            messages.append({"role": "system", "content": system})
        if isinstance(prompt, str):
            messages.append({"role": "user", "content": prompt})
        else:
            messages += [message_to_wire(m) for m in prompt or ()]
        request: dict[str, Any] = {"model": ctx.model, "messages": messages}
        tools = getattr(data, "tools", None)
        if tools:
            request["tools"] = list(tools)
        async with openai.AsyncOpenAI(base_url=endpoint, api_key=secret, max_retries=0) as client:
            await client.chat.completions.create(**request)
        return ProgramResult(exit_code=0, stdout="", stderr="")


# ---------------------------------------------------------------------- env


class ArftEnvConfig(vf.EnvConfig):
    agent: vf.AgentConfig = vf.AgentConfig(runtime=vf.SubprocessConfig(), network_notice=False)
    """The model's seat, on the local machine; its harness defaults to the taskset's own,
    :class:`ArftChatHarness`."""


class ArftEnv(vf.Env[ArftEnvConfig]):
    """The arft env's turn loop as a verifiers episode (see the module docstring)."""

    async def run(self, task: vf.Task, agents: vf.Agents) -> None:
        data = task.data
        env = await asyncio.to_thread(gym.make, data.env_id, **data.env_kwargs)
        try:
            await self._play(task, env, agents.agent)
        finally:
            await asyncio.to_thread(env.close)

    async def _play(self, task: vf.Task, env: gym.Env, agent: vf.Agent) -> None:
        base = env.unwrapped
        action_format = getattr(base, "action_format", "tags")
        obs, _ = await asyncio.to_thread(env.reset, seed=task.data.seed)
        tools = list(base.tool_schemas) if action_format == "tool_calls" else None
        played = task.with_data(tools=tools)
        episode_return, info, done = 0.0, {}, False
        new = to_wire(obs["messages"], obs["images"])
        async with agent.interaction(played) as chat:
            while not done:
                segment = await chat.turn(new)
                if segment.terminated:  # a verifiers limit (max turns, tokens) ended it
                    break
                reply = next(
                    m for m in reversed(segment.messages) if isinstance(m, vf.AssistantMessage)
                )
                seen = len(obs["messages"])
                obs, reward, terminated, truncated, info = await asyncio.to_thread(
                    env.step, _action(reply, action_format)
                )
                episode_return += float(reward)
                done = terminated or truncated
                call_id = reply.tool_calls[0].id if reply.tool_calls else None
                # the env echoes the assistant turn first; what follows is the env's reply
                new = to_wire(obs["messages"][seen + 1 :], obs["images"], call_id)
        trace = chat.trace
        trace.record_reward("env_return", episode_return)
        trace.record_metrics(_final_metrics(info, done))


def _final_metrics(info: Mapping[str, Any], done: bool) -> dict[str, float]:
    metrics = {"episode_done": float(done)}
    for key in ("f1", "em", "turns", "format_errors", "tool_failures", "tool_timeouts"):
        value = info.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            metrics[key] = float(value)
    return metrics


def env_config(
    env_id: str = "MATCoding-v0",
    seeds: Sequence[int] = (0,),
    **env_kwargs: Any,
) -> vf.EnvConfig:
    """The verifiers env config for ``env_id`` played on ``seeds`` (``gym.make`` takes
    ``env_kwargs``); give it to ``vf.load_environment``."""
    return vf.resolve_env_config(
        {
            "taskset": {
                "id": TASKSET_ID,
                "env_id": env_id,
                "seeds": list(seeds),
                "env_kwargs": env_kwargs,
            }
        }
    )


# ---------------------------------------------------------------------- model server


Respond = Callable[[dict[str, Any]], Mapping[str, Any]]


@contextlib.contextmanager
def chat_server(respond: Respond, model: str = "arft-local") -> Iterator[str]:
    """Serve ``respond`` as an OpenAI-compatible chat endpoint on 127.0.0.1; yields its base
    URL (``http://127.0.0.1:PORT/v1``).

    ``respond`` gets each request body (``messages``, ``tools``, sampling fields) and returns
    the assistant message: ``{"content": str}``, with ``"tool_calls"`` for native calls (each
    ``{"name", "arguments"}`` or ``{"type": "function", "function": {...}}``). Requests are
    answered one at a time, in arrival order; an exception in ``respond`` becomes an HTTP 500
    whose message names it.
    """
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # quiet
            pass

        def _send(self, status: int, payload: dict) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            if self.path.rstrip("/") == "/v1/models":
                self._send(200, {"object": "list", "data": [{"id": model, "object": "model"}]})
            else:
                self._send(404, {"error": {"message": f"no route {self.path}"}})

        def do_POST(self):
            if self.path.rstrip("/") != "/v1/chat/completions":
                self._send(404, {"error": {"message": f"no route {self.path}"}})
                return
            length = int(self.headers.get("Content-Length", 0))
            try:
                body = json.loads(self.rfile.read(length))
                with lock:
                    reply = dict(respond(body))
            except Exception as err:  # the client sees why, the server keeps serving
                self._send(500, {"error": {"message": f"{type(err).__name__}: {err}"}})
                return
            self._send(200, _completion(body, reply, model))

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, name="arft-chat-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _completion(body: Mapping[str, Any], reply: Mapping[str, Any], model: str) -> dict:
    message: dict[str, Any] = {"role": "assistant", "content": reply.get("content") or ""}
    calls = reply.get("tool_calls") or ()
    if calls:
        message["tool_calls"] = []
        for call in calls:
            function = call.get("function", call)
            arguments = function.get("arguments", {})
            if not isinstance(arguments, str):
                arguments = json.dumps(arguments)
            message["tool_calls"].append(
                {
                    "id": f"call_{uuid.uuid4().hex[:12]}",
                    "type": "function",
                    "function": {"name": function["name"], "arguments": arguments},
                }
            )
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model") or model,
        "choices": [
            {"index": 0, "message": message, "finish_reason": "tool_calls" if calls else "stop"}
        ],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
    }
