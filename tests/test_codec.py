"""LLMTIME codec: SPEC's examples, round trips on the rounding grid, parse errors, alpha."""

from __future__ import annotations

import doctest
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import lora_forecast.llmtime.codec as llmtime_module
from lora_forecast.llmtime import ForecastParseError, LLMTimeCodec, LLMTimeFormat, choose_alpha
from lora_forecast.models.tokenizer import qwen_tokenizer


def qwen_format(decimals: int = 2, number_format: str = "decimal") -> LLMTimeFormat:
    return LLMTimeFormat.for_tokenizer(LLMTimeCodec(1.0, decimals, number_format),
                                       qwen_tokenizer())


def test_spec_example() -> None:
    codec = LLMTimeCodec(alpha=1.0)
    values = np.array([[0.25, 1.5], [0.27, 1.47], [0.31, 1.42]])
    text = codec.encode(values)
    assert text == "0.25,1.50;0.27,1.47;0.31,1.42"
    np.testing.assert_allclose(codec.decode(text, n_vars=2), values, rtol=0, atol=1e-12)


def test_alpha_scales_and_rounds() -> None:
    codec = LLMTimeCodec(alpha=10.0, decimals=2)
    assert codec.encode(np.array([[13.737, 0.004], [0.5, 2.0]])) == "1.37,0.00;0.05,0.20"
    np.testing.assert_allclose(codec.decode("1.37,0.00;0.05,0.20", 2),
                               [[13.7, 0.0], [0.5, 2.0]], atol=1e-12)


@pytest.mark.parametrize(("decimals", "expected"), [(0, "1,12"), (1, "1.2,12.3"),
                                                    (3, "1.235,12.346"), (6, "1.234600,12.345600")])
def test_decimals(decimals: int, expected: str) -> None:
    assert LLMTimeCodec(alpha=1.0, decimals=decimals).encode(np.array([[1.2346, 12.3456]])) \
        == expected


def test_negative_values_have_leading_minus_and_no_negative_zero() -> None:
    codec = LLMTimeCodec(alpha=1.0)
    assert codec.encode(np.array([[-1.5, -0.001], [0.0, -0.0]])) == "-1.50,0.00;0.00,0.00"
    np.testing.assert_allclose(codec.decode("-1.50,0.00", 2), [[-1.5, 0.0]])


def test_real_tokenizer_ids_match_spec() -> None:
    tokenizer = qwen_tokenizer()
    assert tokenizer.encode("1.23", add_special_tokens=False) == [16, 13, 17, 18]
    for digit in range(10):
        assert tokenizer.convert_tokens_to_ids(str(digit)) == 15 + digit
    assert [tokenizer.convert_tokens_to_ids(c) for c in ".,;"] == [13, 11, 26]
    text = LLMTimeCodec(alpha=1.0).encode(np.array([[0.25, 1.5], [0.27, 1.47]]))
    assert tokenizer.encode(text, add_special_tokens=False) == \
        [15, 13, 17, 20, 11, 16, 13, 20, 15, 26, 15, 13, 17, 22, 11, 16, 13, 19, 22]


@settings(max_examples=150, deadline=None)
@given(
    values=st.integers(1, 12).flatmap(lambda t: st.integers(1, 4).flatmap(
        lambda v: arrays(np.float64, (t, v),
                         elements=st.floats(-1e4, 1e4, allow_nan=False, allow_subnormal=False))
    )),
    alpha=st.floats(1e-3, 1e3),
    decimals=st.integers(0, 6),
)
def test_round_trip_on_the_grid(values: np.ndarray, alpha: float, decimals: int) -> None:
    codec = LLMTimeCodec(alpha=alpha, decimals=decimals)
    text = codec.encode(values)
    n_steps, n_vars = values.shape
    # format: no spaces, no trailing ';', T steps of V fields with exactly `decimals` decimals
    field = r"-?\d+" + (rf"\.\d{{{decimals}}}" if decimals else "")
    step = rf"{field}(?:,{field}){{{n_vars - 1}}}"
    assert re.fullmatch(rf"{step}(?:;{step}){{{n_steps - 1}}}", text), text
    expected = np.round(values / alpha, decimals) * alpha
    decoded = codec.decode(text, n_vars)
    assert decoded.shape == values.shape
    np.testing.assert_allclose(decoded, expected, rtol=1e-12, atol=1e-12 * alpha)
    np.testing.assert_allclose(codec.quantize(values), expected, rtol=0, atol=0)
    # decoding is idempotent on the grid: re-encoding the decoded values gives the same text
    assert codec.encode(decoded) == text


@settings(max_examples=60, deadline=None)
@given(values=arrays(np.float64, st.tuples(st.integers(1, 6), st.integers(1, 3)),
                     elements=st.floats(0, 999.4)),
       decimals=st.integers(0, 4), number_format=st.sampled_from(["decimal", "digits"]))
def test_tokens_per_step_bound_holds(values: np.ndarray, decimals: int, number_format: str) -> None:
    fmt = qwen_format(decimals, number_format)
    bound = fmt.max_tokens_per_step(values.shape[1], max_int_digits=3)
    steps = [fmt.encode(values[t:t + 1]) for t in range(len(values))]
    assert max(len(s) + 1 for s in steps) <= bound  # + the ';' that ends each step


