"""CachedSearch: record/replay, several processes writing at once, and a killed writer."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from arft_envs.tools.search import CachedSearch, SearchError, SearchResult

REPO = Path(__file__).resolve().parents[2]


class Counting:
    """A backend that answers deterministically and counts its calls."""

    cache_namespace = "counting"

    def __init__(self):
        self.calls = 0

    def search(self, query, k):
        self.calls += 1
        return [
            SearchResult(f"{query} #{i}", f"text {i}", f"u{i}", 1.0 / (i + 1)) for i in range(k)
        ]


def test_each_query_reaches_the_backend_once(tmp_path):
    backend = Counting()
    cache = CachedSearch(backend, tmp_path / "c.sqlite")
    first = cache.search("alpha", 3)
    assert cache.search("alpha", 3) == first
    assert cache.search("alpha", 2) != first  # k is part of the key
    assert backend.calls == 2 and (cache.hits, cache.misses) == (1, 2)
    assert len(cache) == 2
    again = CachedSearch(Counting(), tmp_path / "c.sqlite")  # a new process would see it too
    assert again.search("alpha", 3) == first and again.backend.calls == 0


def test_namespaces_keep_backends_apart(tmp_path):
    path = tmp_path / "c.sqlite"
    CachedSearch(Counting(), path).search("q", 1)
    other = CachedSearch(Counting(), path, namespace="other")
    other.search("q", 1)
    assert other.backend.calls == 1


def test_failures_are_not_recorded(tmp_path):
    class Flaky(Counting):
        def search(self, query, k):
            self.calls += 1
            if self.calls == 1:
                raise SearchError("down", "unreachable")
            return super().search(query, k)

    cache = CachedSearch(Flaky(), tmp_path / "c.sqlite")
    with pytest.raises(SearchError):
        cache.search("q", 1)
    assert cache.search("q", 1)[0].title.startswith("q")
    assert len(cache) == 1


def test_replay_only_needs_an_existing_file_and_never_calls(tmp_path):
    with pytest.raises(FileNotFoundError, match="record one first"):
        CachedSearch(Counting(), tmp_path / "absent.sqlite", replay_only=True)
    CachedSearch(Counting(), tmp_path / "c.sqlite").search("known", 2)
    backend = Counting()
    replay = CachedSearch(backend, tmp_path / "c.sqlite", replay_only=True)
    assert len(replay.search("known", 2)) == 2
    with pytest.raises(SearchError, match="replay-only"):
        replay.search("unknown", 2)
    assert backend.calls == 0


def test_pickles_without_its_connection(tmp_path):
    cache = CachedSearch(Counting(), tmp_path / "c.sqlite")
    cache.search("q", 1)
    clone = pickle.loads(pickle.dumps(cache))
    assert clone.search("q", 1) == cache.search("q", 1)
    assert clone.backend.calls == 1  # a fresh copy of the backend, and a cache hit


WRITER = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {repo!r})
    from arft_envs.tools.search import CachedSearch, SearchResult

    class Backend:
        cache_namespace = "counting"
        def search(self, query, k):
            return [SearchResult(query, "text", "u", 1.0)]

    cache = CachedSearch(Backend(), sys.argv[1])
    name, count = sys.argv[2], int(sys.argv[3])
    for i in range(count):
        cache.search(f"{{name}}-{{i}}", 1)
    print("recorded", flush=True)
    time.sleep(float(sys.argv[4]))
    """
).format(repo=str(REPO))


def _writer(path, name, count, linger=0.0):
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), name, str(count), str(linger)],
        stdout=subprocess.PIPE,
        text=True,
    )


def test_several_processes_write_one_cache_at_once(tmp_path):
    path = tmp_path / "shared.sqlite"
    CachedSearch(Counting(), path)  # create it first, as an env would
    writers = [_writer(path, f"p{i}", 150) for i in range(3)]
    for proc in writers:
        assert proc.wait(timeout=60) == 0
    assert len(CachedSearch(Counting(), path, replay_only=True)) == 450


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL (POSIX)")
def test_a_killed_writer_loses_no_committed_entry(tmp_path):
    path = tmp_path / "killed.sqlite"
    proc = _writer(path, "k", 200, linger=60)
    assert proc.stdout.readline().strip() == "recorded"  # all 200 recorded, still running
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    replay = CachedSearch(Counting(), path, replay_only=True)
    assert len(replay) == 200
    assert replay.search("k-199", 1)[0].title == "k-199"
