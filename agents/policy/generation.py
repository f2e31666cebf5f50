"""Generation: one sampled assistant turn per prompt, batched, with the log-probs of the very
tokens sampled, stopping at EOS or at an action's closing tag.

Log-probs are those of the model's raw distribution at the sampling temperature,
``log_softmax(logits / T)``, recorded before top-p or token suppression (:class:`_LogprobRecorder`),
so that they equal what a fresh forward pass computes. The checkpoint's own sampling defaults
are replaced by a clean generation config, since they would change that distribution.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from transformers import LogitsProcessor, StoppingCriteria

from arft_envs.actions import ACTION_TAGS

if TYPE_CHECKING:
    from agents.policy import ModelInput, Policy

ACTION_STOP_STRINGS: tuple[str, ...] = tuple(f"</{tag}>" for tag in ACTION_TAGS)


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


def generate(
    policy: Policy,
    inputs: Sequence[ModelInput],
    *,
    max_new_tokens: int,
    temperature: float,
    top_p: float,
    stop_strings: Sequence[str],
    batch_size: int | None,
) -> list[Generation]:
    """The body of :meth:`Policy.generate` (see it): validate, then generate in chunks."""
    if temperature < 0 or not 0 < top_p <= 1:
        raise ValueError(f"need temperature >= 0 and 0 < top_p <= 1, got {temperature}, {top_p}")
    if not inputs:
        return []
    size = batch_size or len(inputs)
    outputs: list[Generation] = []
    for start in range(0, len(inputs), size):
        chunk = inputs[start : start + size]
        outputs += generate_batch(policy, chunk, max_new_tokens, temperature, top_p, stop_strings)
    return outputs


@torch.no_grad()
def generate_batch(
    policy: Policy,
    inputs: Sequence[ModelInput],
    max_new_tokens: int,
    temperature: float,
    top_p: float,
    stop_strings: Sequence[str],
) -> list[Generation]:
    """One ``model.generate`` call over a left-padded batch, cut into turns."""
    from transformers import LogitsProcessorList, StoppingCriteriaList
    from transformers.generation.logits_process import (
        SuppressTokensLogitsProcessor,
        TemperatureLogitsWarper,
        TopPLogitsWarper,
    )

    batch = policy.collate(inputs, padding_side="left")
    prompt_len = batch["input_ids"].shape[1]
    greedy = temperature == 0
    recorder = _LogprobRecorder(1.0 if greedy else temperature)
    processors = LogitsProcessorList([recorder])
    if policy._suppressed:
        processors.append(SuppressTokensLogitsProcessor(policy._suppressed, device=policy.device))
    if not greedy and temperature != 1.0:
        processors.append(TemperatureLogitsWarper(temperature))
    if not greedy and top_p < 1.0:
        processors.append(TopPLogitsWarper(top_p))
    window = max((len(s) for s in stop_strings), default=0) + 2
    stopping = StoppingCriteriaList()
    if stop_strings:
        finals = policy._stop_finals(stop_strings)
        stopping.append(_StopOnStrings(policy.tokenizer, stop_strings, prompt_len, window, finals))
    config = copy.deepcopy(policy._clean_generation_config)
    config.max_new_tokens = int(max_new_tokens)
    if greedy:  # sampling knobs would only draw warnings
        config.do_sample, config.top_k = False, None
    with _swap_generation_config(policy.model, config):
        sequences = policy.model.generate(
            **batch,
            generation_config=config,
            logits_processor=processors,
            stopping_criteria=stopping,
        )
    logprobs = recorder.finish(sequences)
    generated = sequences[:, prompt_len:].tolist()
    results = []
    for row, ids in enumerate(generated):
        end, reason = policy._cut(ids, stop_strings, window)
        kept = ids[:end]
        results.append(Generation(kept, logprobs[row, :end].tolist(), policy.decode(kept), reason))
    return results


def cut(
    policy: Policy, ids: list[int], stop_strings: Sequence[str], window: int
) -> tuple[int, str]:
    """Where a generated row ends: after the first EOS or completed stop string."""
    eos = set(policy.eos_token_ids)
    finals = policy._stop_finals(stop_strings)
    for t, token in enumerate(ids):
        if token in eos:
            return t + 1, "eos"
        if stop_strings and (finals is None or token in finals):
            tail = policy.tokenizer.decode(ids[max(0, t - window + 1) : t + 1])
            if any(s in tail for s in stop_strings):
                return t + 1, "stop"
    return len(ids), "length"


def stop_finals(policy: Policy, stop_strings: Sequence[str]) -> frozenset[int] | None:
    """The ids whose text holds the last character of one of ``stop_strings``: a stop
    string can only be completed by such a token. ``None`` (check every token) when a
    last character is not ASCII, since a token may then hold only part of its bytes."""
    last = frozenset(s[-1] for s in stop_strings if s)
    if not last or any(not c.isascii() for c in last):
        return None
    cached = policy._finals_cache.get(last)
    if cached is None:
        vocab = len(policy.tokenizer)
        texts = policy.tokenizer.batch_decode([[i] for i in range(vocab)])
        cached = frozenset(i for i, text in enumerate(texts) if any(c in text for c in last))
        policy._finals_cache[last] = cached
    return cached


def suppressed_ids(tokenizer: Any, model: Any, eos_token_ids: Sequence[int]) -> list[int]:
    """Special and out-of-vocabulary ids the sampler must never pick (EOS excepted)."""
    tok = tokenizer
    special = {i for i, t in tok.added_tokens_decoder.items() if getattr(t, "special", True)}
    special |= set(tok.all_special_ids)
    vocab = model.get_output_embeddings().weight.shape[0]
    special |= set(range(len(tok), vocab))
    return sorted(special - set(eos_token_ids))


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
