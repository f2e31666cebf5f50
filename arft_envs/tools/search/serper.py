"""SerperSearch: Google results through the Serper API (https://serper.dev), as the paper did.

The paper's client posts ``{"q": query, "num": 4}`` with the key in ``X-API-KEY`` and keeps
each organic result's snippet (paper.md §4.3). Here every failure becomes a
:class:`SearchError` whose message the model can read: a timeout, a refused connection,
rate limiting (HTTP 429) and server errors (5xx) are retried with exponential backoff first;
a rejected key (401/403), another 4xx or a malformed body is not retried. The key never
appears in a message.

``timeout_s`` bounds each **whole attempt**, not each socket read: a watchdog shuts the
attempt's socket when its deadline passes, so a server that trickles its headers or its body
byte by byte cannot hold a search longer than the deadline (plus the scheduling slack of the
watchdog thread). ``total_timeout_s`` bounds the whole search, retries and backoff included.
The body is streamed and capped at ``max_body_bytes``.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from typing import Any

from arft_envs.tools.search.base import SearchError, SearchResult, check_k

DEFAULT_ENDPOINT = "https://google.serper.dev/search"
KEY_VARIABLE = "SERPER_API_KEY"
MAX_BODY_BYTES = 4 << 20  # a Serper answer is a few KiB; anything near this is not one


class SerperSearch:
    """Web search through Serper.

    - ``api_key``: default ``$SERPER_API_KEY``. A missing key is reported by ``search`` (as a
      :class:`SearchError`), so a replay-only cache can wrap a keyless client.
    - ``endpoint``: the URL to POST to (override it to point at a proxy or a test server).
    - ``timeout_s``: the deadline of each whole attempt (connect, headers and body);
      ``retries``: extra attempts after a retryable failure; ``backoff_s``: the first wait,
      doubled each retry up to ``max_backoff_s`` (a 429's ``Retry-After`` header is honoured
      within the same cap).
    - ``total_timeout_s``: the deadline of the whole search, retries and waits included
      (``None``: only the per-attempt deadlines, so at most
      ``(retries + 1) * timeout_s`` plus the waits).
    - ``max_body_bytes``: a longer answer is refused as ``bad_response``.
    """

    cache_namespace = "serper"

    def __init__(
        self,
        api_key: str | None = None,
        *,
        endpoint: str = DEFAULT_ENDPOINT,
        timeout_s: float = 10.0,
        retries: int = 3,
        backoff_s: float = 1.0,
        max_backoff_s: float = 30.0,
        total_timeout_s: float | None = None,
        max_body_bytes: int = MAX_BODY_BYTES,
        session: Any = None,
    ):
        if timeout_s <= 0 or retries < 0 or backoff_s < 0 or max_backoff_s < 0:
            raise ValueError("need timeout_s > 0 and retries, backoff_s, max_backoff_s >= 0")
        if total_timeout_s is not None and total_timeout_s <= 0:
            raise ValueError(f"total_timeout_s must be > 0 or None, got {total_timeout_s!r}")
        if max_body_bytes < 1:
            raise ValueError(f"max_body_bytes must be >= 1, got {max_body_bytes!r}")
        self.api_key = api_key if api_key is not None else os.environ.get(KEY_VARIABLE) or None
        self.endpoint = endpoint
        self.timeout_s = float(timeout_s)
        self.retries = int(retries)
        self.backoff_s = float(backoff_s)
        self.max_backoff_s = float(max_backoff_s)
        self.total_timeout_s = None if total_timeout_s is None else float(total_timeout_s)
        self.max_body_bytes = int(max_body_bytes)
        self._session = session

    @property
    def session(self):
        """The HTTP session; its adapters let the attempt's watchdog reach the socket."""
        if self._session is None:
            import requests

            self._session = requests.Session()
            adapter = _watched_adapter()
            self._session.mount("http://", adapter)
            self._session.mount("https://", adapter)
        return self._session

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_session"] = None  # sessions hold sockets; a copy opens its own
        return state

    def search(self, query: str, k: int) -> list[SearchResult]:
        """The top ``k`` organic results (title, snippet, link); raises :class:`SearchError`."""

        k = check_k(k)
        if not self.api_key:
            raise SearchError(
                f"no Serper API key: set the {KEY_VARIABLE} environment variable or pass "
                "api_key=...",
                "config",
            )
        attempts = self.retries + 1
        start = time.monotonic()
        end = None if self.total_timeout_s is None else start + self.total_timeout_s
        failure: SearchError | None = None
        for attempt in range(attempts):
            if attempt:
                wait = self._wait(attempt, failure)
                if end is not None and time.monotonic() + wait >= end:
                    break  # no time left for another attempt
                time.sleep(wait)
            deadline = time.monotonic() + self.timeout_s
            if end is not None:
                deadline = min(deadline, end)
            outcome = self._attempt(query, k, deadline, attempt + 1)
            if isinstance(outcome, list):
                return outcome
            if not getattr(outcome, "retryable", False):
                raise outcome
            failure = outcome
        if failure is None:  # the total deadline left no time even for a first attempt
            failure = SearchError("the search engine was not asked (no time left).", "timeout")
        raise failure

    def _attempt(self, query: str, k: int, deadline: float, number: int):
        """One POST under a whole-attempt ``deadline`` (monotonic): the results, or a
        :class:`SearchError` whose ``retryable`` says whether another attempt may help."""
        import requests

        def timed_out() -> SearchError:
            return _retryable(
                f"the search engine did not answer within {self.timeout_s:g} s "
                f"({number} attempt(s)).",
                "timeout",
            )

        watch = _Watch(deadline)
        _local.watch = watch
        try:
            remaining = max(deadline - time.monotonic(), 0.001)
            try:
                response = self.session.post(
                    self.endpoint,
                    json={"q": str(query), "num": k},
                    headers={"X-API-KEY": self.api_key, "Content-Type": "application/json"},
                    timeout=remaining,
                    stream=True,
                )
            except requests.Timeout:
                return timed_out()
            except requests.RequestException as err:
                if watch.expired:
                    return timed_out()
                return _retryable(
                    f"the search engine is unreachable ({type(err).__name__}; "
                    f"{number} attempt(s)).",
                    "unreachable",
                )
            try:
                status = response.status_code
                if status == 429 or status >= 500:
                    kind = "rate_limited" if status == 429 else "http_error"
                    failure = _retryable(
                        f"the search engine answered HTTP {status} ({number} attempt(s)).", kind
                    )
                    failure.retry_after = _retry_after(response)
                    return failure
                try:
                    body = self._read_body(response, deadline)
                except _BodyTooLarge:
                    return SearchError(
                        f"the search engine sent a malformed answer (longer than "
                        f"{self.max_body_bytes} bytes).",
                        "bad_response",
                    )
                except (requests.RequestException, OSError, ValueError):
                    if watch.expired or time.monotonic() >= deadline:
                        return timed_out()
                    return _retryable(
                        f"the search engine's answer was cut off ({number} attempt(s)).",
                        "unreachable",
                    )
                if body is None:
                    return timed_out()
                if status in (401, 403):
                    return SearchError(
                        f"the search engine rejected the API key (HTTP {status}); check "
                        f"{KEY_VARIABLE}.",
                        "auth",
                    )
                if status >= 400:
                    return SearchError(
                        f"the search engine refused the request (HTTP {status}: "
                        f"{_excerpt(_text(body))}).",
                        "http_error",
                    )
                try:
                    return _parse(body, k)
                except SearchError as err:
                    return err
            finally:
                response.close()
        finally:
            watch.cancel()
            _local.watch = None

    def _read_body(self, response, deadline: float) -> bytes | None:
        """The body, streamed; ``None`` when the deadline passed before it all came."""
        chunks, size = [], 0
        for chunk in response.iter_content(chunk_size=16384):
            size += len(chunk)
            if size > self.max_body_bytes:
                raise _BodyTooLarge()
            chunks.append(chunk)
            if time.monotonic() >= deadline:
                return None
        if time.monotonic() >= deadline:
            return None
        return b"".join(chunks)

    def _wait(self, attempt: int, failure: SearchError | None) -> float:
        wait = self.backoff_s * 2 ** (attempt - 1)
        retry_after = getattr(failure, "retry_after", None)
        if retry_after is not None:
            wait = max(wait, retry_after)
        return min(wait, self.max_backoff_s)

    def __repr__(self) -> str:
        return (
            f"SerperSearch(endpoint={self.endpoint!r}, key={'set' if self.api_key else 'missing'})"
        )


