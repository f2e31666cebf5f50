"""Fixtures for the agent tests: one tiny and one tiny-qwen policy per test process (and
``policy``, parametrised over both), the toy envs registered."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

torch = pytest.importorskip("torch")
# The tiny model is far too small to gain from threads; on a shared 2-core machine extra
# threads only contend (a 20x slowdown was measured).
torch.set_num_threads(1)

import toy_envs  # noqa: E402,F401  (registers ToyImageTool-v0 and ToyText-v0)


@pytest.fixture(scope="session")
def tiny_policy():
    from agents.policy import Policy

    return Policy.from_pretrained("tiny", device="cpu")


@pytest.fixture(scope="session")
def tiny_qwen_policy():
    """``tiny-qwen``: the tiny model with Qwen's real 151k tokenizer and chat template (built
    once per test process: it is the slower of the two)."""
    from agents.policy import Policy

    return Policy.from_pretrained("tiny-qwen", device="cpu")


@pytest.fixture(scope="session", params=["tiny", "tiny-qwen"])
def policy(request):
    """Each test that takes ``policy`` runs with ``tiny`` (its own small vocabulary and
    template) and with ``tiny-qwen`` (Qwen's real tokenizer and template)."""
    name = "tiny_policy" if request.param == "tiny" else "tiny_qwen_policy"
    return request.getfixturevalue(name)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    from agents.models.tiny import save_tiny

    return save_tiny(tmp_path_factory.mktemp("tiny") / "ckpt", seed=0)


@pytest.fixture(scope="session")
def text_lm_checkpoint(tmp_path_factory) -> Path:
    """A tiny text-only causal LM (Qwen2 architecture) with the tiny tokenizer, saved."""
    from shared_helpers import text_lm

    from agents.models.tiny import build_tokenizer

    path = tmp_path_factory.mktemp("text_lm") / "ckpt"
    tok = build_tokenizer()
    model = text_lm(tok)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path
