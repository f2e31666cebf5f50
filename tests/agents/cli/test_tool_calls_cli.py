"""``--env-arg action_format=tool_calls`` through the CLI: ``arft eval`` and ``arft train`` run
tiny-qwen on native tool calls (the env's tools in the prompt's tools block, turns parsed as
calls), with tiny budgets."""

from __future__ import annotations

import json

from agents.cli import main
from agents.cli import train as train_cli

TOOL_CALLS = ["--env-arg", "action_format=tool_calls", "--max-new-tokens", "8", "--max-turns", "2"]


def _first_prompts(path):
    from agents.models.tiny_qwen import build_tokenizer

    tok = build_tokenizer()
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return [tok.decode(r["input_ids"][: r["turn_spans"][0][0]]) for r in rows]


def test_eval_with_native_tool_calls(tmp_path, capsys):
    out, episodes = tmp_path / "Q.json", tmp_path / "episodes.jsonl"
    argv = ["eval", "--env", "MATCoding-v0", "--model", "tiny-qwen", "--episodes", "2"]
    code = main([*argv, "--output", str(out), "--trajectories", str(episodes), *TOOL_CALLS])
    assert code == 0, capsys.readouterr().err
    assert len(json.loads(out.read_text())) == 2
    for prompt in _first_prompts(episodes):
        assert (
            "<tools>" in prompt and '"name": "problem"' in prompt and '"name": "answer"' in prompt
        )


def test_eval_with_native_tool_calls_and_a_model_no_parser_fits(tmp_path, capsys):
    argv = ["eval", "--env", "MATCoding-v0", "--model", "tiny", "--episodes", "1"]
    assert main([*argv, "--output", str(tmp_path / "Q.json"), *TOOL_CALLS]) == 2
    err = capsys.readouterr().err
    assert "no tool-call parser fits the tokenizer" in err and "Traceback" not in err


def test_train_one_step_with_native_tool_calls(tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["--env", "MATCoding-v0", "--model", "tiny-qwen", "--algo", "grpo", "--steps", "1"]
    small = ["--group-size", "2", "--groups-per-step", "1", "--no-progress-bar"]
    code = train_cli.main([*argv, "--output", str(run), *TOOL_CALLS, *small, "--report-to", "none"])
    assert code == 0, capsys.readouterr().err
    [metrics] = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert metrics["step"] == 1
    saved = json.loads((run / "config.json").read_text())
    assert saved["env_kwargs"]["action_format"] == "tool_calls"
