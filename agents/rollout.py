"""Multi-turn episodes against vector envs, token-in/token-out.

:func:`collect` runs ``groups × group_size`` episodes on a ``gym.make_vec`` env (sync or
async), generating one batched turn for all live episodes at a time and starting the next
episode in a slot as soon as the slot is free. The ``group_size`` episodes of a group share a
task: the first one's reset reports ``info["task_id"]`` and the others reset with
``options={"task_id": ...}`` (an env without task ids gets the same reset seed instead).

**Token-in/token-out.** An episode's token sequence is built, never re-tokenised:

- the opening prompt is the chat-template text of the first observation;
- each assistant turn is the ids the model sampled, verbatim;
- after a turn, the env's reply (the tool message, with its images) is appended as the
  chat-template *delta*: the text the template adds for the new messages, found by rendering
  the conversation before and after them (with the assistant turn replaced by a sentinel, so
  the model's own text is never re-read). If the model stopped on EOS, the EOS it sampled
  stands for the template's own closing token.

So ``assistant_mask`` is exactly 1 on sampled tokens and 0 on prompt and tool tokens, and
``old_logprobs`` are the sampling log-probs of those very tokens. With ``check_retokenization``
on, every finished episode is compared with a full re-tokenisation of its conversation; the
only differences allowed are explained per turn (a sampled token sequence that is not the
tokenizer's canonical split of the same text, bytes that are not valid UTF-8, an action the
env truncated), and anything else raises :class:`RetokenizationError`.

**Images** are sized by the episode's :class:`agents.images.ImagePlan` (see its budget rule).
When the rule shrinks or drops an image that earlier turns already saw, the context of those
turns changes; their ``old_logprobs`` are then recomputed on the final context at the end of
the episode, and the turns are listed in ``stale_logprob_turns``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from agents.images import ImagePlan, resize
from agents.policy import _SENTINEL, ACTION_STOP_STRINGS, Generation, ModelInput, Policy

IDLE_ACTION = ""


class RetokenizationError(AssertionError):
    """The assembled ids differ from a full re-tokenisation in a way no rule explains."""


@dataclass
class RolloutConfig:
    """How episodes are sampled.

    Attributes:
        group_size: episodes per task (GRPO's G); they are contiguous in the output.
        max_new_tokens: the most tokens of one assistant turn.
        temperature: sampling temperature; 0 decodes greedily.
        top_p: nucleus sampling (log-probs stay those of the full distribution).
        stop_strings: a turn ends when its text contains one of these (default: the
            closing tags of every action).
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
    stop_strings: tuple[str, ...] = ACTION_STOP_STRINGS
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
        self.stop_strings = tuple(self.stop_strings)


SAFETY_MAX_TURNS = 64


@dataclass
class Trajectory:
    """One episode, as a trainer consumes it and a report shows it.

    Token fields have one entry per token of ``input_ids``: ``assistant_mask`` is 1 on the
    model's own sampled tokens, ``old_logprobs`` their log-probs at sampling time (0 elsewhere).
    ``turn_spans[k]`` is the ``[start, end)`` of turn k's sampled ids. ``pixel_values``
    (n_patches, patch_dim) and ``image_grid_thw`` (n_images, 3) are the images of
    ``input_ids`` in order; ``images`` are the same images as the model saw them (resized).
    ``rewards[k]`` and ``reward_components[k]`` are the env's for turn k; ``info`` is the
    env's final info (``answer``, ``golds``, ``f1``, ``em``, ... for arft envs) plus the
    reset info under ``"reset"``.
    """

    env_id: str
    task_id: str | None
    group: int
    index: int
    seed: int | None
    input_ids: list[int]
    assistant_mask: list[int]
    old_logprobs: list[float]
    turn_spans: list[tuple[int, int]]
    pixel_values: torch.Tensor | None
    image_grid_thw: torch.Tensor | None
    images: list[np.ndarray]
    rewards: list[float]
    reward_components: list[dict[str, float]]
    actions: list[str]
    finish_reasons: list[str]
    terminated: bool
    truncated: bool
    info: dict[str, Any]
    messages: list[dict]
    env_images: list[np.ndarray]
    image_slots: list[dict]
    image_events: list[dict] = field(default_factory=list)
    stale_logprob_turns: list[int] = field(default_factory=list)
    retokenization: dict[str, Any] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)

    @property
    def episode_return(self) -> float:
        return float(sum(self.rewards))

    @property
    def num_turns(self) -> int:
        return len(self.turn_spans)

    def model_input(self) -> ModelInput:
        return ModelInput(list(self.input_ids), self.pixel_values, self.image_grid_thw)

    # ------------------------------------------------------------------ serialisation

    def to_record(self, image_dir: str | Path | None = None, prefix: str = "") -> dict:
        """A JSON-safe dict; the env's images are written as PNG files into ``image_dir``."""
        names = []
        if image_dir is not None:
            from PIL import Image

            image_dir = Path(image_dir)
            image_dir.mkdir(parents=True, exist_ok=True)
            for i, image in enumerate(self.env_images):
                name = f"{prefix}{self.index}_{i}.png"
                Image.fromarray(np.ascontiguousarray(image)).save(image_dir / name)
                names.append(name)
        return {
            "env_id": self.env_id,
            "task_id": self.task_id,
            "group": self.group,
            "index": self.index,
            "seed": self.seed,
            "input_ids": list(self.input_ids),
            "assistant_mask": list(self.assistant_mask),
            "old_logprobs": [round(float(x), 6) for x in self.old_logprobs],
            "turn_spans": [list(s) for s in self.turn_spans],
            "rewards": list(self.rewards),
            "reward_components": self.reward_components,
            "episode_return": self.episode_return,
            "actions": list(self.actions),
            "finish_reasons": list(self.finish_reasons),
            "terminated": self.terminated,
            "truncated": self.truncated,
            "info": self.info,
            "messages": _messages_record(self.messages),
            "image_files": names,
            "image_slots": self.image_slots,
            "image_events": self.image_events,
            "stale_logprob_turns": self.stale_logprob_turns,
            "retokenization": self.retokenization,
            "flags": self.flags,
        }

    @classmethod
    def from_record(
        cls, record: dict, image_dir: str | Path | None = None, policy: Policy | None = None
    ) -> Trajectory:
        """Rebuild a trajectory; with ``policy``, its pixel values are recomputed."""
        env_images = []
        if image_dir is not None:
            from PIL import Image

            for name in record["image_files"]:
                with Image.open(Path(image_dir) / name) as im:
                    env_images.append(np.asarray(im.convert("RGB")))
        shown = [
            resize(env_images[s["image"]], tuple(s["size"]))
            for s in record["image_slots"]
            if s["size"] is not None and env_images
        ]
        pixel_values = grid = None
        if policy is not None and shown:
            pixel_values, grid = policy.process_images(shown)
        messages = [{"role": m["role"], "content": tuple(m["content"])} for m in record["messages"]]
        return cls(
            env_id=record["env_id"],
            task_id=record["task_id"],
            group=record["group"],
            index=record["index"],
            seed=record["seed"],
            input_ids=record["input_ids"],
            assistant_mask=record["assistant_mask"],
            old_logprobs=record["old_logprobs"],
            turn_spans=[tuple(s) for s in record["turn_spans"]],
            pixel_values=pixel_values,
            image_grid_thw=grid,
            images=shown,
            rewards=record["rewards"],
            reward_components=record["reward_components"],
            actions=record["actions"],
            finish_reasons=record["finish_reasons"],
            terminated=record["terminated"],
            truncated=record["truncated"],
            info=record["info"],
            messages=messages,
            env_images=env_images,
            image_slots=record["image_slots"],
            image_events=record["image_events"],
            stale_logprob_turns=record["stale_logprob_turns"],
            retokenization=record["retokenization"],
            flags=record["flags"],
        )


