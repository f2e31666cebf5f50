"""Loaders for multi-hop QA files: MAT-Search (visual), and HotpotQA, 2Wiki, MuSiQue, Bamboogle.

Every loader returns :class:`~arft_envs.tasks.base.Task` records, and every bad file fails
with a :class:`~arft_envs.tasks.base.DatasetError` naming the file, the row and the field.

- :func:`load_mat_search`: the official MAT-Search benchmark (``id``, ``question``,
  ``answer``, ``image_path``); items are split by position, first half ``simple`` and second
  half ``hard`` (75/75 for the 150 official items) unless a row has ``split``.
- :func:`load_search_rows`: the paper's one-row-per-step training file
  (``rft_agent_search_20.json``: ``image_path``, ``problem``, ``solution``) for stepwise replay.
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

import csv
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from arft_envs.rewards import step_kind
from arft_envs.tasks.base import DatasetError, Task
from arft_envs.tools.search.base import Document

DATASETS = ("hotpotqa", "2wiki", "musique", "bamboogle")


# ----------------------------------------------------------------------------- reading files


def read_rows(path: str | Path) -> Iterator[tuple[int, Any]]:
    """``(row number, row)`` of a JSON list, a JSON Lines file, or a CSV with a header."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(path, "file not found")
    if path.is_dir():
        raise DatasetError(path, "is a directory; pass the path of the data file")
    try:
        if path.suffix.lower() == ".csv":
            with path.open(encoding="utf-8-sig", newline="") as f:
                yield from enumerate(csv.DictReader(f))
            return
        with path.open(encoding="utf-8") as f:
            first = f.read(1)
            while first.isspace():
                first = f.read(1)
            f.seek(0)
            if first == "[":
                try:
                    rows = json.load(f)
                except json.JSONDecodeError as err:
                    raise DatasetError(
                        path, f"not valid JSON: {err.msg} at line {err.lineno}, column {err.colno}"
                    ) from None
                yield from enumerate(rows)
                return
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as err:
                    raise DatasetError(
                        path, f"not valid JSON Lines: {err.msg}", row=f"line {number}"
                    ) from None
                yield number, row
    except (OSError, UnicodeDecodeError) as err:
        raise DatasetError(path, f"cannot read the file ({err})") from None


class _Row:
    """Field access on one row; failures name the file, the row and the field."""

    def __init__(self, path: Path, number: int, row: Any):
        self.path, self.number = path, number
        if not isinstance(row, dict):
            self.fail(f"expected an object, got a {type(row).__name__}")
        self.row = row
        meta = row.get("metadata")
        self.meta = meta if isinstance(meta, dict) else {}

    def fail(self, message: str, field: str | None = None):
        raise DatasetError(self.path, message, row=self.number, field=field)

    def get(self, *names: str) -> tuple[str | None, Any]:
        """The first present field among ``names`` (case-insensitive), in the row or its
        ``metadata``."""
        for source in (self.row, self.meta):
            lowered = {str(k).lower(): k for k in source}
            for name in names:
                key = lowered.get(name.lower())
                if key is not None and source[key] not in (None, ""):
                    return key, source[key]
        return None, None

    def text(self, *names: str) -> str:
        key, value = self.get(*names)
        if key is None:
            self.fail(
                f"missing field; expected one of {list(names)} (the row has {sorted(self.row)})"
            )
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            self.fail(f"expected a string, got {type(value).__name__}", key)
        if not str(value).strip():
            self.fail("is empty", key)
        return str(value).strip()

    def answers(self) -> list[str]:
        key, value = self.get("golden_answers", "answers", "answer", "gt")
        if key is None:
            self.fail(
                "missing gold answer; expected one of ['golden_answers', 'answers', 'answer', "
                f"'gt'] (the row has {sorted(self.row)})"
            )
        values = value if isinstance(value, list) else [value]
        if not values or any(isinstance(v, (bool, dict, list)) or v is None for v in values):
            self.fail(f"expected a string or a list of strings, got {value!r:.60}", key)
        _, aliases = self.get("answer_aliases")
        if isinstance(aliases, list):
            values = values + [a for a in aliases if isinstance(a, (str, int, float))]
        out = list(dict.fromkeys(str(v).strip() for v in values if str(v).strip()))
        if not out:
            self.fail("is empty", key)
        return out

    def ident(self, default: int) -> str:
        key, value = self.get("_id", "id", "qid")
        if key is None:
            return str(default)
        if isinstance(value, (bool, dict, list)):
            self.fail(f"expected an integer or a string, got {type(value).__name__}", key)
        return str(value)