def _retry_after(response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return max(float(value), 0.0) if value is not None else None
    except ValueError:
        return None


def _excerpt(text: str, limit: int = 160) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _text(body: bytes) -> str:
    return body.decode("utf-8", errors="replace")


def _parse(data: bytes, k: int) -> list[SearchResult]:
    try:
        body = json.loads(data)
    except ValueError:
        raise SearchError(
            f"the search engine sent a malformed answer (not JSON: {_excerpt(_text(data), 80)!r}).",
            "bad_response",
        ) from None
    if not isinstance(body, dict):
        raise SearchError(
            f"the search engine sent a malformed answer (a JSON {type(body).__name__}, "
            "expected an object).",
            "bad_response",
        )
    organic = body.get("organic", [])
    if not isinstance(organic, list):
        raise SearchError(
            "the search engine sent a malformed answer ('organic' is not a list).", "bad_response"
        )
    results = []
    for rank, item in enumerate(organic[:k], 1):
        if not isinstance(item, dict):
            continue
        results.append(
            SearchResult(
                title=str(item.get("title") or ""),
                text=str(item.get("snippet") or ""),
                url=str(item.get("link") or ""),
                score=1.0 / rank,
            )
        )
    return results


# ----------------------------------------------------------------------------- the watchdog


def _retryable(message: str, kind: str) -> SearchError:
    error = SearchError(message, kind)
    error.retryable = True
    return error


class _BodyTooLarge(Exception):
    pass


_local = threading.local()  # the current thread's attempt watch, read by the pools below


class _Watch:
    """Shuts the attempt's socket down when ``deadline`` (monotonic) passes.

    A socket timeout bounds one read; a trickling server answers every read in time. The
    watchdog bounds them all: ``shutdown`` makes the blocked read return at once, whichever
    thread it is in, and the attempt reports a timeout.
    """

    def __init__(self, deadline: float):
        self._lock = threading.Lock()
        self._conn: Any = None
        self.expired = False
        self._timer = threading.Timer(max(deadline - time.monotonic(), 0.0), self._fire)
        self._timer.daemon = True
        self._timer.start()

    def attach(self, conn: Any) -> None:
        with self._lock:
            self._conn = conn
            if self.expired:
                self._shut()

    def _fire(self) -> None:
        with self._lock:
            self.expired = True
            self._shut()

    def _shut(self) -> None:
        sock = getattr(self._conn, "sock", None)
        if sock is None:
            return
        try:  # the plain socket's shutdown, also for TLS: the fd, not the TLS state
            socket.socket.shutdown(sock, socket.SHUT_RDWR)
        except (OSError, TypeError, ValueError):
            pass

    def cancel(self) -> None:
        self._timer.cancel()


def _watched_adapter():
    """A requests adapter whose connection pools hand each request's connection to the
    current thread's :class:`_Watch`."""
    from requests.adapters import HTTPAdapter
    from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

    class _Watched:
        def _get_conn(self, timeout=None):  # noqa: ANN001 - urllib3's signature
            conn = super()._get_conn(timeout)
            watch = getattr(_local, "watch", None)
            if watch is not None:
                watch.attach(conn)
            return conn

    pools = {
        "http": type("WatchedHTTPPool", (_Watched, HTTPConnectionPool), {}),
        "https": type("WatchedHTTPSPool", (_Watched, HTTPSConnectionPool), {}),
    }

    class WatchedAdapter(HTTPAdapter):
        def init_poolmanager(self, *args, **kwargs):  # noqa: ANN002, ANN003
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = pools

        def proxy_manager_for(self, proxy, **kwargs):  # noqa: ANN001, ANN003
            manager = super().proxy_manager_for(proxy, **kwargs)
            if not proxy.lower().startswith("socks"):
                manager.pool_classes_by_scheme = pools
            return manager

    return WatchedAdapter()
