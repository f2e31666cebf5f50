"""SearchEnv: the search family's env base, shared by MATSearch-v0 and the text-only multi-hop
QA envs. It owns the backend plumbing (a backend per env, or BM25/dense over each task's own
corpus, with an optional record/replay cache) and the opening chat; the turns themselves are
the paper's ``<search>`` and ``<answer>`` tools (:mod:`arft_envs.tools.paper`)."""

from __future__ import annotations

import logging
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from arft_envs.core import AgenticEnv
from arft_envs.prompts import SEARCH_SYSTEM_PROMPT
from arft_envs.rewards import format_reward, search_accuracy_reward, step_kind
from arft_envs.spaces import image_part, message, text_part
from arft_envs.tasks.base import ListTaskSource, Task, TaskSource
from arft_envs.tools.base import Tool
from arft_envs.tools.paper import query_similarity, search_tools
from arft_envs.tools.search import BACKEND_SPECS, CachedSearch, make_backend
from arft_envs.tools.search.base import check_k

__all__ = ["LOCAL_KINDS", "SearchEnv", "mode_of", "no_corpus_message"]

logger = logging.getLogger(__name__)
LOCAL_KINDS = ("bm25", "dense")  # backends built over each task's own corpus


def no_corpus_message(what: str) -> str:
    """Why an env cannot search, and the ways to give it something to search."""
    return (
        f"{what} has no documents to search and no search backend was given. Pass one of "
        "backend=" + "; ".join(BACKEND_SPECS[2:]) + ". Add cache=PATH (with replay_only=True "
        "to replay recorded searches offline)."
    )


class SearchEnv(AgenticEnv):
    """Search turns, their rewards, and the backend plumbing shared by the search envs.

    Subclasses only pick their tasks (and their docstring). See :class:`MATSearchEnv` for
    the reward rules.
    """

    def __init__(
        self,
        tasks: TaskSource,
        *,
        backend: Any = None,
        k: int = 4,
        cache: str | Path | None = None,
        replay_only: bool = False,
        max_result_chars: int = 600,
        **kwargs: Any,
    ):
        super().__init__(tasks, **kwargs)
        self.k = check_k(k)
        self.max_result_chars = int(max_result_chars)
        spec = "bm25" if backend is None else backend
        self.local = isinstance(spec, str) and spec.strip().lower() in LOCAL_KINDS
        self._local_kind = spec.strip().lower() if self.local else None
        self._cache = (Path(cache), bool(replay_only)) if cache is not None else None
        if replay_only and cache is None:
            raise ValueError("replay_only=True needs cache=PATH, the recorded searches to replay")
        self._local_backends: OrderedDict[Any, Any] = OrderedDict()
        self.backend = None
        if not self.local and mode_of(kwargs) != "stepwise":
            backend = make_backend(spec)
            if getattr(backend, "api_key", "set") is None and not replay_only:
                raise ValueError(
                    "backend='serper' needs an API key: set SERPER_API_KEY, or pass "
                    "cache=PATH with replay_only=True to replay recorded searches"
                )
            self.backend = self._cached(backend)
        self._check_similarity_available()

    # ------------------------------------------------------------------ backends

    def _cached(self, backend):
        if self._cache is None:
            return backend
        path, replay_only = self._cache
        return CachedSearch(backend, path, replay_only=replay_only)

    def backend_for(self, task: Task):
        """The backend a task's searches go to: the env's own, or one over the task corpus."""
        if self.backend is not None:
            return self.backend
        corpus = task.meta.get("corpus")
        if corpus is None:
            raise ValueError(no_corpus_message(f"task {task.id!r}"))
        key = task.meta.get("corpus_id") or id(corpus)
        backend = self._local_backends.get(key)
        if backend is None:
            backend = self._cached(make_backend(self._local_kind, corpus))
            self._local_backends[key] = backend
            while len(self._local_backends) > 8:
                self._local_backends.popitem(last=False)
        self._local_backends.move_to_end(key)
        return backend

    def _check_similarity_available(self) -> None:
        """Fail at construction, not mid-episode, when MiniLM will be needed but is missing."""
        from arft_envs.tools.search.semantic import semantic_available

        if self.mode == "stepwise":
            needed = True
        else:
            has_queries = getattr(self.tasks, "has_gold_queries", None)
            if has_queries is None and isinstance(self.tasks, ListTaskSource):
                has_queries = any(t.meta.get("gold_queries") for t in self.tasks.tasks)
            needed = bool(has_queries) and (self.reward_mode == "paper" or not self.local)
        problem = semantic_available() if needed else None
        if problem:
            raise ImportError(
                "this configuration scores search queries by MiniLM similarity "
                f"(reward_mode={self.reward_mode!r}, mode={self.mode!r}), but {problem}"
            )

    # ------------------------------------------------------------------ episode hooks

    def _make_tools(self) -> list[Tool]:
        return search_tools()

    def _task_info(self, task: Task, final: bool) -> dict[str, Any]:
        """``source`` (where the task comes from); at the end also ``gold_queries`` (the gold
        trajectory's queries, ``[]`` when unknown)."""
        info: dict[str, Any] = {"source": task.meta.get("source")}
        if final:
            info["gold_queries"] = list(task.meta.get("gold_queries") or ())
        return info

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, info = super().reset(seed=seed, options=options)
        if self.mode != "stepwise":
            self.backend_for(self.task)  # build the task's index now, not inside step()
        return obs, info

    def _initial_messages(self, task: Task, images: list[np.ndarray]) -> list[dict]:
        pictures = [image_part(i) for i in range(len(images))]
        if self.mode == "stepwise":
            text = self.system_prompt(SEARCH_SYSTEM_PROMPT)
            text += "\n" + task.meta.get("prompt_text", task.question)
            return [message("user", *pictures, text_part(text))]
        return [
            message("system", text_part(self.system_prompt(SEARCH_SYSTEM_PROMPT))),
            message("user", *pictures, text_part(f"<query> {task.question} </query>")),
        ]

    def planned_searches(self, task: Task) -> int:
        """How many search turns of an episode can earn reward (the gold trajectory's count,
        else 1)."""
        plan = task.meta.get("gold_plan")
        if plan:
            return max(sum(1 for kind in plan if kind == "search"), 0)
        meta = task.meta
        return max(len(meta.get("gold_queries") or ()), len(meta.get("gold_docs") or ()), 1)

    def _stepwise_components(self, action: str, gold_step: str) -> dict[str, float]:
        return {
            "format": format_reward(action, step_kind(action) or "search", task="search"),
            "accuracy": search_accuracy_reward(action, gold_step, similarity=query_similarity),
        }


def mode_of(kwargs: dict) -> str:
    return kwargs.get("mode", "agent")
