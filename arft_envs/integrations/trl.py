"""TRL adapter: train arft envs with TRL's own ``GRPOTrainer``.

Single-turn: :func:`stepwise_dataset` turns an env's ``mode="stepwise"`` rows into a
``datasets.Dataset`` in TRL's conversational multimodal form (a ``prompt`` list of messages
whose user content holds ``{"type": "image"}`` placeholders, an ``images`` column of PIL
images, and the row's ``gold_step``). :func:`reward_functions` returns reward callables with
TRL's signature ``f(prompts, completions, **columns) -> list[float]`` that score each
completion with the env's own rewards against the row's gold step, without resetting an env
per completion. In ``reward_mode="live"`` a ``<code>`` completion really runs in the env's
sandbox on the row's image and earns the code reward only when it ran and wrote an image
(``paper`` mode keeps the authors' constant 0.9).

Multi-turn: :func:`environment_factory` is a class for ``GRPOTrainer(environment_factory=
...)`` over any env in ``action_format="tool_calls"``. ``reset`` returns the env's opening
user turn and each tool method the tool's reply, both as TRL content blocks: text, and the
images as ``{"type": "image", "image": PIL.Image}`` (TRL 1.16 passes a tool's list of blocks
to the chat template as a multimodal tool message and feeds its images to a VLM, in
generation and in the loss's forward pass). The repaired image a ``code`` call writes thus
reaches the model, as in arft's own rollouts. :func:`warm_start_dataset` gives TRL's
``SFTTrainer`` the scripted expert's first call of each episode in exactly the context
``GRPOTrainer`` renders for it (TRL's tools block, the image tokens), so that a warm start
teaches calls GRPO's completions then make.

``trl`` and ``datasets`` are imported lazily, so ``import arft_envs`` stays light and
torch-free. Install them with ``pip install arft[trl]``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from arft_envs.rewards import (
    CODING_KINDS,
    code_reward,
    coding_accuracy_reward,
    coding_format_reward,
    extract_span,
    step_kind,
)

__all__ = [
    "completion_text",
    "environment_factory",
    "qwen_vl_processor",
    "reward_functions",
    "stepwise_dataset",
    "warm_start_dataset",
]

RewardFn = Callable[..., list[float]]


def _trl_content(content: Any) -> list[dict[str, Any]]:
    """arft message parts -> TRL parts (images as bare placeholders, in order)."""
    parts: list[dict[str, Any]] = []
    for part in content:
        if part.get("type") == "image":
            parts.append({"type": "image"})
        else:
            parts.append({"type": "text", "text": part.get("text", "")})
    return parts


def stepwise_dataset(
    env_id: str = "MATCoding-v0",
    n: int = 8,
    seed: int = 0,
    kinds: Sequence[str] | None = None,
    **env_kwargs,
):
    """A ``datasets.Dataset`` of ``n`` stepwise rows of ``env_id`` (seeds from ``seed`` on).

    Columns: ``prompt`` (TRL conversational messages), ``images`` (PIL images, one per image
    placeholder), ``gold_step`` (the reference turn the rewards score against) and
    ``task_id``. ``kinds`` keeps only rows whose gold step is one of those kinds (e.g.
    ``("problem", "answer")``; see :data:`arft_envs.rewards.CODING_KINDS`), taking seeds in
    order until ``n`` are found. Extra keyword arguments go to ``gym.make`` (``mode`` is
    always stepwise).
    """
    try:
        from datasets import Dataset
        from PIL import Image
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise ImportError(
            "stepwise_dataset needs `datasets` and Pillow; install them with pip install arft[trl]"
        ) from exc
    import arft_envs  # noqa: F401  (registers the ids)

    if kinds is not None and not set(kinds) <= set(CODING_KINDS):
        raise ValueError(f"kinds must be among {CODING_KINDS}, got {list(kinds)}")
    env = gym.make(env_id, mode="stepwise", **env_kwargs)
    rows: dict[str, list] = {"prompt": [], "images": [], "gold_step": [], "task_id": []}
    tries = n if kinds is None else 50 * n
    try:
        for i in range(tries):
            if len(rows["prompt"]) == n:
                break
            env.reset(seed=seed + i)
            u = env.unwrapped
            if kinds is not None and step_kind(u.task.meta["gold_step"], CODING_KINDS) not in kinds:
                continue
            messages = [
                {"role": m["role"], "content": _trl_content(m["content"])} for m in u.messages
            ]
            rows["prompt"].append(messages)
            rows["images"].append([Image.fromarray(np.asarray(im)) for im in u.images])
            rows["gold_step"].append(u.task.meta["gold_step"])
            rows["task_id"].append(u.task.id)
    finally:
        env.close()
    if len(rows["prompt"]) < n:
        raise ValueError(
            f"only {len(rows['prompt'])} of the {tries} stepwise rows of {env_id} from seed "
            f"{seed} are of kinds {list(kinds or ())}; ask for fewer rows or more kinds"
        )
    return Dataset.from_dict(rows)


def completion_text(completion: Any) -> str:
    """The text of one TRL completion: a string, or a list of messages (their text joined)."""
    if isinstance(completion, str):
        return completion
    texts = []
    for msg in completion:
        content = msg.get("content", "") if isinstance(msg, dict) else msg
        if isinstance(content, str):
            texts.append(content)
        else:
            texts.extend(p.get("text", "") for p in content if p.get("type") == "text")
    return "".join(texts)


def _code_of(text: str) -> str:
    body = extract_span(text, "code")
    if "```" in body:
        body = body.split("```", 2)[1]
        body = body.split("\n", 1)[1] if body.startswith("python") else body
    return body


def reward_functions(
    reward_mode: str = "live", sandbox: Any = "auto", timeout_s: float = 10.0
) -> list[RewardFn]:
    """``[format_reward, accuracy_reward]`` for the coding envs' stepwise rows, TRL-shaped.

    Each takes ``completions`` and the dataset's ``gold_step`` (and ``images``) columns as
    keyword arguments and returns one float per completion. In ``live`` mode a code step's
    accuracy is 1.0 only when the completion's code ran in the sandbox (``sandbox``: a level
    name or a Sandbox) and wrote ``path_to_output_image.jpg``; otherwise the paper's rules.
    Bad completions score 0; they never raise.
    """
    if reward_mode not in ("live", "paper"):
        raise ValueError(f"reward_mode must be 'live' or 'paper', got {reward_mode!r}")
    state: dict[str, Any] = {}

    def _sandbox():
        if "sb" not in state:
            from arft_envs.tools.sandbox import get_default_sandbox

            state["sb"] = get_default_sandbox(sandbox) if isinstance(sandbox, str) else sandbox
        return state["sb"]

    def format_reward(completions, gold_step, **_: Any) -> list[float]:
        """The env's stepwise format reward of each completion against its row's gold step."""
        return [
            float(coding_format_reward(completion_text(c), g))
            for c, g in zip(completions, gold_step, strict=True)
        ]

    def accuracy_reward(completions, gold_step, images=None, **_: Any) -> list[float]:
        """The env's stepwise accuracy reward; live code steps really run in the sandbox."""
        scores = []
        for i, (c, g) in enumerate(zip(completions, gold_step, strict=True)):
            text = completion_text(c)
            score = float(coding_accuracy_reward(text, g))
            if reward_mode == "live" and step_kind(g, CODING_KINDS) == "code" and score > 0:
                score = 0.0
                code = _code_of(text)
                if code.strip() and images:
                    image = np.asarray(images[i][-1].convert("RGB"))
                    try:
                        result = _sandbox().run(
                            code, files={"path_to_input_image.jpg": image}, timeout_s=timeout_s
                        )
                        ran = result.status == "ok" and "path_to_output_image.jpg" in result.images
                    except Exception:  # noqa: BLE001 - a bad completion never raises
                        ran = False
                    score = float(code_reward("live", ran))
            scores.append(score)
        return scores

    return [format_reward, accuracy_reward]


