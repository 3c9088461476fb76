"""The torch convention against torch's own counter on real PEFT-wrapped Qwen2 models.

``FlopCounterMode`` (the oracle, see tests/flops_oracle.py) counts matmuls. We count what it
sees while a random-init ``Qwen2ForCausalLM`` runs a forward pass, a train step
(``loss.backward()`` with LoRA on frozen weights, optionally a trainable lm-head bias), and a
greedy KV-cached ``generate``; the exact accounting in the torch convention must agree within
1% (in practice it agrees exactly). Other families: tests/test_flops_families.py.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")

from flops_oracle import forward as _forward  # noqa: E402
from flops_oracle import generate as _generate  # noqa: E402
from flops_oracle import measure as _measure  # noqa: E402
from flops_oracle import predict as _predict  # noqa: E402
from flops_oracle import token_ids, with_lora  # noqa: E402
from flops_oracle import train_step as _train_step  # noqa: E402
from torch import nn  # noqa: E402
from transformers import Qwen2Config, Qwen2ForCausalLM  # noqa: E402

from lora_forecast.flops import Architecture  # noqa: E402

# peft 0.21 calls transformers' deprecated ``is_gradient_checkpointing``; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing:FutureWarning")

TINY = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "intermediate_size": 128, "vocab_size": 512}
WIDE = {"hidden_size": 896, "num_hidden_layers": 2, "num_attention_heads": 14,
        "num_key_value_heads": 2, "intermediate_size": 4864, "vocab_size": 151936}
ALL_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def _model(shape: dict, *, rank: int, targets: tuple[str, ...], head_bias: bool = False,
           head_vocab: int | None = None) -> tuple[nn.Module, Architecture]:
    """A frozen random-init Qwen2 with LoRA (and optionally a trainable lm-head bias or a
    smaller, frozen lm head of ``head_vocab`` rows)."""
    torch.manual_seed(0)
    config = Qwen2Config(**shape, tie_word_embeddings=True, attn_implementation="eager",
                         pad_token_id=0, bos_token_id=None, eos_token_id=None)
    model = Qwen2ForCausalLM(config)
    arch = Architecture.from_hf_config(config)
    rows = head_vocab or arch.vocab
    if head_vocab:  # a numeric-only head: a frozen (head_vocab x hidden) matrix
        model.lm_head = nn.Linear(arch.hidden, rows, bias=head_bias)
    elif head_bias:  # the tied (frozen) embedding matrix plus a zero-initialised bias
        model.lm_head = nn.Linear(arch.hidden, rows, device="meta")
        model.lm_head.weight = model.model.embed_tokens.weight
        model.lm_head.bias = nn.Parameter(torch.zeros(rows))
    model = with_lora(model, rank, targets,
                      trainable=lambda name: head_bias and name.endswith("lm_head.bias"))
    return model, arch


def _ids(shape: dict, batch: int, tokens: int) -> torch.Tensor:
    return token_ids(shape["vocab_size"], batch, tokens)


@pytest.mark.parametrize(("targets", "head_bias"), [
    (("q_proj", "v_proj"), False),
    (("q_proj", "v_proj"), True),
    (("k_proj",), False),
    (("down_proj",), False),
    (("o_proj", "up_proj"), True),
    (ALL_TARGETS, False),
])
def test_tiny_train_step_matches_autograd(targets, head_bias):
    model, arch = _model(TINY, rank=4, targets=targets, head_bias=head_bias)
    ids = _ids(TINY, batch=2, tokens=7)
    measured = _measure(lambda: _train_step(model, ids))
    predicted = _predict(arch, mode="train", context_tokens=7, batch_size=2, lora_rank=4,
                         lora_targets=targets, lm_head_bias=head_bias, backward="autograd")
    assert predicted == pytest.approx(measured, rel=0.01)


def test_tiny_bias_only_training_has_free_backward():
    """With only the lm-head bias trainable no matmul runs backward (its grad is a sum)."""
    model, arch = _model(TINY, rank=0, targets=(), head_bias=True)
    ids = _ids(TINY, batch=2, tokens=5)
    forward = _measure(lambda: _forward(model, ids))
    measured = _measure(lambda: _train_step(model, ids))
    assert measured == forward
    predicted = _predict(arch, mode="train", context_tokens=5, batch_size=2,
                         lm_head_bias=True, backward="autograd")
    assert predicted == pytest.approx(measured, rel=0.01)


@pytest.mark.parametrize(("head_vocab", "kv_cache"), [(None, True), (13, True), (None, False)])
def test_tiny_forward_and_generate(head_vocab, kv_cache):
    model, arch = _model(TINY, rank=2, targets=("q_proj", "v_proj"), head_vocab=head_vocab)
    ids = _ids(TINY, batch=2, tokens=6)
    common = {"context_tokens": 6, "batch_size": 2, "lora_rank": 2, "head_vocab": head_vocab}
    forward = _measure(lambda: _forward(model, ids))
    assert _predict(arch, mode="forward", **common) == pytest.approx(forward, rel=0.01)
    generate = _measure(lambda: _generate(model, ids, 4, use_cache=kv_cache))
    predicted = _predict(arch, mode="inference", new_tokens=4, kv_cache=kv_cache, **common)
    assert predicted == pytest.approx(generate, rel=0.01)


def test_generate_computes_lm_head_for_last_prefill_position_only():
    """Transformers' generate passes logits_to_keep=1: a full-logits prefill would cost more."""
    model, arch = _model(TINY, rank=0, targets=())
    ids = _ids(TINY, batch=1, tokens=9)
    measured = _measure(lambda: _generate(model, ids, 1))
    full_logits = _predict(arch, mode="forward", context_tokens=9)
    head_per_row = 2 * arch.hidden * arch.vocab
    assert measured == pytest.approx(full_logits - 8 * head_per_row, rel=1e-9)


@pytest.fixture(scope="module")
def wide():
    """Full Qwen2.5-0.5B width, 2 layers, LoRA r=4 on q/v and a trainable lm-head bias."""
    return _model(WIDE, rank=4, targets=("q_proj", "v_proj"), head_bias=True)


def test_wide_forward(wide):
    model, arch = wide
    ids = _ids(WIDE, batch=2, tokens=5)
    measured = _measure(lambda: _forward(model, ids))
    predicted = _predict(arch, mode="forward", context_tokens=5, batch_size=2, lora_rank=4,
                         lm_head_bias=True)
    assert predicted == pytest.approx(measured, rel=0.01)


def test_wide_train_step(wide):
    model, arch = wide
    model.train()
    ids = _ids(WIDE, batch=1, tokens=6)
    measured = _measure(lambda: _train_step(model, ids))
    model.zero_grad(set_to_none=True)
    predicted = _predict(arch, mode="train", context_tokens=6, batch_size=1, lora_rank=4,
                         lm_head_bias=True, backward="autograd")
    assert predicted == pytest.approx(measured, rel=0.01)


def test_wide_generate(wide):
    model, arch = wide
    ids = _ids(WIDE, batch=1, tokens=6)
    measured = _measure(lambda: _generate(model, ids, 3))
    predicted = _predict(arch, mode="inference", context_tokens=6, new_tokens=3, lora_rank=4,
                         lm_head_bias=True)
    assert predicted == pytest.approx(measured, rel=0.01)