def save_trajectories(trajectories: Sequence[Trajectory], path: str | Path) -> Path:
    """Write ``path`` (JSONL, one trajectory a line) and its images beside it in
    ``<stem>_images/``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image_dir = path.with_name(path.stem + "_images")
    with path.open("w", encoding="utf-8") as f:
        for t in trajectories:
            f.write(json.dumps(t.to_record(image_dir), ensure_ascii=False) + "\n")
    return path


def load_trajectories(path: str | Path, policy: Policy | None = None) -> list[Trajectory]:
    """Read trajectories written by :func:`save_trajectories`."""
    path = Path(path)
    image_dir = path.with_name(path.stem + "_images")
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            out.append(Trajectory.from_record(json.loads(line), image_dir, policy))
    return out


# ---------------------------------------------------------------------- one episode


class EpisodeBuilder:
    """The token-level state of one live episode: feed it each turn with :meth:`record`,
    get the :class:`Trajectory` with :meth:`finish`. :func:`collect` drives one per env slot;
    a caller with turns of its own (an expert, a replay) can drive one directly."""

    def __init__(
        self,
        policy: Policy,
        config: RolloutConfig,
        obs: dict,
        reset_info: dict,
        *,
        env_id: str,
        group: int,
        index: int,
        seed: int | None,
    ):
        self.policy = policy
        self.config = config
        self.env_id, self.group, self.index, self.seed = env_id, group, index, seed
        self.reset_info = _json_safe(reset_info)
        self.task_id = reset_info.get("task_id")
        self.messages: list[dict] = list(obs["messages"])
        self.env_images: list[np.ndarray] = list(obs["images"])
        self.plan = ImagePlan(
            policy.geometry if policy.is_multimodal else None,
            policy.image_budget.max_image_tokens,
        )
        self.slot_image: list[int] = []  # env image index of each image part, in order
        self.assistant_at: list[int] = []  # message index of each assistant turn
        self.generations: list[Generation] = []
        self.rewards: list[float] = []
        self.components: list[dict] = []
        self.actions: list[str] = []
        self.stale_turns: set[int] = set()
        self.flags: list[str] = []
        self.info: dict = {}
        self.terminated = self.truncated = False
        self._segment_cache: dict[tuple, list[int]] = {}
        self._pixel_cache: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}
        self._add_images(self.messages, turn=0)
        self._segments = self._prompt_segments()

    # -------------------------------------------------------------- images

    def _add_images(self, new_messages: Sequence[dict], turn: int) -> bool:
        images = []
        for m in new_messages:
            for part in m["content"]:
                if part["type"] == "image":
                    self.slot_image.append(int(part["index"]))
                    images.append(self.env_images[int(part["index"])])
        rewritten = self.plan.add(images, turn)
        if rewritten:
            self.stale_turns.update(range(1, turn + 1))
        return rewritten

    @property
    def shown(self) -> list[bool]:
        return [not s.dropped for s in self.plan.slots]

    def _pixels(self) -> tuple[torch.Tensor | None, torch.Tensor | None, list[np.ndarray]]:
        shown_images, pixels, grids = [], [], []
        for slot in self.plan.slots:
            if slot.dropped:
                continue
            key = (id(slot.source), slot.size)
            if key not in self._pixel_cache:
                image = resize(slot.source, slot.size)
                self._pixel_cache[key] = (*self.policy.process_images([image]), image)
            pv, grid, image = self._pixel_cache[key]
            pixels.append(pv)
            grids.append(grid)
            shown_images.append(image)
        if not pixels:
            return None, None, []
        return torch.cat(pixels), torch.cat(grids), shown_images

    # -------------------------------------------------------------- text and ids

    def _render(self, messages, add_generation_prompt: bool) -> str:
        return self.policy.render(messages, self.shown, add_generation_prompt)

    def _prompt_segments(self) -> list[tuple[str, list[int]]]:
        """(text, image slot numbers) of every non-generated segment, from the conversation.

        Segment 0 is the opening prompt; segment k (k >= 1) closes assistant turn k and holds
        the env's reply up to the next generation prompt. A finished episode has no segment
        after its last turn.
        """
        msgs = self.messages
        bounds = self.assistant_at + [len(msgs)]
        segments = [(self._render(msgs[: bounds[0]], True), self._slots_in(0, bounds[0]))]
        turns = len(self.assistant_at) - (1 if self.terminated or self.truncated else 0)
        for k in range(turns):
            at, nxt = self.assistant_at[k], bounds[k + 1]
            probe = self._probe(at)
            closed = self._render(probe, False)
            after = self._render([*probe, *msgs[at + 1 : nxt]], True)
            if after.startswith(closed):
                delta = after[len(closed) :]
            else:  # keep going on the new text; the trajectory says what happened
                self._flag(f"template_not_append_only@turn{k + 1}")
                delta = after[_common_prefix(after, closed) :]
            segments.append((self._close(k, closed) + delta, self._slots_in(at + 1, nxt)))
        return segments

    def _probe(self, at: int) -> list[dict]:
        """The conversation up to assistant message ``at``, its text replaced by a sentinel."""
        sentinel = {"role": "assistant", "content": ({"type": "text", "text": _SENTINEL},)}
        return [*self.messages[:at], sentinel]

    def _close(self, k: int, closed: str | None = None) -> str:
        """The template text that closes turn k, less the EOS the model sampled for it."""
        at = self.assistant_at[k]
        if closed is None:
            closed = self._render(self._probe(at), False)
        before = self._render(self.messages[:at], True)
        if not closed.startswith(before + _SENTINEL):
            self._flag(f"template_not_append_only@turn{k + 1}")
        close = closed.split(_SENTINEL, 1)[1] if _SENTINEL in closed else ""
        eos_text = self._eos_text(self.generations[k])
        if eos_text and close.startswith(eos_text):
            close = close[len(eos_text) :]
        return close

    def _eos_text(self, gen: Generation) -> str:
        if gen.finish_reason == "eos" and gen.token_ids:
            return self.policy.tokenizer.convert_ids_to_tokens(gen.token_ids[-1])
        return ""

    def _slots_in(self, start: int, stop: int) -> list[int]:
        """Slot numbers of the image parts in messages[start:stop]."""
        before = sum(1 for m in self.messages[:start] for p in m["content"] if p["type"] == "image")
        inside = sum(
            1 for m in self.messages[start:stop] for p in m["content"] if p["type"] == "image"
        )
        return list(range(before, before + inside))

    def _segment_ids(self, text: str, slots: list[int]) -> list[int]:
        tokens = tuple(self.plan.tokens(self.plan.slots[s]) for s in slots if self.shown[s])
        key = (text, tokens)
        if key not in self._segment_cache:
            self._segment_cache[key] = self.policy.encode(text, tokens)
        return self._segment_cache[key]

    def assemble(self, final: bool = False) -> tuple[list[int], list[int], list[float], list]:
        """(ids, mask, logprobs, turn spans) of the episode so far."""
        ids: list[int] = []
        mask: list[int] = []
        logprobs: list[float] = []
        spans = []
        segments = self._segments[: len(self.generations)] if final else self._segments
        for k, (text, slots) in enumerate(segments):
            seg = self._segment_ids(text, slots)
            ids += seg
            mask += [0] * len(seg)
            logprobs += [0.0] * len(seg)
            if k < len(self.generations):
                gen = self.generations[k]
                spans.append((len(ids), len(ids) + len(gen.token_ids)))
                ids += gen.token_ids
                mask += [1] * len(gen.token_ids)
                logprobs += gen.logprobs
        return ids, mask, logprobs, spans

    def model_input(self) -> ModelInput:
        ids, _, _, _ = self.assemble()
        pixel_values, grid, _ = self._pixels()
        return ModelInput(ids, pixel_values, grid)

    # -------------------------------------------------------------- stepping

    @property
    def turn(self) -> int:
        return len(self.generations)

    def record(
        self,
        gen: Generation,
        obs: dict,
        reward: float,
        terminated: bool,
        truncated: bool,
        info: dict,
    ) -> None:
        """Take in one env step that answered ``gen``."""
        messages = list(obs["messages"])
        prev = len(self.messages)
        if len(messages) <= prev or not _same_prefix(messages, self.messages):
            raise ValueError(
                f"{self.env_id}: the observation after turn {self.turn + 1} does not extend the "
                "conversation; an env's observation must be the whole chat so far "
                "(DESIGN.md, Environment contract)"
            )
        if messages[prev]["role"] != "assistant":
            # The env did not echo the assistant turn: put the model's own text in its place.
            messages.insert(
                prev, {"role": "assistant", "content": ({"type": "text", "text": gen.text},)}
            )
            self._flag("env_did_not_echo_assistant_turn")
        self.generations.append(gen)
        self.assistant_at.append(prev)
        self.messages = messages
        self.env_images = list(obs["images"])
        self.actions.append(gen.text)
        self.rewards.append(float(reward))
        self.components.append(_json_safe(info.get("reward_components", {})))
        self.info = info
        self.terminated, self.truncated = bool(terminated), bool(truncated)
        done = self.terminated or self.truncated
        if not done:
            self._add_images(messages[prev + 1 :], self.turn)
        self._segments = self._prompt_segments()

    def _flag(self, flag: str) -> None:
        if flag not in self.flags:
            self.flags.append(flag)

    def stop(self, reason: str) -> None:
        """End the episode from the agent's side (turn cap, full context)."""
        self.truncated = True
        self._flag(reason)

    # -------------------------------------------------------------- finishing

    def finish(self) -> Trajectory:
        ids, mask, logprobs, spans = self.assemble(final=True)
        pixel_values, grid, shown_images = self._pixels()
        stale = sorted(k for k in self.stale_turns if k <= len(spans))
        if stale:
            fresh = self.policy.sequence_logprobs(
                [ModelInput(ids, pixel_values, grid)],
                [mask],
                temperature=self.config.temperature or 1.0,
            )[0]
            for k in stale:
                start, end = spans[k - 1]
                logprobs[start:end] = fresh[start:end]
        retok = self.check_retokenization(ids) if self.config.check_retokenization else {}
        slots = [
            {"image": img, "turn": s.turn, "size": None if s.dropped else list(s.size)}
            for img, s in zip(self.slot_image, self.plan.slots, strict=True)
        ]
        info = _json_safe(self.info)
        info["reset"] = self.reset_info
        return Trajectory(
            env_id=self.env_id,
            task_id=self.task_id,
            group=self.group,
            index=self.index,
            seed=self.seed,
            input_ids=ids,
            assistant_mask=mask,
            old_logprobs=logprobs,
            turn_spans=spans,
            pixel_values=pixel_values,
            image_grid_thw=grid,
            images=shown_images,
            rewards=self.rewards,
            reward_components=self.components,
            actions=self.actions,
            finish_reasons=[g.finish_reason for g in self.generations],
            terminated=self.terminated,
            truncated=self.truncated,
            info=info,
            messages=self.messages,
            env_images=self.env_images,
            image_slots=slots,
            image_events=[e.to_dict() for e in self.plan.events],
            stale_logprob_turns=stale,
            retokenization=retok,
            flags=self.flags,
        )

    def check_retokenization(self, ids: list[int]) -> dict:
        """Compare the assembled ids with a full re-tokenisation of the conversation."""
        policy = self.policy
        if not self.generations:
            return {"status": "exact", "turns": []}
        last = self.assistant_at[-1]
        reference_text = self._render(self.messages[: last + 1], False)
        slots = self._slots_in(0, last + 1)
        tokens = [self.plan.tokens(self.plan.slots[s]) for s in slots if self.shown[s]]
        reference = policy.encode(reference_text, tokens)
        # The closing text of the last turn is not part of the trajectory; add it to compare.
        close = self._close(len(self.generations) - 1)
        assembled = ids + policy.encode(close)
        if assembled == reference:
            return {"status": "exact", "turns": []}
        # Replace each turn's sampled ids by the canonical ids of the text the env recorded.
        canonical: list[int] = []
        reasons = []
        segments = self._segments[: len(self.generations)]
        for k, (text, seg_slots) in enumerate(segments):
            canonical += self._segment_ids(text, seg_slots)
            gen = self.generations[k]
            content = _text_of(self.messages[self.assistant_at[k]])
            sampled = list(gen.token_ids)
            eos = []
            if gen.finish_reason == "eos":
                eos_id = sampled.pop()
                eos_text = self._eos_text(gen)
                raw_close = self._render(self._probe(self.assistant_at[k]), False)
                if raw_close.split(_SENTINEL, 1)[-1].startswith(eos_text):
                    eos = [eos_id]
            canon = policy.encode(content)
            canonical += canon + eos
            if canon != sampled:
                decoded = policy.decode(sampled)
                if decoded == content:
                    why = "non-canonical tokenisation of the same text"
                elif "\ufffd" in decoded:
                    why = "sampled bytes are not valid UTF-8 (decoded with replacement characters)"
                elif decoded.startswith(content):
                    why = "the env truncated the action"
                else:
                    why = "the env recorded a different text than the model sampled"
                reasons.append({"turn": k + 1, "reason": why})
            if gen.finish_reason == "eos" and not eos:
                reasons.append(
                    {"turn": k + 1, "reason": "sampled EOS the template does not render"}
                )
        canonical += policy.encode(close)
        if canonical == reference:
            return {"status": "explained", "turns": reasons}
        at = next(
            (i for i, (a, b) in enumerate(zip(canonical, reference, strict=False)) if a != b),
            min(len(canonical), len(reference)),
        )
        detail = {
            "status": "unexplained",
            "turns": reasons,
            "first_mismatch": at,
            "assembled": policy.tokenizer.decode(canonical[max(0, at - 20) : at + 20]),
            "reference": policy.tokenizer.decode(reference[max(0, at - 20) : at + 20]),
        }
        raise RetokenizationError(
            f"{self.env_id} episode {self.index}: assembled ids differ from a full "
            f"re-tokenisation at token {at}: {detail}"
        )


