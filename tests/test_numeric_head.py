"""The numeric head equals the full head renormalised over the LLMTIME alphabet."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lora_forecast.config import LoraConfig, ModelConfig
from lora_forecast.llmtime import LLMTimeCodec, LLMTimeFormat
from lora_forecast.models.build import build_model
from lora_forecast.models.numeric_head import (
    HEAD_LOSSES,
    backbone_and_head,
    full_head_loss,
    loss_fn_for,
    numeric_head_loss,
    numeric_logits_fn,
)
from lora_forecast.models.tokenizer import qwen_tokenizer

ALLOWED = (15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 13, 11, 26)  # '0'..'9', '.', ',', ';'
PAD = 151643


def _model(lm_head_bias: bool):
    model = build_model(ModelConfig(kind="tiny", lm_head_bias=lm_head_bias), LoraConfig(rank=4))
    _, head = backbone_and_head(model)
    if head.bias is not None:  # a non-trivial bias, as after some training
        with torch.no_grad():
            head.bias.normal_(0, 0.5)
    return model


def _batch(padded: bool, seed: int = 0):
    """(input_ids, attention_mask, labels) of LLMTIME tokens; right padding when ``padded``."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.tensor(ALLOWED)[torch.randint(len(ALLOWED), (3, 12), generator=gen)]  # (B, T)
    mask = torch.ones_like(ids)
    if padded:
        mask[1, 8:] = 0
        mask[2, 5:] = 0
    ids = ids.masked_fill(mask == 0, PAD)
    labels = ids.masked_fill(mask == 0, -100)
    return ids, mask, labels


def _reference_loss(model, ids, mask, labels):
    """Full-vocabulary logits, log_softmax over the allowed columns only, HF shift + mean."""
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()  # (B, T-1, V)
    targets = labels[:, 1:]
    keep = targets != -100
    logp = F.log_softmax(logits[..., list(ALLOWED)], dim=-1)[keep]  # (N, K)
    local = torch.tensor([ALLOWED.index(int(t)) for t in targets[keep]])
    return F.nll_loss(logp, local)


def test_numeric_head_ids_of_qwen_tokenizer():
    tok = qwen_tokenizer()
    fmt = LLMTimeFormat.for_tokenizer(LLMTimeCodec(alpha=1.0), tok)
    assert fmt.head_ids() == ALLOWED  # SPEC's ids: '0'..'9' 15..24, '.' 13, ',' 11, ';' 26
    assert fmt.head_ids(include_eos=True) == (*ALLOWED, tok.eos_token_id)
    digits = LLMTimeFormat.for_tokenizer(LLMTimeCodec(1.0, number_format="digits"), tok)
    assert digits.head_ids() == tuple(i for i in ALLOWED if i != 13)  # no point to score


@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("lm_head_bias", [False, True])
def test_numeric_loss_equals_renormalised_full_head(padded, lm_head_bias):
    model = _model(lm_head_bias)
    ids, mask, labels = _batch(padded)
    with torch.no_grad():
        ours = numeric_head_loss(model, ids, mask, labels, ALLOWED)
        reference = _reference_loss(model, ids, mask, labels)
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-6)


def test_full_head_loss_is_hf_loss():
    model = _model(False)
    ids, mask, labels = _batch(True)
    with torch.no_grad():
        expected = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        assert torch.equal(full_head_loss(model, ids, mask, labels), expected)
        assert torch.equal(loss_fn_for("full", ALLOWED)(model, ids, mask, labels), expected)
        numeric = loss_fn_for("numeric", ALLOWED)(model, ids, mask, labels)
    assert set(HEAD_LOSSES) == {"full", "numeric"}
    torch.testing.assert_close(numeric, numeric_head_loss(model, ids, mask, labels, ALLOWED))
    with pytest.raises(ValueError, match="model.head"):
        loss_fn_for("bogus", ALLOWED)


def test_gradients_reach_lora_and_bias_not_frozen_weights():
    model = _model(True)
    _, head = backbone_and_head(model)
    params = dict(model.named_parameters())
    lora_b = [p for n, p in params.items() if "lora_B" in n]
    lora_a = [p for n, p in params.items() if "lora_A" in n]
    with torch.no_grad():  # B starts at zero (so A's grad is zero): make it non-trivial
        for p in lora_b:
            p.normal_(0, 0.02)
    ids, mask, labels = _batch(True)
    numeric_head_loss(model, ids, mask, labels, ALLOWED).backward()

    assert lora_a and lora_b
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in lora_a + lora_b)
    outside = torch.ones(head.out_features, dtype=torch.bool)
    outside[list(ALLOWED)] = False
    assert head.bias.grad[list(ALLOWED)].abs().sum() > 0
    assert torch.all(head.bias.grad[outside] == 0)
    frozen = [p for p in params.values() if not p.requires_grad]
    assert frozen and all(p.grad is None for p in frozen)
    assert head.weight.grad is None


def test_label_outside_allowed_set_raises():
    model = _model(False)
    ids, mask, labels = _batch(False)
    labels[0, 4] = 9999
    with pytest.raises(ValueError, match="9999"):
        numeric_head_loss(model, ids, mask, labels, ALLOWED)
    labels[0, 4] = -100  # ignored positions may hold anything
    labels[0, 0] = 9999  # the first label is never a target after the shift
    numeric_head_loss(model, ids, mask, labels, ALLOWED)


@pytest.mark.parametrize("lm_head_bias", [False, True])
def test_numeric_logits_fn_matches_full_head_with_cache(lm_head_bias):
    model = _model(lm_head_bias).eval()
    logits_fn = numeric_logits_fn(model, ALLOWED)
    ids, mask, _ = _batch(False, seed=1)
    mask[0, :3] = 0  # left padding in row 0
    ids[0, :3] = PAD
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    outside = torch.ones(151936, dtype=torch.bool)
    outside[list(ALLOWED)] = False

    with torch.inference_mode():
        prefill, cache = logits_fn(ids[:, :-1], mask[:, :-1], positions[:, :-1], None)
        step, _ = logits_fn(ids[:, -1:], mask, positions[:, -1:], cache)
        for ours, upto in ((prefill, ids.shape[1] - 1), (step, ids.shape[1])):
            full = model(
                input_ids=ids[:, :upto], attention_mask=mask[:, :upto],
                position_ids=positions[:, :upto],
            ).logits[:, -1]  # (B, V)
            assert ours.shape == full.shape
            assert torch.all(ours[:, outside] == float("-inf"))
            torch.testing.assert_close(ours[:, list(ALLOWED)], full[:, list(ALLOWED)],
                                       rtol=0, atol=1e-5)
            restricted = full.masked_fill(outside, float("-inf"))
            assert torch.equal(ours.argmax(-1), restricted.argmax(-1))


def test_all_ignored_labels_give_nan_like_hf():
    model = _model(False)
    ids, mask, labels = _batch(False)
    labels[:] = -100
    with torch.no_grad():
        ours = numeric_head_loss(model, ids, mask, labels, ALLOWED)
        hf = full_head_loss(model, ids, mask, labels)
    assert torch.isnan(ours) and torch.isnan(hf)


def test_bf16_autocast_keeps_float32_logits_and_close_loss():
    model = _model(True)
    ids, mask, labels = _batch(True)
    with torch.no_grad():
        exact = numeric_head_loss(model, ids, mask, labels, ALLOWED)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = numeric_head_loss(model, ids, mask, labels, ALLOWED)
    assert mixed.dtype == torch.float32
    torch.testing.assert_close(mixed, exact, rtol=2e-2, atol=2e-2)
