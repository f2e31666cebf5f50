"""The policy: a Hugging Face (vision-)language model, its tokenizer, image processor and chat
template, behind the few calls an agent loop and a trainer need.

- :meth:`Policy.from_pretrained` loads what ``--model`` names (see
  :mod:`agents.models.registry`): ``"tiny"`` / ``"tiny-qwen"`` (built offline),
  ``"smollm2-135m"``, a ``.gguf`` file, or a checkpoint folder (local, or a hub id's snapshot
  in the Hugging Face cache): Qwen2.5-VL and Qwen2-VL (image-text-to-text), or any text-only
  causal LM. Options: dtype, LoRA (peft), gradient checkpointing.
- :meth:`Policy.render` turns an env conversation (roles system/user/assistant/tool, image
  parts where they sit) into the model's chat-template text; :meth:`Policy.encode` turns that
  text into ids with each image placeholder expanded to the image's token count.
- :meth:`Policy.tool_calling` sets up native tool calls (an env in
  ``action_format="tool_calls"``): the env's ``tool_schemas`` go to the template's ``tools=``,
  a parser for the model's family (:mod:`~agents.policy.tool_parsers`) reads its calls,
  names the string that closes one and its marker tokens; the template is audited first.
- :meth:`Policy.generate` samples one assistant turn for a batch of prompts, stopping at EOS
  or at an action's closing tag, and returns the ids verbatim with their log-probs; given a
  ``tool_calling`` set-up, its family's special marker tokens (``[TOOL_CALLS]``,
  ``<|python_tag|>``) may be sampled and stay in the text.
- :meth:`Policy.forward_logprobs` scores given tokens (with their images) in one batched,
  differentiable forward pass — what a trainer calls.

Log-probs are always those of the model's raw distribution at the sampling temperature,
``log_softmax(logits / T)``, before top-p or token suppression, so that a log-prob recorded at
generation time equals the one a fresh forward pass computes (the tests check this).

No torchvision is needed: images go through the PIL image processor, and no video processor
is ever loaded.

The class is a façade; each concern lives in its own module: :mod:`~agents.policy.loading`
(checkpoints, dtype, LoRA), :mod:`~agents.policy.chat` (template text and ids),
:mod:`~agents.policy.generation` (sampling a turn) and :mod:`~agents.policy.scoring`
(batches and log-probs). What a VLM family needs is in :mod:`agents.models.families`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents.images import ImageBudget, ImageGeometry
from agents.models import families
from agents.policy import chat, generation, scoring, tool_parsers
from agents.policy.chat import SENTINEL, TemplateError
from agents.policy.generation import ACTION_STOP_STRINGS, Generation
from agents.policy.loading import DTYPES, LoraSettings, _apply_lora, apply_lora, load
from agents.policy.scoring import ModelInput
from agents.policy.tool_parsers import ToolCalling, ToolParserError

__all__ = [
    "ACTION_STOP_STRINGS",
    "DTYPES",
    "SENTINEL",
    "Generation",
    "LoraSettings",
    "ModelInput",
    "Policy",
    "TemplateError",
    "ToolCalling",
    "ToolParserError",
    "_apply_lora",
    "apply_lora",
]


@dataclass
class Policy:
    """A model with everything needed to talk to an env. Build it with :meth:`from_pretrained`."""

    model: Any
    tokenizer: Any
    chat_template: str
    image_processor: Any = None
    geometry: ImageGeometry | None = None
    image_budget: ImageBudget = field(default_factory=ImageBudget)
    name: str = ""
    role_map: dict[str, str] = field(default_factory=dict)
    template_source: str = ""

    def __post_init__(self):
        tok = self.tokenizer
        self.is_multimodal = self.geometry is not None
        self.image_token = families.image_token(tok)
        self.image_token_id = families.image_token_id(self.model) if self.is_multimodal else None
        eos = self.model.generation_config.eos_token_id
        eos = [] if eos is None else [eos] if isinstance(eos, int) else list(eos)
        if tok.eos_token_id is not None and tok.eos_token_id not in eos:
            eos.append(tok.eos_token_id)
        if not eos:
            raise ValueError(f"{self.name}: neither the tokenizer nor the model names an EOS token")
        self.eos_token_ids: list[int] = eos
        self.pad_token_id: int = tok.pad_token_id if tok.pad_token_id is not None else eos[0]
        self.max_length = int(
            getattr(self.model.config.get_text_config(), "max_position_embeddings", 0) or 32768
        )
        self._suppressed = generation.suppressed_ids(tok, self.model, self.eos_token_ids)
        self._special_ids = generation.special_ids(tok)
        self._finals_cache: dict[frozenset[str], frozenset[int]] = {}
        self._tool_calling: dict[str, ToolCalling] = {}
        self._clean_generation_config = generation._clean_generation_config(
            self.model.generation_config, eos, self.pad_token_id
        )
        if self.is_multimodal and self.image_budget.max_image_tokens < self.geometry.min_tokens:
            raise ValueError(
                f"image budget of {self.image_budget.max_image_tokens} tokens is below one image "
                f"at the minimum size ({self.geometry.min_tokens} tokens); raise max_image_tokens"
            )
        chat.check_template(self)

    # ------------------------------------------------------------------ loading

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path,
        *,
        dtype: str = "auto",
        device: str | torch.device | None = None,
        lora: LoraSettings | None = None,
        adapter: str | Path | None = None,
        gradient_checkpointing: bool = False,
        image_budget: ImageBudget | None = None,
        chat_template: str | Path | None = None,
        seed: int = 0,
        attn_implementation: str | None = "sdpa",
    ) -> Policy:
        """Load a built-in model, a ``.gguf`` file, a checkpoint folder or a hub id (see
        :func:`agents.models.registry.resolve_model`; a name that resolves to nothing raises
        its :class:`~agents.models.registry.ModelNotFoundError`).

        ``dtype`` is ``"auto"`` (bfloat16 on a GPU that supports it, else float32),
        ``"float32"``, ``"bfloat16"`` or ``"float16"``. ``lora`` adds new adapters;
        ``adapter`` loads saved ones (a folder :meth:`save_pretrained` wrote for a LoRA
        policy), trainable. ``chat_template`` (a Jinja string or a ``.jinja`` file) overrides
        the checkpoint's. ``seed`` only matters for the built-in models.
        """
        parts = load(
            name_or_path,
            dtype=dtype,
            device=device,
            lora=lora,
            adapter=adapter,
            gradient_checkpointing=gradient_checkpointing,
            image_budget=image_budget,
            chat_template=chat_template,
            seed=seed,
            attn_implementation=attn_implementation,
        )
        return cls(
            parts.model,
            parts.tokenizer,
            parts.chat_template,
            parts.image_processor,
            parts.geometry,
            parts.image_budget,
            parts.name,
            template_source=parts.template_source,
        )

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def save_pretrained(self, path: str | Path) -> Path:
        """Write the model (or its LoRA adapters), tokenizer, template and image processor."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(path)
        self.tokenizer.save_pretrained(path)
        (path / "chat_template.jinja").write_text(self.chat_template, encoding="utf-8")
        if self.image_processor is not None:
            self.image_processor.save_pretrained(path)
        return path

    # ------------------------------------------------------------------ rendering

    def template_messages(
        self, messages: Sequence[dict], shown: Sequence[bool] | None = None
    ) -> list[dict]:
        """Env messages → the message dicts the chat template reads.

        ``shown[k]`` says whether the k-th image part of the conversation reaches the model;
        a hidden image becomes a short text note. A text-only model gets string contents.
        """
        return chat.template_messages(self, messages, shown)

    def render(
        self,
        messages: Sequence[dict],
        shown: Sequence[bool] | None = None,
        add_generation_prompt: bool = False,
        tools: Sequence[dict] | None = None,
    ) -> str:
        """The chat-template text of an env conversation, one placeholder per shown image;
        ``tools`` (function schemas, an env's ``tool_schemas``) go to the template's
        ``tools=``, and assistant ``tool_calls`` and ``tool`` messages' names are passed on."""
        return chat.apply_template(
            self, self.template_messages(messages, shown), add_generation_prompt, tools
        )

    def tool_calling(self, tools: Sequence[dict]) -> ToolCalling:
        """Native tool calls with these function schemas: the parser of the model's family
        (chosen from its tokenizer and template; :class:`ToolParserError` when none fits) and
        the ids of its marker tokens (which :meth:`generate` given this set-up samples and
        keeps), after the start-up audit of the template
        (:func:`agents.policy.chat.check_tool_calling`: ``tools=`` rendered, ``tool_calls``
        rendered, tool images kept, append-only)."""
        key = json.dumps(list(tools), sort_keys=True, default=str)
        cached = self._tool_calling.get(key)
        if cached is None:
            parser = tool_parsers.parser_for(self.tokenizer, self.chat_template, self.name)
            chat.check_tool_calling(self, tools)
            markers = tool_parsers.marker_ids(self.tokenizer, parser)
            cached = self._tool_calling[key] = ToolCalling(tuple(tools), parser, markers)
        return cached

    def encode(self, text: str, image_tokens: Sequence[int] = ()) -> list[int]:
        """Token ids of chat-template text; the i-th image placeholder becomes
        ``image_tokens[i]`` copies of the image token."""
        return chat.encode(self, text, image_tokens)

    def decode(self, ids: Sequence[int], tool_calling: ToolCalling | None = None) -> str:
        """Text of generated ids, special tokens left out; with ``tool_calling``, its family's
        marker tokens kept (as :meth:`generate` keeps them in a turn's text)."""
        markers = tool_calling.marker_ids if tool_calling is not None else frozenset()
        return generation.decode_texts(self, [ids], markers)[0]

    def process_images(self, images: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(pixel_values, image_grid_thw)`` of images already sized by the budget rule."""
        if not self.is_multimodal:
            raise ValueError(f"{self.name} reads text only; it takes no images")
        out = self.image_processor(images=list(images), do_resize=False, return_tensors="pt")
        return out["pixel_values"], out["image_grid_thw"]

    # ------------------------------------------------------------------ generation

    def generate(
        self,
        inputs: Sequence[ModelInput],
        *,
        max_new_tokens: int = 256,
        temperature: float = 1.0,
        top_p: float = 1.0,
        stop_strings: Sequence[str] = ACTION_STOP_STRINGS,
        batch_size: int | None = None,
        tool_calling: ToolCalling | None = None,
    ) -> list[Generation]:
        """Sample one turn for every input, batched (left-padded).

        ``temperature=0`` decodes greedily (log-probs then use T = 1). Each output stops at
        an EOS token, at the end of the first stop string, or after ``max_new_tokens``.
        Special tokens other than EOS are never sampled, so generated text cannot forge an
        image placeholder; nor are they in a turn's text. With ``tool_calling`` (native tool
        calls, :meth:`tool_calling`) its family's marker tokens are the exception: they may be
        sampled and are kept in the text its parser reads (Mistral's ``[TOOL_CALLS]``,
        Llama's ``<|python_tag|>``).
        """
        return generation.generate(
            self,
            inputs,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_p=top_p,
            stop_strings=stop_strings,
            batch_size=batch_size,
            tool_calling=tool_calling,
        )

    def _cut(self, ids: list[int], stop_strings: Sequence[str], window: int) -> tuple[int, str]:
        """Where a generated row ends: after the first EOS or completed stop string."""
        return generation.cut(self, ids, stop_strings, window)

    def _stop_finals(self, stop_strings: Sequence[str]) -> frozenset[int] | None:
        """The ids that can complete one of ``stop_strings`` (None: any id can)."""
        return generation.stop_finals(self, stop_strings)

    # ------------------------------------------------------------------ scoring

    def collate(
        self, inputs: Sequence[ModelInput], padding_side: str = "right"
    ) -> dict[str, torch.Tensor]:
        """Pad a batch: ``input_ids`` and ``attention_mask`` (B, L), and for a VLM
        ``pixel_values`` (all patches, in batch order), ``image_grid_thw`` and
        ``mm_token_type_ids``. Right padding for scoring, left padding for generation."""
        return scoring.collate(self, inputs, padding_side)

    def forward_logprobs(
        self,
        batch: dict[str, torch.Tensor],
        *,
        temperature: float = 1.0,
        mask: torch.Tensor | None = None,
        return_entropy: bool = False,
        model: Any = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Per-token log-probs of a right-padded batch, with gradients (see
        :func:`agents.policy.scoring.forward_logprobs`): ``(logprobs, entropy)``, each (B, L),
        0 at t = 0, at padding and where ``mask`` is 0. ``model`` runs the forward pass
        instead of ``self.model`` (a trainer's DDP/FSDP-wrapped module)."""
        return scoring.forward_logprobs(
            self,
            batch,
            temperature=temperature,
            mask=mask,
            return_entropy=return_entropy,
            model=model,
        )

    def sequence_logprobs(
        self,
        inputs: Sequence[ModelInput],
        masks: Sequence[Sequence[int]] | None = None,
        *,
        temperature: float = 1.0,
        batch_size: int = 8,
    ) -> list[list[float]]:
        """Log-probs (no gradient) of each input's tokens, one list per input, in chunks."""
        return scoring.sequence_logprobs(
            self, inputs, masks, temperature=temperature, batch_size=batch_size
        )
