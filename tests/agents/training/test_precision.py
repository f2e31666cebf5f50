"""mixed_precision "auto": bf16 autocast on a CPU that computes bf16 natively, float32 on one
that does not; the demo stays float32 everywhere, so its figures do not depend on the CPU."""

from __future__ import annotations

import pytest
import torch

import agents.models.logprobs as logprobs
from agents.training.config import TrainConfig
from agents.training.distributed import make_accelerator, resolve_mixed_precision


@pytest.fixture
def cpu_only(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.mark.parametrize("fast, expected", [(True, "bf16"), (False, "no")])
def test_auto_follows_the_cpu_bf16_flags(monkeypatch, cpu_only, fast, expected):
    monkeypatch.setattr(logprobs, "cpu_has_fast_bf16", lambda: fast)
    assert resolve_mixed_precision("auto") == expected
    for explicit in ("no", "bf16", "fp16"):
        assert resolve_mixed_precision(explicit) == explicit


@pytest.mark.parametrize("fast, dtype", [(True, torch.bfloat16), (False, torch.float32)])
def test_the_accelerator_autocasts_as_resolved(monkeypatch, cpu_only, fast, dtype):
    monkeypatch.setattr(logprobs, "cpu_has_fast_bf16", lambda: fast)
    accelerator = make_accelerator(TrainConfig(mixed_precision="auto"))
    assert accelerator.mixed_precision == ("bf16" if fast else "no")
    layer = torch.nn.Linear(4, 4)
    with accelerator.autocast():
        assert layer(torch.ones(1, 4)).dtype == dtype
    assert layer.weight.dtype == torch.float32  # weights stay in the config's dtype


def test_runs_of_different_precision_follow_each_other_in_one_process(cpu_only):
    """accelerate keeps one state per process; make_accelerator lets a later run change it."""
    layer = torch.nn.Linear(4, 4)
    for mixed, dtype in (("bf16", torch.bfloat16), ("no", torch.float32), ("bf16", torch.bfloat16)):
        accelerator = make_accelerator(TrainConfig(mixed_precision=mixed))
        with accelerator.autocast():
            assert layer(torch.ones(1, 4)).dtype == dtype


def test_the_demo_trains_in_float32_even_where_bf16_is_fast(monkeypatch, cpu_only):
    from agents.demo import DemoSettings

    monkeypatch.setattr(logprobs, "cpu_has_fast_bf16", lambda: True)
    config = DemoSettings().train_config()
    assert config.mixed_precision == "no"
    assert resolve_mixed_precision(config.mixed_precision) == "no"


def test_bf16_autocast_ends_with_the_run(tiny_policy, tmp_path, cpu_only):
    """A bf16 run autocasts its forwards, and leaves the model's own forward alone: after
    ``finish()`` the trained model computes in float32, exactly as a fresh model holding the
    same weights, and accelerate's patched forward is gone."""
    from accelerate_train import fresh, small_config

    from agents.training import Trainer

    trainer = Trainer(
        small_config(tmp_path, 1, save_every=0, mixed_precision="bf16"), policy=fresh(tiny_policy)
    )
    model = trainer.policy.model
    seen: list[torch.dtype] = []
    hook = model.get_output_embeddings().register_forward_hook(
        lambda module, args, out: seen.append(out.dtype)
    )
    trainer.train()  # setup, one GRPO step, finish
    assert torch.bfloat16 in seen  # the run's forwards were autocast
    seen.clear()
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    hook.remove()
    assert seen == [torch.float32] and "_original_forward" not in vars(model)
    twin = type(model)(model.config)
    twin.load_state_dict(model.state_dict())
    twin.eval()
    with torch.no_grad():
        assert torch.equal(logits, twin(input_ids=ids).logits)


def test_a_prepared_model_keeps_its_forward(cpu_only):
    accelerator = make_accelerator(TrainConfig(mixed_precision="bf16"))
    layer = torch.nn.Linear(4, 4)
    prepared = accelerator.prepare(layer)
    assert "forward" not in vars(prepared)
    assert prepared(torch.ones(1, 4)).dtype == torch.float32
    with accelerator.autocast():
        assert prepared(torch.ones(1, 4)).dtype == torch.bfloat16
