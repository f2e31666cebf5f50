"""Generation: one sampled assistant turn per prompt, batched, with the log-probs of the very
tokens sampled, stopping at EOS or at an action's closing tag.

Log-probs are those of the model's raw distribution at the sampling temperature,
``log_softmax(logits / T)``, recorded before top-p or token suppression, so that they equal
what a fresh forward pass computes. The checkpoint's own sampling defaults (repetition
penalty, top-k, …) are never applied, since they would change that distribution.

A batch is sampled by :func:`decode_loop`, this module's own token-by-token loop over the
model's KV cache: what ``model.generate`` computes with the same settings, without its
per-step machinery (about half the time of a step of a small model, where that machinery is
most of the cost), and for a Llama/Qwen-style decoder without the decoder's own per-call
machinery either (:class:`~agents.policy.lean_decoder.LeanDecoder`: a third of the loop's
time again at the tiny size). :func:`hf_generate`, the same turn through ``model.generate``
with a logits processor recording the log-probs, samples for a model the loop does not drive,
and is the loop's reference in the tests.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from transformers import LogitsProcessor, StoppingCriteria

from agents.policy.lean_decoder import LeanDecoder
from arft_envs.actions import ACTION_TAGS

if TYPE_CHECKING:
    from agents.policy import ModelInput, Policy, ToolCalling

ACTION_STOP_STRINGS: tuple[str, ...] = tuple(f"</{tag}>" for tag in ACTION_TAGS)


@dataclass
class Generation:
    """One generated assistant turn.

    ``token_ids`` are the sampled ids, verbatim (a final EOS included when it was sampled);
    ``logprobs[i]`` is ``log_softmax(logits / T)`` of ``token_ids[i]``; ``text`` is the decoded
    turn without special tokens (a tool-call family's marker tokens kept, when generated for
    native tool calls); ``finish_reason`` is ``"eos"``, ``"stop"`` (a closing tag)
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
    tool_calling: ToolCalling | None = None,
) -> list[Generation]:
    """The body of :meth:`Policy.generate` (see it): validate, then generate in chunks."""
    if temperature < 0 or not 0 < top_p <= 1:
        raise ValueError(f"need temperature >= 0 and 0 < top_p <= 1, got {temperature}, {top_p}")
    if not inputs:
        return []
    size = batch_size or len(inputs)
    markers = tool_calling.marker_ids if tool_calling is not None else frozenset()
    outputs: list[Generation] = []
    for start in range(0, len(inputs), size):
        chunk = inputs[start : start + size]
        outputs += generate_batch(
            policy, chunk, max_new_tokens, temperature, top_p, stop_strings, markers
        )
    return outputs


@torch.no_grad()
def generate_batch(
    policy: Policy,
    inputs: Sequence[ModelInput],
    max_new_tokens: int,
    temperature: float,
    top_p: float,
    stop_strings: Sequence[str],
    markers: frozenset[int] = frozenset(),
) -> list[Generation]:
    """One left-padded batch, sampled by :func:`decode_loop` (or by ``model.generate`` for a
    model it does not drive), cut into turns. ``markers`` (a tool-call family's marker ids)
    may be sampled and are kept in the text, though special."""
    batch = policy.collate(inputs, padding_side="left")
    run = decode_loop if loop_driver(policy.model) is not None else hf_generate
    suppressed = suppressed_except(policy, markers)
    rows, logprobs, ends = run(
        policy, batch, max_new_tokens, temperature, top_p, stop_strings, suppressed=suppressed
    )
    kept = [ids[:end] for ids, (end, _) in zip(rows, ends, strict=True)]
    texts = decode_texts(policy, kept, markers)
    return [
        Generation(ids, logprobs[row, : len(ids)].tolist(), text, reason)
        for row, (ids, text, (_, reason)) in enumerate(zip(kept, texts, ends, strict=True))
    ]


# A raw batch of turns: each row's sampled ids, their log-probs (B, n) on the CPU, and where
# each row ends — ``(length, finish_reason)``, what :func:`cut` finds.
RawTurns = tuple[list[list[int]], torch.Tensor, list[tuple[int, str]]]


