"""Serve any registered arft env over OpenEnv's protocol, and talk to it with OpenEnv's client.

``arft serve MATCoding-v0 --port 8000`` (or :func:`serve`) runs an OpenEnv server (FastAPI,
from the ``openenv-core`` package). Each WebSocket session (one OpenEnv ``EnvClient``) gets
its own env instance, made with ``gym.make(env_id, **env_kwargs)`` and stepped in its own
thread, so many clients play independent episodes at once; the env's sandbox, tool deadlines
and error messages are those of the in-process env, because it *is* the in-process env.

The wire format (:class:`ArftAction`, :class:`ArftObservation`):

- an action is ``{"text": str}``: one assistant turn, exactly what ``env.step`` takes; in
  an env made with ``action_format="tool_calls"`` (``arft serve ID --env-arg
  action_format=tool_calls``) it may also carry ``tool_calls`` (OpenEnv clients send the
  assistant message ``{"text": reasoning, "tool_calls": [{"type": "function", "function":
  {"name": ..., "arguments": {...}}}]}``), or put Hermes ``<tool_call>`` text in ``text``;
- an observation carries the whole conversation: ``messages`` (roles and parts, image parts
  indexing ``images``; an assistant turn's ``tool_calls`` and a tool reply's ``name`` when
  the env records them), ``images`` as ``{"shape": [h, w, 3], "dtype": "uint8", "data":
  base64 of the raw bytes}`` (lossless: :func:`to_gym_observation` gives back arrays equal to
  the env's), ``terminated``, ``truncated`` and the step's ``info`` (JSON-safe). OpenEnv's
  ``done`` is ``terminated or truncated``.

With ``expert_hints=True`` (``arft serve --expert-hints``) each observation also carries
``expert_action``, the scripted expert's next turn (in a ``tool_calls`` env, the assistant
message with its native call), for demonstrations and smoke tests; it is off by default
because it gives the answer away.

A request the server cannot honour (a step before any reset, an unknown reset option, a
seed that is not an integer, an action without ``text``) gets an error message that says
what was wrong and what to send instead; the session stays usable. Malformed JSON and
unknown message types get OpenEnv's own error replies.
"""

from __future__ import annotations

import base64
import socket
import uuid
from typing import Any

import gymnasium as gym
import numpy as np

try:
    from openenv.core import EnvClient
    from openenv.core.client_types import StepResult
    from openenv.core.env_server.http_server import create_fastapi_app
    from openenv.core.env_server.interfaces import Environment
    from openenv.core.env_server.types import Action, Observation, State
    from pydantic import Field
except ImportError as err:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "arft_envs.integrations.openenv needs the OpenEnv package: pip install 'arft[serve]' "
        f"(openenv-core). Import failed with: {err}"
    ) from err

import arft_envs  # noqa: F401  (registers the env ids)

__all__ = [
    "ArftAction",
    "ArftEnvClient",
    "ArftEnvironment",
    "ArftObservation",
    "ArftRequestError",
    "build_app",
    "decode_image",
    "encode_image",
    "serve",
    "spawn_server",
    "to_gym_observation",
]

RESET_KEYS = ("seed", "episode_id", "options")


class ArftRequestError(ValueError):
    """The client asked for something the env cannot do; the message says what to send."""


class ArftAction(Action):
    """One assistant turn: the text ``env.step`` receives, or, in a ``tool_calls`` env, the
    text and the turn's native calls (the assistant message ``env.step`` receives)."""

    text: str = Field(..., description="the assistant turn, e.g. '<think>…</think><code>…'")
    tool_calls: list[dict[str, Any]] | None = Field(
        None,
        description="native calls, [{'type': 'function', 'function': {'name', 'arguments'}}] "
        "(envs made with action_format='tool_calls')",
    )

    def env_action(self) -> str | dict[str, Any]:
        """What ``env.step`` takes: the text, or the assistant message with its calls."""
        if self.tool_calls is None:
            return self.text
        return {"role": "assistant", "content": self.text, "tool_calls": self.tool_calls}


class ArftObservation(Observation):
    """The conversation so far, with images carried losslessly, and the step's outcome."""

    messages: list[dict[str, Any]] = Field(default_factory=list)
    images: list[dict[str, Any]] = Field(default_factory=list)
    terminated: bool = False
    truncated: bool = False
    info: dict[str, Any] = Field(default_factory=dict)
    expert_action: str | dict[str, Any] | None = None


def encode_image(image: np.ndarray) -> dict[str, Any]:
    """A uint8 array as JSON: shape, dtype and base64 of its raw (C-order) bytes."""
    array = np.ascontiguousarray(image)
    return {
        "shape": list(array.shape),
        "dtype": str(array.dtype),
        "data": base64.b64encode(array.tobytes()).decode("ascii"),
    }