# ---------------------------------------------------------------------- the loop


def collect(
    policy: Policy,
    envs,
    config: RolloutConfig | None = None,
    *,
    groups: int | None = None,
    task_ids: Sequence[str] | None = None,
    env_id: str | None = None,
) -> list[Trajectory]:
    """Run ``groups × config.group_size`` episodes and return them ordered by group.

    ``envs`` is a Gymnasium vector env (``gym.make_vec``, sync or async) whose observations
    follow the arft contract. ``task_ids`` fixes each group's task (``len(task_ids)`` groups);
    otherwise the first reset of group g picks its task (episode i resets with seed
    ``config.seed + i``).
    """
    config = config or RolloutConfig()
    if task_ids is not None:
        groups = len(task_ids) if groups is None else groups
        if groups > len(task_ids):
            raise ValueError(f"{groups} groups asked for but only {len(task_ids)} task ids given")
    if groups is None or groups < 0:
        raise ValueError("give groups= (a count) or task_ids=")
    env_id = env_id or _env_id(envs)
    num_envs = int(envs.num_envs)
    mode = _autoreset_mode(envs)
    same_step = mode == "SameStep"
    if (
        mode == "NextStep"
        and isinstance(envs, gym.vector.AsyncVectorEnv)
        and not envs.shared_memory
    ):
        # gymnasium 1.x: such a worker keeps its autoreset flag through a partial reset, so the
        # step after it would silently be a reset.
        raise ValueError(
            "an AsyncVectorEnv without shared memory must use autoreset_mode='Disabled' for "
            "rollouts; build it with agents.rollout.make_envs or pass vector_kwargs="
            "{'shared_memory': False, 'autoreset_mode': 'Disabled'} to gym.make_vec"
        )
    if config.seed is not None:
        torch.manual_seed(config.seed)
    pending = [(g, m) for g in range(groups) for m in range(config.group_size)]
    pending.reverse()
    group_task: dict[int, Any] = {g: task_ids[g] for g in range(groups)} if task_ids else {}
    group_seed: dict[int, int | None] = {}
    slots: list[EpisodeBuilder | None] = [None] * num_envs
    needs_reset = [True] * num_envs  # the sub-env's episode is over (or never started)
    results: dict[tuple[int, int], Trajectory] = {}
    max_context = config.max_context_tokens or policy.max_length
    turn_cap = min(config.max_turns or SAFETY_MAX_TURNS, SAFETY_MAX_TURNS)

    def start(i: int, group: int, member: int) -> None:
        index = group * config.group_size + member
        seed = None if config.seed is None else config.seed + index
        options: dict[str, Any] = {}
        if group in group_task:
            options["task_id"] = group_task[group]
        elif group in group_seed:  # the env names no task ids: the same seed, the same task
            seed = group_seed[group]
        elif seed is None and config.group_size > 1:
            seed = int(np.random.default_rng().integers(2**31))
        obs_i, info_i = _reset_one(envs, i, seed, options)
        if group not in group_task:
            if "task_id" in info_i:
                group_task[group] = info_i["task_id"]
            else:
                group_seed[group] = seed
        slots[i] = EpisodeBuilder(
            policy, config, obs_i, info_i, env_id=env_id, group=group, index=index, seed=seed
        )
        needs_reset[i] = False

    while True:
        for i in range(num_envs):
            if slots[i] is None and pending:
                start(i, *pending.pop())
            elif slots[i] is None and needs_reset[i]:
                _reset_one(envs, i, None, {})  # an idle slot must still take steps
                needs_reset[i] = False
        live = [i for i in range(num_envs) if slots[i] is not None]
        if not live:
            break
        inputs, gen_live = [], []
        for i in live:
            ep = slots[i]
            x = ep.model_input()
            room = max_context - len(x.input_ids)
            if ep.turn >= turn_cap or room < 1:
                ep.stop("max_turns" if ep.turn >= turn_cap else "context_full")
                results[(ep.group, ep.index)] = ep.finish()
                slots[i] = None
                needs_reset[i] = True  # abandon the env's episode
                continue
            inputs.append((x, room))
            gen_live.append(i)
        if not gen_live:
            continue
        max_new = min(config.max_new_tokens, min(room for _, room in inputs))
        generations = policy.generate(
            [x for x, _ in inputs],
            max_new_tokens=max_new,
            temperature=config.temperature,
            top_p=config.top_p,
            stop_strings=config.stop_strings,
            batch_size=config.generation_batch_size,
        )
        actions = [IDLE_ACTION] * num_envs
        for i, gen in zip(gen_live, generations, strict=True):
            actions[i] = gen.text
        obs, rewards, terms, truncs, infos = envs.step(tuple(actions))
        for i in range(num_envs):
            done = bool(terms[i]) or bool(truncs[i])
            ep = slots[i]
            if i in gen_live:
                obs_i, info_i = obs[i], _slot_info(infos, i)
                if done and same_step:
                    obs_i = infos["final_obs"][i]
                    info_i = _slot_info(infos["final_info"], i)
                ep.record(
                    generations[gen_live.index(i)], obs_i, rewards[i], terms[i], truncs[i], info_i
                )
                if done:
                    results[(ep.group, ep.index)] = ep.finish()
                    slots[i] = None
            if done:
                needs_reset[i] = not same_step
    order = sorted(results)
    return [results[k] for k in order]