@torch.no_grad()
def decode_loop(
    policy: Policy,
    batch: dict[str, torch.Tensor],
    max_new_tokens: int,
    temperature: float,
    top_p: float,
    stop_strings: Sequence[str],
    *,
    suppressed: Sequence[int] | None = None,
) -> RawTurns:
    """Sample a left-padded batch token by token over the model's KV cache; ``suppressed``
    (default: the policy's special ids) are never sampled.

    It computes what :func:`hf_generate` does — the same prefill and position ids (a VLM's
    3-D rope positions included), the same log-probs and processed scores, a finished row fed
    the pad token, the same ends — without generate's per-step machinery:

    - after the prefill, each step runs the model's decoder and output layer on the newest
      token only (the model's own forward where its logits are not the output layer's,
      :func:`~agents.models.logprobs.head_gives_logits`); from the second step on, a
      decoder :class:`LeanDecoder` recognises (and checked on the first step) runs through
      it instead, under ``torch.inference_mode``;
    - rows that repeat (a group's prompts, text only) are prefilled once
      (:func:`distinct_rows`), their cache and first logits copied to the others;
    - a row's stop strings are checked only when its newest token can complete one
      (:func:`stop_finals`), on its last ``window`` tokens, and its end is recorded as it
      happens (no second pass, :func:`cut`); one host sync per step (the new ids);
    - sampling draws one uniform per row against the float64 CDF of the processed
      distribution (:func:`sample_tokens`) — the same distribution as generate's
      ``torch.multinomial``, which on a CPU draws one exponential per vocabulary entry and
      row, the largest single cost of a step at a real vocabulary. The random stream differs
      from generate's, so a seed samples other (equally likely) tokens; greedy decoding picks
      the same ones.
    """
    from agents.models.logprobs import head_gives_logits, output_head

    model = policy.model
    cache_name, keep = loop_driver(model)
    ids = batch["input_ids"]
    size, device = ids.shape[0], ids.device
    greedy = temperature == 0
    record_t = 1.0 if greedy else temperature  # the recorder's temperature, as in hf_generate
    top_p_warper = None
    if not greedy and top_p < 1.0:
        from transformers.generation.logits_process import TopPLogitsWarper

        top_p_warper = TopPLogitsWarper(top_p)
    eos = set(policy.eos_token_ids)
    finals = policy._stop_finals(stop_strings) if stop_strings else None
    window = _window(stop_strings)
    stops = tuple(stop_strings)
    pad = torch.tensor(policy.pad_token_id, device=device)

    # The prefill, with generate's own position ids; the decoder's output is kept to check
    # (once per model) that the output layer on it gives the model's logits.
    parts = output_head(model)
    captured: list[torch.Tensor] = []
    handle = None
    if parts is not None:
        handle = parts[0].register_forward_hook(
            lambda _m, _a, out: captured.append(getattr(out, "last_hidden_state", None))
        )
    positions = model._prepare_position_ids_for_generation(ids, dict(batch))
    mask = batch["attention_mask"]
    # A group's rows share their prompt: the prefill runs once per distinct row, and its
    # cache and logits are copied to the rows that share it.
    first, shared = distinct_rows(batch)
    prefill = batch if first is None else {k: v[first] for k, v in batch.items()}
    try:
        out = model(
            **prefill,
            position_ids=positions if first is None else positions[..., first, :],
            use_cache=True,
            **keep,
        )
    finally:
        if handle is not None:
            handle.remove()
    cache = _returned_cache(out)
    logits = out.logits[:, -1].float()  # (B, V)
    if first is not None:
        cache.reorder_cache(shared)
        logits = logits[shared]
    step_decoder = None
    prefill_shape = prefill["input_ids"].shape
    if len(captured) == 1 and captured[0] is not None and captured[0].shape[:2] == prefill_shape:
        decoder, head = parts
        dec_cache = _cache_argument(decoder)
        if dec_cache and head_gives_logits(model, head, captured[0][:, -1:], out.logits[:, -1:]):
            step_decoder = decoder, head, dec_cache
    out = None  # the prefill's outputs are no longer needed
    captured.clear()
    lean = None
    if step_decoder is not None and max_new_tokens > 1:
        lean = LeanDecoder.build(step_decoder[0], step_decoder[1], cache, mask, positions,
                                 max_new_tokens - 1)  # fmt: skip

    suppressed = policy._suppressed if suppressed is None else suppressed
    suppress = None
    if suppressed:
        suppress = torch.zeros(logits.shape[-1], dtype=torch.bool, device=device)
        suppress[torch.tensor(list(suppressed), device=device)] = True
    rows: list[list[int]] = [[] for _ in range(size)]
    ends: list[tuple[int, str] | None] = [None] * size
    live = list(range(size))
    running = torch.ones(size, dtype=torch.bool, device=device)
    steps: list[torch.Tensor] = []
    # with the lean step, no op of the loop records anything for autograd
    with torch.inference_mode(lean is not None):
        for t in range(max_new_tokens):
            logp_all = torch.log_softmax(logits if record_t == 1.0 else logits / record_t, dim=-1)
            scores = logits if suppress is None else logits.masked_fill(suppress, -float("inf"))
            if not greedy and temperature != 1.0:
                scores = scores / temperature
            if top_p_warper is not None:
                scores = top_p_warper(None, scores)
            if greedy:
                new = torch.argmax(scores, dim=-1)
            else:
                new = sample_tokens(torch.softmax(scores, dim=-1))
            if len(live) < size:  # finished rows are fed the pad token
                new = torch.where(running, new, pad)
            steps.append(logp_all.gather(1, new[:, None]).squeeze(1))
            new_ids = new.tolist()
            checked = []
            for row in live:
                token = new_ids[row]
                rows[row].append(token)
                if token in eos:
                    ends[row] = (t + 1, "eos")
                elif stops and (finals is None or token in finals):
                    checked.append(row)
            if checked:
                tails = [rows[row][-window:] for row in checked]
                for row, text in zip(checked, policy.tokenizer.batch_decode(tails), strict=True):
                    if any(s in text for s in stops):
                        ends[row] = (t + 1, "stop")
            finished = [row for row in live if ends[row] is not None]
            if finished:
                live = [row for row in live if ends[row] is None]
                running[finished] = False
            if not live or t + 1 == max_new_tokens:
                break
            if lean is not None and lean.checked:
                logits = lean(new)
                continue
            mask = torch.cat([mask, mask.new_ones((size, 1))], dim=-1)
            positions = positions[..., -1:] + 1
            step = {"attention_mask": mask, "position_ids": positions, "use_cache": True}
            if step_decoder is not None:
                decoder, head, dec_cache = step_decoder
                hidden = decoder(input_ids=new[:, None], **step, **{dec_cache: cache})
                logits = head(hidden.last_hidden_state[:, -1]).float()
                if lean is not None:  # the first step: the lean one must give the same logits
                    lean = lean if lean.check(new, logits) else None
            else:
                out = model(input_ids=new[:, None], **step, **{cache_name: cache}, **keep)
                logits = out.logits[:, -1].float()
    logprobs = torch.stack(steps, dim=1).cpu() if steps else torch.zeros((size, 0))
    length = len(steps)
    # A finished row was fed pads after its end; they are its ids from there on, as in generate.
    full = [r + [policy.pad_token_id] * (length - len(r)) for r in rows]
    return full, logprobs, [e if e is not None else (length, "length") for e in ends]


