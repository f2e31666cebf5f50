"""benchmarks/algorithms_demo.py on a tiny budget: two algorithms, one seed, two RL steps from
one saved warm start; the table, the JSON and the PNG are written with the right rows, each
run starts from that warm start, and --report rebuilds the same table from the run's records."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def _benchmark():
    spec = importlib.util.spec_from_file_location(
        "algorithms_demo", REPO / "benchmarks" / "algorithms_demo.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tiny_comparison_writes_table_json_and_png(tmp_path):
    bench = _benchmark()
    out, runs = tmp_path / "results", tmp_path / "runs"
    tiny = [
        "--algos", "grpo", "ppo", "--seeds", "1", "--steps", "2", "--holdout", "2",
        "--eval-samples", "1", "--sft-steps", "2", "--sft-episodes", "4", "--group-size", "2",
        "--groups-per-step", "1",
    ]  # fmt: skip
    result = bench.main([*tiny, "--output", str(out), "--runs", str(runs)])

    saved = json.loads((out / "algorithms_demo.json").read_text())
    assert list(saved["table"]) == ["sft", "grpo", "ppo"]
    assert [(r["algo"], r["seed"]) for r in saved["runs"]] == [("grpo", 0), ("ppo", 0)]
    warm = saved["warm_starts"][0]["heldout"]
    assert warm["sampled"]["episodes"] == 2 and warm["greedy"]["episodes"] == 2
    for run in saved["runs"]:
        assert len(run["reward_mean"]) == 2  # one training return per RL step
        assert set(run["gain"]) == {"sampled", "greedy"} and run["gain"]["sampled"]["tasks"] == 2
        # every algorithm started from the seed's one saved warm start, without its own SFT
        config = json.loads((runs / "seed0" / run["algo"] / "config.json").read_text())
        assert config["sft_steps"] == 0
        assert (
            Path(config["model"])
            == runs / "seed0" / "sft" / "train" / "checkpoints" / "sft" / "model"
        )
    # PPO has no beta and no per-turn credit; GRPO takes every demo setting
    dropped = {r["algo"]: r["dropped"] for r in saved["runs"]}
    assert dropped["grpo"] == [] and {"beta", "credit", "aggregation"} <= set(dropped["ppo"])
    # the reproducing command names no folder of this machine
    assert str(tmp_path) not in saved["command"] and "--steps 2" in saved["command"]

    table = (out / "algorithms_demo.md").read_text()
    rows = [line.split("|")[1].strip() for line in table.splitlines() if line.startswith("| ")]
    assert rows == ["algorithm", "SFT warm start", "grpo", "ppo"]
    assert (out / "algorithms_demo.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    again = bench.main([*tiny, "--output", str(tmp_path / "again"), "--runs", str(runs),
                        "--report"])  # fmt: skip
    assert again["table"] == result["table"] == saved["table"]
