"""Smoke runs of the torch-free CLI commands: envs, score, play."""

import json
import subprocess
import sys

import pytest

from arft_envs.cli import main


def test_envs_lists_every_id(capsys):
    assert main(["envs"]) == 0
    out = capsys.readouterr().out
    for env_id in ("MATCoding-v0", "MATSearch-v0", "HotpotQA-v0", "Bamboogle-v0"):
        assert env_id in out


def test_score_json_reproduces_the_table(shared_data, capsys):
    path = shared_data / "reference_predictions" / "7b_step200_mat_search_web_n4.json"
    assert main(["score", str(path), "--benchmark", "mat-search", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert round(result["overall"]["f1"], 2) == 63.77
    assert round(result["splits"]["hard"]["em"], 2) == 44.00


def test_score_reports_a_broken_file(tmp_path, capsys):
    bad = tmp_path / "preds.json"
    bad.write_text('[{"pred_answer": "x", "gt": ["x"]}, {"pred_answer": 3, "gt": "y"}]')
    assert main(["score", str(bad), "--benchmark", "multihop"]) == 2
    err = capsys.readouterr().err
    assert "preds.json" in err and "row 1" in err and "pred_answer" in err


def test_play_with_the_expert_writes_a_report(tmp_path, capsys):
    report = tmp_path / "play.html"
    args = ["play", "MATCoding-v0", "--expert", "--episodes", "2", "--report", str(report)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.count("episode ") >= 2 and "f1=1.00" in out
    page = report.read_text()
    assert page.count("data:image/png;base64,") >= 2 and "<answer>" in page.replace(
        "&lt;", "<"
    ).replace("&gt;", ">")


def test_console_script_runs_without_torch():
    code = (
        "import sys; from agents.cli import main; main(['envs']); "
        "assert 'torch' not in sys.modules, 'arft envs imported torch'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "MATCoding-v0" in done.stdout


@pytest.mark.parametrize("bad", [["score", "x.json"], ["play"], ["nonsense"]])
def test_bad_usage_exits_with_a_message(bad, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(bad)
    assert exit_info.value.code == 2
    assert "usage" in capsys.readouterr().err
