"""The policy: a Hugging Face (vision-)language model, its tokenizer, image processor and chat
template, behind the few calls an agent loop and a trainer need.

- :meth:`Policy.from_pretrained` loads ``"tiny"`` (built offline) or a **local** checkpoint
  folder: Qwen2.5-VL and Qwen2-VL (image-text-to-text), or any text-only causal LM. Options:
  dtype, LoRA (peft), gradient checkpointing. Nothing is ever fetched from a hub.
- :meth:`Policy.render` turns an env conversation (roles system/user/assistant/tool, image
  parts where they sit) into the model's chat-template text; :meth:`Policy.encode` turns that
  text into ids with each image placeholder expanded to the image's token count.
- :meth:`Policy.generate` samples one assistant turn for a batch of prompts, stopping at EOS
  or at an action's closing tag, and returns the ids verbatim with their log-probs.
- :meth:`Policy.forward_logprobs` scores given tokens (with their images) in one batched,
  differentiable forward pass — what a trainer calls.

Log-probs are always those of the model's raw distribution at the sampling temperature,
``log_softmax(logits / T)``, before top-p or token suppression, so that a log-prob recorded at
generation time equals the one a fresh forward pass computes (the tests check this).

No torchvision is needed: images go through the PIL image processor, and no video processor
is ever loaded.
"""

from __future__ import annotations

import contextlib
import copy
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import LogitsProcessor, StoppingCriteria

from agents.images import DROPPED_TEXT, TEXT_ONLY_TEXT, ImageBudget, ImageGeometry
from arft_envs.actions import ACTION_TAGS

ACTION_STOP_STRINGS: tuple[str, ...] = tuple(f"</{tag}>" for tag in ACTION_TAGS)
VISION_FAMILIES = ("qwen2_vl", "qwen2_5_vl")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_SENTINEL = "\u2063ARFT-SENTINEL\u2063"


class TemplateError(ValueError):
    """The chat template cannot be used token-in/token-out; the message says why and what to do."""


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
class ModelInput:
    """One sequence for the model: token ids and the images its placeholders stand for.

    ``pixel_values`` is (n_patches, patch_dim) and ``image_grid_thw`` is (n_images, 3), in the
    order the images appear in ``input_ids``; both are ``None`` for a text-only sequence.
    """

    input_ids: list[int]
    pixel_values: torch.Tensor | None = None
    image_grid_thw: torch.Tensor | None = None


