"""``arft train --env MATCoding-v0 --model tiny --algo NAME --steps 2`` for every algorithm,
and each algorithm's shipped config naming it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agents.algorithms import ALGORITHMS
from agents.cli import train as train_cli

CONFIGS = Path(__file__).resolve().parents[3] / "configs"
TINY = ["--group-size", "2", "--groups-per-step", "1", "--max-new-tokens", "8", "--max-turns",
        "1", "--report-to", "none", "--no-progress-bar", "--sample-every", "0"]  # fmt: skip


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_arft_train_runs_every_algorithm_on_mat_coding(name, tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["--env", "MATCoding-v0", "--model", "tiny", "--algo", name, "--steps", "2",
            "--output", str(run), *TINY]  # fmt: skip
    assert train_cli.main(argv) == 0, capsys.readouterr().err
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    assert json.loads((run / "config.json").read_text())["algo"] == name
    assert (run / "final" / "model.safetensors").is_file()


@pytest.mark.parametrize("name", sorted(set(ALGORITHMS) - {"grpo"}))
def test_each_algorithm_ships_a_tiny_config_that_names_it(name):
    values = train_cli.load_config_file(CONFIGS / f"{name}_tiny.yaml")
    assert values["algo"] == name
    config = ALGORITHMS[name].config_class.from_dict(values)
    assert config.algo == name
