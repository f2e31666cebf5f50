"""Image sizing and the budget rule, on plain arrays (no model)."""

from __future__ import annotations

import numpy as np
import pytest

from agents.images import ImageBudget, ImageGeometry, ImagePlan

GEO = ImageGeometry(factor=28, min_pixels=4 * 28 * 28, max_pixels=64 * 28 * 28)


def image(h, w):
    return np.zeros((h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize(
    "h, w, expected",
    [
        (224, 224, (224, 224)),  # already fits: unchanged
        (448, 448, (224, 224)),  # too big: halved
        (10, 10, (56, 56)),  # too small: up to min_pixels
        (1, 5000, (28, 1792)),  # extreme aspect ratio: clamped, not refused
        (100, 150, (112, 140)),
    ],
)
def test_fit(h, w, expected):
    assert GEO.fit(h, w) == expected


def test_fit_properties():
    rng = np.random.default_rng(0)
    for _ in range(3000):
        h, w = (int(v) for v in rng.integers(1, 4000, size=2))
        cap = int(rng.integers(1, 80_000))
        H, W = GEO.fit(h, w, max_pixels=cap)
        assert H % 28 == 0 and W % 28 == 0 and H >= 28 and W >= 28
        assert GEO.tokens(H, W) <= max(cap // 784, GEO.min_tokens, 1) or GEO.tokens(H, W) <= 64


def test_budget_rule_downscales_oldest_first_then_drops_then_shrinks_newest():
    plan = ImagePlan(GEO, max_tokens=100)
    assert not plan.add([image(224, 224)], turn=0)  # 64 tokens
    # A second 64-token image: the oldest is halved (64 -> at most 32) and the newest kept.
    assert plan.add([image(224, 224)], turn=1)
    old, new = (plan.tokens(s) for s in plan.slots)
    assert 16 < old <= 32 and new == 64
    assert plan.events[0].action == "downscale" and plan.events[0].slot == 0
    plan.add([image(224, 224)], turn=2)
    tokens = [plan.tokens(s) for s in plan.slots]
    assert tokens[-1] == 64 and sum(tokens) <= 100
    assert all(plan.tokens(s) >= GEO.min_tokens for s in plan.slots if not s.dropped)
    for turn in range(3, 12):
        plan.add([image(224, 224)], turn)
        assert plan.total_tokens <= 100
        assert plan.tokens(plan.slots[-1]) == 64  # the newest keeps its size
    assert any(e.action == "drop" for e in plan.events)
    dropped = [i for i, s in enumerate(plan.slots) if s.dropped]
    assert dropped == list(range(len(dropped)))  # the oldest go first


def test_newest_alone_over_budget_is_downscaled():
    plan = ImagePlan(GEO, max_tokens=10)
    rewritten = plan.add([image(224, 224)], turn=0)
    assert not rewritten
    assert GEO.min_tokens <= plan.total_tokens <= 10
    assert plan.events[-1].action == "downscale"


def test_text_only_model_drops_every_image():
    plan = ImagePlan(None, max_tokens=100)
    plan.add([image(50, 50), image(60, 60)], turn=0)
    assert all(s.dropped for s in plan.slots)
    assert [e.action for e in plan.events] == ["text_only", "text_only"]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"max_image_tokens": 0}, "max_image_tokens"),
        ({"min_pixels": 0}, "min_pixels"),
        ({"min_pixels": 10, "max_pixels": 5}, "must not exceed"),
    ],
)
def test_budget_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ImageBudget(**kwargs)
