"""SerperSearch against a fake Serper server on loopback, and MATSearch episodes that survive
every way the server can fail; the record/replay cache with the server gone."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import gymnasium as gym
import pytest
from loopback import TrickleServer

import arft_envs  # noqa: F401
from arft_envs.tools.search import CachedSearch, SearchError, SerperSearch


class FakeSerper:
    """A stdlib HTTP server speaking Serper's protocol. ``script`` lists what the next
    requests get, one behaviour each (the last one repeats):

    ``ok``, ``500``, ``503``, ``429`` (with ``Retry-After: 0``), ``401``, ``400``,
    ``malformed`` (not JSON), ``array`` (JSON but not an object), ``slow`` (0.2 s, then ok),
    ``hang`` (longer than any client timeout here).
    """

    def __init__(self):
        self.script: list[str] = ["ok"]
        self.requests: list[dict] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append({"body": body, "key": self.headers.get("X-API-KEY")})
                mode = fake.script.pop(0) if len(fake.script) > 1 else fake.script[0]
                if mode == "hang":
                    time.sleep(1.5)
                    mode = "ok"
                if mode == "slow":
                    time.sleep(0.2)
                    mode = "ok"
                if mode == "ok":
                    organic = [
                        {
                            "title": f"Result {i} for {body['q']}",
                            "link": f"https://example.org/{i}",
                            "snippet": f"Snippet {i} about {body['q']}.",
                            "position": i,
                        }
                        for i in range(1, body["num"] + 1)
                    ]
                    self._send(200, json.dumps({"organic": organic}))
                elif mode == "malformed":
                    self._send(200, "<html>gateway error</html>", "text/html")
                elif mode == "array":
                    self._send(200, "[1, 2, 3]")
                elif mode == "429":
                    self._send(429, '{"message": "slow down"}', extra={"Retry-After": "0"})
                else:
                    self._send(int(mode), '{"message": "nope"}')

            def _send(self, status, text, ctype="application/json", extra=None):
                data = text.encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(data)))
                    for key, value in (extra or {}).items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (its timeout), as intended

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/search"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def client(self, **kwargs) -> SerperSearch:
        options = {"api_key": "test-key", "timeout_s": 0.5, "retries": 2, "backoff_s": 0.01}
        options.update(kwargs)
        return SerperSearch(endpoint=self.url, **options)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake():
    server = FakeSerper()
    yield server
    server.close()


def test_a_good_answer_becomes_results_and_the_request_is_serpers(fake):
    results = fake.client().search("Quorvane founder", 4)
    assert [r.title for r in results] == [f"Result {i} for Quorvane founder" for i in range(1, 5)]
    assert results[0].text == "Snippet 1 about Quorvane founder."
    assert results[0].url == "https://example.org/1"
    assert [r.score for r in results] == [1.0, 0.5, 1 / 3, 0.25]
    assert fake.requests == [{"body": {"q": "Quorvane founder", "num": 4}, "key": "test-key"}]


@pytest.mark.parametrize("failure", ["500", "503", "429"])
def test_transient_failures_are_retried_then_succeed(fake, failure):
    fake.script = [failure, failure, "ok"]
    assert len(fake.client().search("q", 2)) == 2
    assert len(fake.requests) == 3


def test_a_slow_answer_within_the_timeout_is_fine(fake):
    fake.script = ["slow"]
    assert len(fake.client(timeout_s=2.0).search("q", 1)) == 1


@pytest.mark.parametrize(
    ("script", "kind", "words", "attempts"),
    [
        (["500"], "http_error", "HTTP 500", 3),
        (["429"], "rate_limited", "HTTP 429", 3),
        (["hang"], "timeout", "did not answer within 0.3 s", 2),
        (["malformed"], "bad_response", "malformed answer (not JSON", 1),
        (["array"], "bad_response", "a JSON list", 1),
        (["401"], "auth", "rejected the API key", 1),
        (["400"], "http_error", "HTTP 400", 1),
    ],
)
def test_failures_raise_a_readable_search_error(fake, script, kind, words, attempts):
    fake.script = script
    client = fake.client(timeout_s=0.3, retries=1 if script == ["hang"] else 2)
    with pytest.raises(SearchError) as info:
        client.search("q", 4)
    assert info.value.kind == kind
    assert words in str(info.value)
    assert "test-key" not in str(info.value)
    assert len(fake.requests) == attempts


def test_unreachable_server_and_missing_key(fake, monkeypatch):
    fake.close()
    with pytest.raises(SearchError, match="unreachable") as info:
        fake.client(retries=1).search("q", 1)
    assert info.value.kind == "unreachable"
    monkeypatch.delenv("SERPER_API_KEY", raising=False)
    with pytest.raises(SearchError, match="SERPER_API_KEY") as info:
        SerperSearch().search("q", 1)
    assert info.value.kind == "config"


def test_retry_after_is_honoured_within_the_cap():
    client = SerperSearch(api_key="k", backoff_s=0.5, max_backoff_s=2.0)
    failure = SearchError("x", "rate_limited")
    failure.retry_after = 10.0
    assert client._wait(1, failure) == 2.0
    assert client._wait(2, SearchError("x")) == 1.0


@pytest.mark.parametrize("mode", ["headers", "body"])
def test_a_trickling_server_cannot_outlast_the_attempt_deadline(mode):
    """Every single read succeeds quickly, so only a whole-attempt deadline stops this: two
    attempts of 1 s (plus a 0.01 s wait) must end well before the 33 s a per-read timeout
    allowed."""
    server = TrickleServer(mode)
    try:
        client = SerperSearch(
            api_key="k", endpoint=server.url, timeout_s=1.0, retries=1, backoff_s=0.01
        )
        start = time.monotonic()
        with pytest.raises(SearchError) as info:
            client.search("q", 4)
        elapsed = time.monotonic() - start
        assert info.value.kind == "timeout"
        assert "did not answer within 1 s (2 attempt(s))" in str(info.value)
        assert server.requests == 2
        assert elapsed < 2 * 1.0 + 0.01 + 1.0
    finally:
        server.close()


def test_total_timeout_bounds_the_search_with_its_retries():
    server = TrickleServer("body")
    try:
        client = SerperSearch(
            api_key="k",
            endpoint=server.url,
            timeout_s=1.0,
            retries=5,
            backoff_s=0.01,
            total_timeout_s=1.5,
        )
        start = time.monotonic()
        with pytest.raises(SearchError) as info:
            client.search("q", 4)
        assert info.value.kind == "timeout"
        assert time.monotonic() - start < 1.5 + 1.0
        assert server.requests == 2  # the second attempt was cut to the 0.5 s left
    finally:
        server.close()


def test_an_oversized_body_is_a_bad_response(fake):
    fake.script = ["ok"]
    with pytest.raises(SearchError, match="longer than 100 bytes") as info:
        fake.client(max_body_bytes=100).search("a query with a long answer", 4)
    assert info.value.kind == "bad_response"


# ----------------------------------------------------------------------------- in episodes


def _search_turn(query: str) -> str:
    return f"<think> I should look this up. </think>\n<search> {query} </search>"


def test_episodes_keep_going_through_every_failure(fake):
    """Each failure is a tool message the model can read and a count in info; never an
    exception out of step()."""
    fake.script = ["500", "ok", "malformed", "hang", "429", "ok"]
    client = fake.client(timeout_s=0.3, retries=0)
    env = gym.make("MATSearch-v0", backend=client, max_turns=6)
    env.reset(seed=0)
    statuses, texts = [], []
    for i in range(5):
        obs, reward, terminated, truncated, info = env.step(_search_turn(f"query {i}"))
        statuses.append(info["tool_status"])
        texts.append(obs["messages"][-1]["content"][-1]["text"])
        assert not terminated and not truncated
    assert statuses == ["http_error", "ok", "bad_response", "timeout", "rate_limited"]
    assert info["tool_failures"] == 4
    assert texts[0].startswith("<information>\nSearch failed (http_error): the search engine")
    assert "1. Title: Result 1 for query 1" in texts[1]
    assert "did not answer within 0.3 s" in texts[3]
    obs, reward, terminated, truncated, info = env.step("<think> ok </think><answer> x </answer>")
    assert terminated and info["tool_failures"] == 4


def test_a_backend_bug_is_reported_not_raised():
    class Broken:
        def search(self, query, k):
            raise KeyError("oops")

    env = gym.make("MATSearch-v0", backend=Broken())
    env.reset(seed=0)
    obs, _, _, _, info = env.step(_search_turn("anything"))
    assert info["tool_status"] == "error" and info["tool_failures"] == 1
    assert "Search failed (KeyError)" in obs["messages"][-1]["content"][-1]["text"]


def test_serper_without_a_key_fails_at_make_with_the_options(monkeypatch):
    monkeypatch.delenv("SERPER_API_KEY", raising=False)
    with pytest.raises(ValueError, match="SERPER_API_KEY.*replay_only=True"):
        gym.make("MATSearch-v0", backend="serper")


# ----------------------------------------------------------------------------- cache


def test_cache_replays_with_the_server_gone(fake, tmp_path):
    path = tmp_path / "serper.sqlite"
    recorder = CachedSearch(fake.client(), path)
    first = recorder.search("Quorvane founder", 4)
    assert recorder.search("  Quorvane   founder ", 4) == first  # whitespace-normalised hit
    assert (recorder.hits, recorder.misses, len(fake.requests)) == (1, 1, 1)
    fake.close()  # the network is off from now on

    replay = CachedSearch(fake.client(retries=0), path, replay_only=True)
    assert replay.search("Quorvane founder", 4) == first
    with pytest.raises(SearchError, match="not in the replay-only search cache") as info:
        replay.search("never recorded", 4)
    assert info.value.kind == "cache_miss"

    live = CachedSearch(fake.client(retries=0), path)  # not replay-only: a miss tries the web
    assert live.search("Quorvane founder", 4) == first
    with pytest.raises(SearchError, match="unreachable"):
        live.search("never recorded", 4)


def test_replay_only_env_works_offline_and_shows_misses(fake, tmp_path, monkeypatch):
    path = tmp_path / "cache.sqlite"
    env = gym.make("MATSearch-v0", backend=fake.client(), cache=path)
    env.reset(seed=0)
    env.step(_search_turn("Quorvane founder"))
    fake.close()
    monkeypatch.delenv("SERPER_API_KEY", raising=False)
    env = gym.make("MATSearch-v0", backend="serper", cache=path, replay_only=True)
    env.reset(seed=0)
    obs, _, _, _, info = env.step(_search_turn("Quorvane founder"))
    assert info["tool_status"] == "ok"
    assert "Result 1 for Quorvane founder" in obs["messages"][-1]["content"][-1]["text"]
    obs, _, _, _, info = env.step(_search_turn("something new"))
    assert info["tool_status"] == "cache_miss" and info["tool_failures"] == 1
    assert "replay-only" in obs["messages"][-1]["content"][-1]["text"]
