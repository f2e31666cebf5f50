"""The training config: the paper's defaults, every problem reported with its fix, keys and
types checked, the algorithm's section picked by ``algo``, and sub-configs derived from it."""

from __future__ import annotations

import pytest

from agents.algorithms.grpo import GRPOConfig
from agents.training import ConfigError, TrainConfig


def test_defaults_are_the_papers():
    cfg = GRPOConfig(report_to=("none",))
    assert (cfg.group_size, cfg.beta, cfg.learning_rate, cfg.temperature) == (8, 0.04, 1e-6, 1.0)
    assert (cfg.max_turns, cfg.max_new_tokens, cfg.max_grad_norm) == (5, 256, 1.0)
    assert (cfg.lr_schedule, cfg.warmup_steps, cfg.weight_decay) == ("linear", 0, 0.0)
    assert (cfg.inner_epochs, cfg.num_minibatches) == (1, 1)  # one update per batch
    assert cfg.aggregation == "seq-mean-token-mean" and cfg.scale_advantages
    assert all(GRPOConfig.help_text(name) for name in GRPOConfig.field_names())


@pytest.mark.parametrize(
    "change, message",
    [
        ({"group_size": 1}, "group_size must be >= 2"),
        ({"temperature": 0.0}, "temperature must be > 0"),
        ({"beta": -1.0}, "beta must be >= 0"),
        ({"aggregation": "mean"}, "aggregation must be one of token-mean"),
        ({"credit": "token"}, "credit must be one of episode, turn"),
        ({"num_minibatches": 3}, "must divide the 16 episodes"),
        ({"gradient_accumulation_steps": 5}, "must divide the 16 episodes of a minibatch"),
        ({"lr_schedule": "step"}, "lr_schedule must be one of linear, constant, cosine"),
        ({"dtype": "fp8"}, "dtype must be one of"),
        ({"model": "/no/such/folder"}, "'tiny' or a local checkpoint folder"),
        ({"env": "MATCodng-v0"}, "Did you mean 'MATCoding-v0'"),
        ({"report_to": ("tensorboard", "mlflow")}, "report_to entries must be among"),
        ({"steps": 0, "top_p": 2.0}, "top_p must be in (0, 1]"),
    ],
)
def test_bad_values_fail_with_the_fix(change, message):
    with pytest.raises(ConfigError) as err:
        GRPOConfig(**{"report_to": ("none",), **change})
    assert message in str(err.value)


def test_from_dict_names_unknown_keys_and_types():
    with pytest.raises(
        ConfigError, match="unknown key 'lerning_rate' .did you mean 'learning_rate'"
    ):
        TrainConfig.from_dict({"lerning_rate": 1e-5})
    with pytest.raises(ConfigError, match="steps must be int, got 'many'"):
        TrainConfig.from_dict({"steps": "many"})
    cfg = TrainConfig.from_dict(
        {"steps": "3", "lora": "true", "clip_high": "none", "report_to": "none"}
    )
    assert (cfg.steps, cfg.lora, cfg.clip_high, cfg.report_to) == (3, True, None, ("none",))


def test_wandb_without_wandb_installed_says_how_to_get_it(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a)
    )
    with pytest.raises(ConfigError, match="pip install wandb"):
        TrainConfig(report_to=("tensorboard", "wandb"))


# ---------------------------------------------------------------------- the algorithm's section


def test_from_dict_builds_the_config_class_of_algo():
    cfg = TrainConfig.from_dict({"credit": "turn", "report_to": "none"})
    assert type(cfg) is GRPOConfig and cfg.algo == "grpo" and cfg.credit == "turn"
    assert GRPOConfig.from_dict({"beta": "0"}).beta == 0.0


def test_an_unknown_algo_lists_the_known_ones():
    with pytest.raises(ConfigError, match=r"unknown algo 'grpp' \(did you mean 'grpo'\?\); known"):
        TrainConfig.from_dict({"algo": "grpp"})
    with pytest.raises(ConfigError, match="algo must be one of grpo, ppo, .*, got 'trpo'"):
        TrainConfig(algo="trpo", report_to=("none",))


def test_a_config_class_runs_only_its_own_algorithm():
    class OtherConfig(TrainConfig):
        pass

    with pytest.raises(ConfigError, match="algo 'grpo' takes a GRPOConfig, not a OtherConfig"):
        OtherConfig(report_to=("none",))


def test_section_problems_join_the_base_problems():
    with pytest.raises(ConfigError) as err:
        GRPOConfig(steps=0, beta=-1.0, clip_low=1.5, report_to=("none",))
    message = str(err.value)
    for part in ("steps must be >= 1", "beta must be >= 0", "clip_low must be in (0, 1)"):
        assert part in message


def test_a_key_of_an_algorithm_section_is_not_a_base_key():
    from agents.training.config import section_fields

    assert "credit" not in TrainConfig.field_names()
    assert set(section_fields(GRPOConfig)) == {
        "beta", "scale_advantages", "credit", "aggregation", "clip_low", "clip_high",
    }  # fmt: skip
    with pytest.raises(ConfigError, match="unknown key 'credit' .an option of algo grpo"):
        TrainConfig.check_keys({"credit": "turn"})


def test_choices_are_the_fields_own():
    from agents.policy import DTYPES
    from agents.training.config import LR_SCHEDULES, field_choices

    assert field_choices(TrainConfig, "lr_schedule") == LR_SCHEDULES
    assert field_choices(TrainConfig, "dtype") == tuple(DTYPES)
    assert field_choices(TrainConfig, "algo") == (
        "grpo", "ppo", "rloo", "reinforce_pp", "dapo", "gspo", "dr_grpo",
    )  # fmt: skip
    assert field_choices(GRPOConfig, "credit") == ("episode", "turn")
    assert field_choices(TrainConfig, "steps") is None


# ---------------------------------------------------------------------- derived sub-configs


def test_rollout_lora_and_image_configs_are_derived_by_field_name():
    from dataclasses import fields

    from agents.images import ImageBudget
    from agents.policy import LoraSettings
    from agents.rollout import RolloutConfig
    from agents.training.config import derive

    cfg = GRPOConfig(
        group_size=4, max_new_tokens=17, temperature=0.7, top_p=0.9, max_turns=3,
        max_context_tokens=900, lora_r=5, lora_alpha=7, lora_dropout=0.1, max_image_tokens=333,
        report_to=("none",),
    )  # fmt: skip
    rollout = derive(RolloutConfig, cfg, seed=123)
    shared = [f.name for f in fields(RolloutConfig) if hasattr(cfg, f.name) and f.name != "seed"]
    assert shared == [
        "group_size", "max_new_tokens", "temperature", "top_p", "max_turns", "max_context_tokens",
    ]  # fmt: skip
    assert all(getattr(rollout, n) == getattr(cfg, n) for n in shared) and rollout.seed == 123
    assert rollout.stop_strings == RolloutConfig().stop_strings  # not a TrainConfig field
    lora = derive(LoraSettings, cfg, prefix="lora_")
    assert (lora.r, lora.alpha, lora.dropout) == (5, 7, 0.1)
    assert derive(ImageBudget, cfg).max_image_tokens == 333
