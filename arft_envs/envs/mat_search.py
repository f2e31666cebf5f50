"""MATSearch-v0: look at an image, decompose a multi-hop question, search one query per turn,
answer. :class:`SearchEnv` holds the search-turn logic that the text-only multi-hop QA envs
(``multihop_qa``) share."""

from __future__ import annotations

import logging
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from arft_envs.actions import Answer, ToolCall
from arft_envs.core import AgenticEnv, ToolOutcome
from arft_envs.prompts import SEARCH_SYSTEM_PROMPT
from arft_envs.rewards import (
    f1_set,
    format_reward,
    search_accuracy_reward,
    search_query_reward,
    step_kind,
)
from arft_envs.spaces import image_part, message, text_part
from arft_envs.tasks.base import ListTaskSource, Task, TaskSource
from arft_envs.tasks.search.synthetic import StepwiseSynthetic
from arft_envs.tools.search import (
    BACKEND_SPECS,
    CachedSearch,
    SearchError,
    SearchResult,
    format_results,
    format_search_error,
    make_backend,
)
from arft_envs.tools.search.base import check_k, retrieval_credit

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

    action_tags = ("search", "answer")

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
        self._searches = 0
        self._credited: set[int] = set()  # gold hops (or gold queries) already rewarded
        self._used: set[str] = set()  # documents that already earned a query reward

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

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        self._searches = 0
        self._credited = set()
        self._used = set()
        obs, info = super().reset(seed=seed, options=options)
        if self.mode != "stepwise":
            self.backend_for(self.task)  # build the task's index now, not inside step()
        info["source"] = self.task.meta.get("source")
        return obs, info

    def _initial_messages(self, task: Task, images: list[np.ndarray]) -> list[dict]:
        pictures = [image_part(i) for i in range(len(images))]
        if self.mode == "stepwise":
            text = SEARCH_SYSTEM_PROMPT + "\n" + task.meta.get("prompt_text", task.question)
            return [message("user", *pictures, text_part(text))]
        return [
            message("system", text_part(SEARCH_SYSTEM_PROMPT)),
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

    def _run_tool(self, call: ToolCall, action: str) -> ToolOutcome:
        try:
            results = list(self.backend_for(self.task).search(call.argument, self.k))
            text, status = format_results(results, self.max_result_chars), "ok"
        except SearchError as err:
            results, text, status = [], format_search_error(err), err.kind
        except Exception as err:  # a third-party backend's bug must not end the run
            logger.warning("search backend raised %r", err, exc_info=True)
            results, text, status = [], format_search_error(err), "error"
        index = self._searches
        self._searches += 1
        components = {"format": 0.0, "query": 0.0}
        if index < self.planned_searches(self.task):
            components["format"] = format_reward(action, "search", task="search")
            components["query"] = self._query_reward(call.argument, results, index)
        return ToolOutcome(text, (), status, components)

    def _query_reward(self, query: str, results: list[SearchResult], index: int) -> float:
        golds = list(self.task.meta.get("gold_queries") or ())
        if self.reward_mode == "paper":
            if index >= len(golds):
                return 0.0
            return search_query_reward(_similarity(query, golds[index]))
        gold_docs = self.task.meta.get("gold_docs")
        if gold_docs and self.local:
            urls = [r.url for r in results]
            return float(retrieval_credit(urls, gold_docs, self._used, self._credited) is not None)
        remaining = [i for i in range(len(golds)) if i not in self._credited]
        if not remaining:
            return 0.0
        for i in remaining:  # an exact gold query needs no model
            if " ".join(query.split()) == " ".join(golds[i].split()):
                self._credited.add(i)
                return 1.0
        from arft_envs.tools.search.semantic import query_similarities

        sims = query_similarities([query] * len(remaining), [golds[i] for i in remaining])
        best = int(np.argmax(sims))
        reward = search_query_reward(float(sims[best]))
        if reward > 0:
            self._credited.add(remaining[best])
        return reward

    def _answer_components(self, answer: Answer, action: str, f1: float, em: float) -> dict:
        if self.reward_mode == "paper":
            accuracy = max((f1_set(answer.text, g) for g in self.task.answers), default=0.0)
        else:
            accuracy = f1
        return {"format": format_reward(action, "answer", task="search"), "answer": accuracy}

    def _stepwise_components(self, action: str, gold_step: str) -> dict[str, float]:
        return {
            "format": format_reward(action, step_kind(action) or "search", task="search"),
            "accuracy": search_accuracy_reward(action, gold_step, similarity=_similarity),
        }


def _similarity(query: str, gold: str) -> float:
    from arft_envs.tools.search.semantic import query_similarity

    return query_similarity(query, gold)


def mode_of(kwargs: dict) -> str:
    return kwargs.get("mode", "agent")


class MATSearchEnv(SearchEnv):
    """
    ## Description
    The agentic search task of Visual-ARFT (MAT-Search). Each task is an image and a
    multi-hop question about what it shows; answering needs knowledge the model must look
    up. In each turn the agent either issues one text query in ``<search>`` — the env
    **really runs it** on a search backend and replies with the top ``k`` results — or
    answers in ``<answer>``. By default the tasks come from an unlimited, seeded synthetic
    world of fictional companies, products, cities, festivals and universities (the image is
    their rendered logo, label, sign, poster or banner; see
    :mod:`arft_envs.tasks.search_world`), searched with BM25 over the world's own
    encyclopaedia, so the env works offline with no key. ``data=PATH`` loads the official
    MAT-Search benchmark, to be searched on the web (``backend="serper"``) or a local corpus.

    The tool message is a numbered ``<information>`` block (``1. Title: …`` /
    ``Content: …``; see :func:`arft_envs.tools.search.format_results`). A failed search (a
    timeout, HTTP 429/5xx after retries, a malformed answer, a replay-cache miss) comes back
    as an ``<information>`` block saying what failed; the episode goes on and
    ``info["tool_failures"]`` counts it.

    ## Action Space
    ``Utf8Text(max_action_length)``: one assistant turn, an optional ``<think>…</think>``
    followed by exactly one ``<search>query</search>`` or ``<answer>…</answer>``.

    ## Observation Space
    ``Conversation``: ``{"messages": (message, …), "images": (uint8 H×W×3, …)}`` — the system
    prompt, the user's image and ``<query> question </query>``, then each assistant turn and
    the tool's reply. In ``mode="stepwise"`` a single user message holds the image and the
    paper's prompt (system prompt, query and the reasoning chain so far).

    ## Rewards
    The paper's rewards (a format reward of 0/1, plus accuracy); each step's reward is the sum
    of ``info["reward_components"]``:
    - ``<search>``: ``format`` (the paper's strict ``<think>…</think>\\s*<search>…</search>``)
      + ``query``, for the first N search turns, where N is the number of searches of the
      gold trajectory (1 when unknown); later searches earn 0, so searching more never pays.
      - ``reward_mode="paper"``: the i-th search is scored against the i-th gold query:
        MiniLM cosine similarity, set to 0 below 0.5.
      - ``reward_mode="live"`` (default): the search is scored by what it *retrieved*. When
        the task knows which documents state each hop's fact (synthetic worlds, datasets
        with supporting paragraphs) and the backend searches that corpus, ``query`` is 1 if
        the search's best result is a gold document of a hop not yet credited, and that
        document has not earned a credit before; else 0
        (:func:`arft_envs.tools.search.base.retrieval_credit`). A search earns one hop at
        most and repeating a search earns nothing. Otherwise, with gold
        queries (e.g. a web backend), it is the paper's thresholded similarity to the
        best-matching gold query not yet credited, in any order. With neither, it is 0.
    - ``<answer>``: ``format`` + ``answer``: token-set F1 against the gold answers (``live``:
      the evaluation metric, with F1 = 1 on exact match; ``paper``: the training F1, without
      that override).
    - A format error earns 0 and the tool replies with what was wrong.
    The gold trajectory (N searches then the answer) earns 2 per turn in both modes: a return
    of 2·(N+1), the paper's total for the same steps. In ``mode="stepwise"`` the reward is the
    paper's, against the row's gold step: ``format`` + ``accuracy`` (similarity for a search
    step, F1 for an answer step).

    ## Starting State
    A task drawn with ``np_random`` (or ``reset(options={"task_id": …})``).

    ## Episode End
    Terminated on ``<answer>`` (or on a format error with ``on_format_error="terminate"``);
    truncated after ``max_turns`` turns (default 5, as the paper's evaluation). The final
    ``info`` holds ``answer``, ``golds``, ``f1`` and ``em``.

    ## Arguments
    - ``data``: path to the official ``MAT-Search.json`` (images beside it or in
      ``image_root``), or with ``mode="stepwise"`` an ``rft_agent_search_20.json``-style file;
      ``None`` (default) uses the synthetic world.
    - ``split``: ``"simple"`` (1 hop), ``"hard"`` (2–3 hops) or ``None`` (both). The official
      file is split by position, first half simple.
    - ``backend``: ``"bm25"`` (default; BM25 over the tasks' own corpus), ``"dense"`` (MiniLM
      over it), ``"bm25:PATH"``, ``"dense:PATH"``, ``"serper"`` (needs ``SERPER_API_KEY``),
      or any object with ``search(query, k)``. The official benchmark has no corpus, so it
      needs one of the last four.
    - ``k``: results per search (default 4, the paper's). ``max_result_chars``: per result.
    - ``cache``: a sqlite file recording every search; ``replay_only=True`` only replays it.
    - ``mode``: ``"agent"`` (default) or ``"stepwise"`` (the paper's one-step training rows).
    - ``reward_mode``: ``"live"`` (default) or ``"paper"`` (needs ``arft[semantic]``).
    - ``max_turns``, ``on_format_error`` (``"continue"``/``"terminate"``),
      ``max_action_length``, ``share_images``.

    ## Version History
    - v0: initial release.
    """

    def __init__(
        self,
        data: str | Path | None = None,
        split: str | None = None,
        *,
        image_root: str | Path | None = None,
        tasks: TaskSource | None = None,
        **kwargs: Any,
    ):
        if split not in (None, "all", "simple", "hard"):
            raise ValueError(f"split must be 'simple', 'hard' or None, got {split!r}")
        mode = mode_of(kwargs)
        if tasks is None:
            tasks = _make_tasks(data, None if split == "all" else split, image_root, mode)
        if (
            mode != "stepwise"
            and kwargs.get("backend") in (None, *LOCAL_KINDS)
            and isinstance(tasks, ListTaskSource)
            and not all("corpus" in t.meta for t in tasks.tasks)
        ):
            raise ValueError(no_corpus_message(f"MATSearch-v0 data {data}"))
        super().__init__(tasks, **kwargs)


def _make_tasks(data, split, image_root, mode) -> TaskSource:
    from arft_envs.tasks import multihop, search_world

    if data is None:
        source = search_world.SyntheticSearch(split=split or "all")
        return StepwiseSynthetic(source) if mode == "stepwise" else source
    if mode == "stepwise":
        return ListTaskSource(multihop.load_search_rows(data, image_root), name=str(data))
    return ListTaskSource(multihop.load_mat_search(data, split, image_root), name=str(data))