_Episode = EpisodeBuilder  # the name agents.sft imported first


def make_envs(
    env_id: str,
    num_envs: int,
    vectorization_mode: str = "sync",
    *,
    copy_observations: bool = True,
    **env_kwargs,
):
    """A vector env set up for :func:`collect`: autoreset disabled (the rollout resets each
    slot itself) and, in async mode, no shared memory (the arft spaces are not arrays).

    ``copy_observations=False`` skips the vector env's deep copy of every observation batch
    (a trainer that only reads them saves ~10% of a tiny model's step)."""
    if vectorization_mode not in ("sync", "async"):
        raise ValueError(
            f"vectorization_mode must be 'sync' or 'async', got {vectorization_mode!r}"
        )
    vector_kwargs: dict[str, Any] = {
        "autoreset_mode": gym.vector.AutoresetMode.DISABLED,
        "copy": copy_observations,
    }
    if vectorization_mode == "async":
        vector_kwargs["shared_memory"] = False
    return gym.make_vec(
        env_id,
        num_envs=num_envs,
        vectorization_mode=vectorization_mode,
        vector_kwargs=vector_kwargs,
        wrappers=[WholeInfo],
        **env_kwargs,
    )


class WholeInfo(gym.Wrapper):
    """Pass each sub-env's info dict through a vector env untouched.

    A vector env batches info values into arrays typed by the first env that reports them,
    so an int in one env turns another env's 0.5 into 0. Boxed, the dict travels as one
    object; :func:`collect` unboxes it.
    """

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        return obs, {_BOX: _Boxed(info)}

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, reward, terminated, truncated, {_BOX: _Boxed(info)}


