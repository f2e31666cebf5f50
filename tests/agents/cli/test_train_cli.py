"""``arft train``: flags over a config file over a resumed run's config, errors before any model
loads, and a smoke run that is resumed to a longer budget."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agents.cli import train as train_cli

SMALL = [
    "--group-size", "2", "--groups-per-step", "1", "--max-new-tokens", "12", "--max-turns", "2",
    "--save-every", "1", "--no-progress-bar", "--report-to", "none",
]  # fmt: skip


@pytest.fixture
def no_model_loads(monkeypatch):
    """Fail the test if anything tries to load a model."""
    from agents.policy import Policy

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the configuration was checked")

    monkeypatch.setattr(Policy, "from_pretrained", classmethod(refuse))


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--steps", "three"], "argument --steps: expected int, got 'three'"),
        (["--aggregation", "mean"], "invalid choice: 'mean' (choose from 'token-mean'"),
        (["--stesp", "3"], "did you mean --steps?"),
        (["--env", "MATCoding-v9"], "Did you mean 'MATCoding-v0'"),
        (["--group-size", "1"], "group_size must be >= 2"),
        (["--model", "/nowhere"], "'tiny' or a local checkpoint folder"),
    ],
)
def test_bad_flags_fail_before_any_model_loads(argv, message, capsys, no_model_loads, tmp_path):
    try:
        code = train_cli.main([*argv, "--output", str(tmp_path / "run")])
    except SystemExit as exit_:  # argparse's own errors
        code = exit_.code
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "suffix, text, message",
    [
        (".yaml", "steps: 3\nlerning_rate: 0.1\n", "unknown key 'lerning_rate'"),
        (".json", '{"beta": -1}', "beta must be >= 0"),
        (".json", '{"steps": 3,}', "not valid JSON"),
        (".yaml", "- a list\n", "expected a mapping"),
    ],
)
def test_bad_config_files_fail_with_what_is_allowed(
    suffix, text, message, capsys, no_model_loads, tmp_path
):
    path = tmp_path / f"config{suffix}"
    path.write_text(text)
    assert train_cli.main(["--config", str(path)]) == 2
    assert message in capsys.readouterr().err


def _resolve(*argv: str):
    """The TrainConfig that ``arft train ARGV`` would run, without running it."""
    import argparse

    parser = argparse.ArgumentParser()
    train_cli.add_train_command(parser.add_subparsers())
    return train_cli.resolve_config(parser.parse_args(["train", *argv]))


def test_flags_override_the_config_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("steps: 7\nbeta: 0.5\nenv_kwargs: {max_turns: 3}\nreport_to: [none]\n")
    config = _resolve("--config", str(path), "--beta", "0.1", "--env-arg", "reward_mode=paper")
    assert (config.steps, config.beta) == (7, 0.1)
    assert config.env_kwargs == {"max_turns": 3, "reward_mode": "paper"}


CONFIGS = Path(__file__).resolve().parents[3] / "configs"


@pytest.mark.parametrize(
    "name", sorted(p.name for p in CONFIGS.glob("*.yaml") if not p.name.startswith("accelerate"))
)
def test_shipped_training_configs_load_and_validate(name, tmp_path):
    config = _resolve("--config", str(CONFIGS / name), "--output", str(tmp_path))
    file_values = train_cli.load_config_file(CONFIGS / name)
    for key, value in file_values.items():
        if key != "output":
            assert getattr(config, key) == (tuple(value) if isinstance(value, list) else value)


def test_train_three_steps_then_resume_to_five(tmp_path, capsys):
    run = tmp_path / "run"
    base = ["--env", "MATCoding-v0", "--model", "tiny", "--algo", "grpo", "--output", str(run)]
    assert train_cli.main([*base, "--steps", "3", *SMALL]) == 0
    # the run folder is printed at the start, before the steps' output
    assert capsys.readouterr().out.splitlines()[0] == f"run folder: {run.resolve()}"
    assert train_cli.main(["--output", str(run), "--resume", "--steps", "5"]) == 0
    out = capsys.readouterr().out
    assert "resumed from" in out and "step_000003" in out
    steps = [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5]
    saved = json.loads((run / "config.json").read_text())
    assert (saved["steps"], saved["algo"]) == (5, "grpo")
    assert (run / "final" / "model.safetensors").is_file()
    # a changed setting is refused, before the model loads
    assert train_cli.main(["--output", str(run), "--resume", "--beta", "0.5"]) == 2
    assert "beta: 0.04 -> 0.5" in capsys.readouterr().err


# ---------------------------------------------------------------------- --algo


@pytest.mark.parametrize(
    "argv, message, known",
    [
        (["--algo", "trpo"], "argument --algo: invalid choice: 'trpo'", ["grpo", "ppo"]),
        (["--credit", "token"], "argument --credit: invalid choice: 'token'", ["episode", "turn"]),
    ],
)
def test_an_unknown_algo_or_option_value_lists_the_known_ones(
    argv, message, known, capsys, tmp_path
):
    with pytest.raises(SystemExit) as exit_:
        train_cli.main([*argv, "--output", str(tmp_path / "run")])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    listed = err[err.index(message) + len(message) :]  # argparse: "(choose from ...)"
    assert "choose from" in listed and all(name in listed for name in known)


def test_an_unknown_algo_in_a_config_file_is_a_clear_error(capsys, no_model_loads, tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("algo: reinforce\n")
    assert train_cli.main(["--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "unknown algo 'reinforce' (did you mean 'reinforce_pp'?); known algorithms: grpo" in err


def test_algo_picks_the_config_class_and_its_options_are_flags():
    from agents.algorithms import GRPOConfig

    config = _resolve("--algo", "grpo", "--credit", "turn", "--clip-high", "0.28")
    assert type(config) is GRPOConfig and (config.credit, config.clip_high) == ("turn", 0.28)


def test_help_lists_each_algorithms_options_under_its_name(capsys):
    with pytest.raises(SystemExit):
        train_cli.main(["--help"])
    out = capsys.readouterr().out
    assert "--algo" in out
    section = out[out.index("grpo options (--algo grpo)") :]
    for flag in ("--beta", "--credit", "--aggregation", "--scale-advantages"):
        assert flag in section


def test_python_m_agents_cli_runs_train_as_accelerate_launch_does(tmp_path):
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "agents.cli", "train", "--algo", "nope"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 2
    assert "invalid choice: 'nope'" in result.stderr and "Traceback" not in result.stderr
