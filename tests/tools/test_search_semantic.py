"""The search-query similarity reward with the real bundled MiniLM model (loaded once)."""

from __future__ import annotations

import numpy as np
import pytest

from arft_envs.rewards import search_accuracy_reward, search_query_reward
from arft_envs.tools.search import semantic


def test_paraphrase_scores_above_threshold_and_unrelated_scores_zero():
    sims = semantic.query_similarities(
        ["who is the founder of the company Quorvane", "best banana bread recipe"],
        ["Quorvane founder", "Quorvane founder"],
    )
    rewards = [search_query_reward(s) for s in sims.tolist()]
    assert rewards[0] > 0.5
    assert rewards[1] == 0.0


def test_similarities_are_batched_symmetric_and_exact_for_identical_strings():
    sims = semantic.query_similarities(
        ["Telmoria mayor", "mayor of Telmoria", " Telmoria mayor ", "volcano eruption"],
        ["mayor of Telmoria", "Telmoria mayor", "Telmoria mayor", "Telmoria mayor"],
    )
    assert sims[0] == pytest.approx(sims[1], abs=1e-6)  # cosine is symmetric
    assert sims[2] == 1.0  # identical after stripping: no model call needed
    assert sims[0] > 0.8 > sims[3]
    assert semantic.query_similarities([], []).shape == (0,)
    with pytest.raises(ValueError, match="2 queries but 1"):
        semantic.query_similarities(["a", "b"], ["a"])


def test_model_is_loaded_once_per_process():
    first = semantic.sentence_model()
    assert semantic.sentence_model() is first
    vectors = semantic.embed(["one", "two"])
    assert vectors.shape == (2, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)


def test_paper_accuracy_reward_on_a_search_step():
    gold = "<think> I need the founder. </think>\n<search> Quorvane founder </search>"
    good = "<think> Find who founded it. </think><search> who founded Quorvane </search>"
    wrong_kind = "<think> Done. </think><answer> Aldric </answer>"
    assert search_accuracy_reward(good, gold, semantic.query_similarity) > 0.5
    assert search_accuracy_reward(wrong_kind, gold, semantic.query_similarity) == 0.0


def test_missing_model_directory_is_explained(tmp_path):
    with pytest.raises(FileNotFoundError, match="local path only"):
        semantic.sentence_model(tmp_path / "nowhere")
    assert semantic.semantic_available() is None
    assert semantic.default_model_path().joinpath("config.json").is_file()
