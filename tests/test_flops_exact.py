"""The exact accounting on shapes small enough to count by hand, plus its invariants.

Expected values are SPEC primitive counts written out here (matmul (m x n)@(n x p) costs
m*p*(2n-1); add/mul 1; exp/sqrt 10), never the implementation's own output.
"""

from __future__ import annotations

import copy
import dataclasses
import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lora_forecast.flops import CONVENTIONS, Architecture, FlopsReport
from tests.conftest import count_with

# D=4, one layer, H=2 query heads sharing KV=1 head of width d=2, I=6, V=10.
TINY = Architecture(hidden=4, layers=1, heads=2, kv_heads=1, head_dim=2, intermediate=6,
                    vocab=10)
QWEN = Architecture.qwen2_5_0_5b()
DENSE = dataclasses.replace(CONVENTIONS["coursework"], causal_discount=False)


def mm(m: int, n: int, p: int) -> int:
    """SPEC: (m x n) @ (n x p) costs m * p * (2n - 1)."""
    return m * p * (2 * n - 1)


def exact(arch: Architecture = TINY, **kwargs) -> FlopsReport:
    return count_with(arch, accounting="exact", **{"mode": "forward", **kwargs})


def test_tiny_forward_components_by_hand():
    n = 3
    pairs = sum(i + 1 for i in range(n))  # causal: query i scores i + 1 keys -> 6
    got = exact(context_tokens=n).breakdown
    expected = {
        "forward/q_proj": mm(n, 4, 4) + n * 4,  # 4 = H*d outputs, + bias adds
        "forward/k_proj": mm(n, 4, 2) + n * 2,  # GQA: 2 = KV*d outputs
        "forward/v_proj": mm(n, 4, 2) + n * 2,
        "forward/rope": 3 * n * (4 + 2),  # x*cos + rot(x)*sin on q and k
        "forward/attn_scores": 2 * pairs * (2 * 2 - 1) + 2 * pairs,  # QK^T + 1/sqrt(d) scale
        "forward/attn_softmax": 2 * sum(14 * (i + 1) - 2 for i in range(n)),
        "forward/attn_values": 2 * sum(2 * (2 * (i + 1) - 1) for i in range(n)),
        "forward/o_proj": mm(n, 4, 4),
        "forward/residual": 2 * n * 4,
        "forward/norm": 3 * n * (4 + (3 + 1) + 1 + 10 + 1 + 4 + 4),  # 2 in layer, 1 final
        "forward/gate_proj": mm(n, 4, 6),
        "forward/up_proj": mm(n, 4, 6),
        "forward/mlp_act": n * 6 * (1 + 10 + 1 + 1 + 1) + n * 6,  # SiLU, then * up
        "forward/down_proj": mm(n, 6, 4),
        "forward/lm_head": mm(n, 4, 10),
    }
    assert dict(got) == pytest.approx(expected)
    assert exact(context_tokens=n).total == pytest.approx(sum(expected.values()))


def test_lora_forward_by_hand():
    n, r = 5, 3
    got = exact(context_tokens=n, lora_rank=r, lora_targets=("q_proj", "v_proj")).breakdown
    # x A^T (n x r), then B^T to out, then * scaling and + base (2 per output)
    q = mm(n, 4, r) + mm(n, r, 4) + 2 * n * 4
    v = mm(n, 4, r) + mm(n, r, 2) + 2 * n * 2
    assert got["forward/lora"] == pytest.approx(q + v)


def test_lm_head_bias_and_numeric_head():
    n = 4
    full = exact(context_tokens=n, lm_head_bias=True).breakdown
    numeric = exact(context_tokens=n, lm_head_bias=True, head_vocab=3).breakdown
    assert full["forward/lm_head_bias"] == n * 10
    assert numeric["forward/lm_head"] == mm(n, 4, 3)
    assert numeric["forward/lm_head_bias"] == n * 3
    qwen = exact(QWEN, context_tokens=64)
    assert exact(QWEN, context_tokens=64, head_vocab=13).total < qwen.total


def test_causal_discount_counts_only_the_lower_triangle():
    n = 5
    causal = exact(context_tokens=n).breakdown
    dense = exact(context_tokens=n, convention=DENSE).breakdown
    assert dense["forward/attn_scores"] == 2 * n * n * (2 * 2 - 1) + 2 * n * n
    assert dense["forward/attn_values"] == 2 * mm(n, n, 2)
    assert causal["forward/attn_scores"] < dense["forward/attn_scores"]
    assert exact(context_tokens=n).total < exact(context_tokens=n, convention=DENSE).total


