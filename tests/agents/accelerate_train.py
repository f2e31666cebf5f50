"""Toy envs for the trainer tests, and a script that trains on one of them.

Run as a script it trains the tiny model for a few GRPO steps on ``ArftTestLength-v0`` and
writes, per process, a digest of the final weights::

    python tests/agents/accelerate_train.py OUT STEPS [--resume] [--save-every N]
    accelerate launch --cpu --num_processes 2 tests/agents/accelerate_train.py OUT 2

The tests run it under ``accelerate launch`` (two gloo processes must end with identical
weights) and as a subprocess they kill with SIGKILL and resume.

The envs are plain single-turn ``gym.Env`` subclasses, written as a third party would:

- ``ArftTestLength-v0``: the user shows an image and asks for text; the reward is the length
  of the reply (capped), so the members of a group always differ and every parameter (the
  vision tower included) gets a gradient;
- ``ArftTestDigit-v0``: "Write the digit 7": reward 1 when the reply contains the digit the
  prompt names, else 0. A random tiny model hits it now and then; GRPO learns to copy it.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
from gymnasium.envs.registration import register, registry

from arft_envs.spaces import Conversation, Utf8Text


def _text(text: str) -> dict:
    return {"type": "text", "text": text}


class _SingleTurn(gym.Env):
    """One question, one reply, a reward; no tools."""

    metadata = {"render_modes": []}
    with_image = False

    def __init__(self):
        self.action_space = Utf8Text(1024)
        self.observation_space = Conversation(max_messages=4, max_images=1)
        self._messages: list = []
        self._images: list = []

    def _question(self) -> str:
        raise NotImplementedError

    def _reward(self, action: str) -> float:
        raise NotImplementedError

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        options = options or {}
        task = (
            int(options["task_id"]) if "task_id" in options else int(self.np_random.integers(10**6))
        )
        self.task = task
        self._task_rng = np.random.default_rng(task)
        self._images = []
        parts = []
        if self.with_image:
            image = self._task_rng.integers(0, 256, size=(56, 56, 3), dtype=np.uint8)
            image.setflags(write=False)
            self._images.append(image)
            parts.append({"type": "image", "index": 0})
        parts.append(_text(self._question()))
        self._messages = [{"role": "user", "content": tuple(parts)}]
        return self._obs(), {"task_id": str(task)}

    def step(self, action):
        self._messages.append({"role": "assistant", "content": (_text(action),)})
        reward = float(self._reward(action))
        info = {
            "reward_components": {"score": reward},
            "answer": action,
            "f1": reward,
            "em": reward,
        }
        return self._obs(), reward, True, False, info

    def _obs(self):
        return {"messages": tuple(self._messages), "images": tuple(self._images)}


class LengthEnv(_SingleTurn):
    """Reward: the reply's length in characters, over 40, capped at 1."""

    with_image = True

    def _question(self) -> str:
        return f"Task {self.task}: describe the image."

    def _reward(self, action: str) -> float:
        return min(len(action), 40) / 40


class DigitEnv(_SingleTurn):
    """Reward 1 when the reply contains the digit the prompt names (one of ``digits``)."""

    def __init__(self, digits: str = "0123456789"):
        super().__init__()
        self.digits = digits

    def _question(self) -> str:
        self.digit = self.digits[self.task % len(self.digits)]
        return f"Write the digit {self.digit}."

    def _reward(self, action: str) -> float:
        return float(self.digit in action)


def register_test_envs() -> None:
    for env_id, cls in (("ArftTestLength-v0", LengthEnv), ("ArftTestDigit-v0", DigitEnv)):
        if env_id not in registry:
            register(id=env_id, entry_point=cls, disable_env_checker=True)


register_test_envs()


def small_config(output, steps: int, **overrides):
    """A GRPO config that runs a step of the tiny model in about a second."""
    from agents.algorithms.grpo import GRPOConfig

    values = dict(
        env="ArftTestLength-v0",
        output=str(output),
        steps=steps,
        group_size=4,
        groups_per_step=2,
        max_new_tokens=6,
        max_turns=1,
        learning_rate=1e-3,
        save_every=1,
        sample_every=0,
        report_to=("none",),
        progress_bar=False,
    )
    values.update(overrides)
    return GRPOConfig(**values)


def fresh(policy):
    """A copy of ``policy`` (the tests' session tiny policy) with its own weights."""
    import copy

    from agents.policy import Policy

    return Policy(
        copy.deepcopy(policy.model),
        policy.tokenizer,
        policy.chat_template,
        policy.image_processor,
        policy.geometry,
        policy.image_budget,
        policy.name,
    )


def weights_digest(model) -> str:
    """A hash of every parameter's bytes, in name order."""
    digest = hashlib.sha256()
    for name, param in sorted(model.named_parameters()):
        digest.update(name.encode())
        digest.update(param.detach().cpu().float().numpy().tobytes())
    return digest.hexdigest()


def script_env() -> dict[str, str]:
    """The environment a training script runs in as a test's subprocess: one torch thread,
    unbuffered output, and no WORLD_SIZE inherited from a launcher."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.pop("WORLD_SIZE", None)
    return env


def launcher() -> str | None:
    """The ``accelerate`` command beside this interpreter, else on PATH (None: neither)."""
    beside = Path(sys.executable).with_name("accelerate")
    return str(beside) if beside.exists() else shutil.which("accelerate")


def launch(script: Path, *args: str, processes: int = 2) -> subprocess.CompletedProcess:
    """``script`` run by ``accelerate launch`` on ``processes`` CPU processes (DDP over gloo),
    its output captured. accelerate 1.x: ``--cpu`` starts one process (several need MPI);
    ``--multi_gpu`` on a machine without GPUs starts torchrun workers, and the trainer then
    picks gloo on CPU."""
    command = [
        launcher() or "accelerate", "launch", "--multi_gpu", "--num_processes", str(processes),
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "--main_process_port", "0", str(script), *args,
    ]  # fmt: skip
    return subprocess.run(command, env=script_env(), capture_output=True, text=True, timeout=300)


def main(argv: list[str] | None = None) -> int:
    import torch

    torch.set_num_threads(1)
    from agents.training import Trainer

    parser = argparse.ArgumentParser()
    parser.add_argument("output")
    parser.add_argument("steps", type=int)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--save-every", type=int, default=1)
    args = parser.parse_args(argv)
    config = small_config(args.output, args.steps, save_every=args.save_every)
    trainer = Trainer(config, resume=args.resume)
    trainer.train()
    rank = trainer.accelerator.process_index
    digest = weights_digest(trainer.accelerator.unwrap_model(trainer.train_model))
    (Path(args.output) / f"weights_rank{rank}.sha256").write_text(digest)
    print(f"rank {rank} of {trainer.accelerator.num_processes}: {digest}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
