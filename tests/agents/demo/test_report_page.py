"""An episode page opens with a summary table and marks each episode pass/fail with why."""

from html.parser import HTMLParser

import gymnasium as gym

import arft_envs  # noqa: F401
from agents.rollout.trajectory import write_trajectory_page
from agents.training.warm_start import expert_episode


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.cells, self.verdicts, self.reasons, self._in = [], [], [], None

    def handle_starttag(self, tag, attrs):
        classes = dict(attrs).get("class", "") or ""
        if tag in ("th", "td"):
            self._in = "cell"
        elif "verdict" in classes:
            self._in = "verdict"
        elif "reason" in classes:
            self._in = "reason"

    def handle_data(self, data):
        target = {"cell": self.cells, "verdict": self.verdicts, "reason": self.reasons}
        if self._in:
            target[self._in].append(data)
            self._in = None


def test_the_page_has_a_summary_table_and_a_mark_per_episode(tiny_policy, tmp_path):
    env = gym.make("EasyMATCoding-v0", degradations=["dark"], holdout=1)
    good = expert_episode(tiny_policy, env, seed=1)
    bad = expert_episode(tiny_policy, env, seed=2, expert=lambda obs, e: "no tags at all")
    env.close()
    path = write_trajectory_page(tmp_path / "p.html", [good, bad])
    page = _Page()
    page.feed(path.read_text())
    table = dict(zip(page.cells[::2], page.cells[1::2], strict=True))
    assert table["episodes"] == "2" and table["passed"] == "1"
    assert "mean f1" in table and "mean episode_return" in table
    assert page.verdicts == ["PASS", "FAIL"]
    assert page.reasons[0] == "answered exactly" and "no answer" in page.reasons[1]
    given = write_trajectory_page(
        tmp_path / "q.html", [good, bad], verdicts=[(False, "wrong diagnosis"), (True, "ok")]
    )
    page = _Page()
    page.feed(given.read_text())
    assert page.verdicts == ["FAIL", "PASS"] and page.reasons == ["wrong diagnosis", "ok"]


def test_the_reward_curve_shows_the_held_out_points_of_each_phase(tmp_path):
    import json

    from agents.demo.measure import Evaluation
    from agents.demo.report import heldout_points, plot_rewards

    def ev(success):
        return Evaluation(success, 0, 0, 0, 0, 0, 8)

    results = {
        "untrained": {"sampled": ev(0.0), "greedy": ev(0.0)},
        "sft": {"sampled": ev(0.62), "greedy": ev(0.75)},
        "grpo": {"sampled": ev(0.70), "greedy": ev(0.875)},
    }
    assert heldout_points(results) == [
        ("untrained", 0.0, 0.0),
        ("sft", 0.62, 0.75),
        ("grpo", 0.70, 0.875),
    ]
    rows = [{"step": i, "reward_mean": 4.5 + 0.01 * i} for i in range(1, 21)]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    path = plot_rewards(tmp_path, tmp_path / "curve.png", results)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
