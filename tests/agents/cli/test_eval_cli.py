"""``arft eval`` records each prediction's task id and split, so ``arft score`` on its file
agrees with what eval printed; ``--report`` writes the episodes' HTML page; a progress bar
counts the episodes."""

from __future__ import annotations

import json

from agents.cli import main
from arft_envs.scoring import score_file

TINY = ["--model", "tiny", "--max-new-tokens", "8", "--max-turns", "1", "--num-envs", "2"]


def test_eval_and_score_agree_by_split(tmp_path, capsys):
    out = tmp_path / "preds.json"
    report = tmp_path / "episodes.html"
    args = ["eval", "--env", "MATCoding-v0", "--episodes", "6", "--output", str(out), *TINY]
    code = main([*args, "--env-arg", "split=all", "--json", "--report", str(report)])
    assert code == 0
    printed = json.loads(capsys.readouterr().out.split("\nwrote")[0])
    items = json.loads(out.read_text())
    assert all(item["id"].startswith("synth-coding-all-") for item in items)
    splits = [item["split"] for item in items]
    assert set(splits) == {"simple", "hard"}  # a mixed draw, not the file's first 70 rows
    scored = score_file(out, "mat-coding")
    assert {k: v.n for k, v in scored.splits.items()} == {
        k: v["n"] for k, v in printed["by_split"].items()
    }
    assert scored.splits["hard"].n == splits.count("hard")
    assert not scored.warnings  # the recorded splits replace the benchmark's fixed slices
    page = report.read_text()
    assert page.count("synth-coding-all-") >= 6 and "<img" in page


def test_eval_progress_bar_counts_episodes(tmp_path, capsys):
    from agents.evaluate import evaluate
    from agents.policy import Policy
    from agents.rollout import RolloutConfig

    policy = Policy.from_pretrained("tiny", device="cpu")
    config = RolloutConfig(max_new_tokens=4, max_turns=1, temperature=0.0)
    evaluate(policy, "MATCoding-v0", episodes=3, config=config, num_envs=2, progress=True)
    err = capsys.readouterr().err
    assert "eval MATCoding-v0" in err and "3/3" in err
    # an episode is counted when it ends, before the last batch is over
    assert "1/3" in err or "2/3" in err
    evaluate(policy, "MATCoding-v0", episodes=1, config=config, num_envs=1, progress=False)
    assert "eval MATCoding-v0" not in capsys.readouterr().err
