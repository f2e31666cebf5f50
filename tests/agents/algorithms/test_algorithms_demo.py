"""benchmarks/algorithms_demo.py on a tiny budget: two algorithms, two seeds, two RL steps from
one saved warm start; the table, the JSON and the PNG are written with the right rows, every
run starts from that one warm start, an --option reaches the algorithms that have it, and
--report rebuilds the same table from the run's records."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def _benchmark(monkeypatch):
    """The script as the module ``algorithms_demo`` (importable, so that --jobs' processes
    unpickle its job functions)."""
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    return importlib.import_module("algorithms_demo")


def test_tiny_comparison_writes_table_json_and_png(tmp_path, monkeypatch):
    bench = _benchmark(monkeypatch)
    out, runs = tmp_path / "results", tmp_path / "runs"
    tiny = [
        "--algos", "grpo", "ppo", "--seeds", "2", "--steps", "2", "--holdout", "2",
        "--eval-samples", "1", "--sft-steps", "2", "--sft-episodes", "4", "--group-size", "2",
        "--groups-per-step", "1", "--learning-rate", "1e-3",
        "--option", "critic_learning_rate=1e-3",
    ]  # fmt: skip
    result = bench.main([*tiny, "--output", str(out), "--runs", str(runs)])

    saved = json.loads((out / "algorithms_demo.json").read_text())
    assert list(saved["table"]) == ["sft", "grpo", "ppo"]
    assert [(r["algo"], r["seed"]) for r in saved["runs"]] == [
        ("grpo", 0), ("grpo", 1), ("ppo", 0), ("ppo", 1)
    ]  # fmt: skip
    # the one warm start, measured with each seed's sampling (what that seed's gains pair with)
    assert [w["seed"] for w in saved["warm_measures"]] == [0, 1]
    for w in saved["warm_measures"]:
        assert w["heldout"]["sampled"]["episodes"] == 2 and w["heldout"]["greedy"]["episodes"] == 2
    for run in saved["runs"]:
        assert len(run["reward_mean"]) == 2  # one training return per RL step
        assert set(run["gain"]) == {"sampled", "greedy"} and run["gain"]["sampled"]["tasks"] == 2
        # every algorithm and seed started from the one saved warm start, without its own SFT
        folder = runs / f"seed{run['seed']}" / run["algo"]
        config = json.loads((folder / "config.json").read_text())
        assert config["sft_steps"] == 0 and config["learning_rate"] == 1e-3
        assert config["seed"] == run["seed"]
        assert Path(config["model"]) == runs / "sft" / "train" / "checkpoints" / "sft" / "model"
        assert config.get("critic_learning_rate") == (1e-3 if run["algo"] == "ppo" else None)
        assert len(run["curves"]["groups_with_signal"]) == 2
    # PPO has no beta and no per-turn credit; GRPO takes every demo setting
    dropped = {r["algo"]: r["dropped"] for r in saved["runs"]}
    assert dropped["grpo"] == ["critic_learning_rate"]
    assert {"beta", "credit", "aggregation"} <= set(dropped["ppo"])
    # the reproducing command names no folder of this machine
    assert str(tmp_path) not in saved["command"] and "--steps 2" in saved["command"]

    table = (out / "algorithms_demo.md").read_text()
    rows = [line.split("|")[1].strip() for line in table.splitlines() if line.startswith("| ")]
    assert rows == ["algorithm", "SFT warm start", "grpo", "ppo"]
    assert (out / "algorithms_demo.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    again = bench.main([*tiny, "--output", str(tmp_path / "again"), "--runs", str(runs),
                        "--report"])  # fmt: skip
    assert again["table"] == result["table"] == saved["table"]

    # a saved warm start: measured beside the algorithms' runs (two processes), not retrained
    saved_model = runs / "sft" / "train" / "checkpoints" / "sft" / "model"
    reused = bench.main([*tiny[:2], *tiny[3:], "--jobs", "2", "--warm-start",
                         str(saved_model), "--output", str(tmp_path / "reused"),
                         "--runs", str(tmp_path / "runs2")])  # fmt: skip
    assert reused["warm_start_source"] == "saved" and list(reused["table"]) == ["sft", "grpo"]
    assert reused["table"]["sft"] == saved["table"]["sft"]  # the same model, measured the same
    assert not (tmp_path / "runs2" / "sft" / "train").exists()
    assert str(saved_model) not in reused["command"]