def distinct_rows(batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor | None, torch.Tensor]:
    """``(first, shared)`` for a text batch whose rows repeat (a group's prompts): ``first``
    (U,) the first row of each distinct row (ids and mask alike), ``shared`` (B,) which of
    them each row is. ``(None, None)`` when every row is distinct or the batch carries
    images (their patches are not laid out by row)."""
    ids = batch["input_ids"]
    size = ids.shape[0]
    if "pixel_values" in batch or any(v.shape[0] != size for v in batch.values()):
        return None, None
    rows = torch.cat([ids, batch["attention_mask"].to(ids.dtype)], dim=1)
    distinct, shared = torch.unique(rows, dim=0, return_inverse=True)
    if distinct.shape[0] == size:
        return None, None
    order = torch.arange(size, device=ids.device)
    first = torch.full((distinct.shape[0],), size, dtype=torch.long, device=ids.device)
    return first.scatter_reduce_(0, shared, order, "amin"), shared


def sample_tokens(probs: torch.Tensor) -> torch.Tensor:
    """One token per row of ``probs`` (B, V), drawn from it by inverse transform sampling.

    One uniform ``u`` per row (the global torch RNG, so ``torch.manual_seed`` fixes the draw)
    against the row's CDF: the token is the first whose cumulative probability exceeds
    ``u · total``. The CDF is summed in float64 (float32 rounding would misplace every
    token of probability below ~1e-7 at a 150k vocabulary), except on a device without
    float64 (MPS). A token of probability 0 (suppressed, cut by top-p) is never drawn: its
    CDF step is empty, and ``u`` is scaled to the largest number below the total, so that
    some token's cumulative probability always exceeds it. Returns (B,) int64.
    """
    wide = torch.float32 if probs.device.type == "mps" else torch.float64
    cdf = probs.to(wide).cumsum(dim=-1)  # (B, V)
    below = torch.nextafter(cdf[:, -1:], cdf.new_zeros(()))  # (B, 1), just under each total
    u = torch.rand(below.shape, dtype=wide, device=probs.device) * below
    return torch.searchsorted(cdf, u, right=True).squeeze(1)  # first index with cdf > u


