"""Loading a policy's parts: the model, tokenizer, image processor and chat template from
any ``--model`` spec :func:`agents.models.registry.resolve_model` accepts (``tiny``,
``tiny-qwen``, ``smollm2-135m``, a ``.gguf`` file, a checkpoint folder, a cached or — online —
downloadable hub id), the dtype, and LoRA adapters (peft).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from agents.images import ImageBudget, ImageGeometry
from agents.models import families
from agents.models.registry import build_builtin, resolve_model
from agents.policy.chat import TemplateError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class LoraSettings:
    """LoRA adapters (peft) on the language model's attention and MLP projections.

    The vision tower is left frozen and without adapters.
    """

    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: str = (
        r"^(?!.*visual).*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)$"
    )

    def __post_init__(self):
        if self.r < 1:
            raise ValueError(f"LoRA rank r must be >= 1, got {self.r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"LoRA dropout must be in [0, 1), got {self.dropout}")


@dataclass
class Loaded:
    """What :func:`load` read: the arguments of a :class:`~agents.policy.Policy`."""

    model: Any
    tokenizer: Any
    chat_template: str
    image_processor: Any
    geometry: ImageGeometry | None
    image_budget: ImageBudget
    name: str
    template_source: str = ""


def load(
    name_or_path: str | Path,
    *,
    dtype: str,
    device: str | torch.device | None,
    lora: LoraSettings | None,
    adapter: str | Path | None,
    gradient_checkpointing: bool,
    image_budget: ImageBudget | None,
    chat_template: str | Path | None,
    seed: int,
    attn_implementation: str | None,
) -> Loaded:
    """The body of :meth:`agents.policy.Policy.from_pretrained` (see it for the options)."""
    if lora is not None and adapter is not None:
        raise ValueError("give lora= (new adapters) or adapter= (saved ones), not both")
    budget = image_budget or ImageBudget()
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch_dtype = _resolve_dtype(dtype, device)
    source = resolve_model(name_or_path)  # ModelNotFoundError says what to do
    if source.kind == "builtin":
        model, tokenizer, image_processor = build_builtin(source.spec, seed)
        model = model.to(dtype=torch_dtype)
    elif source.kind == "gguf":
        from agents.models.gguf import load_gguf

        model, tokenizer = load_gguf(source.path, torch_dtype, attn_implementation)
        image_processor = None
    else:
        model, tokenizer, image_processor = _load_local(
            source.path, torch_dtype, attn_implementation
        )
    name = source.spec
    template, template_source = _resolve_template(
        chat_template, tokenizer, source.path or name_or_path
    )
    geometry = None
    if image_processor is not None:
        geometry = families.geometry(image_processor, budget)
    model.to(device)
    if gradient_checkpointing:
        if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.x
            model.activation_checkpointing_enable({"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable({"use_reentrant": False})
        model.config.use_cache = False
    if lora is not None:
        model = apply_lora(model, lora)
    elif adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter), is_trainable=True)
    model.eval()
    return Loaded(
        model, tokenizer, template, image_processor, geometry, budget, name, template_source
    )


def apply_lora(model: Any, lora: LoraSettings) -> Any:
    """``model`` wrapped with new, trainable LoRA adapters (a peft model)."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


_apply_lora = apply_lora  # the name the trainer imports until it switches to apply_lora


def _resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be 'auto' or one of {sorted(DTYPES)}, got {dtype!r}")
    return DTYPES[dtype]


def _load_local(path: Path, torch_dtype: torch.dtype, attn_implementation: str | None):
    """Model, tokenizer and image processor (None for a text-only LM) from a local folder."""
    from transformers import AutoConfig, AutoTokenizer

    if not path.is_dir():
        raise FileNotFoundError(
            f"model {str(path)!r} is neither 'tiny' nor a local checkpoint folder; arft never "
            "downloads weights — download the checkpoint yourself and pass its folder"
        )
    config = AutoConfig.from_pretrained(path, local_files_only=True)
    kwargs: dict[str, Any] = {"dtype": torch_dtype, "local_files_only": True}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    if families.check_supported(config, path):
        from transformers import AutoImageProcessor, AutoModelForImageTextToText

        model = AutoModelForImageTextToText.from_pretrained(path, **kwargs)
        image_processor = AutoImageProcessor.from_pretrained(
            path, local_files_only=True, backend="pil"
        )
        return model, tokenizer, image_processor
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    return model, tokenizer, None


def _resolve_template(override, tokenizer, name_or_path) -> tuple[str, str]:
    """The chat template: the override, else the checkpoint's (tokenizer or processor file),
    and where it came from (for messages)."""
    if override is not None:
        text = str(override)
        if "{" not in text and Path(text).is_file():
            return Path(text).read_text(encoding="utf-8"), f"the chat_template file {text}"
        return text, "the chat_template= override"
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, dict):
        template = template.get("default")
    if template:
        return template, f"the tokenizer's chat template of {name_or_path}"
    folder = Path(str(name_or_path))
    for name in ("chat_template.jinja", "chat_template.json"):
        file = folder / name
        if file.is_file():
            text = file.read_text(encoding="utf-8")
            text = json.loads(text)["chat_template"] if name.endswith(".json") else text
            return text, str(file)
    raise TemplateError(
        f"{name_or_path}: no chat template in the checkpoint; pass chat_template= a Jinja template"
    )
