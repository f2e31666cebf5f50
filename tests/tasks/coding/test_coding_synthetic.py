"""The synthetic MAT-Coding generator: reproducible tasks, every degradation class, every content kind."""

from __future__ import annotations

import numpy as np
import pytest

from arft_envs.tasks.coding.official import SPLIT_CLASSES
from arft_envs.tasks.coding.synthetic import SyntheticCoding

ALL_CLASSES = {c for classes in SPLIT_CLASSES.values() for c in classes}


# ============================================================================ the generator


def test_same_seed_same_task_and_pixels():
    a, b = SyntheticCoding().make(7), SyntheticCoding().make(7)
    assert (a.id, a.question, a.answers, a.split) == (b.id, b.question, b.answers, b.split)
    assert a.meta == b.meta
    assert np.array_equal(a.load_images()[0], b.load_images()[0])
    again = SyntheticCoding().get(a.id)
    assert np.array_equal(again.load_images()[0], a.load_images()[0])
    source = SyntheticCoding()
    first = source.sample(np.random.default_rng(3))
    assert first.id == source.sample(np.random.default_rng(3)).id


def test_different_seeds_differ():
    tasks = [SyntheticCoding().make(seed) for seed in range(12)]
    assert len({t.id for t in tasks}) == 12
    assert len({(t.question, t.answers[0]) for t in tasks}) > 8
    images = [t.load_images()[0] for t in tasks[:4]]
    assert not any(np.array_equal(images[0], other) for other in images[1:])


def test_images_are_lazy_uint8_rgb():
    task = SyntheticCoding().make(1)
    assert callable(task.images[0]) and task._cache is None
    (image,) = task.load_images()
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert not image.flags.writeable
    assert sorted(image.shape[:2]) == [384, 512]


def test_get_rebuilds_any_split_and_rejects_foreign_ids():
    hard = SyntheticCoding("hard").make(5)
    assert SyntheticCoding("all").get(hard.id).meta == hard.meta
    with pytest.raises(KeyError, match="synth-coding"):
        SyntheticCoding().get("12")


def test_constructor_validation():
    with pytest.raises(ValueError, match="split"):
        SyntheticCoding(split="easy")
    with pytest.raises(ValueError, match="content"):
        SyntheticCoding(content="emoji")
    with pytest.raises(ValueError, match="image_size"):
        SyntheticCoding(image_size=(32, 32))


@pytest.mark.parametrize("split", ["simple", "hard", "all"])
def test_every_degradation_class_appears_in_its_split(split):
    source = SyntheticCoding(split)
    tasks = [source.make(seed) for seed in range(400)]
    classes = {tuple(t.meta["degradations"]) for t in tasks}
    expected = ALL_CLASSES if split == "all" else set(SPLIT_CLASSES[split])
    assert classes == expected
    for task in tasks:
        names = tuple(task.meta["degradations"])
        assert names in SPLIT_CLASSES[task.split]
        assert task.meta["gold_plan"] == (
            ["problem", "answer"] if names == ("none",) else ["problem", "code", "answer"]
        )
    if split == "hard":
        assert all(len(c) == 2 and c[0].startswith("rotation") for c in classes - {("crop",)})


@pytest.mark.parametrize("content", ["glyph", "number", "word", "phrase", "lines", "sign"])
def test_each_content_kind(content):
    source = SyntheticCoding(content=content, image_size=(256, 320))
    for seed in range(6):
        task = source.make(seed)
        assert task.meta["content"] == content
        assert task.answers[0].strip() and "\n" not in task.answers[0]
        assert task.load_images()[0].shape[2] == 3