# ----------------------------------------------------------------------------- MAT-Search


def load_mat_search(
    path: str | Path,
    split: str | None = None,
    image_root: str | Path | None = None,
    check_images: bool = True,
) -> list[Task]:
    """The official MAT-Search benchmark (or a file :func:`~arft_envs.tasks.search_world.
    write_mat_search` wrote). ``split``: ``"simple"``, ``"hard"`` or ``None`` (all). Optional
    ``gold_queries``/``gold_steps`` fields are kept in ``meta``."""
    if split not in (None, "simple", "hard"):
        raise ValueError(f"split must be 'simple', 'hard' or None, got {split!r}")
    path = Path(path)
    root = Path(image_root) if image_root is not None else path.parent
    rows = list(read_rows(path))
    tasks = []
    for position, (number, raw) in enumerate(rows):
        row = _Row(path, number, raw)
        image = root / row.text("image_path")
        if check_images and not image.is_file():
            row.fail(
                f"image file not found: {image} (paths are relative to {root}; pass "
                "image_root=... to look elsewhere, or check_images=False)",
                "image_path",
            )
        _, row_split = row.get("split")
        item_split = row_split or ("simple" if position < len(rows) // 2 else "hard")
        if item_split not in ("simple", "hard"):
            row.fail(f"unknown split {item_split!r}; expected 'simple' or 'hard'", "split")
        meta: dict[str, Any] = {"source": "mat-search", "gold_plan": ["search", "answer"]}
        for name in ("gold_queries", "gold_steps"):
            _, value = row.get(name)
            if value is not None:
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    row.fail("expected a list of strings", name)
                meta[name] = list(value)
        if "gold_steps" in meta:
            meta["gold_plan"] = [step_kind(s) or "answer" for s in meta["gold_steps"]]
        tasks.append(
            Task(
                row.ident(position + 1),
                row.text("question"),
                row.answers(),
                [image],
                item_split,
                meta,
            )
        )
    selected = [t for t in tasks if split is None or t.split == split]
    if not selected:
        raise DatasetError(path, f"no items in split {split!r}" if split else "no items")
    return selected


def load_search_rows(path: str | Path, image_root: str | Path | None = None) -> list[Task]:
    """The paper's stepwise search rows (``rft_agent_search_20.json`` format).

    Each row becomes a one-step task: ``meta["prompt_text"]`` is the row's ``problem`` (the
    query and the reasoning chain so far), ``meta["gold_step"]`` its ``solution`` (and
    ``meta["gt"]`` an optional ``gt``, the full turn with its ``<think>``). The
    question is the text inside ``<query>…</query>`` when present; an answer row's gold
    answer is its ``<answer>`` span (a search row has none).
    """
    path = Path(path)
    root = Path(image_root) if image_root is not None else path.parent
    tasks = []
    for number, raw in read_rows(path):
        row = _Row(path, number, raw)
        problem, solution = row.text("problem"), row.text("solution")
        kind = step_kind(solution)
        if kind not in ("search", "answer"):
            row.fail("expected a <search>…</search> or <answer>…</answer> step", "solution")
        match = re.search(r"<query>(.*?)</query>", problem, re.DOTALL)
        question = match.group(1).strip() if match else problem
        answers = []
        if kind == "answer":
            span = re.search(r"<answer>(.*?)</answer>", solution, re.DOTALL)
            answers = [span.group(1).strip()] if span else []
        _, image = row.get("image_path", "image")
        images = [root / str(image)] if image else []
        meta = {"gold_step": solution, "prompt_text": problem, "source": "search-rows"}
        _, full_turn = row.get("gt")
        if isinstance(full_turn, str):
            meta["gt"] = full_turn  # the full reference turn, with its <think>
        tasks.append(Task(row.ident(number), question, answers, images, "train", meta))
    if not tasks:
        raise DatasetError(path, "no rows")
    return tasks


# ----------------------------------------------------------------------------- multi-hop QA


def _paragraphs(row: _Row) -> list[tuple[str, str, Any]] | None:
    """``(title, text, key)`` of a row's context paragraphs, or ``None`` when it has none;
    ``key`` is what supporting facts refer to (the title, or MuSiQue's ``idx``)."""
    key, paragraphs = row.get("paragraphs")
    if key is not None:
        if not isinstance(paragraphs, list):
            row.fail("expected a list of paragraphs", key)
        out = []
        for i, p in enumerate(paragraphs):
            if not isinstance(p, dict) or "paragraph_text" not in p:
                row.fail(f"paragraph {i} needs 'paragraph_text'", key)
            out.append((str(p.get("title", "")), str(p["paragraph_text"]), p.get("idx", i)))
        return out
    key, context = row.get("context")
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


def _support(row: _Row, paragraphs: list[tuple[str, str, Any]]) -> list[Any]:
    """The keys of the supporting paragraphs, in hop order where the format gives one."""
    _, steps = row.get("question_decomposition")
    if isinstance(steps, list) and steps:
        keys = [s.get("paragraph_support_idx") for s in steps if isinstance(s, dict)]
        if all(k is not None for k in keys):
            return keys
    if paragraphs and isinstance(paragraphs[0][2], int):  # MuSiQue without decomposition
        _, raw = row.get("paragraphs")
        return [p.get("idx", i) for i, p in enumerate(raw) if p.get("is_supporting")]
    _, facts = row.get("supporting_facts")
    if isinstance(facts, dict) and "title" in facts:
        facts = list(
            zip(facts["title"], facts.get("sent_id", [0] * len(facts["title"])), strict=False)
        )
    if isinstance(facts, list):
        titles = [f[0] for f in facts if isinstance(f, (list, tuple)) and f]
        return list(dict.fromkeys(str(t) for t in titles))
    return []


def _gold_queries(row: _Row) -> list[str]:
    """MuSiQue decompositions with ``#k`` filled in, or 2Wiki evidences as "subject relation"."""
    _, steps = row.get("question_decomposition")
    if isinstance(steps, list) and steps and all(isinstance(s, dict) for s in steps):
        answers = [str(s.get("answer", "")) for s in steps]
        queries = []
        for step in steps:
            text = str(step.get("question", ""))
            text = re.sub(r"#(\d+)", lambda m: _nth(answers, m.group(1)), text)
            queries.append(" ".join(text.replace(">>", " ").split()))
        return [q for q in queries if q]
    _, evidences = row.get("evidences")
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
        row = _Row(path, number, raw)
        _, answerable = row.get("answerable")
        if answerable is False:
            continue
        question = row.text("question", "query")
        answers = row.answers()
        meta: dict[str, Any] = {"source": name}
        _, kind = row.get("type")
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
            tasks.append(Task(row.ident(position), question, answers, [], "test", meta))
    if not tasks:
        raise DatasetError(path, "no usable rows")
    if has_context:
        corpus_id = f"{name}:{path.resolve()}:{len(corpus)}"
        for task in tasks:
            task.meta["corpus"] = corpus
            task.meta["corpus_id"] = corpus_id
    return tasks, corpus if has_context else None