def qwen_vl_processor(model_dir: Any, chat_template: str | None = None):
    """Qwen2.5-VL's processor (image processor + tokenizer) from a saved model directory,
    without its video processor: ``AutoProcessor`` would build that too, and it needs
    torchvision, which arft does not depend on. ``chat_template`` replaces the tokenizer's
    (e.g. TRL's ``qwen3_vl_chat_template``, whose tool calls TRL knows how to parse)."""
    from transformers import AutoImageProcessor, AutoTokenizer, Qwen2_5_VLProcessor
    from transformers.processing_utils import ProcessorMixin

    class ImageOnlyQwenProcessor(Qwen2_5_VLProcessor):
        """Qwen2.5-VL's processor without its video half."""

        attributes = ["image_processor", "tokenizer"]

        def __init__(self, image_processor, tokenizer, chat_template=None):
            self.image_token = "<|image_pad|>"
            self.video_token = "<|video_pad|>"
            self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
            self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
            ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)

        def __call__(self, *args, **kwargs):
            """As Qwen's, with the image fields as torch tensors even when no
            ``return_tensors`` is asked for: the torchvision-free image processor gives numpy
            arrays there, and TRL 1.16's tool loop (``environment_factory`` with a VLM)
            merges them per prompt with ``torch.cat`` and then calls ``.prod`` on the grid,
            which a list of numpy rows does not have."""
            import torch

            out = super().__call__(*args, **kwargs)
            for key in ("pixel_values", "image_grid_thw"):
                if isinstance(out.get(key), np.ndarray):
                    out[key] = torch.from_numpy(out[key])
            return out

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if chat_template is not None:
        tokenizer.chat_template = chat_template
    return ImageOnlyQwenProcessor(
        AutoImageProcessor.from_pretrained(model_dir), tokenizer, tokenizer.chat_template
    )


