"""One token per LLMTIME symbol, for the real Qwen2.5 tokenizer and for tokenizers that merge
digits: the layout is chosen by checking the tokenizer, and every form round-trips exactly."""

from __future__ import annotations

import numpy as np
import pytest
from built_tokenizers import LAYOUT_OF, TOKENIZERS
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from lora_forecast.llmtime import (
    LLMTimeCodec,
    LLMTimeFormat,
    TokenLayoutError,
    TokenTable,
    written_text,
)
from lora_forecast.models.tokenizer import qwen_tokenizer


def test_qwen_ids_are_the_specs() -> None:
    table = TokenTable.from_tokenizer(qwen_tokenizer())
    assert table.layout == "compact" and table.joiner is None
    assert table.ids == {**{str(d): 15 + d for d in range(10)}, ".": 13, ",": 11, ";": 26,
                         "-": 12}
    assert table.encode("1.23") == [16, 13, 17, 18]  # SPEC: "1.23" -> [16, 13, 17, 18]


def test_qwen_ids_are_mapped_per_symbol_where_bpe_would_merge() -> None:
    tokenizer = qwen_tokenizer()
    table = TokenTable.from_tokenizer(tokenizer)
    text = "1.00,-2.00;-3.00,4.00"  # ",-" and ";-" are single BPE tokens in Qwen
    ids = table.encode(text)
    assert len(ids) == len(text) and tokenizer.decode(ids) == text
    assert len(tokenizer.encode(text, add_special_tokens=False)) < len(text)


@pytest.mark.parametrize("name", sorted(TOKENIZERS))
def test_layout_is_chosen_by_checking_the_tokenizer(name: str) -> None:
    assert TokenTable.from_tokenizer(TOKENIZERS[name]()).layout == LAYOUT_OF[name]


values_strategy = st.integers(1, 12).flatmap(lambda t: st.integers(1, 3).flatmap(
    lambda v: arrays(np.float64, (t, v), elements=st.floats(0, 999, allow_subnormal=False))))


@settings(max_examples=40, deadline=None)
@given(values=values_strategy, name=st.sampled_from(sorted(TOKENIZERS)),
       decimals=st.integers(0, 3), number_format=st.sampled_from(["decimal", "digits"]))
def test_encode_tokens_decode_round_trips_in_every_layout(values: np.ndarray, name: str,
                                                          decimals: int,
                                                          number_format: str) -> None:
    tokenizer = TOKENIZERS[name]()
    fmt = LLMTimeFormat.for_tokenizer(LLMTimeCodec(1.0, decimals, number_format), tokenizer)
    ids = fmt.encode(values)
    # the tokenizer itself reads the written text as exactly these ids (one per symbol) ...
    own = tokenizer.encode(fmt.text(values), add_special_tokens=False)
    assert own[-len(ids):] == ids and len(own) - len(ids) <= 1  # <= 1 dummy-prefix token
    # ... and the ids decode back to the values on the codec's grid
    text = fmt.decode_ids(ids)
    assert text == fmt.codec.encode(values)
    np.testing.assert_allclose(fmt.codec.decode(text, values.shape[1]),
                               fmt.codec.quantize(values), rtol=1e-12, atol=1e-12)
    steps = fmt.tokens.step_starts(np.asarray(ids))
    assert len(steps) == len(values)
    bound = fmt.max_tokens_per_step(values.shape[1], max_int_digits=3)
    assert max(np.diff([*steps, len(ids) + 1])) <= bound


def test_written_text_of_each_layout() -> None:
    assert written_text("0.25,1.5;", "compact") == "0.25,1.5;"
    assert written_text("0.25,1.5;", "spaced") == " 0 . 2 5 , 1 . 5 ;"
    assert written_text("10.25,1.5;", "digit_spaced") == "1 0.2 5,1.5;"


def test_a_tokenizer_that_cannot_write_llmtime_is_one_clear_error() -> None:
    vocab = {"<unk>": 0, "</s>": 1, **{str(d): 2 + d for d in range(10)}, ".": 12, ",": 13}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>",
                                        eos_token="</s>")
    with pytest.raises(TokenLayoutError) as info:
        TokenTable.from_tokenizer(tokenizer)
    message = str(info.value)
    assert "\n" not in message and "compact: ';' is not one token" in message
    assert "digit_spaced" in message
