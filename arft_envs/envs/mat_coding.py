"""MATCoding-v0: repair a degraded image with OpenCV code, then answer a question about it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from arft_envs.core import AgenticEnv
from arft_envs.prompts import CODING_SYSTEM_PROMPT
from arft_envs.rewards import coding_accuracy_reward, coding_format_reward
from arft_envs.spaces import image_part, message, text_part
from arft_envs.tasks.base import ListTaskSource, Task, TaskSource
from arft_envs.tasks.coding.synthetic import StepwiseSynthetic as _StepwiseSynthetic
from arft_envs.tools.base import Tool
from arft_envs.tools.paper import INPUT_NAME, OUTPUT_NAME, coding_tools, gold_plan

__all__ = ["INPUT_NAME", "OUTPUT_NAME", "MATCodingEnv", "make_easy_env"]


class MATCodingEnv(AgenticEnv):
    """
    ## Description
    The agentic coding task of Visual-ARFT (MAT-Coding). Each task is an image that may be
    degraded (rotated by 90° or 180°, too dark, over-exposed, blurred, noisy, or needing a
    crop to a region named by a 0–1000 bounding box; the hard split combines a rotation with
    one other problem) and a question about its content. The agent diagnoses the problem in
    ``<problem>``, writes OpenCV code in ``<code>`` that reads ``path_to_input_image.jpg`` and
    writes ``path_to_output_image.jpg``, and answers in ``<answer>``. The code **really runs**,
    in an isolated sandbox, and the image it writes becomes the newest image of the
    conversation. By default tasks come from an unlimited, seeded synthetic generator, so the
    env works offline; ``data=PATH`` loads the official MAT-Coding benchmark.

    ## Action Space
    ``Utf8Text(max_action_length)``: one assistant turn, an optional ``<think>…</think>``
    followed by exactly one of ``<problem>{'…', …}</problem>``, ``<code>…</code>`` (a fenced
    ```` ```python ```` block inside is allowed) or ``<answer>…</answer>``.

    With ``action_format="tool_calls"``: ``AssistantTurn(max_action_length)``, one native
    function call a turn, as an assistant message ``{"role": "assistant", "content":
    reasoning, "tool_calls": [{"type": "function", "function": {"name", "arguments"}}]}`` or
    as Qwen/Hermes text (``<think>…</think><tool_call>{…}</tool_call>``). The functions are
    ``env.unwrapped.tool_schemas``: ``problem`` (``{"problems": [names]}``), ``code``
    (``{"code": str}``) and ``answer`` (``{"answer": str}``, which ends the episode). See
    :mod:`arft_envs.tool_calls`.

    ## Observation Space
    ``Conversation``: ``{"messages": (message, …), "images": (uint8 H×W×3, …)}`` — the system
    prompt, the user's image and question, then each assistant turn and the tool's reply
    (text, and the image the code wrote). Image parts point into ``images`` by index.

    ## Rewards
    The paper's rewards, each step's reward the sum of ``info["reward_components"]``:
    - ``<problem>``: ``format`` (0/1, the paper's strict pattern) + ``problem`` (1 for the
      exact set, 0.5 for only the rotation of a rotation+X pair, else 0);
    - ``<code>``: ``format`` + ``code`` — in ``reward_mode="live"`` 1 when the code ran and
      wrote an image (with ``code_reward="improved"``: an image measurably closer to the clean
      one, ``info["repair"]["improved"]``), in ``"paper"`` the constant 0.9;
    - ``<answer>``: ``format`` + ``answer`` (token-set F1 against the gold answers).
    Each kind of step earns its reward once per episode (as in the paper's one-row-per-step
    training data); the code reward is earned by the first run that writes an image. A step
    the gold trajectory does not contain (code for an undegraded image) earns 0. The maximum
    return is therefore 6 (live) or 5.9 (paper) with a code step, and 4 without.
    A format error earns 0 and the tool replies with what was wrong.

    The two action formats earn the same rewards for the same behaviour:

    ===============  ==================================  ===================================
    term             ``action_format="tags"``            ``"tool_calls"``
    ===============  ==================================  ===================================
    ``format``       the paper's pattern on the turn     the same pattern on the tag turn the
                                                         call stands for (the reasoning as
                                                         ``<think>``); 0 for a malformed call
    ``problem``      the set in ``<problem>``            the ``problems`` argument
    ``code``         the code in ``<code>`` ran          the ``code`` argument ran
    ``answer``       F1 of ``<answer>``                  F1 of the ``answer`` argument
    ===============  ==================================  ===================================

    ## Starting State
    A task drawn with ``np_random`` (or ``reset(options={"task_id": …})``).

    ## Episode End
    Terminated on ``<answer>`` (or on a format error with ``on_format_error="terminate"``);
    truncated after ``max_turns`` turns (default 5). The final ``info`` holds ``answer``,
    ``golds``, ``f1`` and ``em`` (the paper's Chinese-aware metric).

    ## Arguments
    - ``data``: path to the official ``MAT-Coding.json`` (images beside it or in
      ``image_root``); ``None`` (default) uses the synthetic generator.
    - ``split``: ``"simple"``, ``"hard"`` or ``None`` (both).
    - ``mode``: ``"agent"`` (default) or ``"stepwise"``, which replays the paper's one-step
      training rows (``data`` is then an ``rft_agent_code_1_2k.json``-style file, or ``None``
      for synthetic rows).
    - ``reward_mode``: ``"live"`` (default) or ``"paper"``.
    - ``code_reward``: what earns the live code reward: ``"ran"`` (default: the code ran and
      wrote an image) or ``"improved"`` (the image it wrote is closer to the task's clean image
      than its input, :mod:`arft_envs.repair`; a task without a clean image, like the official
      benchmark's, falls back to ``"ran"``). Live mode only: paper mode refuses it.
    - ``sandbox``: an isolation level (``"auto"``, ``"bwrap"``, ``"process"``, ``"none"``) or a
      ``Sandbox`` instance; ``timeout_s`` bounds each code run.
    - ``check_images``: check at load time that every image file a row names exists.
    - ``share_images``: return the env's own read-only image arrays instead of copies (no
      copy per step; for trainers that keep the history themselves).
    - ``max_turns``, ``on_format_error`` (``"continue"``/``"terminate"``), ``max_action_length``.
    - ``extra_tools``: more :class:`~arft_envs.tools.base.Tool` objects (e.g. a ``<zoom>``;
      see ``examples/custom_tool.py``); the grammar, format checks and prompt include them.
    - ``tool_timeout_s``: whole-call deadlines (a number, or ``{tool name: seconds}``); the
      code tool's default is the sandbox's wall limit + 10 s. A missed deadline is a tool
      message with status ``"timeout"``, counted in ``info["tool_timeouts"]`` and
      ``info["tool_failures"]``; the episode goes on.

    ## Info
    ``reset()``: ``task_id``, ``split``. The episode end adds ``degradations`` (sorted names,
    the gold diagnosis, so never before the end; the task record keeps them in
    ``task.meta``), ``answer``, ``golds``, ``f1``, ``em``, ``episode_return``, ``turns``. Every step: ``action_kind``, ``reward_components``, ``tool_status``,
    ``format_errors``, ``tool_failures``, ``tool_timeouts``. Every turn that ran the code tool:
    ``repair``, how much it restored the image (:func:`arft_envs.repair.repair_report`: PSNR
    and SSIM of its input, of the input saved unchanged and of its output against the clean
    image, and ``improved``), or ``None`` for a task without a clean image.

    ## Version History
    - v0: initial release; ``action_format="tool_calls"`` added (the default, ``"tags"``,
      is unchanged). ``degradations`` moved from the ``reset()`` info to the final info.
    """

    chinese_metric = True

    def __init__(
        self,
        data: str | Path | None = None,
        split: str | None = None,
        *,
        image_root: str | Path | None = None,
        check_images: bool = True,
        tasks: TaskSource | None = None,
        sandbox: Any = "auto",
        timeout_s: float | None = None,
        code_reward: str = "ran",
        **kwargs: Any,
    ):
        mode = kwargs.get("mode", "agent")
        self.code_reward = _check_code_reward(code_reward, kwargs.get("reward_mode", "live"))
        if tasks is None:
            tasks = _make_tasks(data, split, image_root, mode, check_images)
        self._sandbox_spec = sandbox
        self._sandbox = None
        self.timeout_s = timeout_s
        super().__init__(tasks, **kwargs)

    # ------------------------------------------------------------------ family hooks

    def _make_tools(self) -> list[Tool]:
        return coding_tools()

    def _task_info(self, task: Task, final: bool) -> dict[str, Any]:
        """At the episode's end, ``degradations``: the task's degradation names (sorted;
        ``["none"]`` for a clean image), the key for per-degradation reports. Never at
        ``reset()``: they are the gold answer of the ``<problem>`` step."""
        degradations = task.meta.get("degradations")
        if not final or degradations is None:
            return {}
        return {"degradations": sorted(degradations)}

    def _initial_messages(self, task: Task, images: list[np.ndarray]) -> list[dict]:
        if self.mode == "stepwise":
            text = self.system_prompt(CODING_SYSTEM_PROMPT)
            text += "\n" + task.meta.get("prompt_text", task.question)
            return [message("user", *[image_part(i) for i in range(len(images))], text_part(text))]
        return [
            message("system", text_part(self.system_prompt(CODING_SYSTEM_PROMPT))),
            message(
                "user",
                *[image_part(i) for i in range(len(images))],
                text_part(f"<query> {task.question} </query>"),
            ),
        ]

    def _gold_plan(self) -> list[str]:
        return gold_plan(self.task)

    def _stepwise_components(self, action: str, gold_step: str) -> dict[str, float]:
        return {
            "format": coding_format_reward(action, gold_step),
            "accuracy": coding_accuracy_reward(action, gold_step),
        }

    def step(self, action: Any):
        code = self.tools.get("code")
        if code is None or not hasattr(code, "last_repair"):
            return super().step(action)
        code.last_repair = _NOT_MEASURED
        obs, reward, terminated, truncated, info = super().step(action)
        if code.last_repair is not _NOT_MEASURED:  # the code tool ran this turn
            info["repair"] = code.last_repair
        return obs, reward, terminated, truncated, info

    # ------------------------------------------------------------------ sandbox

    @property
    def sandbox(self):
        """The sandbox code turns run in (created on first use)."""
        if self._sandbox is None:
            from arft_envs.tools.sandbox import Sandbox, get_default_sandbox

            spec = self._sandbox_spec
            self._sandbox = get_default_sandbox(spec) if isinstance(spec, str) else spec
            if not isinstance(self._sandbox, Sandbox) and not hasattr(self._sandbox, "run"):
                raise TypeError(f"sandbox must be a level name or a Sandbox, got {spec!r}")
        return self._sandbox


_NOT_MEASURED = object()
CODE_REWARDS = ("ran", "improved")


def _check_code_reward(code_reward: str, reward_mode: str) -> str:
    if code_reward not in CODE_REWARDS:
        raise ValueError(f"code_reward must be one of {CODE_REWARDS}, got {code_reward!r}")
    if code_reward == "improved" and reward_mode != "live":
        raise ValueError(
            f"code_reward='improved' is a live-mode rule, but reward_mode={reward_mode!r} "
            "(paper mode pays the paper's constant code reward); use reward_mode='live'"
        )
    return code_reward


def _make_tasks(data, split, image_root, mode, check_images=True) -> TaskSource:
    from arft_envs.tasks import mat_coding

    if split not in (None, "simple", "hard", "all"):
        raise ValueError(f"split must be 'simple', 'hard' or None, got {split!r}")
    if data is None:
        source = mat_coding.SyntheticCoding(split=split or "all")
        return _StepwiseSynthetic(source) if mode == "stepwise" else source
    if mode == "stepwise":
        tasks = mat_coding.load_coding_rows(data, image_root=image_root, check_images=check_images)
    else:
        tasks = mat_coding.load_mat_coding(
            data,
            split=None if split == "all" else split,
            image_root=image_root,
            check_images=check_images,
        )
    return ListTaskSource(tasks, name=str(data))


def make_easy_env(
    degradations: tuple[str, ...] | list[str] | None = None,
    image_size: tuple[int, int] | list[int] = (128, 128),
    content: str = "glyph",
    holdout: int = 48,
    holdout_seed: int = 2024,
    **kwargs: Any,
) -> MATCodingEnv:
    """
    ## Description
    ``EasyMATCoding-v0``: ``MATCoding-v0`` on the easy task source
    :class:`arft_envs.tasks.coding.easy.EasyCoding`, the setting ``make demo`` trains a tiny
    model on. The images are 128-px pictures of one glyph under one of a few photometric
    degradations (dark, overexposure, noise by default), the gold turns are short (a cue word,
    the repair code, the answer), and a fixed set of held-out tasks is never sampled. The code
    turn really runs in the sandbox.

    ## Action Space
    As ``MATCoding-v0``: UTF-8 text, one ``<problem>``, ``<code>`` or ``<answer>`` action a turn,
    or with ``action_format="tool_calls"`` one native call of those functions.

    ## Observation Space
    As ``MATCoding-v0``: the whole conversation so far and its images.

    ## Rewards
    As ``MATCoding-v0`` (see :class:`MATCodingEnv`): format, diagnosis, code and answer terms.

    ## Starting State
    A task drawn from the easy source with the reset seed (the held-out tasks excepted), or the
    one named by ``options={"task_id": ...}`` (held-out ids included).

    ## Episode End
    As ``MATCoding-v0``: terminated on an answer, truncated at ``max_turns``.

    ## Arguments
    ``degradations`` (default ``DEFAULT_DEGRADATIONS`` of the easy source), ``image_size``,
    ``content``, ``holdout``, ``holdout_seed``: see ``EasyCoding``. Any other keyword goes to
    :class:`MATCodingEnv` (``max_turns``, ``on_format_error``, ...).

    ## Version History
    - v0: initial release (registered by ``agents.demo`` before it joined ``ENV_SPECS``).
    """
    from arft_envs.tasks.coding.easy import DEFAULT_DEGRADATIONS, EasyCoding

    kinds = DEFAULT_DEGRADATIONS if degradations is None else degradations
    tasks = EasyCoding(kinds, image_size, content, holdout, holdout_seed)
    return MATCodingEnv(tasks=tasks, **kwargs)