def test_single_token_generation_is_a_forward_with_one_logit_row():
    n = 6
    forward = exact(context_tokens=n).total
    generate = exact(context_tokens=n, mode="inference", new_tokens=1).total
    assert generate == pytest.approx(forward - (n - 1) * (2 * 4 - 1) * 10)


def test_decode_step_attends_to_the_whole_cache():
    c, k = 4, 3  # prefill makes token 1; decode steps see c + 1 and c + 2 keys
    got = exact(context_tokens=c, mode="inference", new_tokens=k).breakdown
    keys = [c + s for s in range(1, k)]
    assert got["decode/attn_scores"] == 2 * sum(kk * (2 * 2 - 1) + kk for kk in keys)
    assert got["decode/q_proj"] == (k - 1) * (mm(1, 4, 4) + 4)
    assert got["decode/lm_head"] == (k - 1) * mm(1, 4, 10)
    assert got["prefill/lm_head"] == mm(1, 4, 10)


def test_kv_cache_saves_recomputation():
    common = {"mode": "inference", "context_tokens": 32, "new_tokens": 8}
    cached = exact(QWEN, **common).total
    assert exact(QWEN, kv_cache=False, **common).total > cached
    # without a cache, token s re-runs a full (logits-for-last-position) pass over c + s tokens
    recompute = sum(exact(QWEN, mode="inference", context_tokens=32 + s, new_tokens=1).total
                    for s in range(8))
    assert exact(QWEN, kv_cache=False, **common).total == pytest.approx(recompute)


@pytest.mark.parametrize("convention", ["coursework", "torch"])
def test_rule_backward_is_twice_forward(convention):
    forward = exact(QWEN, context_tokens=64, batch_size=2, lora_rank=4, convention=convention)
    train = exact(QWEN, mode="train", context_tokens=64, batch_size=2, steps=3, lora_rank=4,
                  convention=convention)
    assert train.total == pytest.approx(3 * 3 * forward.total)
    assert train.by_phase()["backward"] == pytest.approx(2 * train.by_phase()["forward"])


def test_autograd_backward_layer0_needs_no_input_gradient():
    """One layer, LoRA on q/v: nothing upstream of layer 0 is trainable."""
    n, r = 3, 2
    got = exact(mode="train", context_tokens=n, lora_rank=r, backward="autograd").breakdown
    assert "backward/q_proj" not in got and "backward/k_proj" not in got
    assert got["backward/rope"] == 3 * n * 4  # q needs its gradient, k does not
    # per target: dv = g*s, dB = dv^T u, du = dv B, dA = du^T x; no dx
    q = n * 4 + mm(4, n, r) + mm(n, 4, r) + mm(r, n, 4)
    v = n * 2 + mm(2, n, r) + mm(n, 2, r) + mm(r, n, 4)
    assert got["backward/lora"] == pytest.approx(q + v)
    assert got["backward/lm_head"] == mm(n, 10, 4)  # d(hidden) only: the head is frozen
    assert got["backward/o_proj"] == mm(n, 4, 4)
    assert got["backward/down_proj"] == mm(n, 4, 6)


def test_autograd_second_layer_needs_input_gradients():
    two = dataclasses.replace(TINY, layers=2)
    n = 3
    got = exact(two, mode="train", context_tokens=n, lora_rank=2, backward="autograd").breakdown
    assert got["backward/q_proj"] == mm(n, 4, 4)  # layer 1 only
    assert got["backward/k_proj"] == mm(n, 2, 4)


def test_autograd_with_only_a_head_bias_sums_its_gradient():
    got = exact(mode="train", context_tokens=5, batch_size=2, lm_head_bias=True,
                backward="autograd")
    assert got.by_phase()["backward"] == (2 * 5 - 1) * 10


def test_autograd_is_cheaper_than_the_rule_for_lora():
    common = {"mode": "train", "context_tokens": 512, "batch_size": 4, "lora_rank": 4}
    autograd = exact(QWEN, backward="autograd", **common).by_phase()["backward"]
    assert autograd < exact(QWEN, **common).by_phase()["backward"]