def decode_image(payload: dict[str, Any]) -> np.ndarray:
    """The array :func:`encode_image` encoded, bit for bit."""
    try:
        shape = tuple(int(v) for v in payload["shape"])
        raw = base64.b64decode(payload["data"], validate=True)
        return np.frombuffer(raw, dtype=np.dtype(payload["dtype"])).reshape(shape).copy()
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(
            "an image must be {'shape': [h, w, 3], 'dtype': 'uint8', 'data': base64 of the "
            f"raw bytes}}; this one could not be decoded: {err}"
        ) from err


def to_gym_observation(observation: ArftObservation | dict[str, Any]) -> dict[str, Any]:
    """An observation received over the wire as the env's own ``Conversation`` value."""
    if isinstance(observation, ArftObservation):
        messages, images = observation.messages, observation.images
    else:
        messages, images = observation["messages"], observation["images"]
    return {
        "messages": tuple(_gym_message(m) for m in messages),
        "images": tuple(decode_image(image) for image in images),
    }


def _wire_message(m: dict[str, Any]) -> dict[str, Any]:
    """One env message as JSON: its parts, and its ``tool_calls`` / ``name`` when present."""
    out: dict[str, Any] = {"role": m["role"], "content": [dict(p) for p in m["content"]]}
    if "tool_calls" in m:
        out["tool_calls"] = _jsonable(m["tool_calls"])
    if "name" in m:
        out["name"] = m["name"]
    return out


def _gym_message(m: dict[str, Any]) -> dict[str, Any]:
    """One wire message as the env's own message value (tuples where the env has them)."""
    out: dict[str, Any] = {"role": m["role"], "content": tuple(dict(p) for p in m["content"])}
    if "tool_calls" in m:
        out["tool_calls"] = tuple(m["tool_calls"])
    if "name" in m:
        out["name"] = m["name"]
    return out


