"""Loaders for text-only multi-hop QA files: HotpotQA, 2Wiki, MuSiQue, Bamboogle, FlashRAG.

Every loader returns :class:`~arft_envs.tasks.base.Task` records, and every bad file fails
with a :class:`~arft_envs.errors.DatasetError` naming the file, the row and the field.

The visual MAT-Search readers, ``load_mat_search`` and ``load_search_rows``, live in
:mod:`arft_envs.tasks.search.official` (re-exported here for one release).

- :func:`load_multihop`: text-only multi-hop QA, the format detected per row:

  =================  ==========================================================  ============
  format             fields                                                      context
  =================  ==========================================================  ============
  HotpotQA           ``_id``, ``question``, ``answer``, ``supporting_facts``     ``context``
  2WikiMultihopQA    as HotpotQA, plus ``evidences`` (subject, relation, object)  ``context``
  MuSiQue (jsonl)    ``id``, ``question``, ``answer``, ``answer_aliases``,        ``paragraphs``
                     ``question_decomposition``
  Bamboogle (csv)    ``Question``, ``Answer``                                    none
  FlashRAG (jsonl)   ``id``, ``question``, ``golden_answers``                    in ``metadata``
  predictions        ``query`` or ``question``, ``gt`` (a str or a list)          none
  =================  ==========================================================  ============

  ``context`` may be HotpotQA's list of ``[title, [sentences…]]`` or the Hugging Face
  datasets layout ``{"title": [...], "sentences": [[...]]}``. When rows carry paragraphs, all
  of them (deduplicated over the whole file) form one local corpus for BM25, returned beside
  the tasks; then each task also gets ``meta["gold_docs"]`` (the urls of its supporting
  paragraphs, per hop). MuSiQue decompositions and 2Wiki evidences become
  ``meta["gold_queries"]`` ("Green performer", then "Steve Hillage spouse"). MuSiQue rows
  marked ``answerable: false`` are skipped.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from arft_envs.errors import DatasetError
from arft_envs.tasks.base import Task
from arft_envs.tasks.rows import Row, read_rows
from arft_envs.tasks.search.official import load_mat_search, load_search_rows
from arft_envs.tools.search.base import Document

DATASETS = ("hotpotqa", "2wiki", "musique", "bamboogle")

__all__ = ["DATASETS", "load_mat_search", "load_multihop", "load_search_rows", "read_rows"]


# ----------------------------------------------------------------------------- multi-hop QA


def _paragraphs(row: Row) -> list[tuple[str, str, Any]] | None:
    """``(title, text, key)`` of a row's context paragraphs, or ``None`` when it has none;
    ``key`` is what supporting facts refer to (the title, or MuSiQue's ``idx``)."""
    key, paragraphs = row.find("paragraphs")
    if key is not None:
        if not isinstance(paragraphs, list):
            row.fail("expected a list of paragraphs", key)
        out = []
        for i, p in enumerate(paragraphs):
            if not isinstance(p, dict) or "paragraph_text" not in p:
                row.fail(f"paragraph {i} needs 'paragraph_text'", key)
            out.append((str(p.get("title", "")), str(p["paragraph_text"]), p.get("idx", i)))
        return out
    key, context = row.find("context")
    if key is None:
        return None
    if isinstance(context, dict) and "title" in context and "sentences" in context:
        context = list(zip(context["title"], context["sentences"], strict=False))
    if not isinstance(context, list):
        row.fail("expected [[title, [sentences…]], …] or {'title': [...], 'sentences': [...]}", key)
    out = []
    for i, item in enumerate(context):
        if not isinstance(item, (list, tuple)) or len(item) != 2:
            row.fail(f"paragraph {i}: expected [title, [sentences…]]", key)
        title, sentences = item
        if isinstance(sentences, str):
            sentences = [sentences]
        text = " ".join(str(s).strip() for s in sentences if str(s).strip())
        out.append((str(title), text, str(title)))
    return out


def _support(row: Row, paragraphs: list[tuple[str, str, Any]]) -> list[Any]:
    """The keys of the supporting paragraphs, in hop order where the format gives one."""
    _, steps = row.find("question_decomposition")
    if isinstance(steps, list) and steps:
        keys = [s.get("paragraph_support_idx") for s in steps if isinstance(s, dict)]
        if all(k is not None for k in keys):
            return keys
    if paragraphs and isinstance(paragraphs[0][2], int):  # MuSiQue without decomposition
        _, raw = row.find("paragraphs")
        return [p.get("idx", i) for i, p in enumerate(raw) if p.get("is_supporting")]
    _, facts = row.find("supporting_facts")
    if isinstance(facts, dict) and "title" in facts:
        facts = list(
            zip(facts["title"], facts.get("sent_id", [0] * len(facts["title"])), strict=False)
        )
    if isinstance(facts, list):
        titles = [f[0] for f in facts if isinstance(f, (list, tuple)) and f]
        return list(dict.fromkeys(str(t) for t in titles))
    return []


def _gold_queries(row: Row) -> list[str]:
    """MuSiQue decompositions with ``#k`` filled in, or 2Wiki evidences as "subject relation"."""
    _, steps = row.find("question_decomposition")
    if isinstance(steps, list) and steps and all(isinstance(s, dict) for s in steps):
        answers = [str(s.get("answer", "")) for s in steps]
        queries = []
        for step in steps:
            text = str(step.get("question", ""))
            text = re.sub(r"#(\d+)", lambda m: _nth(answers, m.group(1)), text)
            queries.append(" ".join(text.replace(">>", " ").split()))
        return [q for q in queries if q]
    _, evidences = row.find("evidences")
    if isinstance(evidences, list):
        triples = [e for e in evidences if isinstance(e, (list, tuple)) and len(e) == 3]
        return [f"{s} {r}" for s, r, _ in triples]
    return []


def _nth(answers: list[str], number: str) -> str:
    i = int(number) - 1
    return answers[i] if 0 <= i < len(answers) else f"#{number}"


def load_multihop(
    path: str | Path,
    dataset: str | None = None,
    limit: int | None = None,
) -> tuple[list[Task], list[Document] | None]:
    """Tasks of a multi-hop QA file and, when its rows carry paragraphs, their pooled corpus.

    ``dataset`` (one of :data:`DATASETS`) names the source in ``meta`` and corpus urls;
    ``limit`` keeps the first rows only (the corpus is still built from every row, so it
    does not depend on ``limit``).
    """
    if dataset is not None and dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")
    path = Path(path)
    name = dataset or path.stem
    corpus: list[Document] = []
    doc_index: dict[tuple[str, str], int] = {}
    tasks: list[Task] = []
    has_context = False
    for position, (number, raw) in enumerate(read_rows(path)):
        row = Row(path, number, raw, kind="an object")
        _, answerable = row.find("answerable")
        if answerable is False:
            continue
        question = row.find_text("question", "query")
        answers = row.answers()
        meta: dict[str, Any] = {"source": name}
        _, kind = row.find("type")
        if isinstance(kind, str):
            meta["type"] = kind
        queries = _gold_queries(row)
        if queries:
            meta["gold_queries"] = queries
        paragraphs = _paragraphs(row)
        if paragraphs:
            has_context = True
            urls = {}
            for title, text, key in paragraphs:
                doc_key = (title, text)
                if doc_key not in doc_index:
                    doc_index[doc_key] = len(corpus)
                    corpus.append(Document(title, text, f"{name}://doc/{len(corpus)}"))
                urls.setdefault(key, []).append(corpus[doc_index[doc_key]].url)
            gold = [urls[k] for k in _support(row, paragraphs) if k in urls]
            if gold:
                meta["gold_docs"] = gold
        if limit is None or len(tasks) < limit:
            tasks.append(Task(row.find_ident(position), question, answers, [], "test", meta))
    if not tasks:
        raise DatasetError(path, "no usable rows")
    if has_context:
        corpus_id = f"{name}:{path.resolve()}:{len(corpus)}"
        for task in tasks:
            task.meta["corpus"] = corpus
            task.meta["corpus_id"] = corpus_id
    return tasks, corpus if has_context else None