@settings(max_examples=60, deadline=None)
@given(
    layers=st.integers(1, 3), kv=st.integers(1, 3), groups=st.integers(1, 3),
    head_dim=st.integers(1, 8), n=st.integers(1, 40), batch=st.integers(1, 3),
    rank=st.integers(0, 4), new=st.integers(0, 5),
    targets=st.sets(st.sampled_from(["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                     "up_proj", "down_proj"])),
    mode=st.sampled_from(["forward", "train", "inference"]),
    convention=st.sampled_from(["coursework", "torch"]), bias=st.booleans(),
)
def test_invariants(layers, kv, groups, head_dim, n, batch, rank, new, targets, mode,
                    convention, bias):
    arch = Architecture(hidden=8, layers=layers, heads=kv * groups, kv_heads=kv,
                        head_dim=head_dim, intermediate=12, vocab=20)
    backward = "autograd" if (rank and targets) or bias else "rule"
    kwargs = {"mode": mode, "batch_size": batch, "new_tokens": new, "lora_rank": rank,
              "lora_targets": tuple(targets), "lm_head_bias": bias, "backward": backward,
              "convention": convention}
    report = exact(arch, context_tokens=n, **kwargs)
    assert all(v > 0 for v in report.breakdown.values())
    assert sum(report.breakdown.values()) == pytest.approx(report.total)
    if report.total:
        assert exact(arch, context_tokens=n + 1, **kwargs).total > report.total
    if mode != "inference" or new:
        bigger = {**kwargs, "lora_rank": rank + 1, "backward": "rule"}
        if targets:
            assert exact(arch, context_tokens=n, **bigger).total > exact(
                arch, context_tokens=n, **{**bigger, "lora_rank": rank}).total


@pytest.mark.parametrize(("kwargs", "argument"), [
    ({"accounting": "magic"}, "accounting"),
    ({"mode": "eval"}, "mode"),
    ({"convention": "flops"}, "convention"),
    ({"backward": "twice"}, "backward"),
    ({"context_tokens": 0}, "context_tokens"),
    ({"context_tokens": -5}, "context_tokens"),
    ({"batch_size": 0}, "batch_size"),
    ({"steps": -1}, "steps"),
    ({"new_tokens": -1}, "new_tokens"),
    ({"lora_rank": -2}, "lora_rank"),
    ({"lora_targets": ("qkv",)}, "lora_targets"),
    ({"lora_targets": "q_proj"}, "lora_targets"),
    ({"head_vocab": 0}, "head_vocab"),
    ({"head_vocab": 11}, "head_vocab"),
    ({"mode": "train", "backward": "autograd"}, "lora_rank"),
])
def test_bad_arguments_name_themselves(kwargs, argument):
    args = {"accounting": "exact", "mode": "forward", "context_tokens": 4, **kwargs}
    with pytest.raises(ValueError, match=argument):
        count_with(TINY, **args)


def test_architecture_validation_and_parameters():
    with pytest.raises(ValueError, match="kv_heads"):
        Architecture(hidden=8, layers=1, heads=3, kv_heads=2, head_dim=2, intermediate=4,
                     vocab=5)
    with pytest.raises(ValueError, match="hidden"):
        Architecture(hidden=0, layers=1, heads=1, kv_heads=1, head_dim=2, intermediate=4,
                     vocab=5)
    assert 490e6 < QWEN.parameter_count() < 500e6  # SPEC: ~494M parameters


def test_from_hf_config_matches_preset_and_counts_real_parameters():
    transformers = pytest.importorskip("transformers")
    config = transformers.Qwen2Config(
        hidden_size=896, num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
        intermediate_size=4864, vocab_size=151936, tie_word_embeddings=True)
    assert Architecture.from_hf_config(config) == QWEN
    small = transformers.Qwen2Config(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        intermediate_size=48, vocab_size=50, tie_word_embeddings=True)
    model = transformers.Qwen2ForCausalLM(small)
    unique = {id(p): p.numel() for p in model.parameters()}
    assert Architecture.from_hf_config(small).parameter_count() == sum(unique.values())


def test_report_is_read_only_but_copies_and_pickles():
    report = exact(context_tokens=2)
    assert pickle.loads(pickle.dumps(report)) == report
    assert copy.deepcopy(report).total == report.total
    with pytest.raises(TypeError):
        report.breakdown["forward/lm_head"] = 0.0  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.total = 0.0  # type: ignore[misc]

