"""The LLMTIME grammar state machine and its logits processor (no model needed)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lora_forecast.llmtime import LLMTimeCodec, LLMTimeGrammar, LLMTimeLogitsProcessor, TokenTable
from lora_forecast.models.tokenizer import qwen_tokenizer

ALPHABET = TokenTable.from_tokenizer(qwen_tokenizer())  # the real Qwen2.5 ids (compact)
EOS, PAD = ALPHABET.eos_id, ALPHABET.pad_id
DIGITS = tuple(ALPHABET.ids[d] for d in "0123456789")
DOT = ALPHABET.ids["."]
# The digit_spaced layout over the same ids, with a joiner token between consecutive digits.
JOINED = TokenTable("digit_spaced", ALPHABET.ids, 99, EOS, PAD)


def grammar(n_vars=2, decimals=2, horizon=3, max_int=3, table=ALPHABET) -> LLMTimeGrammar:
    return LLMTimeGrammar(n_vars, decimals, horizon, max_int, table)


def accepts(text: str, **kwargs) -> bool:
    return grammar(**kwargs).accepts(kwargs.get("table", ALPHABET).encode(text))


@pytest.mark.parametrize("text, kwargs", [
    ("0.25,1.50;0.27,1.47;0.31,1.42", {}),
    ("123.45,0.00;007.10,9.99;0.00,0.00", {}),
    ("1.5;2.5;3.5;4.5", dict(n_vars=1, decimals=1, horizon=4)),
    ("12,3;4,56", dict(decimals=0, horizon=2, max_int=2)),  # ends at max_int digits
    ("9.1,2.2,3.3", dict(n_vars=3, decimals=1, horizon=1, max_int=1)),
])
def test_accepts_valid_forecasts(text, kwargs):
    assert accepts(text, **kwargs)


@pytest.mark.parametrize("text, why", [
    ("0.2.5,1.50;0.27,1.47;0.31,1.42", "two '.'"),
    ("1234.00,1.50;0.27,1.47;0.31,1.42", "too many integer digits"),
    ("0.2,1.50;0.27,1.47;0.31,1.42", "missing fraction digit"),
    ("0.,1.50;0.27,1.47;0.31,1.42", "no fraction digits"),
    (".25,1.50;0.27,1.47;0.31,1.42", "no integer digit"),
    ("0.250,1.50;0.27,1.47;0.31,1.42", "too many fraction digits"),
    ("0.25,1.50;0.27,1.47;0.31,1.42;", "trailing ';'"),
    ("0.25,1.50;0.27,1.47", "too few steps"),
    ("0.25,1.50;0.27,1.47;0.31,1.42;0.35,1.40", "too many steps"),
    ("0.25;1.50;0.27,1.47;0.31,1.42", "';' instead of ','"),
    ("0.25,1.50,0.27,1.47;0.31,1.42", "too many variables"),
    ("-0.25,1.50;0.27,1.47;0.31,1.42", "negative number"),
    ("", "empty"),
])
def test_rejects_malformed_forecasts(text, why):
    assert not grammar().accepts(ALPHABET.encode(text)), why


def test_digit_spaced_layout_requires_a_joiner_between_digits():
    text = "12.05,0.50;3.00,45.10"
    ids = JOINED.encode(text)
    assert ids.count(99) == 6 and JOINED.decode(ids) == text  # 1|2, 0|5, 5|0, 0|0, 4|5, 1|0
    g = grammar(horizon=2, table=JOINED)
    assert g.accepts(ids)
    assert not g.accepts(ALPHABET.encode(text))  # digits side by side: not this layout
    assert len(JOINED.encode(";".join(["999.99,999.99"] * 2))) == g.max_length


def test_advance_raises_on_disallowed_token_and_completes_without_eos():
    g = grammar(n_vars=1, decimals=1, horizon=1)
    state = g.start
    with pytest.raises(ValueError, match="not allowed"):
        g.advance(state, DOT)
    for token in ALPHABET.encode("1.5"):
        assert not g.is_done(state)
        state = g.advance(state, token)
    assert g.is_done(state)
    assert g.allowed(state) == (EOS,)
    assert g.is_done(g.advance(g.advance(state, EOS), PAD))  # generate pads after EOS
    with pytest.raises(ValueError, match="complete"):
        g.advance(state, DIGITS[0])


def test_integer_forecasts_end_with_eos_when_shorter_than_max_int_digits():
    g = grammar(n_vars=1, decimals=0, horizon=2, max_int=3)
    ids = ALPHABET.encode("4;12")
    assert not g.accepts(ids)  # "12" might still continue
    assert g.accepts([*ids, EOS])
    assert g.accepts(ALPHABET.encode("4;123"))  # max digits: complete by itself


def test_max_length_is_the_longest_forecast():
    g = grammar()
    longest = ALPHABET.encode(";".join(["999.99,999.99"] * 3))
    assert g.accepts(longest) and len(longest) == g.max_length


@settings(max_examples=150, deadline=None)
@given(n_vars=st.integers(1, 3), decimals=st.integers(0, 3), horizon=st.integers(1, 4),
       max_int=st.integers(1, 3), table=st.sampled_from([ALPHABET, JOINED]), data=st.data())
def test_any_allowed_path_decodes_to_horizon_by_n_vars(n_vars, decimals, horizon, max_int, table,
                                                       data):
    g = grammar(n_vars=n_vars, decimals=decimals, horizon=horizon, max_int=max_int, table=table)
    state, tokens = g.start, []
    while not g.is_done(state):
        token = data.draw(st.sampled_from(g.allowed(state)))
        tokens.append(token)
        state = g.advance(state, token)
        assert len(tokens) <= g.max_length
    assert g.accepts(tokens)
    text = table.decode([t for t in tokens if t != EOS])
    values = LLMTimeCodec(alpha=1.0, decimals=decimals).decode(text, n_vars)
    assert values.shape == (horizon, n_vars)
    assert table.encode(text) == [t for t in tokens if t != EOS]  # the layout's own writing


def test_logits_processor_masks_per_row_after_the_prompt():
    g = grammar(n_vars=1, decimals=1, horizon=1)
    processor = LLMTimeLogitsProcessor(g, prompt_length=2)
    prompt = [17, 26]
    rows = torch.tensor([prompt + ALPHABET.encode("12"), prompt + ALPHABET.encode("1.")])
    scores = processor(rows, torch.zeros(2, 200_000))
    finite = [set(torch.isfinite(s).nonzero().flatten().tolist()) for s in scores]
    assert finite[0] == {*DIGITS, DOT}
    assert finite[1] == set(DIGITS)
    rows = torch.cat([rows, torch.tensor([[DIGITS[3]], [DIGITS[4]]])], dim=1)
    scores = processor(rows, torch.zeros(2, 200_000))
    assert processor.done == [False, True]
    assert torch.isfinite(scores[0]).nonzero().flatten().tolist() == [DOT]  # "123"
    assert torch.isfinite(scores[1]).nonzero().flatten().tolist() == [EOS]
    # a new, shorter batch starts over
    processor(torch.tensor([prompt]), torch.zeros(1, 200_000))
    assert processor.states == [g.start]
