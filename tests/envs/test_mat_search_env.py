"""MATSearch-v0: the expert's return, the reward rules, modes, data files and backends."""

from __future__ import annotations

import json
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import arft_envs  # noqa: F401
from arft_envs.envs.mat_search import MATSearchEnv
from arft_envs.experts import ScriptedExpert
from arft_envs.tasks.search_world import SyntheticSearch, write_mat_search, write_search_rows
from arft_envs.tools.search import BM25Search


def run_expert(env, seed=None, options=None):
    expert = ScriptedExpert()
    obs, info = env.reset(seed=seed, options=options)
    total, infos, done = 0.0, [], False
    while not done:
        obs, reward, terminated, truncated, info = env.step(expert(obs, env))
        total += reward
        infos.append(info)
        done = terminated or truncated
    return total, infos


def search(query: str) -> str:
    return f"<think> Let me look it up. </think>\n<search> {query} </search>"


def answer(text: str) -> str:
    return f"<think> I know it now. </think>\n<answer> {text} </answer>"


def test_expert_solves_200_synthetic_tasks_at_the_maximum_return():
    env = gym.make("MATSearch-v0")
    splits = set()
    for seed in range(200):
        total, infos = run_expert(env, seed=seed)
        task = env.unwrapped.task
        hops = task.meta["hops"]
        # live weights: the searches together are worth 1, the answer 1 + 2 (rewards.py)
        assert total == pytest.approx(4.0), (task.id, [i["reward_components"] for i in infos])
        assert infos[-1]["f1"] == 1.0 and infos[-1]["em"] == 1.0
        assert infos[-1]["tool_failures"] == 0 and infos[-1]["format_errors"] == 0
        assert len(infos) == hops + 1
        splits.add(task.split)
    assert splits == {"simple", "hard"}


def test_expert_earns_the_same_return_in_paper_mode():
    env = gym.make("MATSearch-v0", reward_mode="paper")
    for seed in range(10):
        total, infos = run_expert(env, seed=seed)
        assert total == 2 * (env.unwrapped.task.meta["hops"] + 1)


def _hard_task_env(**kwargs):
    env = gym.make("MATSearch-v0", split="hard", **kwargs)
    env.reset(seed=1)
    return env, env.unwrapped.task


def test_live_query_reward_is_retrieval_of_a_new_gold_document():
    env, task = _hard_task_env()
    first, n = task.meta["gold_queries"][0], task.meta["hops"]
    _, reward, _, _, info = env.step(search(first))
    assert info["reward_components"] == {"format": 0.25 / n, "query": 0.75 / n}
    assert reward == pytest.approx(1 / n)
    _, _, _, _, info = env.step(search(first))  # the same document again: nothing new
    assert info["reward_components"] == {"format": 0.25 / n, "query": 0.0}
    _, _, _, _, info = env.step(search("banana bread recipe"))
    if n == 2:  # the plan's searches are used up: a small cost
        assert info["reward_components"] == {"format": 0.0, "query": 0.0, "extra": -0.1}
    else:
        assert info["reward_components"]["query"] == 0.0


def test_searching_beyond_the_plan_never_pays():
    env = gym.make("MATSearch-v0", split="simple", max_turns=5)
    env.reset(seed=0)
    query = env.unwrapped.task.meta["gold_queries"][0]
    rewards = [env.step(search(query))[1] for _ in range(4)]
    assert rewards == [1.0, -0.1, -0.1, -0.1]
    _, _, terminated, truncated, info = env.step(search(query))
    assert truncated and not terminated and info["answer"] is None and info["f1"] == 0.0


def test_paper_query_reward_is_thresholded_similarity_to_the_ith_gold_query():
    env, task = _hard_task_env(reward_mode="paper")
    entity = task.meta["gold_queries"][0].rsplit(" ", 2)[0]
    _, _, _, _, info = env.step(search(f"what is {task.meta['gold_queries'][0]}"))
    assert 0.5 < info["reward_components"]["query"] < 1.0
    _, _, _, _, info = env.step(search(f"recipe for {entity.lower()} soup"))
    assert info["reward_components"]["query"] == 0.0


