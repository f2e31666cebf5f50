"""Helpers more than one test module uses (``tests/`` is on ``sys.path`` through its
conftest): data files written from rows, and small models built with a fixed seed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_rows(path: Path, rows: Any) -> Path:
    """``rows`` written to ``path``: one JSON object a line for ``.jsonl``, else one JSON value."""
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        path.write_text(json.dumps(rows))
    return path


def seeded_model(model_class: Any, config: Any, tokenizer: Any, seed: int = 0) -> Any:
    """``model_class(config)`` initialised under ``seed`` (the global torch RNG left as it
    was), with a generation config that names only the tokenizer's EOS and pad ids."""
    import torch
    from transformers import GenerationConfig

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_class(config)
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
    )
    return model


def text_lm(tokenizer: Any, seed: int = 0, **sizes: int) -> Any:
    """A tiny text-only causal LM (Qwen2 layers) over ``tokenizer``'s vocabulary: one layer of
    width 32 unless ``sizes`` (Qwen2Config fields) say otherwise."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    fields = dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=8192,
    )
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **{**fields, **sizes},
    )
    return seeded_model(Qwen2ForCausalLM, config, tokenizer, seed)
