"""User errors of the ``arft`` command: checks that run before any work, and the one place
that turns an exception into a message.

Every command ends a user error (an unknown env id, a keyword the env does not take, a
missing model or data file, a bad config) with one line on stderr that says what went wrong,
where, and the fix, and exit status 2, never a traceback; ``arft --debug …`` re-raises
instead, for a bug report. Nothing here imports torch.
"""

from __future__ import annotations

import difflib
import inspect
import sys
from typing import Any

# Exit status of a user error (argparse uses the same).
USAGE = 2


class UserError(Exception):
    """A mistake on the command line or in a file the user named; the message says the fix."""


def check_env_id(env_id: str) -> None:
    """Raise :class:`UserError` naming the closest registered ids when ``env_id`` is unknown.
    A ``module:Env-v0`` id imports ``module`` first (that is how it registers)."""
    import gymnasium as gym

    import arft_envs  # noqa: F401  (registers the ids)

    module, sep, name = env_id.rpartition(":")
    if sep:
        try:
            __import__(module)
        except ImportError as err:
            raise UserError(
                f"env {env_id!r}: cannot import module {module!r} ({err}); check the module "
                "name and that its package is installed"
            ) from None
    else:
        name = env_id
    if name in gym.registry:
        return
    known = sorted(gym.registry)
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}?" if close else "run 'arft envs' for the list"
    raise UserError(f"unknown env id {env_id!r}; {hint}")


def env_arguments(env_id: str) -> list[str] | None:
    """The keyword arguments the env of ``env_id`` accepts (its class's ``__init__`` and
    those of the classes it passes ``**kwargs`` on to), or None when that cannot be told (a
    factory function taking ``**kwargs``)."""
    import gymnasium as gym
    from gymnasium.envs.registration import load_env_creator

    entry = gym.spec(env_id.rpartition(":")[2] or env_id).entry_point
    try:
        creator = load_env_creator(entry) if isinstance(entry, str) else entry
    except (ImportError, AttributeError):
        return None
    names: list[str] = ["render_mode"]
    chain = inspect.getmro(creator) if inspect.isclass(creator) else (creator,)
    for target in chain:
        function = target.__init__ if inspect.isclass(target) else target
        if inspect.isclass(target) and "__init__" not in vars(target):
            continue
        if target is object:
            break
        try:
            params = inspect.signature(function).parameters.values()
        except (TypeError, ValueError):
            return None
        names += [
            p.name
            for p in params
            if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
        ]
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            return sorted(set(names))
        if not inspect.isclass(target):
            return None  # a factory passing **kwargs on: its targets are not known here
    return None


def check_env_args(env_id: str, kwargs: dict[str, Any]) -> None:
    """Raise :class:`UserError` for a keyword the env of ``env_id`` does not accept, naming
    the closest one and all the accepted ones."""
    accepted = env_arguments(env_id)
    if accepted is None:
        return
    for key in kwargs:
        if key not in accepted:
            close = difflib.get_close_matches(key, accepted, n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            raise UserError(
                f"--env-arg {key}=…: {env_id} takes no argument {key!r}; {hint}"
                f"its arguments are {', '.join(accepted)}"
            )


def message(err: BaseException) -> str:
    """The one-line message of an exception that ended a command."""
    text = str(err).strip() or type(err).__name__
    if isinstance(err, KeyError) and len(err.args) == 1 and isinstance(err.args[0], str):
        text = err.args[0]  # str(KeyError) quotes its message
    if isinstance(err, FileNotFoundError) and err.filename and str(err.filename) not in text:
        text = f"{err.filename}: {text}"
    user = (UserError, ValueError, KeyError, OSError, TypeError, LookupError)
    if isinstance(err, user) or type(err).__module__.startswith("gymnasium"):
        return text
    return f"{type(err).__name__}: {text} (this may be a bug: rerun with 'arft --debug …' for the traceback)"


def report(command: str, err: BaseException) -> int:
    """Print ``err`` as ``arft COMMAND: error: …`` on stderr; the exit status."""
    print(f"arft {command}: error: {message(err)}", file=sys.stderr)
    return USAGE
