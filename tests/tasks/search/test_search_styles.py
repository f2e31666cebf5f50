"""Each multi-hop id's offline default is its own synthetic world in its dataset's question
shapes, seeded and reproducible, and the scripted expert answers every task."""

from __future__ import annotations

import gymnasium as gym
import pytest

import arft_envs  # noqa: F401
from arft_envs.experts import ScriptedExpert
from arft_envs.tasks.search.styles import STYLES, DatasetStyleSearch

IDS = {"hotpotqa": "HotpotQA-v0", "2wiki": "2WikiMultihopQA-v0", "musique": "MuSiQue-v0",
       "bamboogle": "Bamboogle-v0"}  # fmt: skip
SHAPES = {
    "hotpotqa": {"bridge", "comparison"},
    "2wiki": {"comparison", "inference"},
    "musique": {"chain-2", "chain-3", "chain-4"},
    "bamboogle": {"compositional"},
}


def _tasks(dataset: str, n: int = 24):
    source = DatasetStyleSearch(dataset)
    return [source.make(seed) for seed in range(n)]


def test_each_dataset_has_its_own_entities_and_task_ids():
    tasks = {d: _tasks(d, 8) for d in STYLES}
    ids = [t.id for ts in tasks.values() for t in ts]
    assert len(set(ids)) == len(ids)
    questions = [t.question for ts in tasks.values() for t in ts]
    assert len(set(questions)) == len(questions)
    corpora = {d: {doc.title for doc in ts[0].meta["corpus"]} for d, ts in tasks.items()}
    for a in STYLES:
        for b in STYLES:
            if a < b:
                assert not corpora[a] & corpora[b], (a, b)  # no entity shared


@pytest.mark.parametrize("dataset", sorted(STYLES))
def test_question_shapes_of_each_dataset(dataset):
    tasks = _tasks(dataset)
    assert {t.meta["shape"] for t in tasks} == SHAPES[dataset]
    for t in tasks:
        shape, hops = t.meta["shape"], t.meta["hops"]
        if shape == "comparison":
            assert t.question.startswith("Which was ") and " or " in t.question
            assert t.answers[0] in t.question  # the answer is one of the two
        if dataset == "musique":
            assert hops == int(shape.split("-")[1])
        else:
            assert hops == 2
        assert len(t.meta["gold_queries"]) == hops


@pytest.mark.parametrize("dataset", sorted(STYLES))
def test_tasks_are_seeded_and_rebuilt_from_their_id(dataset):
    source = DatasetStyleSearch(dataset)
    again = _tasks(dataset, 6)
    for task, other in zip(_tasks(dataset, 6), again, strict=True):
        rebuilt = source.get(task.id)
        assert (task.id, task.question, task.answers) == (other.id, other.question, other.answers)
        assert (rebuilt.question, rebuilt.answers) == (task.question, task.answers)
    with pytest.raises(KeyError, match=f"synth-{dataset}-123"):
        source.get("synth-other-1")


@pytest.mark.parametrize("dataset", sorted(STYLES))
def test_the_expert_answers_every_shape_in_the_env(dataset):
    env = gym.make(IDS[dataset])
    expert = ScriptedExpert()
    seen = set()
    for seed in range(8):
        obs, info = env.reset(seed=seed)
        assert info["source"] == f"synthetic-{dataset}"
        done = False
        while not done:
            obs, reward, terminated, truncated, info = env.step(expert(obs, env))
            done = terminated or truncated
        assert info["em"] == 1.0, env.unwrapped.task.question
        seen.add(env.unwrapped.task.meta["shape"])
    env.close()
    assert len(seen) >= min(2, len(SHAPES[dataset]))