# ----------------------------------------------------------------------------- multi-turn

_JSON_TYPES = {"string": str, "integer": int, "number": float, "boolean": bool, "array": list}


def _tool_method(name: str, schema: dict[str, Any]) -> Callable[..., Any]:
    """A method that steps the env with one native call of tool ``name`` (TRL tool shape)."""
    import inspect

    params = schema.get("parameters", {}).get("properties", {})

    def method(self, **arguments: Any) -> str | list:
        return self._call(name, arguments)

    method.__name__ = name
    method.__signature__ = inspect.Signature(
        [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
        + [
            inspect.Parameter(
                p,
                inspect.Parameter.KEYWORD_ONLY,
                annotation=_JSON_TYPES.get(spec.get("type"), str),
            )
            for p, spec in params.items()
        ]
    )
    method.__annotations__ = {p: _JSON_TYPES.get(s.get("type"), str) for p, s in params.items()}
    args = "\n".join(f"    {p}: {s.get('description', p)}" for p, s in params.items())
    method.__doc__ = f"{schema.get('description', name)}\n\nArgs:\n{args}\n"
    return method


def _blocks(message: dict[str, Any], images: Sequence[np.ndarray], with_images: bool) -> list:
    """One env message as TRL content blocks: text, and images as PIL images, in order."""
    from PIL import Image

    blocks: list[dict[str, Any]] = []
    for part in message["content"]:
        if part["type"] == "image":
            if with_images:
                image = Image.fromarray(np.asarray(images[part["index"]]))
                blocks.append({"type": "image", "image": image})
        elif part.get("text"):
            blocks.append({"type": "text", "text": part["text"]})
    return blocks


def _reply(blocks: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """A tool reply for TRL: plain text, or the list of blocks when it holds an image."""
    if any(b["type"] == "image" for b in blocks):
        return blocks
    return " ".join(b["text"] for b in blocks)


def environment_factory(
    env_id: str = "MATCoding-v0", images: bool = True, **env_kwargs: Any
) -> type:
    """A class for TRL's ``GRPOTrainer(environment_factory=...)`` over ``env_id``.

    The env runs in ``action_format="tool_calls"``; each of its tools becomes a method (named,
    typed and documented from ``env.unwrapped.tool_schemas``) that steps the env with one
    native call and returns the tool's reply. ``reset(**row)`` resets the env (a row's
    ``seed`` picks the task) and returns its opening messages (the images, then the env's
    system text and the user turn's text; TRL appends them to the row's prompt);
    ``get_reward()`` is the
    episode's return from the env's own rewards.

    With ``images=True`` (for a VLM processor) the opening turn and any tool reply that holds
    an image are lists of TRL content blocks, ``{"type": "image", "image": PIL.Image}`` and
    ``{"type": "text", ...}``; TRL renders them as a multimodal user / tool message and feeds
    the images to the model. ``images=False`` (a text-only model) keeps only the text.
    """
    import arft_envs  # noqa: F401  (registers the ids)

    probe = gym.make(env_id, action_format="tool_calls", **env_kwargs)
    probe.reset(seed=0)
    schemas = [s["function"] for s in probe.unwrapped.tool_schemas]
    probe.close()
    with_images = bool(images)

    class ArftEnvironment:
        def __init__(self) -> None:
            self.env = gym.make(env_id, action_format="tool_calls", **env_kwargs)
            self.total = 0.0
            self.done = False

        def reset(self, **row: Any) -> str | list[dict[str, Any]]:
            """Start an episode (the row's ``seed`` picks the task); the opening user turn."""
            self.total, self.done = 0.0, False
            self.env.reset(seed=row.get("seed"))
            u = self.env.unwrapped
            blocks = []  # the env's opening messages (its system text, then the user turn)
            for m in u.messages:
                blocks += _blocks(m, u.images, with_images)
            # images first, where TRL's prepare_multimodal_messages puts a row's images: the
            # turn then ends in the text (the query) that the model answers
            blocks.sort(key=lambda b: b["type"] != "image")
            return blocks if with_images else _reply(blocks)

        def _call(self, name: str, arguments: dict[str, Any]) -> str | list[dict[str, Any]]:
            if self.done:
                return "The episode is over; give no more calls."
            action = {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {"type": "function", "function": {"name": name, "arguments": arguments}}
                ],
            }
            _, reward, terminated, truncated, _ = self.env.step(action)
            self.total += float(reward)
            self.done = bool(terminated or truncated)
            u = self.env.unwrapped
            last = u.messages[-1]
            if last["role"] == "assistant":  # the answer: the env adds no reply
                return "Done."
            return _reply(_blocks(last, u.images, with_images))

        def get_reward(self) -> float:
            """The episode's return so far, from the env's own rewards."""
            return self.total

    for schema in schemas:
        setattr(ArftEnvironment, schema["name"], _tool_method(schema["name"], schema))
    ArftEnvironment.__name__ = f"Arft{env_id.split('-')[0]}Environment"
    return ArftEnvironment


def warm_start_dataset(environment: type, dataset: Any, processor: Any, chat_template=None):
    """Rows for TRL's ``SFTTrainer``: each episode's first expert call, in GRPO's own context.

    ``environment`` is the class given to ``GRPOTrainer(environment_factory=...)`` (from
    :func:`environment_factory`), ``dataset`` the GRPO train dataset (its ``prompt`` and the
    columns ``reset`` reads, e.g. ``seed``) and ``processor`` GRPO's processing class. For
    each row the prompt is built as ``GRPOTrainer`` builds it: the row's last message plus
    ``reset(**row)``'s opening turn, rendered by the processor's chat template with the
    environment's tool methods as ``tools=`` (TRL's tools block) and an image placeholder per
    image. The completion is the scripted expert's first turn as a bare call, rendered by the
    same template (``<tool_call>…</tool_call><|im_end|>`` for Qwen).

    Returns a ``datasets.Dataset`` with ``prompt`` and ``completion`` (rendered text) and
    ``images`` (PIL images): a pre-rendered prompt-completion vision dataset, which TRL's
    ``SFTTrainer`` trains on the completion only, with the images through the processor.
    (TRL's own conversational path would render the prompt without ``tools=``, which is the
    context GRPO never shows the model.) ``chat_template`` overrides the processor's, as
    ``GRPOTrainer`` does when it swaps in a prefix-preserving training template.
    """
    import inspect

    from datasets import Dataset
    from trl.data_utils import prepare_multimodal_messages

    from arft_envs.experts import ScriptedExpert

    rows: dict[str, list] = {"prompt": [], "completion": [], "images": []}
    instance = environment()
    # the tools GRPOTrainer exposes: the environment's public methods, in inspect's order
    tools = [
        getattr(instance, name)
        for name, _ in inspect.getmembers(type(instance), predicate=inspect.isfunction)
        if name not in ("reset", "get_reward") and not name.startswith("_")
    ]
    try:
        for i, row in enumerate(dataset):
            prompt = row["prompt"]
            opening = instance.reset(**row)
            last = prompt[-1]["content"]
            if isinstance(opening, list) and isinstance(last, str):
                last = [{"type": "text", "text": last}]
            if isinstance(opening, str) and isinstance(last, list):
                opening = [{"type": "text", "text": opening}]
            messages = prepare_multimodal_messages(
                prompt[:-1] + [{**prompt[-1], "content": last + opening}]
            )
            call = ScriptedExpert().act(instance.env)
            turn = {"role": "assistant", "content": "", "tool_calls": call["tool_calls"]}
            kwargs = {"tools": tools, "chat_template": chat_template, "tokenize": False}
            text = processor.apply_chat_template(messages, add_generation_prompt=True, **kwargs)
            full = processor.apply_chat_template(messages + [turn], **kwargs)
            if not full.startswith(text):
                raise ValueError(
                    f"row {i}: the chat template renders the prompt differently once the "
                    "expert's call follows it (not prefix-preserving); pass the template "
                    "GRPOTrainer uses as chat_template (trl.chat_template_utils."
                    "get_training_chat_template(processor))"
                )
            rows["prompt"].append(text)
            rows["completion"].append(full[len(text) :])
            rows["images"].append(
                [
                    part["image"]
                    for m in messages
                    if isinstance(m["content"], list)
                    for part in m["content"]
                    if part["type"] == "image"
                ]
            )
    finally:
        instance.env.close()
    return Dataset.from_dict(rows)
