"""Every ``arft`` command ends a user error with one message on stderr (what, where, the fix)
and a non-zero exit, never a traceback; ``--debug`` shows the traceback. The CLI runs in a
subprocess, as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


def arft(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "agents.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )


def user_error(result: subprocess.CompletedProcess) -> str:
    """The stderr of a run that failed cleanly: non-zero, one message, no traceback."""
    assert result.returncode != 0, result.stdout[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert "error:" in result.stderr
    return result.stderr


def test_unknown_env_id_suggests_the_closest():
    err = user_error(arft("play", "MATCodng-v0"))
    assert "unknown env id 'MATCodng-v0'" in err and "did you mean MATCoding-v0" in err
    err = user_error(arft("play", "NoSuchEnv-v0"))
    assert "NoSuchEnv-v0" in err


def test_misspelt_env_arg_names_the_accepted_arguments():
    err = user_error(arft("play", "HotpotQA-v0", "--env-arg", "max_turnz=3"))
    assert "max_turnz" in err and "did you mean max_turns" in err
    assert "its arguments are" in err and "backend" in err and "data" in err


def test_eval_with_a_missing_model_path(tmp_path):
    missing = tmp_path / "no_such_model"
    err = user_error(
        arft(
            "eval",
            "--env",
            "MATCoding-v0",
            "--model",
            str(missing),
            "--episodes",
            "1",
            "--output",
            str(tmp_path / "p.json"),
        )  # fmt: skip
    )
    assert str(missing) in err
    assert not (tmp_path / "p.json").exists()


@pytest.mark.parametrize(
    "name, text, expected",
    [
        ("bad.yaml", "steps: [1,\n", "not valid YAML"),
        ("bad.json", "{steps: 1}", "not valid JSON"),
        ("list.yaml", "- 1\n- 2\n", "expected a mapping"),
    ],
)
def test_bad_config_file(tmp_path, name, text, expected):
    config = tmp_path / name
    config.write_text(text)
    err = user_error(arft("train", "--config", str(config), "--output", str(tmp_path / "run")))
    assert expected in err and str(config) in err


def test_missing_config_file(tmp_path):
    err = user_error(arft("train", "--config", str(tmp_path / "nope.yaml")))
    assert "nope.yaml" in err and "cannot read" in err


def test_data_errors_are_messages_naming_file_row_and_field(shared_data, tmp_path):
    err = user_error(arft("play", "MATCoding-v0", "--env-arg", f"data={tmp_path / 'x.json'}"))
    assert "x.json" in err and "file not found" in err
    rows = json.loads((shared_data / "mat_coding_demo" / "coding_case.json").read_text())
    rows[2]["split"] = "medium"
    bad = tmp_path / "bench.json"
    bad.write_text(json.dumps(rows))
    images = f"image_root={shared_data / 'mat_coding_demo'}"
    err = user_error(arft("play", "MATCoding-v0", "--env-arg", f"data={bad}", "--env-arg", images))
    assert str(bad) in err and "row 2" in err and "'split'" in err and "medium" in err


def test_debug_shows_the_traceback():
    result = arft("--debug", "play", "MATCoding-v0", "--env-arg", "data=/nonexistent/x.json")
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_version_comes_from_the_package_metadata():
    result = arft("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"arft {version('arft')}"


def test_envs_prints_a_whole_sentence_and_the_data_source_of_every_id():
    import arft_envs

    result = arft("envs")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    summaries = {}
    for env_id in arft_envs.ENV_SPECS:
        (index,) = [i for i, line in enumerate(lines) if line.split()[:1] == [env_id]]
        summary = lines[index][len(env_id) :].strip()
        assert summary.endswith("."), summary  # never cut mid-sentence
        assert "``" not in summary and ":class:" not in summary
        assert lines[index + 1].split()[0] == "tasks:"
        summaries[env_id] = summary
    multihop = ["HotpotQA-v0", "2WikiMultihopQA-v0", "MuSiQue-v0", "Bamboogle-v0"]
    assert len({summaries[i] for i in multihop}) == 4  # each id says what it is
    assert "data=FILE" in result.stdout