@dataclass
class Generation:
    """One generated assistant turn.

    ``token_ids`` are the sampled ids, verbatim (a final EOS included when it was sampled);
    ``logprobs[i]`` is ``log_softmax(logits / T)`` of ``token_ids[i]``; ``text`` is the decoded
    turn without special tokens; ``finish_reason`` is ``"eos"``, ``"stop"`` (a closing tag)
    or ``"length"``.
    """

    token_ids: list[int]
    logprobs: list[float]
    text: str
    finish_reason: str


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

    def __post_init__(self):
        tok = self.tokenizer
        self.is_multimodal = self.geometry is not None
        self.image_token = getattr(tok, "image_token", None) or "<|image_pad|>"
        self.image_token_id = (
            getattr(self.model.config, "image_token_id", None) if self.is_multimodal else None
        )
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
        self._suppressed = self._suppressed_ids()
        self._finals_cache: dict[frozenset[str], frozenset[int]] = {}
        self._clean_generation_config = _clean_generation_config(
            self.model.generation_config, eos, self.pad_token_id
        )
        if self.is_multimodal and self.image_budget.max_image_tokens < self.geometry.min_tokens:
            raise ValueError(
                f"image budget of {self.image_budget.max_image_tokens} tokens is below one image "
                f"at the minimum size ({self.geometry.min_tokens} tokens); raise max_image_tokens"
            )
        self._check_template()

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
        """Load ``"tiny"`` or a local checkpoint folder.

        ``dtype`` is ``"auto"`` (bfloat16 on a GPU that supports it, else float32),
        ``"float32"``, ``"bfloat16"`` or ``"float16"``. ``lora`` adds new adapters;
        ``adapter`` loads saved ones (a folder :meth:`save_pretrained` wrote for a LoRA
        policy), trainable. ``chat_template`` (a Jinja string or a ``.jinja`` file) overrides
        the checkpoint's. ``seed`` only matters for ``"tiny"``.
        """
        if lora is not None and adapter is not None:
            raise ValueError("give lora= (new adapters) or adapter= (saved ones), not both")
        budget = image_budget or ImageBudget()
        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        torch_dtype = _resolve_dtype(dtype, device)
        if str(name_or_path) == "tiny":
            from agents.models.tiny import build_tiny

            model, tokenizer, image_processor = build_tiny(seed)
            model = model.to(dtype=torch_dtype)
            name = "tiny"
        else:
            model, tokenizer, image_processor = _load_local(
                Path(name_or_path), torch_dtype, attn_implementation
            )
            name = str(name_or_path)
        template = _resolve_template(chat_template, tokenizer, name_or_path)
        geometry = None
        if image_processor is not None:
            geometry = _geometry(image_processor, budget)
        model.to(device)
        if gradient_checkpointing:
            if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.x
                model.activation_checkpointing_enable({"use_reentrant": False})
            else:
                model.gradient_checkpointing_enable({"use_reentrant": False})
            model.config.use_cache = False
        if lora is not None:
            model = _apply_lora(model, lora)
        elif adapter is not None:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, str(adapter), is_trainable=True)
        model.eval()
        return cls(model, tokenizer, template, image_processor, geometry, budget, name)

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
        out = []
        k = 0
        for m in messages:
            parts = []
            for part in m["content"]:
                if part["type"] == "image":
                    visible = self.is_multimodal and (shown is None or shown[k])
                    k += 1
                    if visible:
                        parts.append({"type": "image"})
                    else:
                        note = DROPPED_TEXT if self.is_multimodal else TEXT_ONLY_TEXT
                        parts.append({"type": "text", "text": note})
                else:
                    parts.append({"type": "text", "text": part["text"]})
            role = self.role_map.get(m["role"], m["role"])
            if self.is_multimodal:
                out.append({"role": role, "content": parts})
            else:
                out.append({"role": role, "content": "".join(p["text"] for p in parts)})
        return out

    def render(
        self,
        messages: Sequence[dict],
        shown: Sequence[bool] | None = None,
        add_generation_prompt: bool = False,
    ) -> str:
        """The chat-template text of an env conversation, one placeholder per shown image."""
        return self._apply(self.template_messages(messages, shown), add_generation_prompt)

    def _apply(self, template_messages: list[dict], add_generation_prompt: bool) -> str:
        return self.tokenizer.apply_chat_template(
            template_messages,
            chat_template=self.chat_template,
            add_generation_prompt=add_generation_prompt,
            tokenize=False,
        )

    def encode(self, text: str, image_tokens: Sequence[int] = ()) -> list[int]:
        """Token ids of chat-template text; the i-th image placeholder becomes
        ``image_tokens[i]`` copies of the image token."""
        pieces = text.split(self.image_token) if self.is_multimodal else [text]
        if len(pieces) - 1 != len(image_tokens):
            raise ValueError(
                f"text holds {len(pieces) - 1} image placeholders but {len(image_tokens)} "
                "image sizes were given"
            )
        ids: list[int] = []
        for i, piece in enumerate(pieces):
            if piece:
                ids += self.tokenizer(piece, add_special_tokens=False)["input_ids"]
            if i < len(image_tokens):
                ids += [self.image_token_id] * int(image_tokens[i])
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        """Text of generated ids, special tokens left out."""
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)

    def process_images(self, images: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(pixel_values, image_grid_thw)`` of images already sized by the budget rule."""
        if not self.is_multimodal:
            raise ValueError(f"{self.name} reads text only; it takes no images")
        out = self.image_processor(images=list(images), do_resize=False, return_tensors="pt")
        return out["pixel_values"], out["image_grid_thw"]

    def _check_template(self) -> None:
        """Refuse, at load time, a chat template the rollout cannot extend turn by turn."""
        image = [{"type": "image", "index": 0}] if self.is_multimodal else []
        probe = [
            {"role": "system", "content": ({"type": "text", "text": "S"},)},
            {"role": "user", "content": (*image, {"type": "text", "text": "Q"})},
            {"role": "assistant", "content": ({"type": "text", "text": _SENTINEL},)},
            {"role": "tool", "content": (*image, {"type": "text", "text": "T"})},
        ]
        try:
            full = self.render(probe, add_generation_prompt=True)
        except Exception as err:  # templates raise anything on an unknown role
            self.role_map = {"tool": "user"}
            try:
                full = self.render(probe, add_generation_prompt=True)
            except Exception:
                raise TemplateError(
                    f"{self.name}: the chat template fails on an env conversation ({err}). "
                    "Pass chat_template= a template that renders system/user/assistant/tool."
                ) from err
        if self.is_multimodal and full.count(self.image_token) != 2:
            raise TemplateError(
                f"{self.name}: the chat template does not emit {self.image_token!r} for image "
                "parts; pass a multimodal chat_template"
            )
        before = self.render(probe[:2], add_generation_prompt=True)
        with_turn = self.render(probe[:3])
        if not (with_turn.startswith(before + _SENTINEL) and full.startswith(with_turn)):
            raise TemplateError(
                f"{self.name}: the chat template is not append-only (rendering a longer "
                "conversation changes the text of earlier turns), so generated tokens could not "
                "be kept verbatim. Pass chat_template= an append-only template."
            )

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
    ) -> list[Generation]:
        """Sample one turn for every input, batched (left-padded).

        ``temperature=0`` decodes greedily (log-probs then use T = 1). Each output stops at
        an EOS token, at the end of the first stop string, or after ``max_new_tokens``.
        Special tokens other than EOS are never sampled, so generated text cannot forge an
        image placeholder.
        """
        if temperature < 0 or not 0 < top_p <= 1:
            raise ValueError(
                f"need temperature >= 0 and 0 < top_p <= 1, got {temperature}, {top_p}"
            )
        if not inputs:
            return []
        size = batch_size or len(inputs)
        outputs: list[Generation] = []
        for start in range(0, len(inputs), size):
            chunk = inputs[start : start + size]
            outputs += self._generate_batch(chunk, max_new_tokens, temperature, top_p, stop_strings)
        return outputs

    @torch.no_grad()
    def _generate_batch(self, inputs, max_new_tokens, temperature, top_p, stop_strings):
        from transformers import LogitsProcessorList, StoppingCriteriaList
        from transformers.generation.logits_process import (
            SuppressTokensLogitsProcessor,
            TemperatureLogitsWarper,
            TopPLogitsWarper,
        )

        batch = self.collate(inputs, padding_side="left")
        prompt_len = batch["input_ids"].shape[1]
        greedy = temperature == 0
        recorder = _LogprobRecorder(1.0 if greedy else temperature)
        processors = LogitsProcessorList([recorder])
        if self._suppressed:
            processors.append(SuppressTokensLogitsProcessor(self._suppressed, device=self.device))
        if not greedy and temperature != 1.0:
            processors.append(TemperatureLogitsWarper(temperature))
        if not greedy and top_p < 1.0:
            processors.append(TopPLogitsWarper(top_p))
        window = max((len(s) for s in stop_strings), default=0) + 2
        stopping = StoppingCriteriaList()
        if stop_strings:
            finals = self._stop_finals(stop_strings)
            stopping.append(
                _StopOnStrings(self.tokenizer, stop_strings, prompt_len, window, finals)
            )
        config = copy.deepcopy(self._clean_generation_config)
        config.max_new_tokens = int(max_new_tokens)
        if greedy:  # sampling knobs would only draw warnings
            config.do_sample, config.top_k = False, None
        with _swap_generation_config(self.model, config):
            sequences = self.model.generate(
                **batch,
                generation_config=config,
                logits_processor=processors,
                stopping_criteria=stopping,
            )
        logprobs = recorder.finish(sequences)
        generated = sequences[:, prompt_len:].tolist()
        results = []
        for row, ids in enumerate(generated):
            cut, reason = self._cut(ids, stop_strings, window)
            kept = ids[:cut]
            results.append(
                Generation(kept, logprobs[row, :cut].tolist(), self.decode(kept), reason)
            )
        return results

    def _cut(self, ids: list[int], stop_strings: Sequence[str], window: int) -> tuple[int, str]:
        """Where a generated row ends: after the first EOS or completed stop string."""
        eos = set(self.eos_token_ids)
        finals = self._stop_finals(stop_strings)
        for t, token in enumerate(ids):
            if token in eos:
                return t + 1, "eos"
            if stop_strings and (finals is None or token in finals):
                tail = self.tokenizer.decode(ids[max(0, t - window + 1) : t + 1])
                if any(s in tail for s in stop_strings):
                    return t + 1, "stop"
        return len(ids), "length"

    def _stop_finals(self, stop_strings: Sequence[str]) -> frozenset[int] | None:
        """The ids whose text holds the last character of one of ``stop_strings``: a stop
        string can only be completed by such a token. ``None`` (check every token) when a
        last character is not ASCII, since a token may then hold only part of its bytes."""
        last = frozenset(s[-1] for s in stop_strings if s)
        if not last or any(not c.isascii() for c in last):
            return None
        cached = self._finals_cache.get(last)
        if cached is None:
            vocab = len(self.tokenizer)
            texts = self.tokenizer.batch_decode([[i] for i in range(vocab)])
            cached = frozenset(i for i, text in enumerate(texts) if any(c in text for c in last))
            self._finals_cache[last] = cached
        return cached

    def _suppressed_ids(self) -> list[int]:
        """Special and out-of-vocabulary ids the sampler must never pick (EOS excepted)."""
        tok = self.tokenizer
        special = {i for i, t in tok.added_tokens_decoder.items() if getattr(t, "special", True)}
        special |= set(tok.all_special_ids)
        vocab = self.model.get_output_embeddings().weight.shape[0]
        special |= set(range(len(tok), vocab))
        return sorted(special - set(self.eos_token_ids))

    # ------------------------------------------------------------------ scoring

    def collate(
        self, inputs: Sequence[ModelInput], padding_side: str = "right"
    ) -> dict[str, torch.Tensor]:
        """Pad a batch: ``input_ids`` and ``attention_mask`` (B, L), and for a VLM
        ``pixel_values`` (all patches, in batch order), ``image_grid_thw`` and
        ``mm_token_type_ids``. Right padding for scoring, left padding for generation."""
        if padding_side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
        length = max(len(x.input_ids) for x in inputs)
        ids = torch.full((len(inputs), length), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(inputs), length), dtype=torch.long)
        for row, x in enumerate(inputs):
            n = len(x.input_ids)
            span = slice(length - n, length) if padding_side == "left" else slice(0, n)
            ids[row, span] = torch.tensor(x.input_ids, dtype=torch.long)
            mask[row, span] = 1
        batch = {"input_ids": ids.to(self.device), "attention_mask": mask.to(self.device)}
        if self.is_multimodal:
            batch["mm_token_type_ids"] = (batch["input_ids"] == self.image_token_id).int()
            pixels = [x.pixel_values for x in inputs if x.pixel_values is not None]
            grids = [x.image_grid_thw for x in inputs if x.image_grid_thw is not None]
            if pixels:
                batch["pixel_values"] = torch.cat(pixels).to(self.device, self.dtype)
                batch["image_grid_thw"] = torch.cat(grids).to(self.device)
        return batch

    def forward_logprobs(
        self,
        batch: dict[str, torch.Tensor],
        *,
        temperature: float = 1.0,
        mask: torch.Tensor | None = None,
        return_entropy: bool = False,
        model: Any = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Per-token log-probs of a right-padded batch, with gradients.

        Returns ``(logprobs, entropy)``, each (B, L): ``logprobs[b, t] = log p(ids[b, t] |
        ids[b, :t])`` at temperature ``temperature``, 0 at t = 0, at padding, and where
        ``mask`` (B, L) is 0 — the logits of those positions are never computed, which saves
        memory on long prompts. ``entropy`` (None unless asked) is the entropy of the
        distribution each token was drawn from. ``model`` runs the forward pass instead of
        ``self.model`` (a trainer passes its DDP/FSDP-wrapped module, which shares the weights).
        """
        ids = batch["input_ids"]
        wanted = batch["attention_mask"].bool()
        if mask is not None:
            wanted = wanted & mask.to(ids.device).bool()
        wanted[:, 0] = False
        keep = wanted.any(dim=0).nonzero().squeeze(1)  # positions t whose token is scored
        if keep.numel() == 0:
            zeros = torch.zeros(ids.shape, dtype=torch.float32, device=ids.device)
            return zeros, (zeros.clone() if return_entropy else None)
        model = self.model if model is None else model
        outputs = model(**batch, use_cache=False, logits_to_keep=keep - 1)
        logits = outputs.logits.float() / temperature  # (B, K, V)
        logp_all = torch.log_softmax(logits, dim=-1)
        token_logp = logp_all.gather(-1, ids[:, keep].unsqueeze(-1)).squeeze(-1)  # (B, K)
        out = torch.zeros(ids.shape, dtype=token_logp.dtype, device=ids.device)
        out[:, keep] = token_logp
        out = out * wanted
        entropy = None
        if return_entropy:
            ent = -(logp_all.exp() * logp_all).sum(-1)  # (B, K)
            entropy = torch.zeros_like(out)
            entropy[:, keep] = ent
            entropy = entropy * wanted
        return out, entropy

    @torch.no_grad()
    def sequence_logprobs(
        self,
        inputs: Sequence[ModelInput],
        masks: Sequence[Sequence[int]] | None = None,
        *,
        temperature: float = 1.0,
        batch_size: int = 8,
    ) -> list[list[float]]:
        """Log-probs (no gradient) of each input's tokens, one list per input, in chunks."""
        results = []
        for start in range(0, len(inputs), batch_size):
            chunk = inputs[start : start + batch_size]
            batch = self.collate(chunk)
            mask = None
            if masks is not None:
                mask = torch.zeros_like(batch["input_ids"])
                for row, m in enumerate(masks[start : start + batch_size]):
                    mask[row, : len(m)] = torch.tensor(list(m))
            logp, _ = self.forward_logprobs(batch, temperature=temperature, mask=mask)
            for row, x in enumerate(chunk):
                results.append(logp[row, : len(x.input_ids)].tolist())
        return results


# ---------------------------------------------------------------------- generation helpers


class _LogprobRecorder(LogitsProcessor):
    """A logits processor that records log_softmax(raw logits / T) of each sampled token.

    The token sampled at step t is only known at step t + 1 (as the last input id), so the
    recorder keeps one step of log-probs; :meth:`finish` reads the last token's.
    """

    def __init__(self, temperature: float):
        self.temperature = temperature
        self.prev: torch.Tensor | None = None
        self.values: list[torch.Tensor] = []

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self.prev is not None:
            self.values.append(self.prev.gather(1, input_ids[:, -1:]).squeeze(1))
        self.prev = torch.log_softmax(scores.float() / self.temperature, dim=-1)
        return scores

    def finish(self, sequences: torch.Tensor) -> torch.Tensor:
        if self.prev is not None:
            self.values.append(self.prev.gather(1, sequences[:, -1:]).squeeze(1))
            self.prev = None
        if not self.values:
            return torch.zeros((sequences.shape[0], 0))
        return torch.stack(self.values, dim=1).cpu()


class _StopOnStrings(StoppingCriteria):
    """Stop a row once its generated text contains one of ``stops``.

    ``finals`` are the ids that can complete a stop string (see :meth:`Policy._stop_finals`);
    only rows whose newest token is one of them are decoded, which keeps the per-token cost of
    this check off most decoding steps. ``None`` decodes every row.
    """

    def __init__(
        self,
        tokenizer,
        stops: Sequence[str],
        prompt_len: int,
        window: int,
        finals: frozenset[int] | None = None,
    ):
        self.tokenizer = tokenizer
        self.stops = tuple(stops)
        self.prompt_len = prompt_len
        self.window = window
        self.finals = finals

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        done = [False] * input_ids.shape[0]
        newest = input_ids[:, -1].tolist()
        rows = [r for r, t in enumerate(newest) if self.finals is None or t in self.finals]
        if rows:
            tails = input_ids[rows, self.prompt_len :][:, -self.window :].tolist()
            for row, text in zip(rows, self.tokenizer.batch_decode(tails), strict=True):
                done[row] = any(s in text for s in self.stops)
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


def _clean_generation_config(base, eos: list[int], pad: int):
    """A generation config with only the ids set: the checkpoint's sampling defaults
    (repetition penalty, top-k, …) would change the distribution the log-probs describe."""
    from transformers import GenerationConfig

    return GenerationConfig(
        bos_token_id=getattr(base, "bos_token_id", None),
        eos_token_id=eos,
        pad_token_id=pad,
        do_sample=True,
        temperature=1.0,
        top_k=0,
        top_p=1.0,
        repetition_penalty=1.0,
        num_beams=1,
        use_cache=True,
    )


@contextlib.contextmanager
def _swap_generation_config(model, config):
    """Generate with ``config`` as the model's defaults, then put the original back."""
    original = model.generation_config
    model.generation_config = config
    try:
        yield
    finally:
        model.generation_config = original


# ---------------------------------------------------------------------- loading helpers


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
    if getattr(config, "vision_config", None) is not None:
        if config.model_type not in VISION_FAMILIES:
            raise ValueError(
                f"{path}: vision-language model type {config.model_type!r} is not supported yet; "
                f"supported: {', '.join(VISION_FAMILIES)} and text-only causal LMs"
            )
        from transformers import AutoImageProcessor, AutoModelForImageTextToText

        model = AutoModelForImageTextToText.from_pretrained(path, **kwargs)
        image_processor = AutoImageProcessor.from_pretrained(
            path, local_files_only=True, backend="pil"
        )
        return model, tokenizer, image_processor
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    return model, tokenizer, None


def _resolve_template(override, tokenizer, name_or_path) -> str:
    """The chat template: the override, else the checkpoint's (tokenizer or processor file)."""
    if override is not None:
        text = str(override)
        if "{" not in text and Path(text).is_file():
            return Path(text).read_text(encoding="utf-8")
        return text
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, dict):
        template = template.get("default")
    if template:
        return template
    folder = Path(str(name_or_path))
    for name in ("chat_template.jinja", "chat_template.json"):
        file = folder / name
        if file.is_file():
            text = file.read_text(encoding="utf-8")
            return json.loads(text)["chat_template"] if name.endswith(".json") else text
    raise TemplateError(
        f"{name_or_path}: no chat template in the checkpoint; pass chat_template= a Jinja template"
    )


def _geometry(image_processor, budget: ImageBudget) -> ImageGeometry:
    """Token size and pixel limits of the processor, the budget's overrides applied."""
    size = getattr(image_processor, "size", None) or {}

    def limit(key: str, legacy: str) -> int | None:
        value = size.get(key) if isinstance(size, dict) else getattr(size, key, None)
        return value or getattr(image_processor, legacy, None)

    min_pixels = budget.min_pixels or limit("shortest_edge", "min_pixels")
    max_pixels = budget.max_pixels or limit("longest_edge", "max_pixels")
    if not min_pixels or not max_pixels:
        raise ValueError(
            f"{type(image_processor).__name__} states no pixel limits; set ImageBudget "
            "min_pixels and max_pixels"
        )
    factor = int(image_processor.patch_size) * int(image_processor.merge_size)
    return ImageGeometry(factor, int(min_pixels), int(max(max_pixels, min_pixels)))


def _apply_lora(model, lora: LoraSettings):
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)