@dataclass(frozen=True)
class _Boxed:
    info: dict


_BOX = "arft_whole_info"


def _reset_one(envs, i: int, seed: int | None, options: dict) -> tuple[dict, dict]:
    """Reset sub-env ``i`` alone; return its observation and info."""
    mask = np.zeros(envs.num_envs, dtype=np.bool_)
    mask[i] = True
    seeds = [None] * envs.num_envs
    seeds[i] = seed
    obs, infos = envs.reset(seed=seeds, options={**options, "reset_mask": mask})
    return obs[i], _slot_info(infos, i)


def _slot_info(infos: dict, i: int) -> dict:
    """The info dict of sub-env ``i`` from a vector env's batched info."""
    boxed = infos.get(_BOX)
    if boxed is not None and infos[f"_{_BOX}"][i]:
        return boxed[i].info
    out = {}
    for key, value in infos.items():
        if key.startswith("_"):
            continue
        present = infos.get(f"_{key}")
        if present is not None and not bool(present[i]):
            continue
        if isinstance(value, dict):
            out[key] = _slot_info(value, i)
        else:
            item = value[i]
            out[key] = item.item() if isinstance(item, np.generic) else item
    return out


def _env_id(envs) -> str:
    spec = getattr(envs, "spec", None)
    return getattr(spec, "id", None) or type(envs).__name__


def _autoreset_mode(envs) -> str:
    mode = getattr(envs, "metadata", {}).get("autoreset_mode")
    return getattr(mode, "value", str(mode)) if mode is not None else "NextStep"


def _same_prefix(new: Sequence[dict], old: Sequence[dict]) -> bool:
    return all(
        a is b or (a["role"] == b["role"] and a["content"] == b["content"])
        for a, b in zip(new[: len(old)], old, strict=True)
    )


def _common_prefix(a: str, b: str) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def _text_of(message: dict) -> str:
    return "".join(p["text"] for p in message["content"] if p["type"] == "text")


def _messages_record(messages: Sequence[dict]) -> list[dict]:
    return [{"role": m["role"], "content": [dict(p) for p in m["content"]]} for m in messages]


def _json_safe(value: Any) -> Any:
    """Info values as plain JSON types (numpy scalars and arrays included)."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist() if value.size <= 64 else f"<array {value.shape} {value.dtype}>"
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)
