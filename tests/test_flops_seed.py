"""The seed accounting reproduces the reference report's formulas (SPEC) exactly.

Each expected value is computed here from the SPEC's formulas, written out again
independently of the implementation, in exact rational arithmetic.
"""

from __future__ import annotations

from fractions import Fraction

import pytest

from lora_forecast.flops import Architecture
from tests.conftest import count_with

QWEN = Architecture.qwen2_5_0_5b()


def spec_forward(d: int, h: int, n_layers: int, v: int, n: int) -> Fraction:
    """SPEC: layer(N) = 4D^2N/H + (22N^2 - N + 10)H + 22D^2N + 4DN^2 + 31DN + 20N;
    forward(N) = L layer(N) + (2D + 22)VN - V."""
    layer = (Fraction(4 * d**2 * n, h) + (22 * n**2 - n + 10) * h + 22 * d**2 * n
             + 4 * d * n**2 + 31 * d * n + 20 * n)
    return n_layers * layer + (2 * d + 22) * v * n - v


def _arch(d: int, h: int, n_layers: int, v: int) -> Architecture:
    # Only D, H, L, V enter the seed formulas; the other sizes are arbitrary but valid.
    return Architecture(hidden=d, layers=n_layers, heads=h, kv_heads=1, head_dim=d // h,
                        intermediate=3 * d, vocab=v)


SHAPES = [  # (D, H, L, V, N)
    (896, 14, 24, 151936, 512),  # Qwen2.5-0.5B at the default context
    (896, 14, 24, 151936, 320),
    (896, 14, 24, 151936, 1),
    (64, 4, 2, 1000, 7),
    (10, 3, 1, 13, 5),  # 4 D^2 N / H is not an integer here
]


@pytest.mark.parametrize(("d", "h", "n_layers", "v", "n"), SHAPES)
def test_forward_matches_spec_formula(d, h, n_layers, v, n):
    report = count_with(_arch(d, h, n_layers, v), accounting="seed", mode="forward",
                         context_tokens=n)
    assert report.total == pytest.approx(float(spec_forward(d, h, n_layers, v, n)), rel=1e-14)


def test_qwen_forward_by_hand():
    """forward(512) for Qwen2.5-0.5B, each SPEC term evaluated by hand (D=896, H=14, N=512)."""
    layer = (4 * 896**2 * 512 // 14          # 4 D^2 N / H = 117_440_512 (exact)
             + (22 * 512**2 - 512 + 10) * 14  # attention term
             + 22 * 896**2 * 512 + 4 * 896 * 512**2 + 31 * 896 * 512 + 20 * 512)
    expected = 24 * layer + (2 * 896 + 22) * 151936 * 512 - 151936
    report = count_with(QWEN, accounting="seed", mode="forward", context_tokens=512)
    assert report.total == pytest.approx(expected, rel=1e-14)
    assert report.breakdown["forward/layers"] == pytest.approx(24 * layer, rel=1e-14)


@pytest.mark.parametrize(("batch", "steps"), [(1, 1), (4, 2000), (4, 0)])
def test_training_is_three_forwards_per_sequence_and_step(batch, steps):
    fwd = spec_forward(896, 14, 24, 151936, 512)
    report = count_with(QWEN, accounting="seed", mode="train", context_tokens=512,
                         batch_size=batch, steps=steps)
    assert report.total == pytest.approx(float(3 * fwd * batch * steps), rel=1e-14)
    if steps:
        assert report.by_phase()["backward"] == pytest.approx(2 * report.by_phase()["forward"])


def test_inference_keeps_context_length_and_ignores_kv_cache():
    fwd = spec_forward(896, 14, 24, 151936, 499)
    for kv_cache in (True, False):
        report = count_with(QWEN, accounting="seed", mode="inference", context_tokens=499,
                             new_tokens=99, kv_cache=kv_cache)
        assert report.total == pytest.approx(float(fwd * 99), rel=1e-14)


def test_lora_bias_and_head_arguments_do_not_change_the_published_formula():
    base = count_with(QWEN, accounting="seed", mode="train", context_tokens=128, steps=3)
    other = count_with(QWEN, accounting="seed", mode="train", context_tokens=128, steps=3,
                        lora_rank=8, lora_targets=("q_proj", "v_proj", "down_proj"),
                        lm_head_bias=True, head_vocab=13)
    assert other.total == base.total


def test_breakdown_sums_to_total():
    report = count_with(QWEN, accounting="seed", mode="train", context_tokens=64,
                         batch_size=2, steps=5)
    assert set(report.breakdown) == {"forward/layers", "forward/lm_head",
                                     "backward/layers", "backward/lm_head"}
    assert sum(report.breakdown.values()) == pytest.approx(report.total, rel=1e-15)


@pytest.mark.parametrize(("kwargs", "argument"), [
    ({"convention": "torch"}, "convention"),
    ({"mode": "train", "backward": "autograd", "lora_rank": 4}, "backward"),
])
def test_seed_refuses_counts_it_does_not_define(kwargs, argument):
    args = {"accounting": "seed", "mode": "forward", "context_tokens": 8, **kwargs}
    with pytest.raises(ValueError, match=argument):
        count_with(QWEN, **args)