def loop_driver(model: Any) -> tuple[str, dict[str, int]] | None:
    """How :func:`decode_loop` calls ``model``: the name of its forward's cache argument and
    the ``logits_to_keep`` argument (empty where the forward has none); None for a model the
    loop does not drive (an encoder-decoder, or a transformers without
    ``_prepare_position_ids_for_generation``), which ``model.generate`` samples instead."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    key = type(base)
    if key not in _DRIVERS:
        _DRIVERS[key] = _driver(base)
    return _DRIVERS[key]


_DRIVERS: dict[type, tuple[str, dict[str, int]] | None] = {}


def _driver(base: Any) -> tuple[str, dict[str, int]] | None:
    config = getattr(base, "config", None)
    if config is None or getattr(config, "is_encoder_decoder", False):
        return None
    if not hasattr(base, "_prepare_position_ids_for_generation"):
        return None
    cache_name = _cache_argument(base)
    if cache_name is None or "position_ids" not in _parameters(base):
        return None
    return cache_name, ({"logits_to_keep": 1} if "logits_to_keep" in _parameters(base) else {})


def _parameters(module: Any) -> Any:
    try:
        return inspect.signature(module.forward).parameters
    except (TypeError, ValueError):
        return {}


def _cache_argument(module: Any) -> str | None:
    """The name a module's forward takes its KV cache by (``cache`` in transformers 5)."""
    params = _parameters(module)
    return next((n for n in ("cache", "past_key_values") if n in params), None)


def _returned_cache(out: Any) -> Any:
    """The KV cache a forward pass returned (``cache`` in transformers 5, else
    ``past_key_values``)."""
    cache = out.get("cache") if hasattr(out, "get") else None
    return cache if cache is not None else out.past_key_values


@torch.no_grad()
def hf_generate(
    policy: Policy,
    inputs: dict[str, torch.Tensor],
    max_new_tokens: int,
    temperature: float,
    top_p: float,
    stop_strings: Sequence[str],
    *,
    suppressed: Sequence[int] | None = None,
) -> RawTurns:
    """One ``model.generate`` call over a left-padded batch, with the log-probs recorded by
    :class:`_LogprobRecorder` and the stop strings checked by :class:`_StopOnStrings`; rows
    cut by :func:`cut`; ``suppressed`` as in :func:`decode_loop`. For a model
    :func:`decode_loop` does not drive, and as its reference in the tests."""
    from transformers import LogitsProcessorList, StoppingCriteriaList
    from transformers.generation.logits_process import (
        SuppressTokensLogitsProcessor,
        TemperatureLogitsWarper,
        TopPLogitsWarper,
    )

    batch = inputs
    prompt_len = batch["input_ids"].shape[1]
    greedy = temperature == 0
    recorder = _LogprobRecorder(1.0 if greedy else temperature)
    processors = LogitsProcessorList([recorder])
    suppressed = policy._suppressed if suppressed is None else suppressed
    if suppressed:
        processors.append(SuppressTokensLogitsProcessor(list(suppressed), device=policy.device))
    if not greedy and temperature != 1.0:
        processors.append(TemperatureLogitsWarper(temperature))
    if not greedy and top_p < 1.0:
        processors.append(TopPLogitsWarper(top_p))
    window = _window(stop_strings)
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
    return generated, logprobs, [policy._cut(ids, stop_strings, window) for ids in generated]


def _window(stop_strings: Sequence[str]) -> int:
    """Tokens whose decoded text is sure to hold a stop string that the newest one completed."""
    return max((len(s) for s in stop_strings), default=0) + 2


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


def special_ids(tokenizer: Any) -> frozenset[int]:
    """The tokenizer's special ids: its added tokens marked special and its named ones."""
    tok = tokenizer
    special = {i for i, t in tok.added_tokens_decoder.items() if getattr(t, "special", True)}
    return frozenset(special | set(tok.all_special_ids))


def suppressed_ids(tokenizer: Any, model: Any, eos_token_ids: Sequence[int]) -> list[int]:
    """Special and out-of-vocabulary ids the sampler must never pick (EOS excepted)."""
    vocab = model.get_output_embeddings().weight.shape[0]
    special = special_ids(tokenizer) | set(range(len(tokenizer), vocab))
    return sorted(special - set(eos_token_ids))


def suppressed_except(policy: Policy, markers: frozenset[int]) -> list[int]:
    """The ids a turn must not sample: the policy's suppressed ids less ``markers`` (a
    tool-call family's marker tokens, which a model trained on the family opens a call with)."""
    if not markers:
        return policy._suppressed
    return [i for i in policy._suppressed if i not in markers]


def decode_texts(
    policy: Policy, rows: Sequence[Sequence[int]], markers: frozenset[int] = frozenset()
) -> list[str]:
    """The text of each row of ids, special tokens left out except ``markers``, which a
    tool-call parser reads (``[TOOL_CALLS]``, ``<|python_tag|>``)."""
    tok = policy.tokenizer
    if not markers:
        return tok.batch_decode([list(r) for r in rows], skip_special_tokens=True)
    dropped = policy._special_ids - markers
    kept = [[i for i in r if i not in dropped] for r in rows]
    return tok.batch_decode(kept, skip_special_tokens=False)


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