def test_tokens_per_step_bound_values() -> None:
    # "0.12,0.05;" is 10 tokens: SPEC's 50 steps ~ 499 tokens
    assert qwen_format(2).max_tokens_per_step(2, 1) == 10
    assert qwen_format(2, "digits").max_tokens_per_step(2, 1) == 8  # "123,456;"
    assert qwen_format(0).max_tokens_per_step(3, 2) == 9


@settings(max_examples=100, deadline=None)
@given(values=arrays(np.float64, st.tuples(st.integers(1, 8), st.integers(1, 3)),
                     elements=st.floats(-1e3, 1e3, allow_nan=False, allow_subnormal=False)),
       alpha=st.floats(1e-2, 1e2), decimals=st.integers(0, 4))
def test_digits_form_round_trips_to_the_same_grid(values: np.ndarray, alpha: float,
                                                  decimals: int) -> None:
    digits = LLMTimeCodec(alpha, decimals, "digits")
    text = digits.encode(values)
    assert "." not in text and re.fullmatch(r"[-\d,;]+", text)
    np.testing.assert_allclose(digits.decode(text, values.shape[1]),
                               LLMTimeCodec(alpha, decimals).quantize(values),
                               rtol=1e-12, atol=1e-9 * alpha)
    assert digits.encode(digits.decode(text, values.shape[1])) == text


def test_digits_form_example_and_errors() -> None:
    codec = LLMTimeCodec(alpha=10.0, decimals=2, number_format="digits")
    assert codec.encode(np.array([[2.5, 15.0], [0.004, 13.7]])) == "25,150;0,137"
    with pytest.raises(ForecastParseError, match="'2.5' is not a number"):
        codec.decode("2.5,150", 2)
    with pytest.raises(ValueError, match="number_format"):
        LLMTimeCodec(alpha=1.0, number_format="hex")


@pytest.mark.parametrize(("text", "fragment"), [
    ("", "empty text"),
    (";", "empty text"),
    ("1.00,2.00;3.00", "step 1: expected 2 values, got 1 in '3.00'"),
    ("1.00,2.00,3.00", "step 0: expected 2 values, got 3"),
    ("1.00,", "step 0, value 1: empty field"),
    ("1.00,2.00;;3.00,4.00", "step 1: expected 2 values, got 1 in ''"),
    ("1.00,abc", "step 0, value 1: 'abc' is not a number"),
    ("1.00,1e5", "'1e5' is not a number"),
    ("1.00, 2.00", "' 2.00' is not a number"),
    ("1.,2.00", "'1.' is not a number"),
    ("nan,2.00", "'nan' is not a number"),
    ("1_0,2.00", "'1_0' is not a number"),
])
def test_decode_errors(text: str, fragment: str) -> None:
    with pytest.raises(ForecastParseError) as info:
        LLMTimeCodec(alpha=1.0).decode(text, n_vars=2)
    assert fragment in str(info.value)
    assert isinstance(info.value, ValueError)


def test_decode_leniency() -> None:
    codec = LLMTimeCodec(alpha=2.0)
    np.testing.assert_allclose(codec.decode("1.5,2;0.125,3.00;", 2), [[3.0, 4.0], [0.25, 6.0]])


@pytest.mark.parametrize("kwargs", [{"alpha": 0.0}, {"alpha": -1.0}, {"alpha": float("inf")},
                                    {"alpha": 1.0, "decimals": 7}, {"alpha": 1.0, "decimals": -1}])
def test_codec_rejects_bad_settings(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        LLMTimeCodec(**kwargs)


@pytest.mark.parametrize("values", [np.array([1.0, 2.0]), np.zeros((0, 2)), np.zeros((3, 0)),
                                    np.array([[1.0, np.nan]])])
def test_encode_rejects_bad_arrays(values: np.ndarray) -> None:
    with pytest.raises(ValueError):
        LLMTimeCodec(alpha=1.0).encode(values)


def test_codec_is_frozen() -> None:
    codec = LLMTimeCodec(alpha=1.0)
    with pytest.raises(AttributeError):
        codec.alpha = 2.0  # type: ignore[misc]


def test_choose_alpha_maps_quantile_to_target() -> None:
    rng = np.random.default_rng(0)
    values = rng.exponential(2.0, size=(50, 100, 2))
    alpha = choose_alpha(values, quantile=0.99, target=9.0)
    assert alpha == pytest.approx(np.quantile(values, 0.99) / 9.0)
    scaled = values / alpha
    assert np.mean(scaled < 10.0) >= 0.99
    assert choose_alpha(np.array([0.5, 2.0, 13.5]), quantile=1.0) == pytest.approx(1.5)
    assert choose_alpha(np.zeros(10)) == 1.0


@pytest.mark.parametrize("args", [(np.array([]),), (np.array([1.0, np.nan]),),
                                  (np.ones(3), 0.0), (np.ones(3), 0.5, -1.0)])
def test_choose_alpha_rejects_bad_input(args: tuple) -> None:
    with pytest.raises(ValueError):
        choose_alpha(*args)


def test_docstring_examples() -> None:
    result = doctest.testmod(llmtime_module, extraglobs={"np": np})
    assert result.attempted >= 6 and result.failed == 0
