"""``--model tiny``: a Qwen2.5-VL-architecture model with random weights, built offline.

The tiny model exists so that every part of the agent stack — chat rendering, image tokens,
batched generation, log-probs, LoRA, training — runs in seconds on a CPU with no download.
It is the real ``Qwen2_5_VLForConditionalGeneration`` class, shrunk by its config, with:

- a byte-level BPE tokenizer trained with the ``tokenizers`` library on a built-in corpus
  (the env system prompts, the action tags, OpenCV snippets, numbers), so any text
  round-trips and the usual strings are a few tokens long;
- the special tokens a Qwen-style chat template needs (``<|im_start|>``, ``<|im_end|>``,
  ``<|vision_start|>``, ``<|image_pad|>``, …);
- a chat template of its own that renders the four roles (system, user, assistant, tool) and
  image parts where they sit;
- the PIL Qwen2-VL image processor, limited to small images (4 to 64 image tokens each).

Building is deterministic in ``seed`` (the tokenizer does not depend on it) and takes well
under a second. ``save_tiny(path)`` writes an ordinary checkpoint folder that
:meth:`agents.policy.Policy.from_pretrained` (and ``transformers``' Auto classes) load back.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

NAME = "tiny"

EOS_TOKEN = "<|im_end|>"
PAD_TOKEN = "<|endoftext|>"
IMAGE_TOKEN = "<|image_pad|>"
SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

# Renders ``messages`` (content a string or a list of {"type": "text"|"image"} parts) in the
# ChatML layout of the Qwen family. Roles outside the four the envs use are refused.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] not in ['system', 'user', 'assistant', 'tool'] -%}"
    "{{- raise_exception('tiny chat template: unknown role ' ~ message['role']) -}}"
    "{%- endif -%}"
    "{{- '<|im_start|>' ~ message['role'] ~ '\\n' -}}"
    "{%- if message['content'] is string -%}"
    "{{- message['content'] -}}"
    "{%- else -%}"
    "{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'image' -%}"
    "{{- '<|vision_start|><|image_pad|><|vision_end|>' -}}"
    "{%- elif part['type'] == 'text' -%}"
    "{{- part['text'] -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{- '<|im_start|>assistant\\n' -}}"
    "{%- endif -%}"
)

_OPENCV_SNIPPETS = (
    "import cv2\nimport numpy as np\nimg = cv2.imread('path_to_input_image.jpg')\n",
    "img = cv2.rotate(img, cv2.ROTATE_90_CLOCKWISE)\n",
    "img = cv2.rotate(img, cv2.ROTATE_90_COUNTERCLOCKWISE)\n",
    "img = cv2.rotate(img, cv2.ROTATE_180)\n",
    "img = cv2.convertScaleAbs(img, alpha=1.5, beta=40)\n",
    "img = cv2.convertScaleAbs(img, alpha=0.7, beta=-30)\n",
    "img = cv2.GaussianBlur(img, (5, 5), 0)\n",
    "img = cv2.fastNlMeansDenoisingColored(img, None, 10, 10, 7, 21)\n",
    "kernel = np.array([[0, -1, 0], [-1, 5, -1], [0, -1, 0]])\nimg = cv2.filter2D(img, -1, kernel)\n",
    "h, w = img.shape[:2]\nx_min, y_min, x_max, y_max = 120, 80, 640, 480\n",
    "img = img[int(y_min * h / 1000):int(y_max * h / 1000), int(x_min * w / 1000):int(x_max * w / 1000)]\n",
    "cv2.imwrite('path_to_output_image.jpg', img)\n",
)

_TURNS = (
    "<think> The image is upside down, so I rotate it first. </think>\n"
    "<problem> {'rotation180'} </problem>",
    "<think> The image is dark and rotated. </think>\n<problem> {'rotation90', 'dark'} </problem>",
    "<think> The picture looks fine. </think>\n<problem> {'none'} </problem>",
    "<think> I fix the image with OpenCV. </think>\n<code>\n```python\n{code}```\n</code>",
    "<think> I need to know more. </think>\n<search> capital city of the country </search>",
    "<think> The answer is visible now. </think>\n<answer> {answer} </answer>",
)


@dataclass(frozen=True)
class TinySpec:
    """Sizes of the tiny model. The defaults give about 0.4 M parameters."""

    vocab_size: int = 2048
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2
    intermediate_size: int = 128
    vision_hidden_size: int = 32
    vision_depth: int = 2
    vision_heads: int = 2
    vision_intermediate_size: int = 64
    min_pixels: int = 4 * 28 * 28
    max_pixels: int = 64 * 28 * 28
    max_position_embeddings: int = 16384

    def __post_init__(self):
        head_dim = self.hidden_size // self.num_heads
        if head_dim * self.num_heads != self.hidden_size or head_dim % 2:
            raise ValueError("hidden_size must split into num_heads heads of even size")
        if self.num_heads % self.num_kv_heads:
            raise ValueError("num_heads must be a multiple of num_kv_heads")
        if self.vocab_size < 256 + len(SPECIAL_TOKENS):
            raise ValueError(
                f"vocab_size must be >= {256 + len(SPECIAL_TOKENS)} (bytes + specials)"
            )
        if not 0 < self.min_pixels <= self.max_pixels:
            raise ValueError("need 0 < min_pixels <= max_pixels")


def training_corpus() -> list[str]:
    """The built-in text the tokenizer's merges are learned from (deterministic)."""
    from arft_envs import prompts

    corpus = [prompts.CODING_SYSTEM_PROMPT, prompts.SEARCH_SYSTEM_PROMPT]
    corpus += list(prompts.CODING_TIPS.values())
    corpus += list(_OPENCV_SNIPPETS)
    code = "".join(_OPENCV_SNIPPETS)
    answers = ("42", "blue", "3.14", "Paris", "the red car", "2019", "no", "yes")
    for i, turn in enumerate(_TURNS):
        corpus.append(turn.replace("{code}", code).replace("{answer}", answers[i % len(answers)]))
    corpus += [" ".join(str(n) for n in range(k, k + 50)) for k in range(0, 1000, 50)]
    corpus += ["<query> What is written on the sign? </query>", "Format error: No action found."]
    # Repeat so that frequent pairs clearly win over one-off ones.
    return corpus * 4


