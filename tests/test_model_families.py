"""Any supported Hugging Face family runs the pipeline from a local folder with ITS tokenizer:
train, validate, constrained forecast with 0 parse failures, ledger settled within the
prediction. Each folder holds a tiny random-init model and a tokenizer the tests build."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from built_tokenizers import FAMILIES, LAYOUT_OF, save_tiny_checkpoint

from lora_forecast.budget.ledger import Ledger
from lora_forecast.config import to_settings
from lora_forecast.planning import predict_cost, token_format
from lora_forecast.results import read_results
from lora_forecast.task import run_task


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_family_from_a_local_folder_runs_end_to_end(family: str, tmp_path: Path, compose_cfg,
                                                    run_dir: Path) -> None:
    folder = save_tiny_checkpoint(tmp_path / family, family)
    cfg = compose_cfg("model=hf", f"model.name_or_path={folder}", "model.dtype=fp32",
                      "data.context_tokens=96", "eval.max_int_digits=2")
    settings = to_settings(cfg)
    fmt = token_format(settings)
    assert fmt.tokens.layout == LAYOUT_OF[FAMILIES[family][2]]  # the folder's own tokenizer
    run_task(cfg, run_dir)

    results = read_results(run_dir)
    assert results["status"] == "completed", results.get("error")
    metrics = results["metrics"]
    assert metrics["parse_failures"] == 0 and metrics["n_systems"] == 2
    assert all(math.isfinite(metrics[k]) for k in ("mse", "mae"))
    flops = results["flops"]
    assert flops["predicted"] == pytest.approx(predict_cost(settings).total)
    assert flops["spent_by_kind"]["training"] > 0 and flops["spent_by_kind"]["forecasting"] > 0
    assert flops["spent"] <= flops["predicted"]
    with Ledger(settings.budget.ledger_url, create=False) as ledger:
        rows = ledger.rows()
    assert [(r.status, r.spent_flops) for r in rows] == [("completed", flops["spent"])]
