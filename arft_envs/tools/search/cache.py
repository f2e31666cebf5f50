"""CachedSearch: a persistent record/replay cache in front of any backend (sqlite).

A training run asks the same queries again and again; with the cache each one reaches the
backend once. Entries are keyed by the backend's ``cache_namespace`` (e.g. ``"serper"``), the
query (whitespace-normalised) and ``k``. Failures are never recorded.

Safety:
- sqlite in WAL mode with a busy timeout: several processes (vector envs, data-parallel
  workers) read and write one file at once;
- every entry is committed as soon as it is recorded, so a process killed at any point loses
  nothing it had recorded (WAL with ``synchronous=NORMAL`` only risks the last commits on a
  power loss or an OS crash, not on a killed process);
- a connection is never shared across ``fork``: each process opens its own.

``replay_only=True`` serves recorded entries and never calls the backend: a miss raises a
:class:`SearchError` (kind ``cache_miss``) saying so, which an env shows to the model.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import warnings
from pathlib import Path

from arft_envs.tools.search.base import SearchBackend, SearchError, SearchResult, check_k

_SCHEMA = """
CREATE TABLE IF NOT EXISTS searches (
    namespace TEXT NOT NULL,
    query TEXT NOT NULL,
    k INTEGER NOT NULL,
    results TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (namespace, query, k)
)
"""


class CachedSearch:
    """Record/replay cache over ``backend`` in the sqlite file ``path``.

    ``namespace`` defaults to ``backend.cache_namespace`` (or the backend's class name); give
    it explicitly to share entries between differently configured clients of one engine.
    ``hits`` and ``misses`` count lookups made by this object in this process.
    """

    def __init__(
        self,
        backend: SearchBackend,
        path: str | Path,
        *,
        replay_only: bool = False,
        namespace: str | None = None,
        timeout_s: float = 60.0,
    ):
        if backend is None or not hasattr(backend, "search"):
            raise TypeError(f"backend must have a search(query, k) method, got {backend!r}")
        self.backend = backend
        self.path = Path(path)
        self.replay_only = bool(replay_only)
        self.namespace = namespace or getattr(backend, "cache_namespace", type(backend).__name__)
        self.cache_namespace = self.namespace
        self.timeout_s = float(timeout_s)
        self.hits = 0
        self.misses = 0
        self._local = threading.local()
        if self.replay_only and not self.path.is_file():
            raise FileNotFoundError(
                f"replay-only search cache {self.path} does not exist; record one first "
                "(replay_only=False with a live backend)"
            )
        self._connection()  # create the file and schema now: errors surface at construction

    # ------------------------------------------------------------------ sqlite

    def _connection(self) -> sqlite3.Connection:
        local = self._local
        if getattr(local, "pid", None) != os.getpid():
            if not self.replay_only:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=self.timeout_s, isolation_level=None)
            conn.execute(f"PRAGMA busy_timeout = {int(self.timeout_s * 1000)}")
            if not self.replay_only:
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = NORMAL")
                conn.execute(_SCHEMA)
            local.conn, local.pid = conn, os.getpid()
        return local.conn

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        del state["_local"]  # connections stay with their process
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._local = threading.local()

    def close(self) -> None:
        """Close this thread's connection (a later search reopens it)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and getattr(self._local, "pid", None) == os.getpid():
            conn.close()
        self._local = threading.local()

    # ------------------------------------------------------------------ search

    def lookup(self, query: str, k: int) -> list[SearchResult] | None:
        """The recorded results of ``(query, k)``, or ``None``; never calls the backend."""
        try:
            row = (
                self._connection()
                .execute(
                    "SELECT results FROM searches WHERE namespace = ? AND query = ? AND k = ?",
                    (self.namespace, _normal(query), int(k)),
                )
                .fetchone()
            )
        except sqlite3.OperationalError as err:
            if "no such table" in str(err):
                return None
            raise SearchError(
                f"the search cache {self.path} cannot be read ({err}).", "cache"
            ) from None
        if row is None:
            return None
        return [SearchResult(**item) for item in json.loads(row[0])]

    def record(self, query: str, k: int, results: list[SearchResult]) -> None:
        """Store ``results`` for ``(query, k)`` and commit at once."""
        payload = json.dumps([r.to_dict() for r in results], ensure_ascii=False)
        self._connection().execute(
            "INSERT OR REPLACE INTO searches (namespace, query, k, results, created) "
            "VALUES (?, ?, ?, ?, ?)",
            (self.namespace, _normal(query), int(k), payload, time.time()),
        )

    def search(self, query: str, k: int) -> list[SearchResult]:
        """Recorded results when present; otherwise ask the backend and record its answer
        (in replay-only mode, a miss raises :class:`SearchError`)."""
        k = check_k(k)
        cached = self.lookup(query, k)
        if cached is not None:
            self.hits += 1
            return cached
        self.misses += 1
        if self.replay_only:
            raise SearchError(
                f"this query is not in the replay-only search cache (k={k}); no search engine "
                "is called in replay mode.",
                "cache_miss",
            )
        results = list(self.backend.search(query, k))
        try:
            self.record(query, k, results)
        except sqlite3.Error as err:  # the search itself worked: serve it, say the cache failed
            warnings.warn(f"search cache {self.path} not written: {err}", stacklevel=2)
        return results

    def __len__(self) -> int:
        try:
            return (
                self._connection()
                .execute("SELECT COUNT(*) FROM searches WHERE namespace = ?", (self.namespace,))
                .fetchone()[0]
            )
        except sqlite3.OperationalError:
            return 0

    def __repr__(self) -> str:
        mode = "replay-only" if self.replay_only else "record/replay"
        return f"CachedSearch({self.backend!r}, {str(self.path)!r}, {mode})"


def _normal(query: str) -> str:
    return " ".join(str(query).split())
