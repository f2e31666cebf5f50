"""The real-model demo's hasty annotator: the scripted expert that, on a fixed share of the
questions, answers after the first search instead of searching the second hop."""

from __future__ import annotations

import zlib
from typing import Any

from arft_envs.tasks.base import Task


class HastyExpert:
    """The scripted expert with a hasty annotator's habit: on a fraction ``hasty`` of the
    tasks (chosen by a hash of the task id, so a task is always annotated the same way) it
    answers right after the first search, with the entity its second search would have been
    about (the bridge entity, or the second entity of a comparison), instead of searching on.
    Other tasks get the gold turns.

    Use as the warm start's demonstrator: ``Trainer(config, expert=HastyExpert(0.5))``.
    """

    def __init__(self, hasty: float):
        if not 0.0 <= hasty <= 1.0:
            raise ValueError(f"hasty must be in [0, 1], got {hasty}")
        self.hasty = float(hasty)
        from arft_envs.experts import ScriptedExpert

        self._gold = ScriptedExpert()

    def is_hasty(self, task: Task) -> bool:
        """Whether this annotator stops early on ``task``."""
        digest = zlib.crc32(task.id.encode())
        return (digest & 0xFFFF) / 0x10000 < self.hasty

    def __call__(self, obs: Any, env: Any) -> str:
        turn = self._gold(obs, env)
        task = env.unwrapped.task
        steps = task.meta["gold_steps"]
        if len(steps) < 3 or turn != steps[1] or not self.is_hasty(task):
            return turn
        return hasty_turn(task) or turn


def hasty_turn(task: Task) -> str | None:
    """The early answer of a 2-hop task: the second gold turn's reading of the first search
    result, then an answer with the subject of the second gold query (the longest entity title
    the query starts with); ``None`` when the task has no such shape."""
    think = task.meta["gold_steps"][1]
    head, sep, _ = think.partition(" Next ")
    query = task.meta["gold_queries"][1]
    titles = {doc.title for doc in task.meta.get("corpus", ())}
    subjects = [t for t in titles if query.startswith(t + " ")]
    if not sep or not subjects:
        return None
    entity = max(subjects, key=len)
    return f"{head} So the answer is {entity}. </think>\n<answer> {entity} </answer>"
