"""The first command a new user runs on a real model: ``arft eval --env HotpotQA-v0 --model
smollm2-135m --episodes 2 --output P``, the packaged SmolLM2-135M-Instruct (GGUF) on the
offline multi-hop env, untrained, with the default budgets but for the tokens a turn."""

from __future__ import annotations

import json

from agents.cli import main


def test_eval_of_the_packaged_smollm2_on_hotpotqa(tmp_path, capsys):
    out = tmp_path / "P.json"
    argv = ["eval", "--env", "HotpotQA-v0", "--model", "smollm2-135m", "--episodes", "2"]
    code = main([*argv, "--output", str(out), "--max-new-tokens", "32", "--max-turns", "2"])
    assert code == 0, capsys.readouterr().err
    rows = json.loads(out.read_text())
    assert len(rows) == 2
    for row in rows:  # the paper's prediction record per episode, scorable by `arft score`
        assert row["id"].startswith("synth-hotpotqa-") and row["gt"] and row["query"]
    assert "HotpotQA-v0" in capsys.readouterr().out
