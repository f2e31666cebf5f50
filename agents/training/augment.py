"""Rollout noise augmentation in the manner of NoisyRollout (Liu et al. 2025): a share of each
group's episodes is *played* on a perturbed copy of the task's images, while the update is
computed on the clean ones.

Mechanism. :class:`NoisyEnvs` wraps the rollout's vector env. At each reset it works out the
episode's place in its group from the reset seed (the rollout resets episode i with
``seed + i``, :func:`agents.rollout.collect`) and, for the last ``round(augment_share · G)``
members of every group, replaces the images the env showed at reset (the task's own images)
by a perturbed copy in that reset's observation and in every later one of the episode. The
images tools return later (a MAT-Coding code run's output, computed by the env from its own
clean image) are passed through. The perturbation (:func:`perturb`) is seeded by the step's
seed, the episode and the image, so a resumed run plays the same pixels:

- ``noise``: additive Gaussian noise of std ``augment_strength`` (0–255 pixel units);
- ``blur``: a Gaussian blur of sigma ``augment_strength`` pixels.

The strength is annealed linearly to 0 over ``augment_anneal_steps`` steps (0: constant), as
NoisyRollout anneals its noise. After the rollout, :meth:`NoisyEnvs.restore` puts the clean
images back into each perturbed trajectory (``env_images``, ``images``) and recomputes its
``pixel_values`` from them (same sizes, so the same image tokens and ``input_ids``); the loss,
the reference and the old log-probs of several updates all read those. The sampled tokens
and their sampling log-probs stay those of the perturbed rollout. Each perturbed trajectory's
``info["augment"]`` holds the strength and the mean absolute pixel change it saw.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

AUGMENTATIONS = ("off", "noise", "blur")


def perturb(image: np.ndarray, kind: str, strength: float, rng: np.random.Generator) -> np.ndarray:
    """A perturbed copy of a uint8 H×W×3 image (read-only), per ``kind`` (module docstring)."""
    pixels = np.asarray(image, dtype=np.float32)
    if kind == "noise":
        out = pixels + rng.normal(0.0, strength, size=pixels.shape).astype(np.float32)
    elif kind == "blur":
        out = gaussian_blur(pixels, strength)
    else:
        raise ValueError(f"augment must be one of {AUGMENTATIONS[1:]}, got {kind!r}")
    result = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    result.setflags(write=False)
    return result


def gaussian_kernel(sigma: float) -> np.ndarray:
    """The normalised 1-D Gaussian of ``sigma`` (radius ceil(3σ)); ``[1]`` for sigma <= 0."""
    if sigma <= 0:
        return np.ones(1, dtype=np.float32)
    radius = int(np.ceil(3 * sigma))
    x = np.arange(-radius, radius + 1, dtype=np.float32)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    return (k / k.sum()).astype(np.float32)


def gaussian_blur(pixels: np.ndarray, sigma: float) -> np.ndarray:
    """A separable Gaussian blur of an H×W×C float array, edges reflected."""
    kernel = gaussian_kernel(sigma)
    radius = len(kernel) // 2
    if radius == 0:
        return pixels.copy()
    out = pixels
    for axis in (0, 1):
        pad = [(0, 0)] * out.ndim
        pad[axis] = (radius, radius)
        padded = np.pad(out, pad, mode="reflect" if out.shape[axis] > radius else "edge")
        acc = np.zeros_like(out)
        for i, w in enumerate(kernel):
            acc += w * np.take(padded, range(i, i + out.shape[axis]), axis=axis)
        out = acc
    return out


def annealed_strength(strength: float, step: int, anneal_steps: int) -> float:
    """``strength`` at ``step`` (1-based), falling linearly to 0 at step ``anneal_steps + 1``
    (constant when ``anneal_steps`` is 0)."""
    if anneal_steps <= 0:
        return strength
    return strength * max(0.0, 1.0 - (step - 1) / anneal_steps)


def perturbed_members(group_size: int, share: float) -> int:
    """How many members of a group play on perturbed images: ``round(share · G)``."""
    return int(round(share * group_size))


class NoisyEnvs:
    """A vector env whose episodes of the last ``perturbed_members`` places of each group see
    perturbed reset images (see the module docstring). Every other attribute is the wrapped
    env's."""

    def __init__(self, envs: Any, config: Any, base_seed: int, strength: float):
        self._envs = envs
        self.kind = config.augment
        self.group_size = config.group_size
        self.n_perturbed = perturbed_members(config.group_size, config.augment_share)
        self.base_seed = int(base_seed)
        self.strength = float(strength)
        self._slot: dict[int, tuple[int, int, tuple[np.ndarray, ...]]] = {}
        # reset seed -> (clean images, perturbed images) of the perturbed episodes
        self.episodes: dict[int, tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]]] = {}

    def __getattr__(self, name: str):
        return getattr(self._envs, name)

    def _perturbed(self, seed: int | None) -> bool:
        if seed is None or self.n_perturbed == 0 or self.strength <= 0:
            return False
        index = int(seed) - self.base_seed
        return index >= 0 and index % self.group_size >= self.group_size - self.n_perturbed

    def reset(self, *, seed: Any = None, options: dict | None = None):
        obs, infos = self._envs.reset(seed=seed, options=options)
        n = self._envs.num_envs
        mask = (options or {}).get("reset_mask")
        seeds = list(seed) if isinstance(seed, (list, tuple)) else [seed] * n
        for i in range(n):
            if mask is not None and not mask[i]:
                continue
            self._slot.pop(i, None)
            if not self._perturbed(seeds[i]):
                continue
            s = int(seeds[i])
            clean = tuple(obs[i]["images"])
            index = s - self.base_seed
            noisy = tuple(
                perturb(img, self.kind, self.strength, np.random.default_rng([self.base_seed & 0xFFFFFFFF, index, j]))
                for j, img in enumerate(clean)
            )  # fmt: skip
            self.episodes[s] = (clean, noisy)
            self._slot[i] = (s, len(clean), noisy)
        return self._apply(obs), infos

    def step(self, actions):
        obs, rewards, terms, truncs, infos = self._envs.step(actions)
        return self._apply(obs), rewards, terms, truncs, infos

    def _apply(self, obs):
        if not self._slot:
            return obs
        out = list(obs)
        for i, (_, n_clean, noisy) in self._slot.items():
            images = tuple(obs[i]["images"])
            out[i] = {**obs[i], "images": noisy + images[n_clean:]}
        return tuple(out)

    def restore(self, trajectories: Sequence[Any], policy: Any) -> int:
        """Put the clean images back into the perturbed trajectories and recompute their
        ``pixel_values``; returns how many were perturbed."""
        from agents.images import resize

        count = 0
        for t in trajectories:
            record = self.episodes.get(t.seed)
            if record is None:
                continue
            clean, noisy = record
            env_images = list(t.env_images)
            env_images[: len(clean)] = clean
            shown = [
                resize(env_images[s["image"]], tuple(s["size"]))
                for s in t.image_slots
                if s["size"] is not None
            ]
            if shown:
                t.pixel_values, t.image_grid_thw = policy.process_images(shown)
            t.env_images = env_images
            t.images = shown
            change = [
                float(np.abs(a.astype(np.float32) - b.astype(np.float32)).mean())
                for a, b in zip(clean, noisy, strict=True)
            ]
            t.info["augment"] = {
                "kind": self.kind,
                "strength": self.strength,
                "mean_abs_change": float(np.mean(change)) if change else 0.0,
            }
            count += 1
        return count


def config_problems(cfg: Any) -> list[str]:
    """What is wrong with the augmentation fields of ``cfg``, each with its fix."""
    p: list[str] = []
    if cfg.augment == "off":
        return p
    if not 0 < cfg.augment_share < 1:
        p.append(
            f"augment_share must be in (0, 1) (some members of each group clean, some "
            f"perturbed), got {cfg.augment_share}"
        )
    elif perturbed_members(cfg.group_size, cfg.augment_share) == 0:
        p.append(
            f"augment_share={cfg.augment_share} of group_size={cfg.group_size} perturbs no "
            "episode; raise augment_share"
        )
    if cfg.augment_strength <= 0:
        p.append(f"augment_strength must be > 0, got {cfg.augment_strength}")
    if cfg.augment_anneal_steps < 0:
        p.append(f"augment_anneal_steps must be >= 0, got {cfg.augment_anneal_steps}")
    return p
