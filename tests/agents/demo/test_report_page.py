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
    # a caller's own summary (the demo's: over every held-out episode, not just those shown)
    own = write_trajectory_page(tmp_path / "r.html", [good], summary=[("success", "0.625")])
    page = _Page()
    page.feed(own.read_text())
    assert page.cells == ["success", "0.625"]


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


def test_the_curve_hides_nothing_it_names(tmp_path):
    """Every line in a legend lies inside its own axis, and no two value labels of the
    held-out panel overlap (equal values included: untrained is 0.00 sampled and greedy)."""
    import json

    from agents.demo.measure import Evaluation
    from agents.demo.report import reward_figure

    def ev(success, episodes):
        return Evaluation(success, 0, 0, 0, 0, 0, episodes)

    results = {
        "untrained": {"sampled": ev(0.0, 192), "greedy": ev(0.0, 48)},
        "sft": {"sampled": ev(0.625, 192), "greedy": ev(0.938, 48)},
        "grpo": {"sampled": ev(0.646, 192), "greedy": ev(0.958, 48)},
    }
    rng = [0.1, -0.2, 0.3, 0.0, -0.1]
    rows = [
        {
            "step": i,
            "reward_mean": 4.6 + 0.01 * i + rng[i % 5],
            "reward/problem": 0.8 + rng[i % 5] / 5,
        }
        for i in range(1, 51)
    ]  # the return near 5, the diagnosis reward near 0.8: far below the return's range
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    fig = reward_figure(tmp_path, results)
    fig.canvas.draw()
    named = 0
    for ax in fig.axes:
        low, high = ax.get_ylim()
        for line in ax.get_lines():
            if line.get_label().startswith("_"):
                continue
            named += 1
            y = [v for v in line.get_ydata() if v == v]
            assert low <= min(y) and max(y) <= high, line.get_label()
    assert named == 5  # return, its average, diagnosis; sampled, greedy
    renderer = fig.canvas.get_renderer()
    labels = [t for ax in fig.axes for t in ax.texts]
    assert sorted(t.get_text() for t in labels) == ["0.00", "0.00", "0.62", "0.65", "0.94", "0.96"]
    boxes = [t.get_window_extent(renderer) for t in labels]
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            assert not a.overlaps(b), (a, b)
    side = fig.axes[1]
    assert [t.get_text() for t in side.get_xticklabels()] == [
        "untrained",
        "after SFT",
        "after GRPO",
    ]
    assert "sampled 192, greedy 48" in side.get_title()
