"""Precision: bf16 autocast training on CPU, and the dtypes a bf16 checkpoint is loaded in.

The CPU here has no native bf16, so ``model.dtype=auto`` computes in float32 on CPU (with a log
line); a bf16 base (CUDA's ``auto``, or ``model.dtype=bf16``) keeps every trainable tensor and
its optimiser state in float32.
"""

from __future__ import annotations

import logging
import math
import signal
from pathlib import Path

import pytest
import torch
from accelerate.state import AcceleratorState
from test_resume import SignalAtStep, trainable
from transformers import Qwen2ForCausalLM

import lora_forecast.task as task_module
from lora_forecast.config import LoraConfig, ModelConfig, TrainConfig
from lora_forecast.llmtime import TokenTable
from lora_forecast.models.build import build_model, load_dtype, tiny_qwen2_config
from lora_forecast.models.numeric_head import numeric_head_loss
from lora_forecast.models.tokenizer import qwen_tokenizer
from lora_forecast.results import read_results
from lora_forecast.task import EXIT_INTERRUPTED, run_task
from lora_forecast.training.schedule import build_optimizer

ALPHABET = TokenTable.from_tokenizer(qwen_tokenizer()).head_ids()  # '0'..'9', '.', ',', ';'


def losses(results: dict) -> list[float]:
    return [h["train/loss"] for h in results["train"]["history"]]


@pytest.fixture
def fresh_accelerator_state():
    """accelerate keeps one process-wide state whose ``mixed_precision`` cannot change; a
    process runs one precision (a launch does), so tests switching it start afresh."""
    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


def run_fresh(cfg, run_dir: Path) -> None:
    AcceleratorState._reset_state(reset_partial_state=True)
    run_task(cfg, run_dir)


def test_bf16_autocast_trains_resumes_bit_exactly_and_costs_the_fp32_flops(
    compose_cfg, tmp_path: Path, monkeypatch, fresh_accelerator_state
) -> None:
    cfg = compose_cfg("train.precision=bf16", "train.resume=auto")
    straight, resumed, fp32 = tmp_path / "straight", tmp_path / "resumed", tmp_path / "fp32"
    run_task(cfg, straight)
    with monkeypatch.context() as m:
        m.setattr(task_module, "make_tracker", lambda *a, **k: SignalAtStep(3, signal.SIGINT))
        with pytest.raises(SystemExit) as exited:
            run_task(cfg, resumed)
    assert exited.value.code == EXIT_INTERRUPTED
    run_task(cfg, resumed)
    run_fresh(compose_cfg("train.precision=fp32"), fp32)

    a, b, c = read_results(straight), read_results(resumed), read_results(fp32)
    assert b["train"]["resumed_from"] and b["train"]["steps"] == a["train"]["steps"] == 4
    assert all(math.isfinite(x) for x in losses(a))
    assert losses(b) == losses(a)  # bit-exact, not approximately
    left, right = trainable(straight), trainable(resumed)
    assert all(torch.equal(left[k], right[k]) for k in left)
    # autocast really ran in bf16: the same steps in fp32 give different losses ...
    assert losses(a) != pytest.approx(losses(c), rel=1e-6)
    # ... and exactly the same FLOPs (a FLOP count does not depend on precision)
    assert a["flops"]["spent_by_kind"] == c["flops"]["spent_by_kind"]
    assert a["flops"]["predicted"] == c["flops"]["predicted"]


@pytest.fixture
def bf16_checkpoint(tmp_path: Path) -> Path:
    """A tiny random Qwen2 saved as bf16 safetensors, like the real checkpoint."""
    shape = ModelConfig(kind="tiny", hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1,
                        intermediate_size=64)  # fmt: skip
    model = Qwen2ForCausalLM(tiny_qwen2_config(shape)).to(torch.bfloat16)
    model.save_pretrained(tmp_path / "ckpt")
    assert list((tmp_path / "ckpt").glob("*.safetensors"))
    return tmp_path / "ckpt"


def folder_model(path: Path, dtype: str) -> ModelConfig:
    return ModelConfig(kind="pretrained", name_or_path=str(path), dtype=dtype, lm_head_bias=True,
                       head="numeric", attn_implementation="eager")  # fmt: skip


def test_dtype_auto_on_cpu_computes_in_fp32_and_says_so(bf16_checkpoint, caplog) -> None:
    assert load_dtype(folder_model(bf16_checkpoint, "auto"), on_cuda=True) == "auto"
    with caplog.at_level(logging.INFO, logger="lora_forecast.models.build"):
        model = build_model(folder_model(bf16_checkpoint, "auto"), LoraConfig(rank=2))
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    said = [r.getMessage() for r in caplog.records if "model.dtype=auto on CPU" in r.getMessage()]
    assert said and "float32" in said[0] and "bfloat16" in said[0]


def test_bf16_weights_stay_bf16_with_fp32_trainables_and_optimiser_state(bf16_checkpoint):
    model = build_model(folder_model(bf16_checkpoint, "bf16"), LoraConfig(rank=2))
    frozen = {p.dtype for p in model.parameters() if not p.requires_grad}
    trained = {n: p.dtype for n, p in model.named_parameters() if p.requires_grad}
    assert frozen == {torch.bfloat16}
    assert set(trained.values()) == {torch.float32} and any("lm_head" in n for n in trained)
    optimizer, _ = build_optimizer(model, TrainConfig(lr=1e-3))
    ids = torch.tensor([ALPHABET * 2])
    numeric_head_loss(model, ids, None, ids, ALPHABET).backward()
    optimizer.step()
    states = [t for s in optimizer.state.values() for t in s.values() if t.dim() > 0]
    assert states and {t.dtype for t in states} == {torch.float32}