def build_tokenizer(vocab_size: int = TinySpec.vocab_size):
    """A byte-level BPE tokenizer (any text round-trips) with the chat special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(training_corpus(), trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        clean_up_tokenization_spaces=False,
        model_max_length=TinySpec.max_position_embeddings,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_image_processor(spec: TinySpec = TinySpec()):
    """The PIL Qwen2-VL image processor (no torchvision), limited to small images."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
        Qwen2VLImageProcessorPil,
    )

    return Qwen2VLImageProcessorPil(min_pixels=spec.min_pixels, max_pixels=spec.max_pixels)


def build_config(tokenizer, spec: TinySpec = TinySpec()):
    """A ``Qwen2_5_VLConfig`` of the tiny sizes, with token ids taken from ``tokenizer``."""
    from transformers import Qwen2_5_VLConfig

    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in SPECIAL_TOKENS}
    head_dim = spec.hidden_size // spec.num_heads
    third = head_dim // 2 // 3
    mrope_section = [head_dim // 2 - 2 * third, third, third]
    text_config = {
        "vocab_size": len(tokenizer),
        "hidden_size": spec.hidden_size,
        "intermediate_size": spec.intermediate_size,
        "num_hidden_layers": spec.num_layers,
        "num_attention_heads": spec.num_heads,
        "num_key_value_heads": spec.num_kv_heads,
        "max_position_embeddings": spec.max_position_embeddings,
        "max_window_layers": spec.num_layers,
        "rope_parameters": {
            "rope_type": "default",
            "rope_theta": 10000.0,
            "mrope_section": mrope_section,
        },
        "bos_token_id": ids[PAD_TOKEN],
        "eos_token_id": ids[EOS_TOKEN],
        "pad_token_id": ids[PAD_TOKEN],
    }
    vision_config = {
        "depth": spec.vision_depth,
        "hidden_size": spec.vision_hidden_size,
        "intermediate_size": spec.vision_intermediate_size,
        "num_heads": spec.vision_heads,
        "out_hidden_size": spec.hidden_size,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "window_size": 112,
        "fullatt_block_indexes": [spec.vision_depth - 1],
    }
    return Qwen2_5_VLConfig(
        text_config=text_config,
        vision_config=vision_config,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )


def build_tiny(seed: int = 0, spec: TinySpec = TinySpec()):
    """Build ``(model, tokenizer, image_processor)``; the weights depend only on ``seed``.

    The global torch RNG is left as it was.
    """
    from transformers import GenerationConfig, Qwen2_5_VLForConditionalGeneration

    tokenizer = build_tokenizer(spec.vocab_size)
    image_processor = build_image_processor(spec)
    config = build_config(tokenizer, spec)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2_5_VLForConditionalGeneration(config)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model.eval()
    return model, tokenizer, image_processor


def save_tiny(path: str | Path, seed: int = 0, spec: TinySpec = TinySpec()) -> Path:
    """Write a tiny checkpoint folder (model, tokenizer, chat template, image processor)."""
    return save_parts(path, build_tiny(seed, spec))


def save_parts(path: str | Path, parts: tuple[Any, ...]) -> Path:
    """Write a built ``(model, tokenizer, image processor)`` as one checkpoint folder."""
    path = Path(path)
    for part in parts:
        part.save_pretrained(path)
    return path
