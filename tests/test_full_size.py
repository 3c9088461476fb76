"""Full-size checks on the real Qwen2.5-0.5B shape (random weights): slow, deselected by default.

Run with ``python -m pytest -m slow``. They need ~6 GiB of memory and a few minutes on 2 cores.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import CONF_DIR, count_with
from hydra import compose, initialize_config_dir
from torch.utils.flop_counter import FlopCounterMode
from transformers import Qwen2ForCausalLM

from lora_forecast.config import LoraConfig, ModelConfig
from lora_forecast.flops import Architecture
from lora_forecast.llmtime import TokenTable
from lora_forecast.models.build import build_model, tiny_qwen2_config
from lora_forecast.models.numeric_head import full_head_loss, numeric_head_loss
from lora_forecast.models.tokenizer import qwen_tokenizer, tokenizer_files_dir
from lora_forecast.results import read_results
from lora_forecast.task import run_task

pytestmark = pytest.mark.slow

QWEN = {"hidden_size": 896, "num_layers": 24, "num_heads": 14, "num_kv_heads": 2,
        "intermediate_size": 4864}
ALPHABET = TokenTable.from_tokenizer(qwen_tokenizer()).head_ids()  # '0'..'9', '.', ',', ';'


@pytest.fixture(scope="module")
def qwen_shaped() -> torch.nn.Module:
    cfg = ModelConfig(kind="tiny", attn_implementation="eager", lm_head_bias=True, **QWEN)
    return build_model(cfg, LoraConfig(rank=8))


def test_full_shape_matches_the_preset_architecture(qwen_shaped) -> None:
    base = qwen_shaped.get_base_model()
    assert Architecture.from_hf_config(base.config) == Architecture.qwen2_5_0_5b()
    frozen = {id(p): p.numel() for n, p in base.named_parameters() if not p.requires_grad}
    assert sum(frozen.values()) == 494_032_768  # Qwen2.5-0.5B, tied embeddings counted once


def test_full_shape_train_step_agrees_with_torch_counter(qwen_shaped) -> None:
    ids = torch.randint(15, 27, (1, 64), generator=torch.Generator().manual_seed(0))
    with FlopCounterMode(display=False) as counter:
        qwen_shaped(input_ids=ids, labels=ids).loss.backward()
    predicted = count_with(Architecture.qwen2_5_0_5b(), accounting="exact", mode="train",
                            context_tokens=64, lora_rank=8, lm_head_bias=True,
                            convention="torch", backward="autograd").total
    assert predicted == pytest.approx(counter.get_total_flops(), rel=0.01)


def test_full_shape_numeric_loss_is_the_renormalised_full_loss(qwen_shaped) -> None:
    ids = torch.tensor([ALPHABET * 8])
    with torch.no_grad():
        logits = qwen_shaped(input_ids=ids).logits[0, :-1][:, list(ALPHABET)].float()
        targets = torch.tensor([ALPHABET.index(t) for t in ids[0, 1:].tolist()])
        expected = torch.nn.functional.cross_entropy(logits, targets)
        numeric = numeric_head_loss(qwen_shaped, ids, None, ids, ALPHABET)
        full = full_head_loss(qwen_shaped, ids, None, ids)
    assert float(numeric) == pytest.approx(float(expected), rel=1e-4)
    assert float(full) > float(numeric)  # the full softmax spreads mass over 151,936 rows


# ---- a full-size checkpoint from a folder, through the CLI's config path -------------------------

# shared/data/ beside the clone (or beside a folder holding worktrees, one level further up)
REAL = next((p / "shared/data/lotka_volterra_data.h5" for p in Path(__file__).resolve().parents[2:4]
             if (p / "shared/data/lotka_volterra_data.h5").is_file()),
            Path(__file__).resolve().parents[2] / "shared/data/lotka_volterra_data.h5")
QWEN_CONFIG = {"hidden_size": 896, "num_hidden_layers": 24, "num_attention_heads": 14,
               "num_key_value_heads": 2, "intermediate_size": 4864, "vocab_size": 151936,
               "tie_word_embeddings": True, "rms_norm_eps": 1e-6}


@pytest.fixture(scope="module")
def qwen_folder(tmp_path_factory) -> Path:
    """A random-init model with Qwen2.5-0.5B-Instruct's exact config, saved as the real one is:
    bf16 safetensors beside the Qwen2.5 tokenizer files."""
    folder = tmp_path_factory.mktemp("qwen2.5-0.5b-random")
    config = tiny_qwen2_config(ModelConfig(kind="tiny", **QWEN))
    for key, value in QWEN_CONFIG.items():
        assert getattr(config, key) == value, key  # the shape under test is the real one
    assert config.rope_parameters["rope_theta"] == 1e6
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = Qwen2ForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(folder)
    del model
    for file in tokenizer_files_dir().iterdir():
        if file.is_file():
            shutil.copy(file, folder / file.name)
    assert list(folder.glob("*.safetensors"))
    return folder


def run_from_folder(folder: Path, run_dir: Path, *overrides: str) -> dict:
    settings = [f"model.name_or_path={folder}", f"data.path={REAL}", "eval.n_systems=2",
                f"output_dir={run_dir.parent / 'outputs'}", "logger=none", "eval.bootstrap=20",
                "eval.baselines=[persistence]", *overrides]  # fmt: skip
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=settings)
    run_dir.mkdir()
    started = time.perf_counter()
    run_task(cfg, run_dir)
    results = read_results(run_dir)
    print(f"{run_dir.name}: {time.perf_counter() - started:.0f} s")  # the slow test's report
    assert results["status"] == "completed", results.get("error")
    assert results["flops"]["spent"] <= results["flops"]["predicted"]
    assert results["metrics"]["parse_failures"] == 0
    assert np.isfinite(results["metrics"]["mse"])
    return results


@pytest.mark.skipif(not REAL.is_file(), reason=f"real data file absent: {REAL}")
def test_full_size_folder_baseline_and_two_default_steps(qwen_folder, tmp_path, caplog) -> None:
    """``model.name_or_path=<folder>`` with the default ``model.dtype=auto``: on CPU it computes
    in float32 (and says so), the untrained baseline forecasts 2 real test systems, and 2
    training steps of ``+experiment=default`` complete within their prediction."""
    with caplog.at_level(logging.INFO, logger="lora_forecast.models.build"):
        run_from_folder(qwen_folder, tmp_path / "baseline", "+experiment=baseline")
    if not torch.cuda.is_available():
        assert any("model.dtype=auto on CPU" in r.getMessage() for r in caplog.records)
    trained = run_from_folder(qwen_folder, tmp_path / "default", "+experiment=default",
                              "train.max_steps=2", "train.val_max_windows=2")  # fmt: skip
    assert trained["train"]["steps"] == 2
    assert np.isfinite(trained["train"]["final_train_loss"])