def _jsonable(value: Any) -> Any:
    """``info`` values as JSON: numpy scalars and arrays become Python values."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return encode_image(value) if value.dtype == np.uint8 else value.tolist()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


class ArftEnvironment(Environment[ArftAction, ArftObservation, State]):
    """One OpenEnv session: one arft env made with ``gym.make(env_id, **env_kwargs)``."""

    SUPPORTS_CONCURRENT_SESSIONS = True

    def __init__(
        self, env_id: str, env_kwargs: dict[str, Any] | None = None, expert_hints: bool = False
    ):
        super().__init__()
        self.env_id = env_id
        self.env = gym.make(env_id, **(env_kwargs or {}))
        self.expert_hints = bool(expert_hints)
        self._state = State(episode_id=None, step_count=0)
        self._in_episode = False

    def reset(
        self, seed: int | None = None, episode_id: str | None = None, **kwargs: Any
    ) -> ArftObservation:
        options = kwargs.pop("options", None)
        if kwargs:
            raise ArftRequestError(
                f"unknown reset field(s) {sorted(kwargs)}; a reset takes {list(RESET_KEYS)}, "
                "e.g. {'seed': 0, 'options': {'task_id': '…'}}"
            )
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ArftRequestError(f"reset 'seed' must be an integer or null, got {seed!r}")
        if options is not None and not isinstance(options, dict):
            raise ArftRequestError(f"reset 'options' must be an object, got {options!r}")
        try:
            observation, info = self.env.reset(seed=seed, options=options)
        except (ValueError, KeyError) as err:  # e.g. an unknown option or task id
            raise ArftRequestError(f"{self.env_id} could not reset: {err}") from err
        self._state = State(episode_id=episode_id or str(uuid.uuid4()), step_count=0)
        self._in_episode = True
        return self._observation(observation, None, False, False, info)

    def step(
        self, action: ArftAction, timeout_s: float | None = None, **kwargs: Any
    ) -> ArftObservation:
        if not self._in_episode:
            raise ArftRequestError(
                f"no episode is in progress in this {self.env_id} session (none yet, or the "
                "last one ended); send a reset before the next step"
            )
        observation, reward, terminated, truncated, info = self.env.step(action.env_action())
        self._state.step_count += 1
        self._in_episode = not (terminated or truncated)
        return self._observation(observation, float(reward), terminated, truncated, info)

    @property
    def state(self) -> State:
        return self._state

    def close(self) -> None:
        self.env.close()

    def _observation(
        self, observation: dict, reward: float | None, terminated: bool, truncated: bool, info
    ) -> ArftObservation:
        hint = None
        if self.expert_hints and self._in_episode:
            from arft_envs.experts import ExpertError, ScriptedExpert

            try:
                hint = _jsonable(ScriptedExpert().act(self.env))
            except ExpertError:
                hint = None
        return ArftObservation(
            messages=[_wire_message(m) for m in observation["messages"]],
            images=[encode_image(image) for image in observation["images"]],
            terminated=bool(terminated),
            truncated=bool(truncated),
            info=_jsonable(info),
            expert_action=hint,
            reward=reward,
            done=bool(terminated or truncated),
        )


def build_app(
    env_id: str,
    env_kwargs: dict[str, Any] | None = None,
    *,
    max_sessions: int = 8,
    expert_hints: bool = False,
):
    """The FastAPI app serving ``env_id``; one env is made now so a bad id or kwarg fails
    here, at start-up, rather than in every session."""
    if env_id not in gym.registry:
        raise ValueError(
            f"{env_id!r} is not a registered env id; `arft envs` lists them "
            f"(e.g. {sorted(arft_envs.ENV_SPECS)[:3]})"
        )
    kwargs = dict(env_kwargs or {})
    ArftEnvironment(env_id, kwargs).close()

    def factory() -> ArftEnvironment:
        return ArftEnvironment(env_id, kwargs, expert_hints)

    app = create_fastapi_app(factory, ArftAction, ArftObservation, max_concurrent_envs=max_sessions)

    from fastapi.responses import JSONResponse

    @app.exception_handler(ArftRequestError)
    async def _request_error(request, err: ArftRequestError):  # the stateless HTTP routes
        return JSONResponse(status_code=400, content={"detail": str(err)})

    return app


def serve(
    env_id: str,
    env_kwargs: dict[str, Any] | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    max_sessions: int = 8,
    expert_hints: bool = False,
) -> None:
    """Run the server until interrupted. ``port=0`` picks a free port; the first line
    printed is ``arft serve: listening on http://HOST:PORT`` with the real port."""
    import uvicorn

    app = build_app(env_id, env_kwargs, max_sessions=max_sessions, expert_hints=expert_hints)
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)  # connections queue from here on, so the line below means "ready"
    bound = sock.getsockname()[1]
    print(f"arft serve: listening on http://{host}:{bound} ({env_id})", flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    server.run(sockets=[sock])


class spawn_server:  # noqa: N801 - used as a context manager, like open()
    """``with spawn_server("MATCoding-v0") as url:`` runs ``arft serve`` in a child process on
    a free loopback port and stops it on exit; ``url`` is its ``http://127.0.0.1:PORT``."""

    def __init__(
        self,
        env_id: str,
        env_args: list[str] | None = None,
        *,
        expert_hints: bool = False,
        max_sessions: int = 8,
        start_timeout_s: float = 120.0,
    ):
        import sys

        self.command = [
            sys.executable, "-m", "arft_envs.cli", "serve", env_id, "--port", "0",
            "--max-sessions", str(max_sessions),
        ]  # fmt: skip
        for pair in env_args or []:
            self.command += ["--env-arg", pair]
        if expert_hints:
            self.command.append("--expert-hints")
        self.start_timeout_s = float(start_timeout_s)
        self.process = None

    def __enter__(self) -> str:
        import selectors
        import subprocess
        import time

        self.process = subprocess.Popen(
            self.command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        selector = selectors.DefaultSelector()
        selector.register(self.process.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if selector.select(timeout=0.5):
                line = self.process.stdout.readline()
                if line.startswith("arft serve: listening on "):
                    return line.split()[4]
                if not line:  # the server exited before it listened
                    break
        self.__exit__(None, None, None)
        raise RuntimeError(
            f"`{' '.join(self.command[2:])}` did not start: {self.process.stderr.read()[-2000:]}"
        )

    def __exit__(self, *exc: Any) -> None:
        import subprocess

        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class ArftEnvClient(EnvClient[ArftAction, ArftObservation, State]):
    """OpenEnv's WebSocket client, typed for arft: ``step`` takes an :class:`ArftAction`,
    a plain string, or (``tool_calls`` envs) an assistant message ``{"content": ...,
    "tool_calls": [...]}`` such as a ``tool_calls`` expert hint; results hold
    :class:`ArftObservation`.

    ``client = ArftEnvClient(base_url="http://127.0.0.1:8000").sync()``, then ``with client:
    result = client.reset(seed=0)``; ``to_gym_observation(result.observation)`` is the env's
    own observation.
    """

    def _step_payload(self, action: ArftAction | str | dict[str, Any]) -> dict[str, Any]:
        if isinstance(action, str):
            return {"text": action}
        if isinstance(action, dict):  # an assistant message
            payload = {"text": action.get("content") or ""}
            if action.get("tool_calls") is not None:
                payload["tool_calls"] = list(action["tool_calls"])
            return payload
        return action.model_dump(exclude={"metadata"}, exclude_none=True)

    def _parse_result(self, payload: dict[str, Any]) -> StepResult[ArftObservation]:
        fields = dict(payload.get("observation", {}))
        observation = ArftObservation(
            **fields, reward=payload.get("reward"), done=payload.get("done", False)
        )
        return StepResult(
            observation=observation, reward=payload.get("reward"), done=observation.done
        )

    def _parse_state(self, payload: dict[str, Any]) -> State:
        return State(**payload)
