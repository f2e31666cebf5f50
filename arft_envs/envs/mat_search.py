"""MATSearch-v0: look at an image, decompose a multi-hop question, search one query per turn,
answer. The search family's shared base is :class:`arft_envs.envs.search.SearchEnv`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from arft_envs.envs.search import LOCAL_KINDS, SearchEnv, mode_of, no_corpus_message
from arft_envs.tasks.base import ListTaskSource, TaskSource
from arft_envs.tasks.search.synthetic import StepwiseSynthetic

__all__ = ["LOCAL_KINDS", "MATSearchEnv", "SearchEnv", "StepwiseSynthetic", "no_corpus_message"]


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
    followed by exactly one ``<search>query</search>`` or ``<answer>…</answer>``. With
    ``action_format="tool_calls"``: ``AssistantTurn``, one native call of ``search``
    (``{"query": str}``) or ``answer`` (``{"answer": str}``), as an assistant message with
    ``tool_calls`` or Qwen/Hermes ``<tool_call>`` text (:mod:`arft_envs.tool_calls`); the
    schemas are ``env.unwrapped.tool_schemas``. Both formats earn the same rewards for the
    same behaviour: a call is scored as the tag turn it stands for, its reasoning as the
    ``<think>``, and a malformed call (bad JSON, unknown name, arguments off the schema, two
    calls) earns format 0 with a tool message saying what to fix.

    ## Observation Space
    ``Conversation``: ``{"messages": (message, …), "images": (uint8 H×W×3, …)}`` — the system
    prompt, the user's image and ``<query> question </query>``, then each assistant turn and
    the tool's reply. In ``mode="stepwise"`` a single user message holds the image and the
    paper's prompt (system prompt, query and the reasoning chain so far).

    ## Rewards
    Each step's reward is the sum of ``info["reward_components"]``. The terms are the paper's
    (a format score of 0/1, plus accuracy); ``reward_mode`` sets their weights, side by side
    (the table in :mod:`arft_envs.rewards`, N = the gold trajectory's searches, 1 when
    unknown):

    =====================  ===========================  ==============================
    step                   ``"paper"``                  ``"live"`` (default)
    =====================  ===========================  ==============================
    each of the first N    ``format`` + ``query``       ``format`` 0.25/N, ``query``
    searches               (each 0–1)                   0.75/N (× the 0–1 scores)
    a search beyond N      0                            ``extra`` −0.1
    ``<answer>``           ``format`` + ``answer`` F1   ``format`` 1 + ``answer`` 2·F1
    best return            2(N+1)                       4
    =====================  ===========================  ==============================

    The live weights make the right answer the optimum: all searches together are worth 1,
    less than half the answer term, so a wrong answer with every hop (2) earns less than the
    right one with a hop less (4 − 1/N) or more (3.9), which earn less than the gold
    trajectory (4). The paper's weights let N searches outweigh the answer.

    - ``<search>``: ``format`` (the paper's strict ``<think>…</think>\\s*<search>…</search>``)
      + ``query``, for the first N search turns; later searches earn 0 (``paper``) or cost
      0.1 (``live``), so searching more never pays.
      - ``reward_mode="paper"``: the i-th search is scored against the i-th gold query:
        MiniLM cosine similarity, set to 0 below 0.5.
      - ``reward_mode="live"`` (default): the search is scored by what it *retrieved*. When
        the task knows which documents state each hop's fact (synthetic worlds, datasets
        with supporting paragraphs) and the backend searches that corpus, ``query`` is 1 if
        the search's best result is a gold document of a hop not yet credited, and that
        document has not earned a credit before; else 0
        (:func:`arft_envs.rewards.retrieval_credit`). A search earns one hop at
        most and repeating a search earns nothing. Otherwise, with gold
        queries (e.g. a web backend), it is the paper's thresholded similarity to the
        best-matching gold query not yet credited, in any order. With neither, it is 0.
    - ``<answer>``: ``format`` + ``answer``: token-set F1 against the gold answers (``live``:
      the evaluation metric, with F1 = 1 on exact match; ``paper``: the training F1, without
      that override).
    - A format error earns 0 and the tool replies with what was wrong.
    The gold trajectory (N searches then the answer) returns 2·(N+1) in ``paper`` mode, the
    paper's total for the same steps, and 4 in ``live`` mode. In ``mode="stepwise"`` the
    reward is the paper's in both modes, against the row's gold step: ``format`` +
    ``accuracy`` (similarity for a search step, F1 for an answer step).

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
    - ``extra_tools``, ``tool_timeout_s``: as MATCoding-v0; a search's default deadline is
      30 s, every retry of a web backend included.

    ## Info
    ``reset()``: ``task_id``, ``split``, ``source``. The episode end adds ``answer``,
    ``golds``, ``f1``, ``em``, ``episode_return``, ``turns`` and ``gold_queries`` (the gold
    trajectory's queries; ``[]`` when unknown) — gold facts appear only there.

    ## Version History
    - v0: initial release. Revised before the first published release (arft 0.1.0), so the
      id was not bumped: the live search weights above replaced the paper's weights in
      ``reward_mode="live"`` (until then a planned search and the answer were each worth up
      to 2, so searching steered the return more than answering right). ``reward_mode=
      "paper"`` and ``mode="stepwise"`` keep the authors' rewards; pass ``reward_mode=
      "paper"`` for the earlier live totals' scale.
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
