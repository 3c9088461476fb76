"""The folded GQA attention: the numbers of transformers' sdpa, without copying the KV cache."""

from __future__ import annotations

import math

import pytest
import torch

from lora_forecast.config import LoraConfig, ModelConfig
from lora_forecast.models.attention import FOLDED_SDPA, folded_sdpa_attention
from lora_forecast.models.build import build_model
from lora_forecast.models.logits import full_head_logits_fn


class _Layer(torch.nn.Module):
    num_key_value_groups = 7  # Qwen2.5-0.5B: 14 query heads on 2 KV heads
    training = False


def _attention_by_hand(query, key, value, allowed):
    """softmax(q k^T / sqrt(d) where allowed, else -inf) v, each query head on its KV head."""
    groups = query.shape[1] // key.shape[1]
    key, value = (t.repeat_interleave(groups, dim=1) for t in (key, value))
    scores = query @ key.transpose(-1, -2) / math.sqrt(query.shape[-1])
    scores = scores.masked_fill(~allowed, float("-inf"))
    return (scores.softmax(-1) @ value).transpose(1, 2)


def test_several_new_tokens_attend_like_repeated_heads_without_repeating_them(monkeypatch):
    import transformers.integrations.sdpa_attention as hf_sdpa

    def no_copies(*args, **kwargs):
        raise AssertionError("the KV cache was repeated")

    monkeypatch.setattr(hf_sdpa, "repeat_kv", no_copies)
    torch.manual_seed(0)
    batch, q, kv, dim = 3, 4, 11, 16
    query = torch.randn(batch, q, 14, dim).transpose(1, 2)  # as the projections leave it
    key, value = torch.randn(batch, 2, kv, dim), torch.randn(batch, 2, kv, dim)
    allowed = torch.ones(batch, 1, q, kv, dtype=torch.bool)
    allowed[:, :, :, kv - q:] = torch.tril(torch.ones(q, q, dtype=torch.bool))  # causal
    allowed[1, :, :, :3] = False  # row 1 left-padded
    allowed[2, :, 2:, kv - 3] = False  # row 2: a rejected draft column
    out, weights = folded_sdpa_attention(_Layer(), query, key, value, allowed)
    assert weights is None and out.shape == (batch, q, 14, dim)
    torch.testing.assert_close(out, _attention_by_hand(query, key, value, allowed))


def test_auto_runs_sdpa_folded_with_the_same_forecast_logits():
    """A tiny GQA model, left-padded prompts, then a 3-token cached call (a draft's shape):
    ``auto`` (folded) and ``sdpa`` (transformers' copies) give the same logits."""
    models = {attn: build_model(ModelConfig(kind="tiny",
                                            attn_implementation=attn), LoraConfig()).eval()
              for attn in ("auto", "sdpa")}
    assert models["auto"].config._attn_implementation == FOLDED_SDPA
    assert models["sdpa"].config._attn_implementation == "sdpa"
    ids = torch.tensor([[0, 0, 15, 16, 13], [17, 18, 15, 16, 13]])
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    new = torch.tensor([[15, 16, 11], [16, 16, 11]])
    logits = {}
    with torch.inference_mode():
        for attn, model in models.items():
            call = full_head_logits_fn(model)
            _, cache = call(ids, mask, positions, None)
            grown = torch.cat([mask, torch.ones(2, 3, dtype=torch.long)], dim=1)
            later = positions[:, -1:] + torch.arange(1, 4)
            logits[attn], _ = call(new, grown, later, cache, keep=3)
    torch.testing.assert_close(logits["auto"], logits["sdpa"], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_an_explicit_attention_stays_as_chosen(attn):
    model = build_model(ModelConfig(kind="tiny", attn_implementation=attn), LoraConfig())
    assert model.config._attn_implementation == attn


def test_a_pretrained_checkpoint_loads_with_the_folded_attention(tmp_path):
    """``from_pretrained`` (attention left to transformers, then switched where it is sdpa)."""
    build_model(ModelConfig(kind="tiny"), LoraConfig()).get_base_model().save_pretrained(
        tmp_path)
    model = build_model(ModelConfig(kind="pretrained", name_or_path=str(tmp_path)),
                        LoraConfig())
    assert model.config._attn_implementation == FOLDED_SDPA
    with torch.inference_mode():
        out = model(input_ids=torch.tensor([[15, 16, 13, 15]]),
                    attention_mask=torch.tensor([[0, 1, 1, 1]]))
    assert torch.isfinite(out.logits[0, 1:]).all()
