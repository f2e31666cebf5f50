"""HotpotQA-v0, 2WikiMultihopQA-v0, MuSiQue-v0, Bamboogle-v0: text-only multi-hop QA with search."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from arft_envs.envs.search import LOCAL_KINDS, SearchEnv, no_corpus_message
from arft_envs.tasks.base import ListTaskSource, TaskSource
from arft_envs.tasks.multihop import DATASETS

ENV_IDS = {
    "hotpotqa": "HotpotQA-v0",
    "2wiki": "2WikiMultihopQA-v0",
    "musique": "MuSiQue-v0",
    "bamboogle": "Bamboogle-v0",
}

# What `arft envs` says of each id: a one-line summary and where its tasks come from.
_OFFLINE = (
    "offline, seeded synthetic questions of this dataset's shapes about a world of fictional "
    "entities of its own (not the dataset's questions); data=FILE for the real dataset"
)
DATASET_SUMMARY = {
    "hotpotqa": (
        "HotpotQA: text-only multi-hop questions (bridge and comparison) answered with a "
        "search tool.",
        _OFFLINE,
    ),
    "2wiki": (
        "2WikiMultihopQA: text-only multi-hop questions (comparison, inference, compositional) "
        "answered with a search tool.",
        _OFFLINE,
    ),
    "musique": (
        "MuSiQue: text-only 2–4-hop composed questions answered with a search tool.",
        _OFFLINE,
    ),
    "bamboogle": (
        "Bamboogle: short text-only compositional questions that search engines answer "
        "poorly, answered with a search tool.",
        _OFFLINE,
    ),
}


class MultihopQAEnv(SearchEnv):
    """
    ## Description
    Text-only multi-hop question answering with a search tool, the out-of-domain benchmarks
    on which the paper evaluates its search agent: HotpotQA, 2WikiMultihopQA, MuSiQue and
    Bamboogle. The question comes with no image; in each turn the agent issues one
    ``<search>`` query (the env really runs it and replies with the top ``k`` results in a
    numbered ``<information>`` block) or answers in ``<answer>``.

    **Without ``data`` these ids serve synthetic questions, not the named dataset**: each id
    has its own seeded world of fictional entities and its dataset's question shapes
    (HotpotQA's bridge and comparison questions, 2Wiki's comparison and inference questions,
    MuSiQue's 2–4-hop chains, Bamboogle's short compositional ones; see
    :mod:`arft_envs.tasks.search.styles`), searched with BM25 over that world's
    encyclopaedia. That keeps every id runnable offline and testable; ``info["source"]`` is
    then ``"synthetic-<dataset>"``. Pass ``data=PATH`` for the real questions.

    With ``data``, the file's format is detected per row (see
    :func:`arft_envs.tasks.multihop.load_multihop`): the official HotpotQA and 2Wiki JSON
    (``context`` paragraphs), MuSiQue JSON Lines (``paragraphs``), Bamboogle CSV, FlashRAG's
    JSON Lines (``id``, ``question``, ``golden_answers``, as the paper used), or a prediction
    file (``query``/``question`` and ``gt``). When the rows carry paragraphs, all of them
    form one local BM25 corpus (the open setting over the whole file, not the 10-paragraph
    distractor setting). Bamboogle, FlashRAG and prediction files carry none: pass a
    ``backend`` (the web, or a local Wikipedia corpus), otherwise ``gym.make`` fails and lists
    the options.

    ## Action Space
    ``Utf8Text(max_action_length)``: an optional ``<think>…</think>`` followed by exactly one
    ``<search>query</search>`` or ``<answer>…</answer>``; with ``action_format="tool_calls"``
    one native ``search`` or ``answer`` call, as MATSearch-v0.

    ## Observation Space
    ``Conversation`` with no images: the system prompt, the user's ``<query> question
    </query>``, then each assistant turn and the tool's reply.

    ## Rewards
    As MATSearch-v0 (see :class:`arft_envs.envs.mat_search.MATSearchEnv`, whose table puts the
    paper's and the live weights side by side): ``format`` + ``query`` for the first N
    searches, ``format`` + ``answer`` (token-set F1) for the answer; in ``reward_mode="live"``
    (default) the searches together are worth 1, a search beyond N costs 0.1 and the answer
    is worth 1 + 2·F1, so the best return (4) needs the right answer.
    N and the query reward come from what the data knows: supporting paragraphs (HotpotQA,
    2Wiki, MuSiQue; the live query reward is 1 when a search retrieves a not-yet-credited
    supporting paragraph from the local corpus), gold queries (MuSiQue decompositions and 2Wiki
    evidences as "subject relation", scored by MiniLM similarity in ``reward_mode="paper"``),
    or neither (Bamboogle, FlashRAG: N = 1 and the query reward is 0).

    ## Starting State
    A question drawn with ``np_random`` (or ``reset(options={"task_id": …})``).

    ## Episode End
    Terminated on ``<answer>`` (or on a format error with ``on_format_error="terminate"``);
    truncated after ``max_turns`` turns (default 5). The final ``info`` holds ``answer``,
    ``golds``, ``f1`` and ``em`` (max over the gold answers and aliases).

    ## Arguments
    - ``dataset``: ``"hotpotqa"``, ``"2wiki"``, ``"musique"`` or ``"bamboogle"`` (set by the
      registered id).
    - ``data``: a file of the dataset (see Description); ``None`` for synthetic questions.
    - ``limit``: keep the first N questions of ``data``.
    - ``backend``, ``k``, ``cache``, ``replay_only``, ``max_result_chars``, ``reward_mode``,
      ``max_turns``, ``on_format_error``, ``max_action_length``: as MATSearch-v0.

    ## Version History
    - v0: initial release. Revised before the first published release (arft 0.1.0), so the
      ids were not bumped: ``reward_mode="live"`` uses the live search weights of
      MATSearch-v0 instead of the paper's (``reward_mode="paper"`` keeps the authors').
    """

    def __init__(
        self,
        dataset: str = "hotpotqa",
        data: str | Path | None = None,
        *,
        limit: int | None = None,
        tasks: TaskSource | None = None,
        **kwargs: Any,
    ):
        if dataset not in DATASETS:
            raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")
        if kwargs.get("mode", "agent") == "stepwise":
            raise ValueError(
                "multi-hop QA sets have no stepwise training rows; use MATSearch-v0 with "
                "mode='stepwise'"
            )
        self.dataset = dataset
        if tasks is None:
            tasks = _make_tasks(dataset, data, limit, kwargs.get("backend"))
        super().__init__(tasks, **kwargs)


def _make_tasks(dataset: str, data, limit, backend) -> TaskSource:
    from arft_envs.tasks.multihop import load_multihop
    from arft_envs.tasks.search.styles import DatasetStyleSearch

    if data is None:
        return DatasetStyleSearch(dataset)
    tasks, corpus = load_multihop(data, dataset, limit)
    if corpus is None and (backend is None or backend in LOCAL_KINDS):
        raise ValueError(
            no_corpus_message(f"{ENV_IDS[dataset]} data {data} (its rows carry no paragraphs)")
        )
    return ListTaskSource(tasks, name=str(data))
