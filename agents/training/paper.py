"""The Visual-ARFT authors' training recipe, where it differs from a plain GRPO run: the coding
trainer's ground-truth injection (``inject_gold``).

The recipe itself is a config (``configs/paper_coding.yaml``, ``configs/paper_search.yaml``):
stepwise rows (``env_kwargs: {mode: stepwise}``, one step of a gold trajectory per prompt,
the earlier gold steps in the prompt), ``reward_mode: paper``, G = 8, β = 0.04, temperature
1.0, one update per batch. What a config cannot say is the injection, done here.

**The quirk, reproduced on purpose** (paper.md §3.6). The authors' coding trainer
(``Qwen2VLGRPOTrainer_AID.compute_loss``) does, after decoding the G completions of a prompt,
``completions[random.randint(0, 7)]['content'] = inputs[0]['gt']``: one completion's *text*
is replaced by the row's reference step ``gt`` before the rewards are computed, while that
completion's token ids, log-probs and KL stay those of what the model actually sampled. The
high reward (2.0 on a problem or answer step, 1.9 on a code step) and the advantage it earns
are therefore pushed onto whatever tokens the model sampled at that index; this is not an
off-policy update on the gold tokens. It also raises the group's mean and std, so every other
member's advantage drops. :class:`GoldInjector` does exactly that for each group: one member,
drawn with the step's seed, has its action text replaced by the task's ``gt`` (``meta["gt"]``,
else ``meta["gold_step"]``, which for the synthetic stepwise rows is the full gold turn) and
its reward recomputed by a real ``step(gt)`` of a private copy of the env reset on the same
task; ``input_ids``, ``assistant_mask`` and ``old_logprobs`` are untouched. The trajectory is
flagged ``gold_injected`` and ``info["sampled_action"]`` keeps the text the model wrote. (The
authors' search trainer does not inject; the option is meant for coding, as they use it.)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

INJECTED_FLAG = "gold_injected"


def injected_members(seed: int | None, groups: int, group_size: int) -> list[int]:
    """The member of each group whose text is replaced: uniform over the group, drawn from
    the rollout's seed (``random.randint(0, G - 1)`` in the authors' code)."""
    rng = np.random.default_rng([0x601D, seed or 0])
    return [int(m) for m in rng.integers(group_size, size=groups)]


def gold_text(task: Any) -> str:
    """The reference completion of a stepwise task: ``meta["gt"]``, else ``meta["gold_step"]``."""
    meta = task.meta
    text = meta.get("gt") or meta.get("gold_step")
    if not text:
        raise ValueError(
            f"task {task.id!r} has no gold step (meta 'gt' or 'gold_step'); inject_gold needs "
            "the env's stepwise rows (env_kwargs: {mode: stepwise})"
        )
    return str(text)


class GoldInjector:
    """Replaces one completion per group by the row's ``gt`` (see the module docstring).
    ``env`` is a single (not vectorised) env built like the rollout's, used to score the gold
    text with its own ``step``."""

    def __init__(self, env: Any, group_size: int):
        self.env = env
        self.group_size = group_size
        self.count = 0

    def inject(self, trajectories: Sequence[Any], seed: int | None) -> int:
        """Inject into each group of ``trajectories`` (contiguous groups of ``group_size``);
        returns the number of injected trajectories."""
        size = self.group_size
        groups = len(trajectories) // size
        n = 0
        for g, member in enumerate(injected_members(seed, groups, size)):
            self._replace(trajectories[g * size + member])
            n += 1
        self.count += n
        return n

    def _replace(self, t: Any) -> None:
        env = self.env
        _, reset_info = env.reset(options={"task_id": t.task_id})
        gold = gold_text(env.unwrapped.task)
        _, reward, _, _, info = env.step(gold)
        sampled = t.actions[0] if t.actions else ""
        t.actions = [gold, *t.actions[1:]]
        t.rewards = [float(reward), *t.rewards[1:]]
        t.reward_components = [dict(info.get("reward_components", {})), *t.reward_components[1:]]
        messages = list(t.messages)
        for k, m in enumerate(messages):
            if m["role"] == "assistant":  # the first (stepwise: the only) turn shows the gold
                messages[k] = {"role": "assistant", "content": ({"type": "text", "text": gold},)}
                break
        t.messages = messages
        final = {k: v for k, v in info.items() if k in ("answer", "f1", "em", "episode_return")}
        t.info.update(final, sampled_action=sampled, gold_injected=True)
        if INJECTED_FLAG not in t.flags:
            t.flags.append(INJECTED_FLAG)

    def close(self) -> None:
        self.env.close()


def config_problems(cfg: Any) -> list[str]:
    """What is wrong with ``inject_gold`` in ``cfg``, with the fix."""
    if not cfg.inject_gold:
        return []
    mode = (cfg.env_kwargs or {}).get("mode", "agent")
    if mode != "stepwise":
        return [
            "inject_gold replaces one completion of a stepwise row by the row's gt (the "
            f"authors' coding trainer); it needs env_kwargs mode: stepwise, got mode {mode!r}"
        ]
    return []
