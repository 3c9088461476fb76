"""train.gradient_checkpointing: same gradients with PEFT and the numeric head, less kept, and
its recomputed forward counted (against torch's own FlopCounterMode)."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from lora_forecast.config import LoraConfig, ModelConfig
from lora_forecast.flops import Architecture
from lora_forecast.llmtime import TokenTable
from lora_forecast.models.build import (
    build_model,
    enable_gradient_checkpointing,
    tiny_qwen2_config,
)
from lora_forecast.models.numeric_head import loss_fn_for
from lora_forecast.models.tokenizer import qwen_tokenizer
from tests.conftest import count_with

pytestmark = pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing:FutureWarning")

LLMTIME_IDS = TokenTable.from_tokenizer(qwen_tokenizer()).head_ids()  # '0'..'9', '.', ',', ';'
# eager attention: FlopCounterMode does not see CPU SDPA's math path
CFG = ModelConfig(kind="tiny", attn_implementation="eager")
BATCH, TOKENS, RANK = 2, 24, 4


def _batch() -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(0)
    pick = torch.randint(len(LLMTIME_IDS), (BATCH, TOKENS), generator=gen)
    ids = torch.tensor(LLMTIME_IDS)[pick]
    return ids, torch.ones_like(ids), ids.clone()


def _step(checkpointing: bool) -> tuple[float, list[torch.Tensor], int]:
    """(loss, LoRA gradients, FLOPs FlopCounterMode saw) of one numeric-head train step."""
    torch.manual_seed(0)
    model = build_model(CFG, LoraConfig(rank=RANK)).train()
    with torch.no_grad():  # B is zero at init, which would leave A without a gradient
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.05, generator=torch.Generator().manual_seed(1))
    if checkpointing:
        enable_gradient_checkpointing(model)
    loss_fn = loss_fn_for("numeric", LLMTIME_IDS)
    with FlopCounterMode(display=False) as counter:
        loss = loss_fn(model, *_batch())
        loss.backward()
    grads = [p.grad.clone() for p in model.parameters() if p.requires_grad]
    return float(loss.detach()), grads, counter.get_total_flops()


def test_checkpointed_step_has_the_same_gradients_and_counted_recompute():
    torch.set_num_threads(1)
    plain_loss, plain_grads, plain_flops = _step(False)
    loss, grads, flops = _step(True)
    assert loss == pytest.approx(plain_loss, rel=1e-6)
    assert all(g.abs().sum() > 0 for g in grads)
    for g, h in zip(grads, plain_grads, strict=True):
        torch.testing.assert_close(g, h, rtol=1e-5, atol=1e-7)
    assert flops > plain_flops  # the layers really ran twice

    arch = Architecture.from_hf_config(tiny_qwen2_config(CFG))

    def counted(checkpointing: bool) -> float:
        return count_with(arch, accounting="exact", mode="train", context_tokens=TOKENS,
                           batch_size=BATCH, lora_rank=RANK, head_vocab=len(LLMTIME_IDS),
                           convention="torch", backward="autograd",
                           gradient_checkpointing=checkpointing).total

    assert counted(False) == pytest.approx(plain_flops, rel=0.01)
    assert counted(True) == pytest.approx(flops, rel=0.01)


def test_recompute_is_one_layer_forward_in_the_reference_accounting_too():
    arch = Architecture.from_hf_config(tiny_qwen2_config(CFG))
    kwargs = dict(accounting="seed", mode="train", context_tokens=TOKENS, batch_size=BATCH,
                  steps=3)
    plain = count_with(arch, **kwargs)
    checkpointed = count_with(arch, **kwargs, gradient_checkpointing=True)
    # seed: training = 3 x forward, forward = layers + head; the recompute adds the layers once
    assert checkpointed.total - plain.total == pytest.approx(plain.breakdown["forward/layers"])
    assert count_with(arch, accounting="seed", mode="forward", context_tokens=TOKENS,
                       gradient_checkpointing=True).total == count_with(
        arch, accounting="seed", mode="forward", context_tokens=TOKENS).total


def test_a_checkpointed_run_trains_the_same_and_meters_its_recompute(compose_cfg, tmp_path):
    """End to end: the same losses, and the ledger's training spend grows by the hand-derived
    share of one more layer forward (seed accounting: forward = layers + head, train = 3x)."""
    from lora_forecast.results import read_results
    from lora_forecast.task import run_task

    runs = {}
    for flag in ("false", "true"):
        run_dir = tmp_path / flag
        run_dir.mkdir()
        run_task(compose_cfg(f"train.gradient_checkpointing={flag}", "train.max_steps=2",
                             "budget.accounting=seed", "train.eval_forecast=false"), run_dir)
        runs[flag] = read_results(run_dir)
    losses = {f: [h["train/loss"] for h in r["train"]["history"]] for f, r in runs.items()}
    assert losses["true"] == pytest.approx(losses["false"], rel=1e-5)
    spent = {f: r["flops"]["spent_by_kind"]["training"] for f, r in runs.items()}
    cfg = runs["false"]["config"]
    arch = Architecture.from_hf_config(tiny_qwen2_config(ModelConfig(**{
        k: v for k, v in cfg["model"].items() if k in ModelConfig.__dataclass_fields__})))
    seed = count_with(arch, accounting="seed", mode="forward",
                       context_tokens=cfg["data"]["context_tokens"], batch_size=2)
    layers_share = seed.breakdown["forward/layers"] / seed.total
    assert spent["true"] / spent["false"] == pytest.approx(1 + layers_share / 3)
