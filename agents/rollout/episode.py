"""The token-in/token-out state of one episode: :class:`EpisodeBuilder`.

An episode's token sequence is built, never re-tokenised:

- the opening prompt is the chat-template text of the first observation;
- each assistant turn is the ids the model sampled, verbatim;
- after a turn, the env's reply (the tool message, with its images) is appended as the
  chat-template *delta*: the text the template adds for the new messages, found by rendering
  the conversation before and after them (with the assistant turn replaced by a sentinel, so
  the model's own text is never re-read). If the model stopped on EOS, the EOS it sampled
  stands for the template's own closing token. In ``action_format="tool_calls"`` every
  render passes the env's tool schemas as ``tools=``; the sentinel stands for the whole turn,
  its native calls included, so the calls the env recorded are never re-rendered into it.

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

The builder is kept whole, :meth:`EpisodeBuilder.check_retokenization` included: the check
reads eight of the builder's private helpers.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from agents.images import ImagePlan, resize
from agents.policy import SENTINEL, Generation, ModelInput, Policy
from agents.rollout.config import RolloutConfig
from agents.rollout.trajectory import Trajectory, _json_safe


class RetokenizationError(AssertionError):
    """The assembled ids differ from a full re-tokenisation in a way no rule explains."""


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
        tools: Sequence[dict] | None = None,
    ):
        self.policy = policy
        self.tools = tuple(tools) if tools else None  # function schemas, tool_calls mode
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
        self.turn_infos: list[dict] = []
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
        return self.policy.render(messages, self.shown, add_generation_prompt, self.tools)

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
        sentinel = {"role": "assistant", "content": ({"type": "text", "text": SENTINEL},)}
        return [*self.messages[:at], sentinel]

    def _close(self, k: int, closed: str | None = None) -> str:
        """The template text that closes turn k, less the EOS the model sampled for it."""
        at = self.assistant_at[k]
        if closed is None:
            closed = self._render(self._probe(at), False)
        before = self._render(self.messages[:at], True)
        if not closed.startswith(before + SENTINEL):
            self._flag(f"template_not_append_only@turn{k + 1}")
        close = closed.split(SENTINEL, 1)[1] if SENTINEL in closed else ""
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
        self.turn_infos.append(_json_safe(info))
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
            turn_infos=self.turn_infos,
        )

    def _turn_text(self, k: int) -> str:
        """The text the template writes for assistant turn k as the env recorded it (its
        content, and its native tool calls in the family's markup), without the closing."""
        at = self.assistant_at[k]
        before = self._render(self.messages[:at], True)
        full = self._render(self.messages[: at + 1], False)
        close = self._render(self._probe(at), False).split(SENTINEL, 1)[-1]
        if full.startswith(before) and full.endswith(close):
            return full[len(before) : len(full) - len(close)]
        return _text_of(self.messages[at])

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
            content = self._turn_text(k)
            sampled = list(gen.token_ids)
            eos = []
            if gen.finish_reason == "eos":
                eos_id = sampled.pop()
                eos_text = self._eos_text(gen)
                raw_close = self._render(self._probe(self.assistant_at[k]), False)
                if raw_close.split(SENTINEL, 1)[-1].startswith(eos_text):
                    eos = [eos_id]
            canon = policy.encode(content)
            canonical += canon + eos
            if canon != sampled:
                decoded = policy.decode(sampled)
                if decoded == content:
                    why = "non-canonical tokenisation of the same text"
                elif "\ufffd" in decoded:
                    why = "sampled bytes are not valid UTF-8 (decoded with replacement characters)"
                elif self.messages[self.assistant_at[k]].get("tool_calls"):
                    why = "the template writes the recorded tool call differently from the sampled text"
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
