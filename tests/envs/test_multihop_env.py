"""The text-only multi-hop QA ids: synthetic default, real file formats, corpora and backends."""

from __future__ import annotations

import json
import warnings

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

import arft_envs  # noqa: F401
from arft_envs.experts import ScriptedExpert
from arft_envs.tools.search import BM25Search, Document

IDS = ["HotpotQA-v0", "2WikiMultihopQA-v0", "MuSiQue-v0", "Bamboogle-v0"]

HOTPOT = [
    {
        "_id": "h1",
        "question": "Which city is the birthplace of the founder of Quorvane?",
        "answer": "Telmoria",
        "supporting_facts": [["Quorvane", 0], ["Aldric Venhollow", 1]],
        "context": [
            ["Quorvane", ["Quorvane is a robotics company", " founded by Aldric Venhollow."]],
            ["Aldric Venhollow", ["Aldric Venhollow is an engineer.", " He was born in Telmoria."]],
            ["Brisk Harbour", ["Brisk Harbour is a fishing town."]],
        ],
    },
    {
        "_id": "h2",
        "question": "In what year was Zephtra founded?",
        "answer": "1990",
        "supporting_facts": [["Zephtra", 0]],
        "context": [
            ["Zephtra", ["Zephtra is a synthesizer maker founded in 1990."]],
            ["Brisk Harbour", ["Brisk Harbour is a fishing town."]],
        ],
    },
]
MUSIQUE = {
    "id": "2hop__1",
    "paragraphs": [
        {"idx": 0, "title": "Green", "paragraph_text": "Green is an album by Steve Hale."},
        {"idx": 1, "title": "Steve Hale", "paragraph_text": "Steve Hale married Mira Gold."},
    ],
    "question": "Who is the spouse of the Green performer?",
    "question_decomposition": [
        {"question": "Green >> performer", "answer": "Steve Hale", "paragraph_support_idx": 0},
        {"question": "#1 >> spouse", "answer": "Mira Gold", "paragraph_support_idx": 1},
    ],
    "answer": "Mira Gold",
    "answer_aliases": [],
    "answerable": True,
}


def search(query: str) -> str:
    return f"<think> Look it up. </think>\n<search> {query} </search>"


@pytest.fixture
def hotpot(tmp_path):
    path = tmp_path / "hotpot_dev_distractor.json"
    path.write_text(json.dumps(HOTPOT))
    return str(path)


