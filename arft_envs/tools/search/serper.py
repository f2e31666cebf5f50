"""SerperSearch: Google results through the Serper API (https://serper.dev), as the paper did.

The paper's client posts ``{"q": query, "num": 4}`` with the key in ``X-API-KEY`` and keeps
each organic result's snippet (paper.md §4.3). Here every failure becomes a
:class:`SearchError` whose message the model can read: a timeout, a refused connection,
rate limiting (HTTP 429) and server errors (5xx) are retried with exponential backoff first;
a rejected key (401/403), another 4xx or a malformed body is not retried. The key never
appears in a message.
"""

from __future__ import annotations

import os
import time
from typing import Any

from arft_envs.tools.search.base import SearchError, SearchResult, check_k

DEFAULT_ENDPOINT = "https://google.serper.dev/search"
KEY_VARIABLE = "SERPER_API_KEY"


class SerperSearch:
    """Web search through Serper.

    - ``api_key``: default ``$SERPER_API_KEY``. A missing key is reported by ``search`` (as a
      :class:`SearchError`), so a replay-only cache can wrap a keyless client.
    - ``endpoint``: the URL to POST to (override it to point at a proxy or a test server).
    - ``timeout_s``: per attempt; ``retries``: extra attempts after a retryable failure;
      ``backoff_s``: the first wait, doubled each retry up to ``max_backoff_s`` (a 429's
      ``Retry-After`` header is honoured within the same cap).
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
        session: Any = None,
    ):
        if timeout_s <= 0 or retries < 0 or backoff_s < 0 or max_backoff_s < 0:
            raise ValueError("need timeout_s > 0 and retries, backoff_s, max_backoff_s >= 0")
        self.api_key = api_key if api_key is not None else os.environ.get(KEY_VARIABLE) or None
        self.endpoint = endpoint
        self.timeout_s = float(timeout_s)
        self.retries = int(retries)
        self.backoff_s = float(backoff_s)
        self.max_backoff_s = float(max_backoff_s)
        self._session = session

    @property
    def session(self):
        if self._session is None:
            import requests

            self._session = requests.Session()
        return self._session

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_session"] = None  # sessions hold sockets; a copy opens its own
        return state

    def search(self, query: str, k: int) -> list[SearchResult]:
        """The top ``k`` organic results (title, snippet, link); raises :class:`SearchError`."""
        import requests

        k = check_k(k)
        if not self.api_key:
            raise SearchError(
                f"no Serper API key: set the {KEY_VARIABLE} environment variable or pass "
                "api_key=...",
                "config",
            )
        attempts = self.retries + 1
        failure: SearchError | None = None
        for attempt in range(attempts):
            if attempt:
                time.sleep(self._wait(attempt, failure))
            try:
                response = self.session.post(
                    self.endpoint,
                    json={"q": str(query), "num": k},
                    headers={"X-API-KEY": self.api_key, "Content-Type": "application/json"},
                    timeout=self.timeout_s,
                )
            except requests.Timeout:
                failure = SearchError(
                    f"the search engine did not answer within {self.timeout_s:g} s "
                    f"({attempt + 1} attempt(s)).",
                    "timeout",
                )
                continue
            except requests.RequestException as err:
                failure = SearchError(
                    f"the search engine is unreachable ({type(err).__name__}; "
                    f"{attempt + 1} attempt(s)).",
                    "unreachable",
                )
                continue
            status = response.status_code
            if status == 429 or status >= 500:
                kind = "rate_limited" if status == 429 else "http_error"
                failure = SearchError(
                    f"the search engine answered HTTP {status} ({attempt + 1} attempt(s)).", kind
                )
                failure.retry_after = _retry_after(response)
                continue
            if status in (401, 403):
                raise SearchError(
                    f"the search engine rejected the API key (HTTP {status}); check "
                    f"{KEY_VARIABLE}.",
                    "auth",
                )
            if status >= 400:
                raise SearchError(
                    f"the search engine refused the request (HTTP {status}: "
                    f"{_excerpt(response.text)}).",
                    "http_error",
                )
            return _parse(response, k)
        raise failure

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


def _parse(response, k: int) -> list[SearchResult]:
    try:
        body = response.json()
    except ValueError:
        raise SearchError(
            f"the search engine sent a malformed answer (not JSON: {_excerpt(response.text, 80)!r}).",
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
