"""What every search backend shares: the result record, the protocol, the error, the text
the model reads, and reading a document corpus from disk.

The tool message format (:func:`format_results`) is stable, so prompts, cached episodes and
stepwise rows stay comparable across backends::

    <information>
    1. Title: Quorvane
    Content: Quorvane is a robotics company founded in 1987 by ...
    2. Title: ...
    Content: ...
    </information>

It keeps the paper's frame (an ``<information>`` block of numbered items, paper.md §4.3) and
adds each result's title, which the paper's Serper client dropped. Whitespace inside a title
or a content is collapsed to single spaces and long contents are cut at ``max_chars`` with
``…``, so an item is always exactly two lines. No result, or a failed search, still yields an
``<information>`` block whose single line says so.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class SearchResult:
    """One hit: ``title``, ``text`` (a passage or a web snippet), ``url`` (the document's
    identity: a web address, or ``scheme://…`` for a local corpus) and ``score`` (higher is
    better; only comparable within one backend)."""

    title: str
    text: str
    url: str = ""
    score: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"title": self.title, "text": self.text, "url": self.url, "score": self.score}


@dataclass(frozen=True)
class Document:
    """One searchable document of a local corpus."""

    title: str
    text: str
    url: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"title": self.title, "text": self.text, "url": self.url}


@runtime_checkable
class SearchBackend(Protocol):
    """Anything with ``search(query, k) -> list[SearchResult]``.

    A backend returns at most ``k`` results, best first, and raises :class:`SearchError` (with
    a message written for the model to read) when the search could not be made. Backends may
    set ``cache_namespace``, the key :class:`~arft_envs.tools.search.CachedSearch` files their
    results under.
    """

    def search(self, query: str, k: int) -> list[SearchResult]: ...


class SearchError(RuntimeError):
    """A search that could not be made. ``kind`` names the failure (``timeout``,
    ``unreachable``, ``rate_limited``, ``http_error``, ``auth``, ``bad_response``, ``config``,
    ``cache_miss``); the message is readable by the model and never holds a secret."""

    def __init__(self, message: str, kind: str = "error"):
        super().__init__(message)
        self.kind = kind


def check_k(k: int) -> int:
    """``k`` as a positive int, or a ``ValueError`` that says so."""
    try:
        value = operator.index(k)
    except TypeError:
        raise ValueError(f"k must be a positive integer, got {k!r}") from None
    if isinstance(k, bool) or value < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    return value


# ----------------------------------------------------------------------------- tool message


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def format_results(results: Sequence[SearchResult], max_chars: int = 600) -> str:
    """The tool message for a list of results (the numbered format in the module docstring).

    ``max_chars`` bounds each content (a cut content ends with ``…``).
    """
    if not results:
        return "<information>\nNo results for this query.\n</information>"
    lines = ["<information>"]
    for i, result in enumerate(results, 1):
        content = _one_line(result.text)
        if len(content) > max_chars:
            content = content[: max(max_chars - 1, 0)].rstrip() + "…"
        lines.append(f"{i}. Title: {_one_line(result.title) or '(untitled)'}")
        lines.append(f"Content: {content}")
    lines.append("</information>")
    return "\n".join(lines)


def format_search_error(error: BaseException) -> str:
    """The tool message for a failed search: what went wrong and what the model can do."""
    kind = getattr(error, "kind", None) or type(error).__name__
    message = _one_line(str(error)) or type(error).__name__
    return (
        f"<information>\nSearch failed ({kind}): {message} No results this turn; you may "
        "search again or answer with what you know.\n</information>"
    )


# ----------------------------------------------------------------------------- corpora


def as_document(item: Any, index: int = 0) -> Document:
    """Coerce one corpus entry to a :class:`Document`.

    Accepted: a :class:`Document` or :class:`SearchResult`; a ``str`` (the text, untitled);
    a mapping with ``text`` (or ``contents``/``paragraph_text``) and optional ``title`` and
    ``url``/``id``. A FlashRAG-style ``contents`` whose first line is a quoted title is split
    into title and text.
    """
    if isinstance(item, Document):
        return item
    if isinstance(item, SearchResult):
        return Document(item.title, item.text, item.url)
    if isinstance(item, str):
        return Document("", item, "")
    if isinstance(item, Mapping):
        title = item.get("title")
        text = item.get("text", item.get("paragraph_text"))
        if text is None and "contents" in item:
            head, sep, tail = str(item["contents"]).partition("\n")
            if sep and title is None:
                title, text = head.strip().strip('"'), tail
            else:
                text = item["contents"]
        if text is None:
            raise ValueError(
                f"corpus entry {index}: needs a 'text' (or 'contents') field, has {sorted(item)}"
            )
        url = item.get("url") or (str(item["id"]) if "id" in item else "")
        return Document(str(title or ""), str(text), str(url))
    raise ValueError(
        f"corpus entry {index}: expected a str, a mapping or a Document, got {type(item).__name__}"
    )


def as_documents(items: Iterable[Any]) -> list[Document]:
    """Coerce every entry with :func:`as_document`."""
    return [as_document(item, i) for i, item in enumerate(items)]


def load_corpus(path: str | Path) -> list[Document]:
    """Read a corpus file: JSON Lines (one document per line) or a JSON list.

    Each entry is anything :func:`as_document` accepts; FlashRAG's wiki corpus
    (``{"id", "contents"}``) works as is. Errors name the file and the line.
    """
    from arft_envs.errors import DatasetError

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DatasetError(path, "corpus file not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise DatasetError(path, f"cannot read the corpus ({err})") from None
    if path.suffix == ".json":
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as err:
            raise DatasetError(path, f"not valid JSON: {err.msg} at line {err.lineno}") from None
        if not isinstance(rows, list):
            raise DatasetError(path, "expected a JSON list of documents")
        numbered = list(enumerate(rows))
    else:
        numbered = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                numbered.append((number, json.loads(line)))
            except json.JSONDecodeError as err:
                raise DatasetError(path, f"not valid JSON: {err.msg}", row=number) from None
    docs = []
    for where, row in numbered:
        try:
            docs.append(as_document(row, where))
        except ValueError as err:
            raise DatasetError(path, str(err).split(": ", 1)[-1], row=where) from None
    return docs


def write_corpus(docs: Iterable[Any], path: str | Path) -> Path:
    """Write documents as JSON Lines (``title``, ``text``, ``url``); :func:`load_corpus` reads
    it back."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for doc in as_documents(docs):
            f.write(json.dumps(doc.to_dict(), ensure_ascii=False) + "\n")
    return path
