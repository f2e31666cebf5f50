"""Clue images: every kind renders reproducibly, and text-only tasks have none."""

from __future__ import annotations

import numpy as np
import pytest

from arft_envs.tasks.search.clues import Clue, render_clue
from arft_envs.tasks.search.relations import CLUES
from arft_envs.tasks.search.synthetic import SyntheticSearch


def test_images_name_the_entity_and_text_only_tasks_have_none():
    task = SyntheticSearch().make(2)
    (image,) = task.load_images()
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert image.std() > 10  # not a blank canvas
    assert task.meta["clue"] in {clue for clue, _, _ in CLUES.values()}
    assert "image" in task.question or "poster" in task.question
    text = SyntheticSearch(text_only=True).make(2)
    assert text.images == [] and text.meta["entity"] in text.question
    assert text.id.startswith("synth-text-")


@pytest.mark.parametrize("kind", ["logo", "label", "sign", "poster", "banner"])
def test_every_clue_kind_renders(kind):
    image = render_clue(Clue(kind, "Quorvane Festival", 7), size=(256, 320))
    assert image.shape == (256, 320, 3)
    assert np.array_equal(image, render_clue(Clue(kind, "Quorvane Festival", 7), size=(256, 320)))
