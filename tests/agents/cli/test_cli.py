"""``arft eval`` smoke runs with the tiny model, and the torch-free commands stay torch-free."""

from __future__ import annotations

import json
import subprocess
import sys

import gymnasium as gym
import pytest

import arft_envs
from agents.cli import main
from arft_envs.scoring import score_file

BENCHMARK = {"MATCoding-v0": "mat-coding", "MATSearch-v0": "mat-search"}  # else multihop


def _available(env_id: str) -> bool:
    try:
        gym.make(env_id).close()
    except (ImportError, AttributeError) as err:  # the env module has not landed yet
        pytest.skip(f"{env_id} is not available yet: {err}")
    return True


@pytest.mark.parametrize("env_id", sorted(arft_envs.ENV_SPECS))
def test_eval_smoke_on_every_registered_id(env_id, tmp_path, capsys):
    _available(env_id)
    out = tmp_path / "preds.json"
    code = main(
        [
            "eval",
            "--env",
            env_id,
            "--model",
            "tiny",
            "--episodes",
            "3",
            "--output",
            str(out),
            "--max-new-tokens",
            "8",
            "--max-turns",
            "2",
            "--num-envs",
            "2",
            "--trajectories",
            str(tmp_path / "episodes.jsonl"),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "F1" in printed and "EM" in printed and "all" in printed
    items = json.loads(out.read_text())
    assert len(items) == 3
    assert all(set(item) == {"id", "pred_answer", "gt", "query", "split"} for item in items)
    assert all(item["gt"] and item["query"] for item in items)
    score = score_file(out, BENCHMARK.get(env_id, "multihop"))
    assert score.overall.n == 3
    assert (tmp_path / "episodes.jsonl").read_text().count("\n") == 3


def test_eval_on_a_third_party_env_with_json_output(tmp_path, capsys):
    out = tmp_path / "preds.json"
    code = main(
        [
            "eval",
            "--env",
            "ToyImageTool-v0",
            "--model",
            "tiny",
            "--episodes",
            "2",
            "--output",
            str(out),
            "--max-new-tokens",
            "6",
            "--env-arg",
            "max_turns=2",
            "--json",
        ]
    )
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["benchmark"] == "multihop" and result["overall"]["n"] == 2
    assert set(result["by_split"]) <= {"simple", "hard"}
    assert score_file(out, "multihop").overall.n == 2


def test_eval_unknown_env_suggests_a_close_id(tmp_path, capsys):
    code = main(
        ["eval", "--env", "MATCodin-v0", "--model", "tiny", "--output", str(tmp_path / "p")]
    )
    assert code == 2
    assert "MATCoding-v0" in capsys.readouterr().err


def test_torch_free_commands_do_not_import_torch(tmp_path):
    preds = tmp_path / "p.json"
    preds.write_text(json.dumps([{"pred_answer": "a", "gt": ["a"]}]))
    script = (
        "import sys\n"
        "from agents.cli import main\n"
        f"assert main(['score', {str(preds)!r}, '--benchmark', 'multihop']) == 0\n"
        "assert main(['envs']) == 0\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "100.00" in done.stdout
    assert all(env_id in done.stdout for env_id in arft_envs.ENV_SPECS)
