"""Token windows that start at time-step starts (ids from a fake one-token-per-symbol table)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from torch.utils.data import DataLoader

from lora_forecast.data import (
    TokenWindows,
    count_windows,
    make_windows,
    train_windows,
    val_windows,
)
from lora_forecast.data.windows import IGNORE_INDEX, window_starts
from lora_forecast.llmtime import LLMTimeCodec, LLMTimeFormat, TokenTable

VOCAB = {c: 100 + i for i, c in enumerate("0123456789.,;-")}  # fake ids, no tokenizer needed
PAD = 7
TABLE = TokenTable("compact", VOCAB, None, eos_id=8, pad_id=PAD)


def tokens_of(text: str) -> tuple[np.ndarray, np.ndarray]:
    ids = np.asarray(TABLE.encode(text), dtype=np.int64)
    return ids, TABLE.step_starts(ids)


def test_series_token_ids_step_starts() -> None:
    ids, starts = tokens_of("0.25,1.50;0.27,1.47;0.31,1.42")
    assert starts.tolist() == [0, 10, 20]
    assert ids[:4].tolist() == [VOCAB["0"], VOCAB["."], VOCAB["2"], VOCAB["5"]]
    assert ids.dtype == np.int64 and starts.dtype == np.int64
    _, starts = tokens_of("1;2;")  # a trailing ';' does not start a step
    assert starts.tolist() == [0, 2]
    ids, starts = tokens_of("")
    assert ids.size == 0 and starts.size == 0


def test_series_token_ids_rejects_foreign_characters() -> None:
    with pytest.raises(ValueError, match="' ' is not an LLMTIME symbol"):
        tokens_of("1.0, 2x")
    with pytest.raises(ValueError, match="'€' is not an LLMTIME symbol"):
        tokens_of("1.0,2€")


def steps_text(n_steps: int, step: str = "1.23,4.56") -> str:
    return ";".join([step] * n_steps)


def test_window_grid_snaps_forward_to_step_starts() -> None:
    # steps of 10 tokens ("1.23,4.56;"); n = 10 * 20 - 1 = 199
    ids, starts = tokens_of(steps_text(20))
    got = window_starts(len(ids), starts, context_tokens=64, stride=32)
    # candidates 0, 32, ..., 160 (the first with k*32 + 64 >= 199) -> next step starts
    assert got.tolist() == [0, 40, 70, 100, 130, 160]
    assert count_windows([len(ids)], 64, 32) == 6
    got = window_starts(len(ids), starts, context_tokens=64, stride=64)
    # 64 -> 70 (tokens 64..69 are skipped), 128 -> 130, 192 is past the last step: back to 190
    assert got.tolist() == [0, 70, 130, 190]
    assert count_windows([len(ids)], 64, 64) == 4


def test_windows_content_padding_and_labels() -> None:
    text = steps_text(20)
    ids, starts = tokens_of(text)
    windows = make_windows([(ids, starts)], context_tokens=64, stride=32, pad_id=PAD)
    assert len(windows) == 6 and windows.context_tokens == 64
    for i, start in enumerate([0, 40, 70, 100, 130, 160]):
        item = windows[i]
        n_real = min(64, len(ids) - start)
        np.testing.assert_array_equal(item["input_ids"][:n_real].numpy(), ids[start:start + n_real])
        assert item["attention_mask"][:n_real].eq(1).all()
        assert item["attention_mask"][n_real:].eq(0).all()
        assert item["input_ids"][n_real:].eq(PAD).all()
        assert torch.equal(item["labels"][:n_real], item["input_ids"][:n_real])
        assert item["labels"][n_real:].eq(IGNORE_INDEX).all()
        # starts at the first character of a number that follows ';' (or the series start)
        assert start == 0 or text[start - 1] == ";"
    assert windows[5]["attention_mask"].sum().item() == 199 - 160
    assert windows.n_real_tokens == 64 * 5 + 39


def test_short_series_gives_one_padded_window_and_exact_fit_none() -> None:
    ids, starts = tokens_of(steps_text(3))  # 29 tokens
    windows = make_windows([(ids, starts)], context_tokens=50, stride=25, pad_id=PAD)
    assert len(windows) == 1
    assert windows[0]["attention_mask"].sum().item() == 29
    assert windows[0]["labels"][29:].eq(IGNORE_INDEX).all()
    exact = make_windows([(ids, starts)], context_tokens=29, stride=14, pad_id=PAD)
    assert len(exact) == 1 and exact[0]["attention_mask"].eq(1).all()


def test_train_and_val_strides() -> None:
    series = [tokens_of(steps_text(100))]  # 999 tokens, as a real LLMTIME series at alpha 10
    train, val = train_windows(series, 512, PAD), val_windows(series, 512, PAD)
    assert len(train) == 3 == count_windows([999], 512, 256)
    assert len(val) == 2 == count_windows([999], 512, 512)
    assert train.labels.shape == (3, 512)


def test_several_series_and_empty_inputs() -> None:
    series = [tokens_of(steps_text(20)), tokens_of(steps_text(3)), tokens_of("")]
    windows = make_windows(series, 64, 32, PAD)
    assert len(windows) == 6 + 1
    assert windows.input_ids.dtype == torch.long
    empty = make_windows([], 64, 32, PAD)
    assert len(empty) == 0 and empty.input_ids.shape == (0, 64)


def test_dataloader_batches_dicts_of_long_tensors() -> None:
    windows = make_windows([tokens_of(steps_text(20))], 64, 32, PAD)
    batch = next(iter(DataLoader(windows, batch_size=4)))
    assert set(batch) == {"input_ids", "attention_mask", "labels"}
    assert all(t.shape == (4, 64) and t.dtype == torch.long for t in batch.values())


@pytest.mark.parametrize(("context", "stride"), [(0, 1), (10, 0), (10, 11)])
def test_window_arguments_validated(context: int, stride: int) -> None:
    with pytest.raises(ValueError):
        make_windows([tokens_of("1;2")], context, stride, PAD)
    with pytest.raises(ValueError):
        count_windows([3], context, stride)


def test_token_windows_shape_check() -> None:
    with pytest.raises(ValueError, match="matching"):
        TokenWindows(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 4, dtype=torch.long))


def test_format_encodes_each_system() -> None:
    trajectories = np.array([[[0.25, 1.5], [0.27, 1.47]], [[1.0, 2.0], [3.0, 4.0]]])
    fmt = LLMTimeFormat(LLMTimeCodec(alpha=1.0), TABLE)
    series = [fmt.encode_series(system) for system in trajectories]
    assert len(series) == 2
    np.testing.assert_array_equal(series[0][0], tokens_of("0.25,1.50;0.27,1.47")[0])
    assert series[1][1].tolist() == [0, 10]


random_series = st.integers(1, 60).flatmap(lambda t: st.integers(1, 3).flatmap(
    lambda v: arrays(np.float64, (t, v), elements=st.floats(0, 150))))


@settings(max_examples=120, deadline=None)
@given(values=random_series, decimals=st.integers(0, 3), context=st.integers(2, 300),
       val=st.booleans())
def test_window_properties(values: np.ndarray, decimals: int, context: int, val: bool) -> None:
    text = LLMTimeCodec(alpha=1.0, decimals=decimals).encode(values)
    ids, starts = tokens_of(text)
    step_lengths = np.diff(np.append(starts, len(ids) + 1))  # including each step's ';'
    stride = context if val else max(1, context // 2)
    got = window_starts(len(ids), starts, context, stride)
    windows = make_windows([(ids, starts)], context, stride, PAD)
    assert len(windows) == len(got) <= count_windows([len(ids)], context, stride)
    assert set(got.tolist()) <= set(starts.tolist())  # never starts mid-number
    assert got[0] == 0 and (np.diff(got) > 0).all()
    if len(ids) - starts[-1] <= context:
        assert got[-1] + context >= len(ids)  # the last window reaches the end
    covered = np.zeros(len(ids), dtype=bool)
    for start in got:
        covered[start:start + context] = True
    if not val and step_lengths.max() <= context - stride:
        assert covered.all()  # training windows cover every token
    # padding appears only in the last window, and only there is the mask 0
    masks = windows.attention_mask
    assert masks[:-1].eq(1).all()
    assert masks[-1].sum().item() == min(context, len(ids) - got[-1])
    assert windows.labels.eq(IGNORE_INDEX).eq(masks.eq(0)).all()
