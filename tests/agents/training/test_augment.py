"""Rollout noise augmentation: the perturbations on hand-computed values, the share of each
group that is perturbed, and a tiny-model step in which the perturbed episodes were generated
from different pixels while the update read the clean ones."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from accelerate_train import fresh, small_config

from agents.images import resize
from agents.training import ConfigError, TrainConfig, Trainer
from agents.training.augment import (
    annealed_strength,
    gaussian_blur,
    gaussian_kernel,
    perturb,
    perturbed_members,
)


def test_gaussian_kernel_by_hand():
    k = gaussian_kernel(1.0)  # radius 3: exp(-x^2/2) for x = -3..3, normalised
    total = 1 + 2 * (np.exp(-0.5) + np.exp(-2) + np.exp(-4.5))
    assert len(k) == 7
    assert k[3] == pytest.approx(1 / total, rel=1e-6)
    assert k[2] == pytest.approx(np.exp(-0.5) / total, rel=1e-6)
    assert k.sum() == pytest.approx(1.0)
    assert gaussian_kernel(0.0).tolist() == [1.0]


def test_blur_spreads_an_impulse_as_the_kernels_outer_product():
    pixels = np.zeros((9, 9, 3), dtype=np.float32)
    pixels[4, 4] = 255.0
    out = gaussian_blur(pixels, 1.0)
    k = gaussian_kernel(1.0)
    expected = 255.0 * np.outer(k, k)
    assert out[1:8, 1:8, 0] == pytest.approx(expected, rel=1e-5)
    flat = np.full((6, 5, 3), 77.0, dtype=np.float32)
    assert gaussian_blur(flat, 2.0) == pytest.approx(flat)  # edges reflected: no darkening


def test_noise_is_seeded_and_has_the_asked_std():
    image = np.full((64, 64, 3), 128, dtype=np.uint8)
    a = perturb(image, "noise", 10.0, np.random.default_rng(1))
    b = perturb(image, "noise", 10.0, np.random.default_rng(1))
    c = perturb(image, "noise", 10.0, np.random.default_rng(2))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    diff = a.astype(np.float32) - 128
    assert diff.std() == pytest.approx(10.0, rel=0.05)
    assert np.abs(diff).mean() == pytest.approx(10.0 * np.sqrt(2 / np.pi), rel=0.05)
    assert not a.flags.writeable and a.dtype == np.uint8


def test_strength_anneals_and_the_share_rounds():
    assert [annealed_strength(16.0, s, 4) for s in (1, 2, 3, 5, 9)] == [16.0, 12.0, 8.0, 0.0, 0.0]
    assert annealed_strength(16.0, 100, 0) == 16.0
    assert perturbed_members(8, 0.5) == 4
    assert perturbed_members(4, 0.25) == 1
    assert perturbed_members(4, 0.6) == 2


@pytest.mark.parametrize(
    "values, message",
    [
        ({"augment_share": 1.0}, r"augment_share must be in \(0, 1\)"),
        ({"augment_share": 0.05, "group_size": 4}, "perturbs no episode"),
        ({"augment_strength": 0.0}, "augment_strength must be > 0"),
        ({"augment": "jpeg"}, "augment must be one of off, noise, blur"),
    ],
)
def test_bad_augment_settings_name_the_fix(values, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig.from_dict({"augment": "noise", **values})


@pytest.mark.parametrize("kind", ["noise", "blur"])
def test_perturbed_rollouts_saw_other_pixels_but_the_update_reads_the_clean(
    tiny_policy, tmp_path, kind
):
    cfg = small_config(tmp_path, 1, augment=kind, augment_share=0.5, augment_strength=2.0)
    trainer = Trainer(cfg, policy=fresh(tiny_policy))
    policy = trainer.policy
    generated: list[torch.Tensor] = []
    updated: list[torch.Tensor] = []
    generate, forward = policy.generate, policy.forward_logprobs

    def spy_generate(inputs, **kwargs):
        generated.extend(x.pixel_values.clone() for x in inputs)
        return generate(inputs, **kwargs)

    def spy_forward(batch, **kwargs):
        if kwargs.get("return_entropy") is not None:  # the update's pass (not the reference's)
            updated.append(batch["pixel_values"].clone())
        return forward(batch, **kwargs)

    policy.generate, policy.forward_logprobs = spy_generate, spy_forward
    trainer.setup()
    trainer._prepare_rl()
    trainer.enhancements.before_step(1)
    batch = trainer.rollout(1)
    # the clean picture of every episode, as the env showed it (the task's own image)
    clean = [policy.process_images([resize(t.env_images[0], tuple(t.image_slots[0]["size"]))])[0]
             for t in batch]  # fmt: skip
    for t, pixels in zip(batch, clean, strict=True):
        assert torch.equal(t.pixel_values, pixels)  # what the update reads is clean
    perturbed = [t for t in batch if "augment" in t.info]
    assert [t.index % 4 for t in perturbed] == [2, 3, 2, 3]  # the last half of each group
    assert all(t.info["augment"]["mean_abs_change"] > 0 for t in perturbed)
    # what generation saw: the clean pictures for half the episodes, other pixels for half
    assert len(generated) == 8
    assert sum(any(torch.equal(p, c) for c in clean) for p in generated) == 4
    differing = [p for p in generated if not any(torch.equal(p, c) for c in clean)]
    assert len(differing) == 4

    ref, old = trainer.reference_logprobs(batch)
    trainer.update(batch, trainer.advantages(batch), ref, old, step=1)
    assert len(updated) == 1  # the loss's forward pass read exactly the clean pictures
    assert torch.equal(updated[0], torch.cat([t.pixel_values for t in batch]))
    trainer.close()


def test_a_run_logs_the_perturbed_and_clean_rewards(tiny_policy, tmp_path):
    cfg = small_config(tmp_path, 2, augment="noise", augment_anneal_steps=1)
    metrics = Trainer(cfg, policy=fresh(tiny_policy)).train()
    assert metrics["augment/strength"] == 0.0  # annealed away by step 2
    assert metrics["augment/episodes"] == 0.0
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    first = __import__("json").loads(lines[0])
    assert first["augment/episodes"] == 4.0 and first["augment/strength"] == 16.0
    assert {"augment/reward_perturbed", "augment/reward_clean"} <= set(first)