def test_answer_reward_format_and_f1_and_gold_only_at_the_end():
    env = gym.make("MATSearch-v0", split="simple")
    obs, _ = env.reset(seed=4)
    gold = env.unwrapped.task.answers[0]
    text = json.dumps(obs["messages"], default=str)
    assert gold not in text
    _, reward, terminated, _, info = env.step(f"<answer> {gold} </answer>")  # no <think>
    assert terminated and info["reward_components"] == {"format": 0.0, "answer": 2.0}
    assert (info["answer"], info["golds"], info["f1"], info["em"]) == (gold, [gold], 1.0, 1.0)


def test_format_errors_are_explained_and_counted():
    env = gym.make("MATSearch-v0")
    env.reset(seed=0)
    obs, reward, terminated, _, info = env.step("<think> hmm </think> <code>print(1)</code>")
    assert reward == 0.0 and not terminated and info["format_errors"] == 1
    assert "not available" in obs["messages"][-1]["content"][-1]["text"]
    obs, _, _, _, info = env.step("<search> a </search><search> b </search>")
    assert info["format_errors"] == 2


def test_tool_message_is_the_numbered_information_block():
    env = gym.make("MATSearch-v0", k=2)
    env.reset(seed=0)
    obs, *_ = env.step(search(env.unwrapped.task.meta["gold_queries"][0]))
    message = obs["messages"][-1]
    assert message["role"] == "tool"
    text = message["content"][-1]["text"]
    assert text.startswith("<information>\n1. Title: ") and "\n2. Title: " in text
    assert "\n3. Title: " not in text and text.endswith("</information>")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"split": "simple"},
        {"split": "hard", "reward_mode": "paper"},
        {"mode": "stepwise"},
    ],
    ids=["simple", "hard-paper", "stepwise"],
)
def test_variants_pass_check_env_and_are_deterministic(kwargs):
    env = gym.make("MATSearch-v0", **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_env(env.unwrapped, skip_render_check=True)

    def trace(seed):
        total, infos = run_expert(env, seed=seed)
        obs = env.unwrapped._observation()
        return env.unwrapped.task.id, total, [i["reward_components"] for i in infos], obs

    a, b = trace(3), trace(3)
    assert a[:3] == b[:3]
    assert a[3]["messages"] == b[3]["messages"]
    assert all(np.array_equal(x, y) for x, y in zip(a[3]["images"], b[3]["images"], strict=True))


def test_stepwise_synthetic_rows_score_the_gold_step_fully():
    env = gym.make("MATSearch-v0", mode="stepwise")
    for seed in range(6):
        obs, _ = env.reset(seed=seed)
        (user,) = obs["messages"]
        assert user["role"] == "user" and user["content"][0] == {"type": "image", "index": 0}
        assert "# Current reasoning chain:\n<query>" in user["content"][-1]["text"]
        _, reward, terminated, _, info = env.step(ScriptedExpert()(obs, env))
        assert terminated and reward == 2.0, info["reward_components"]


def test_official_format_files_and_a_corpus_backend(tmp_path):
    path = write_mat_search(tmp_path, n=10, seed=2)
    with pytest.raises(ValueError, match="no documents to search.*'serper'"):
        gym.make("MATSearch-v0", data=str(path))
    env = gym.make("MATSearch-v0", data=str(path), backend=f"bm25:{tmp_path / 'corpus.jsonl'}")
    for task_id in ("1", "10"):
        total, infos = run_expert(env, options={"task_id": task_id})
        assert total == pytest.approx(4.0)
        assert infos[-1]["em"] == 1.0
    assert env.unwrapped.task.split == "hard"
    simple = gym.make("MATSearch-v0", data=str(path), split="simple", backend=BM25Search(["x y z"]))
    assert len(simple.unwrapped.tasks) == 5


def test_stepwise_rows_file(tmp_path):
    path = write_search_rows(tmp_path / "rft_agent_search_20.json", n=3, seed=1)
    env = gym.make("MATSearch-v0", data=str(path), mode="stepwise")
    rows = json.loads(path.read_text())
    obs, _ = env.reset(options={"task_id": "1"})
    assert rows[1]["problem"] in obs["messages"][0]["content"][-1]["text"]
    _, reward, *_ = env.step(ScriptedExpert()(obs, env))
    assert reward == 2.0


def test_vector_envs_run_in_subprocesses():
    envs = gym.make_vec(
        "MATSearch-v0",
        num_envs=2,
        vectorization_mode="async",
        vector_kwargs={"shared_memory": False},
    )
    obs, infos = envs.reset(seed=0)
    assert len(obs) == 2 and obs[0]["messages"][1]["content"][0] == {"type": "image", "index": 0}
    obs, rewards, terminated, truncated, infos = envs.step(
        ["<think> a </think><search> anything at all </search>"] * 2
    )
    # format only, at the live weight 0.25/N for the task's N planned searches (1 to 3)
    assert all(any(r == pytest.approx(0.25 / n) for n in (1, 2, 3)) for r in rewards)
    envs.close()


def test_bad_arguments_are_rejected_with_the_fix():
    with pytest.raises(ValueError, match="split must be"):
        MATSearchEnv(split="medium")
    with pytest.raises(ValueError, match="replay_only=True needs cache"):
        MATSearchEnv(replay_only=True)
    with pytest.raises(ValueError, match="k must be a positive integer"):
        MATSearchEnv(k=0)
    with pytest.raises(ValueError, match="unknown search backend"):
        MATSearchEnv(backend="altavista")
    env = MATSearchEnv(tasks=SyntheticSearch(split="simple"))
    assert env.reset(seed=0)[1]["split"] == "simple"


def _scripted_return(env, seed, extra: int, missing: int, right: bool, **kwargs) -> float:
    """The return of a scripted episode: the gold queries with ``missing`` of them left out
    and ``extra`` off-plan searches added, then the right (or a wrong) answer."""
    env.reset(seed=seed)
    task = env.unwrapped.task
    queries = list(task.meta["gold_queries"])
    queries = queries[: len(queries) - missing] + ["banana bread recipe"] * extra
    total = sum(env.step(search(q))[1] for q in queries)
    _, reward, terminated, _, _ = env.step(answer(task.answers[0] if right else "Nobody at all"))
    assert terminated
    return total + reward


@pytest.mark.parametrize(
    "better,worse",
    [
        ({"extra": 0, "missing": 0, "right": True}, {"extra": 1, "missing": 0, "right": True}),
        ({"extra": 0, "missing": 0, "right": True}, {"extra": 0, "missing": 1, "right": True}),
        ({"extra": 1, "missing": 0, "right": True}, {"extra": 0, "missing": 0, "right": False}),
        ({"extra": 0, "missing": 1, "right": True}, {"extra": 0, "missing": 0, "right": False}),
        ({"extra": 0, "missing": 2, "right": True}, {"extra": 0, "missing": 0, "right": False}),
    ],
    ids=["one-more", "one-less", "more>wrong", "less>wrong", "no-search>wrong"],
)
@pytest.mark.parametrize("split", ["simple", "hard"])
def test_live_optimum_is_the_right_answer_with_the_planned_hops(better, worse, split):
    env = gym.make("MATSearch-v0", split=split, max_turns=6)
    for seed in range(3):
        env.reset(seed=seed)
        if better["missing"] > env.unwrapped.task.meta["hops"]:
            continue
        assert _scripted_return(env, seed, **better) > _scripted_return(env, seed, **worse)


def test_paper_mode_keeps_the_authors_search_weights():
    env = gym.make("MATSearch-v0", split="simple", reward_mode="paper")
    env.reset(seed=0)
    assert env.unwrapped.planned_searches(env.unwrapped.task) == 1
    # the authors': a search and an answer each worth up to 2, searches beyond the plan 0
    rewards = [env.step(search("banana bread recipe"))[1] for _ in range(2)]
    assert rewards == [1.0, 0.0]  # format only: the query is far from the gold
    _, reward, *_ = env.step(answer(env.unwrapped.task.answers[0]))
    assert reward == 2.0