@pytest.fixture
def flashrag(tmp_path):
    path = tmp_path / "test.jsonl"
    rows = [
        {"id": f"test_{i}", "question": f"Who founded Quorvane {i}?", "golden_answers": ["Aldric"]}
        for i in range(3)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.mark.parametrize("env_id", IDS)
def test_default_is_a_synthetic_text_world_the_expert_solves(env_id):
    env = gym.make(env_id)
    assert env.unwrapped.dataset in ("hotpotqa", "2wiki", "musique", "bamboogle")
    expert = ScriptedExpert()
    for seed in range(5):
        obs, info = env.reset(seed=seed)
        assert info["source"] == f"synthetic-{env.unwrapped.dataset}" and obs["images"] == ()
        assert all(p["type"] == "text" for m in obs["messages"] for p in m["content"])
        total, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, info = env.step(expert(obs, env))
            total += reward
            done = terminated or truncated
        assert total == pytest.approx(4.0)  # the live weights' maximum, whatever the hops
        assert info["em"] == 1.0


def _determinism(env_id, seed, **kwargs):
    env = gym.make(env_id, **kwargs)
    obs, info = env.reset(seed=seed)
    trace = [info["task_id"], obs["messages"]]
    for query in ("Quorvane founder", "Aldric Venhollow born"):
        obs, reward, *_ = env.step(search(query))
        trace += [reward, obs["messages"][-1]]
    return trace


@pytest.mark.parametrize("env_id", IDS)
def test_every_id_with_a_data_file_passes_check_env_and_is_deterministic(env_id, tmp_path):
    path = tmp_path / "data.json"
    path.write_text(json.dumps(HOTPOT))
    env = gym.make(env_id, data=str(path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_env(env.unwrapped, skip_render_check=True)
    assert _determinism(env_id, 3, data=str(path)) == _determinism(env_id, 3, data=str(path))
    assert _determinism(env_id, 3) == _determinism(env_id, 3)


def test_hotpotqa_live_reward_credits_retrieved_supporting_paragraphs(hotpot):
    env = gym.make("HotpotQA-v0", data=hotpot)
    obs, info = env.reset(options={"task_id": "h1"})
    assert info["source"] == "hotpotqa"
    assert env.unwrapped.planned_searches(env.unwrapped.task) == 2
    obs, reward, _, _, info = env.step(search("Quorvane robotics company"))
    assert info["reward_components"] == {"format": 0.125, "query": 0.375}
    assert "1. Title: Quorvane" in obs["messages"][-1]["content"][-1]["text"]
    _, _, _, _, info = env.step(search("Quorvane robotics company"))  # the same again
    assert info["reward_components"] == {"format": 0.125, "query": 0.0}
    _, _, _, _, info = env.step(search("fishing town"))  # beyond the plan
    assert info["reward_components"] == {"format": 0.0, "query": 0.0, "extra": -0.1}
    _, reward, terminated, _, info = env.step("<think> ok </think><answer> Telmoria </answer>")
    assert terminated and reward == 3.0 and info["golds"] == ["Telmoria"]


def test_musique_paper_mode_scores_against_the_decomposition(tmp_path):
    path = tmp_path / "musique_ans_v1.0_dev.jsonl"
    path.write_text(json.dumps(MUSIQUE) + "\n")
    env = gym.make("MuSiQue-v0", data=str(path), reward_mode="paper")
    env.reset(seed=0)
    assert env.unwrapped.task.meta["gold_queries"] == ["Green performer", "Steve Hale spouse"]
    _, reward, *_ = env.step(search("Green performer"))
    _, reward2, *_ = env.step(search("Steve Hale spouse"))
    assert (reward, reward2) == (2.0, 2.0)


def test_files_without_paragraphs_need_a_backend(flashrag, tmp_path):
    with pytest.raises(ValueError) as info:
        gym.make("Bamboogle-v0", data=flashrag)
    message = str(info.value)
    for option in (
        "'bm25:PATH'",
        "'dense:PATH'",
        "'serper'",
        "SearchBackend instance",
        "replay_only",
    ):
        assert option in message
    corpus = BM25Search([Document("Quorvane", "Quorvane was founded by Aldric.", "w:q")])
    env = gym.make("Bamboogle-v0", data=flashrag, backend=corpus)
    env.reset(seed=0)
    obs, reward, *_ = env.step(search("Quorvane founded"))
    assert reward == 0.25  # format only: no gold documents or queries to score the search by
    assert "Quorvane was founded by Aldric." in obs["messages"][-1]["content"][-1]["text"]
    _, reward, terminated, _, info = env.step("<think> ok </think><answer> Aldric </answer>")
    assert terminated and info["f1"] == 1.0 and reward == 3.0


def test_reference_prediction_file_with_a_corpus_backend(shared_data, tmp_path):
    path = shared_data / "reference_predictions" / "7b_step200_bamboogle_web_n4.json"
    corpus = tmp_path / "wiki.jsonl"
    corpus.write_text(
        json.dumps({"id": "1", "contents": '"Citibank"\nCitibank was founded in 1812.'}) + "\n"
    )
    env = gym.make("Bamboogle-v0", data=str(path), backend=f"bm25:{corpus}", limit=10)
    assert len(env.unwrapped.tasks) == 10
    env.reset(seed=0)
    obs, *_ = env.step(search("Citibank founded"))
    assert "Citibank was founded in 1812." in obs["messages"][-1]["content"][-1]["text"]


def test_dense_backend_over_the_file_corpus(hotpot):
    env = gym.make("HotpotQA-v0", data=hotpot, backend="dense", k=1)
    env.reset(options={"task_id": "h2"})
    obs, reward, _, _, info = env.step(search("which company builds synthesizers"))
    assert "1. Title: Zephtra" in obs["messages"][-1]["content"][-1]["text"]
    assert info["reward_components"] == {"format": 0.25, "query": 0.75}  # live, N = 1


def test_stepwise_mode_and_unknown_dataset_are_refused():
    from arft_envs.envs.multihop_qa import MultihopQAEnv

    with pytest.raises(ValueError, match="no stepwise training rows"):
        gym.make("HotpotQA-v0", mode="stepwise")
    with pytest.raises(ValueError, match="dataset must be one of"):
        MultihopQAEnv(dataset="triviaqa")
