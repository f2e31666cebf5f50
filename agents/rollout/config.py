"""How episodes are sampled: :class:`RolloutConfig` and the safety turn cap."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class RolloutConfig:
    """How episodes are sampled.

    Attributes:
        group_size: episodes per task (GRPO's G); they are contiguous in the output.
        max_new_tokens: the most tokens of one assistant turn.
        temperature: sampling temperature; 0 decodes greedily.
        top_p: nucleus sampling (log-probs stay those of the full distribution).
        stop_strings: a turn ends when its text contains one of these. None (the default)
            takes them from the env: in ``action_format="tags"`` the closing tags of its
            tools (``env.unwrapped.action_tags``, user tools included; the paper's tags for an
            env that names none), in ``"tool_calls"`` the string that closes a call in the
            model's family (``</tool_call>`` for Qwen/Hermes). ``()``: no stop strings.
        max_turns: an agent-side turn cap on top of the env's own (None: the env decides;
            a safety cap of 64 turns always applies).
        max_context_tokens: the longest sequence (prompt and turns); None uses the model's
            limit. An episode that fills it ends, flagged ``context_full``.
        check_retokenization: compare each episode with a full re-tokenisation (tests, debug).
        seed: seeds torch's RNG and the env resets (episode i resets with seed + i). A
            trainer passes a new seed each step, or None: the RNGs then go on as they are.
        generation_batch_size: split generation into chunks of this many episodes.
    """

    group_size: int = 1
    max_new_tokens: int = 512
    temperature: float = 1.0
    top_p: float = 1.0
    stop_strings: tuple[str, ...] | None = None
    max_turns: int | None = None
    max_context_tokens: int | None = None
    check_retokenization: bool = False
    seed: int | None = 0
    generation_batch_size: int | None = None

    def __post_init__(self):
        if self.group_size < 1:
            raise ValueError(f"group_size must be >= 1, got {self.group_size}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0 = greedy), got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_turns is not None and self.max_turns < 1:
            raise ValueError(f"max_turns must be >= 1 or None, got {self.max_turns}")
        if self.stop_strings is not None:
            self.stop_strings = tuple(self.stop_strings)


SAFETY_MAX_TURNS = 64
