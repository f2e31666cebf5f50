"""The repair-quality signal of MAT-Coding: PSNR/SSIM by hand, the clean reference of a task,
``info["repair"]`` on code turns, and the ``code_reward="improved"`` rule."""

import math

import gymnasium as gym
import numpy as np
import pytest

import arft_envs  # noqa: F401
from arft_envs.envs.mat_coding import MATCodingEnv
from arft_envs.experts import ScriptedExpert
from arft_envs.repair import (
    PSNR_CAP_DB,
    RepairMeter,
    clean_reference,
    psnr,
    repair_report,
    saved_unchanged,
    ssim,
)
from arft_envs.tasks.base import ListTaskSource, Task
from arft_envs.tasks.coding.synthetic import SyntheticCoding

NO_OP = (
    "<think>keep it</think>\n<code>\n```python\nimport cv2\n"
    "img = cv2.imread('path_to_input_image.jpg')\n"
    "cv2.imwrite('path_to_output_image.jpg', img)\n```\n</code>"
)


def _scene(height=96, width=128) -> np.ndarray:
    """A hand-made clean image: a gradient with a bright square and a dark bar."""
    y, x = np.mgrid[0:height, 0:width]
    image = np.stack([x * 255 // width, y * 255 // height, (x + y) % 256], axis=2)
    image[20:50, 30:70] = 230
    image[60:70, 10:120] = 15
    return image.astype(np.uint8)


def _noisy(clean: np.ndarray, std: float = 40.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(clean + rng.normal(0, std, clean.shape), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- the metrics


def test_psnr_and_ssim_match_their_closed_forms():
    a = np.full((32, 32, 3), 100, np.uint8)
    b = np.full((32, 32, 3), 105, np.uint8)
    assert psnr(a, b) == pytest.approx(10 * math.log10(255**2 / 25))
    assert psnr(a, a) == PSNR_CAP_DB
    # constant images have no variance: SSIM is the luminance term alone
    c1 = (0.01 * 255) ** 2
    assert ssim(a, b) == pytest.approx((2 * 100 * 105 + c1) / (100**2 + 105**2 + c1))
    clean = _scene()
    assert ssim(clean, clean) == pytest.approx(1.0)
    assert ssim(_noisy(clean, 10), clean) > ssim(_noisy(clean, 40), clean) > 0


def test_a_rotated_or_resized_image_is_compared_at_the_references_size():
    clean = _scene(96, 128)
    turned = np.ascontiguousarray(np.rot90(clean))  # 128 x 96
    assert ssim(turned, clean) < 0.6 and psnr(turned, clean) < 20
    doubled = np.repeat(np.repeat(clean, 2, axis=0), 2, axis=1)
    assert ssim(doubled, clean) > 0.95


def test_an_identity_restore_is_improved_and_a_no_op_is_not():
    clean = _scene()
    dark = (clean // 3).astype(np.uint8)
    restored = repair_report(dark, clean, clean)
    assert restored["improved"] is True
    assert restored["ssim_after"] == pytest.approx(1.0) and restored["psnr_after"] == PSNR_CAP_DB
    assert restored["ssim_before"] < 0.9
    no_op = repair_report(dark, dark, clean)
    assert no_op["improved"] is False
    assert no_op["ssim_after"] == no_op["ssim_before"]
    wrote_nothing = repair_report(dark, None, clean)
    assert wrote_nothing["improved"] is False and wrote_nothing["ssim_after"] is None


def test_saving_a_noisy_image_unchanged_is_not_a_repair():
    # The JPEG round trip of the output file smooths noise: that must not count as a repair.
    clean = _scene()
    noisy = _noisy(clean)
    unchanged = saved_unchanged(noisy)
    assert ssim(unchanged, clean) > ssim(noisy, clean)  # the round trip alone "helps"
    assert repair_report(noisy, unchanged, clean)["improved"] is False
    assert repair_report(noisy, clean, clean)["improved"] is True


def test_clean_reference_of_synthetic_crop_given_and_unknown_tasks():
    source = SyntheticCoding("hard")
    task = next(t for t in map(source.make, range(200)) if t.meta["degradations"] != ["crop"])
    assert np.array_equal(clean_reference(task), source.clean_image(task))
    crop = next(t for t in map(source.make, range(200)) if t.meta["degradations"] == ["crop"])
    x1, y1, x2, y2 = crop.meta["bbox"]
    height, width = source.clean_image(crop).shape[:2]
    assert clean_reference(crop).shape[:2] == (
        int(y2 * height / 1000) - int(y1 * height / 1000),
        int(x2 * width / 1000) - int(x1 * width / 1000),
    )
    clean = _scene()
    given = Task("t", "q", ["a"], [clean // 2], "simple", {"clean_image": lambda: clean})
    assert np.array_equal(clean_reference(given), clean)
    assert clean_reference(Task("u", "q", ["a"], [clean], "simple", {})) is None
    meter = RepairMeter()
    assert meter.measure(given, clean // 2, clean, "out.jpg")["improved"] is True
    assert meter.measure(Task("u", "q", ["a"], [clean], "simple", {}), clean, clean, "x") is None


# --------------------------------------------------------------------------- the env


def test_every_code_turn_reports_its_repair_in_info():
    env = gym.make("EasyMATCoding-v0", holdout=1, degradations=["dark", "noise"])
    expert = ScriptedExpert()
    obs, _ = env.reset(seed=3)
    kinds = {}
    done = False
    while not done:
        obs, _, terminated, truncated, info = env.step(expert(obs, env))
        kinds[info["action_kind"]] = info
        done = terminated or truncated
    assert set(kinds) == {"problem", "code", "answer"}
    assert "repair" not in kinds["problem"] and "repair" not in kinds["answer"]
    repair = kinds["code"]["repair"]
    assert repair["improved"] is True and repair["ssim_after"] > repair["ssim_before"] + 0.2
    # a no-op "repair" is measured as one, and code that fails still reports its input
    env.reset(seed=3)
    env.step(env.unwrapped.task.meta["gold_steps"][0])
    no_op = env.step(NO_OP)[4]["repair"]
    assert no_op["improved"] is False
    failed = env.step(NO_OP.replace("img)", "undefined_name)"))[4]
    assert failed["tool_status"] == "error" and failed["repair"]["ssim_after"] is None
    # "before" is the image the code read: the newest one, here the no-op's output
    assert failed["repair"]["ssim_before"] == no_op["ssim_after"]
    env.close()


def test_improved_mode_pays_the_code_reward_only_for_a_real_repair():
    default = gym.make("EasyMATCoding-v0", holdout=1, degradations=["dark"])
    improved = gym.make(
        "EasyMATCoding-v0", holdout=1, degradations=["dark"], code_reward="improved"
    )
    for env in (default, improved):
        env.reset(seed=0)
        gold = env.unwrapped.task.meta["gold_steps"]
        env.step(gold[0])
        _, _, _, _, info = env.step(NO_OP)
        assert info["repair"]["improved"] is False
        # the default pays the no-op (the hack it allows); "improved" does not
        assert info["reward_components"]["code"] == (1.0 if env is default else 0.0)
        _, _, _, _, info = env.step(gold[1])  # the gold repair, after the no-op
        assert info["repair"]["improved"] is True
        assert info["reward_components"]["code"] == (0.0 if env is default else 1.0)
        env.close()
    # with a real repair first, both modes pay the same: the default rewards are unchanged
    for env in (default, improved):
        env.reset(seed=0)
        gold = env.unwrapped.task.meta["gold_steps"]
        rewards = [env.step(turn)[1] for turn in gold]
        assert rewards == [2.0, 2.0, 2.0]


def test_improved_mode_is_validated_and_falls_back_without_a_clean_image():
    with pytest.raises(ValueError, match="live-mode rule"):
        gym.make("MATCoding-v0", reward_mode="paper", code_reward="improved")
    with pytest.raises(ValueError, match="code_reward must be one of"):
        gym.make("MATCoding-v0", code_reward="better")
    image = _scene()
    task = Task(
        "file-1", "What is shown?", ["x"], [image], "simple",
        {"degradations": ["dark"], "gold_plan": ["problem", "code", "answer"]},
    )  # fmt: skip
    env = MATCodingEnv(tasks=ListTaskSource([task]), code_reward="improved")
    env.reset(seed=0)
    env.step("<think>a</think>\n<problem> {'dark'} </problem>")
    _, _, _, _, info = env.step(NO_OP)
    assert info["repair"] is None  # no clean image: nothing to measure against
    assert info["reward_components"]["code"] == 1.0  # ... so the "ran" rule applies
    env.close()
