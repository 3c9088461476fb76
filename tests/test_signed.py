"""Signed series (issue #19, part 1): '-' joins the LLMTIME alphabet only where the text needs
it. The grammar lets a number open with '-', the numeric head scores it, token bounds and FLOPs
count it; non-negative data keeps today's alphabet, tokens and FLOPs exactly (pinned below with
hand-worked figures and SPEC's seed formulas, not with the changed code)."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from test_planning import seed_forward

from lora_forecast.config import to_settings
from lora_forecast.errors import ConfigError, DataFormatError
from lora_forecast.flops import Architecture
from lora_forecast.llmtime import LLMTimeCodec, LLMTimeFormat, LLMTimeGrammar, TokenTable
from lora_forecast.models.tokenizer import qwen_tokenizer
from lora_forecast.planning import predict_cost, run_shape, series_lengths, token_format
from lora_forecast.task import run_task
from tests.conftest import count_with, forecast_with

QWEN = TokenTable.from_tokenizer(qwen_tokenizer())
SPEC_IDS = (*range(15, 25), 13, 11, 26)  # SPEC's Qwen2.5 ids: '0'..'9', '.', ',', ';'
MINUS_ID = 12  # Qwen2.5's '-'
TABLE = ["data=table", "data.context_tokens=64", "eval.n_systems=null"]


def signed_format(signed: bool = True) -> LLMTimeFormat:
    return LLMTimeFormat.for_tokenizer(LLMTimeCodec(1.0), qwen_tokenizer(), signed=signed)


# ---- the alphabet, the grammar and the token bounds -------------------------------------------

def test_the_sign_is_one_more_head_row_only_when_signed() -> None:
    assert signed_format(False).head_ids() == SPEC_IDS  # today's 13 rows, unchanged
    assert signed_format(True).head_ids() == (*SPEC_IDS, MINUS_ID)
    assert signed_format(True).head_ids(include_eos=True)[-2:] == (MINUS_ID, QWEN.eos_id)


def test_encoding_writes_the_sign_as_its_own_token_where_qwen_would_merge_it() -> None:
    """Qwen2.5 reads ';-' (54433) and ',-' (4999) of natural text as one token; the series text
    keeps ';' 26 / ',' 11 and '-' 12 apart, so every number opens with the same sign token."""
    tok = qwen_tokenizer()
    assert tok.encode(";-1.2", add_special_tokens=False) == [54433, 16, 13, 17]
    assert tok.encode(",-1.2", add_special_tokens=False) == [4999, 16, 13, 17]
    fmt = signed_format()
    ids = fmt.encode(np.array([[0.5, -1.2], [-3.4, 0.0]]))  # "0.50,-1.20;-3.40,0.00"
    assert ids == [15, 13, 20, 15, 11, 12, 16, 13, 17, 15, 26, 12, 18, 13, 19, 15, 11, 15, 13,
                   15, 15]
    assert fmt.tokens.step_starts(np.array(ids)).tolist() == [0, 11]  # the '-' opens step 2
    assert fmt.decode_ids(ids) == "0.50,-1.20;-3.40,0.00"


@pytest.mark.parametrize("text", ["-0.25,1.50;0.27,-1.47", "-12.05,-0.50;-3.00,-45.10",
                                  "-0.00,0.00;0.00,0.00"])
def test_signed_grammar_accepts_a_leading_minus(text: str) -> None:
    grammar = LLMTimeGrammar(2, 2, 2, 2, QWEN, signed=True)
    assert grammar.accepts(QWEN.encode(text))


@pytest.mark.parametrize("text, why", [
    ("--0.25,1.50;0.27,1.47", "two signs"),
    ("0-.25,1.50;0.27,1.47", "'-' after a digit"),
    ("0.-25,1.50;0.27,1.47", "'-' after the point"),
    ("0.2-5,1.50;0.27,1.47", "'-' among fraction digits"),
    ("-,1.50;0.27,1.47", "a sign without digits"),
    ("0.25,1.50;0.27,1.47-", "a trailing sign"),
])
def test_signed_grammar_allows_minus_only_at_the_start_of_a_number(text: str, why: str) -> None:
    assert not LLMTimeGrammar(2, 2, 2, 2, QWEN, signed=True).accepts(QWEN.encode(text)), why


def test_unsigned_grammar_still_refuses_the_sign() -> None:
    grammar = LLMTimeGrammar(2, 2, 2, 2, QWEN)
    assert not grammar.accepts(QWEN.encode("-0.25,1.50;0.27,1.47"))
    assert MINUS_ID not in grammar.allowed(grammar.start)
    assert MINUS_ID in LLMTimeGrammar(2, 2, 2, 2, QWEN, signed=True).allowed(grammar.start)


def test_digit_spaced_layout_puts_no_joiner_after_the_sign() -> None:
    joined = TokenTable("digit_spaced", QWEN.ids, 99, QWEN.eos_id, QWEN.pad_id)
    ids = joined.encode("-12.05")
    assert ids == [MINUS_ID, 16, 99, 17, 13, 15, 99, 20]  # '-' 1 | 2 . 0 | 5
    grammar = LLMTimeGrammar(1, 2, 1, 2, joined, signed=True)
    assert grammar.accepts(ids)
    assert grammar.max_length == len(ids)  # 1 sign + 4 digits + 2 joiners + '.'


def test_token_bounds_count_one_sign_per_number() -> None:
    # by hand: a number is 2 integer digits, '.', 2 decimals (5 tokens), +1 with the sign;
    # each number is followed by ',' or ';'
    assert signed_format(False).max_tokens_per_step(2, 2) == 2 * (5 + 1)  # today's 12
    assert signed_format(True).max_tokens_per_step(2, 2) == 2 * (6 + 1)
    # 10 steps x 2 numbers; 19 separators between them, none after the last
    assert signed_format(False).grammar(2, 10, 2).max_length == 20 * 5 + 19  # today's 119
    assert signed_format(True).grammar(2, 10, 2).max_length == 20 * 6 + 19


# ---- constrained decoding can go below zero -----------------------------------------------------

def prefers_minus(input_ids, attention_mask, position_ids, cache):
    """A fake model: '-' scores 5, '3' scores 1, everything else 0 (greedy decoding)."""
    logits = torch.zeros(input_ids.shape[0], 151936)
    logits[:, MINUS_ID] = 5.0
    logits[:, 18] = 1.0  # '3'
    return logits, cache


@pytest.mark.parametrize("signed, value", [(True, -33.33), (False, 33.33)])
def test_constrained_forecasts_go_below_zero_only_with_the_signed_alphabet(signed: bool,
                                                                            value: float) -> None:
    """Greedy: '-' wherever the grammar allows it (a number's start), else '3' (2 integer
    digits, max_int_digits=2), then '.', '3', '3': every value -33.33; unsigned the grammar
    masks the '-' and the same model writes 33.33."""
    contexts = np.array([[[0.5, -1.0], [-0.25, 2.0]], [[1.0, 1.0], [2.0, 2.0]]])
    fc = forecast_with(None, signed_format(signed), contexts, horizon_steps=3, max_int_digits=2,
                  logits_fn=prefers_minus, progress=False, jump_forward=True)
    assert fc.parse_failures == 0 and fc.parsed.all()
    np.testing.assert_allclose(fc.point, np.full((2, 3, 2), value))


# ---- planning: non-negative figures pinned, signed figures by hand ------------------------------

def default_run(compose_cfg, *overrides: str):
    return to_settings(compose_cfg("+experiment=default", "data=synthetic", *overrides,
                                   "budget.accounting=seed", shrink=False))


@pytest.mark.parametrize("signed", ["auto", "false"])
def test_non_negative_data_keeps_the_seed_figures(compose_cfg, signed: str) -> None:
    """The figures of tests/test_planning.py (SPEC's seed formulas, <= 12 tokens a step)."""
    cost = predict_cost(default_run(compose_cfg, f"data.signed={signed}"))
    assert cost.training == pytest.approx(3 * seed_forward(512) * 4 * 2000, rel=1e-12)
    assert cost.validation == pytest.approx(20 * 64 * seed_forward(512), rel=1e-12)
    assert cost.forecasting == pytest.approx(100 * seed_forward(600) * 119, rel=1e-12)


def test_signed_data_costs_its_signs(compose_cfg) -> None:
    """<= 14 tokens a step (2 x (2 digits, '.', 2 decimals, '-', separator)): prompts of
    50 x 14 = 700 tokens and 20 x 6 + 19 = 139 new tokens; training and validation windows
    are 512 tokens whatever the alphabet (1399 tokens a series: 3 windows, still capped)."""
    cost = predict_cost(default_run(compose_cfg, "data.signed=true"))
    assert cost.training == pytest.approx(3 * seed_forward(512) * 4 * 2000, rel=1e-12)
    assert cost.validation == pytest.approx(20 * 64 * seed_forward(512), rel=1e-12)
    assert cost.forecasting == pytest.approx(100 * seed_forward(700) * 139, rel=1e-12)


def test_the_numeric_head_counts_the_sign_row(compose_cfg) -> None:
    arch = Architecture.qwen2_5_0_5b()

    def step(rows: int) -> float:
        return count_with(arch, accounting="exact", mode="train", context_tokens=512,
                           batch_size=4, lora_rank=4, lm_head_bias=True, head_vocab=rows).total

    plain = to_settings(compose_cfg("+experiment=default", "data=synthetic", shrink=False))
    signed = to_settings(compose_cfg("+experiment=default", "data=synthetic", "data.signed=true",
                                     shrink=False))
    assert predict_cost(plain).per_train_step == pytest.approx(step(13))  # unchanged
    assert predict_cost(signed).per_train_step == pytest.approx(step(14))


def crossing_frame(n_series: int = 20, dates: bool = True, seed: int = 0) -> pd.DataFrame:
    """Ragged 3-variable series of 14..30 daily steps that cross zero (amplitude 1.5)."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(n_series):
        length = int(rng.integers(14, 31))
        times = pd.date_range("2024-01-01", periods=length, freq="D") if dates else range(length)
        for k, t in enumerate(times):
            values = {f"v{j}": 1.5 * np.sin(0.4 * k + s + j) for j in range(3)}
            rows.append({"series_id": f"s{s:02d}", "date": t, **values})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("shift, signed, per_step", [
    (lambda f: f, True, 21),  # 3 x (sign, 2 digits, '.', 2 decimals, separator)
    (lambda f: f.assign(v0=f.v0 + 2, v1=f.v1 + 2, v2=f.v2 + 2), False, 18),  # today's 18
])
def test_auto_reads_the_sign_from_the_table(compose_cfg, tmp_path: Path, shift, signed: bool,
                                            per_step: int) -> None:
    path = tmp_path / "series.csv"
    shift(crossing_frame()).to_csv(path, index=False)
    settings = to_settings(compose_cfg(*TABLE, f"data.path={path}", "data.time_column=date",
                                       "eval.context_steps=12", "eval.horizon_steps=3"))
    assert series_lengths(settings)[2] is signed
    shape = run_shape(settings)
    assert shape.tokens_per_step == per_step
    assert shape.prompt_tokens == 12 * per_step
    assert shape.horizon_tokens == 9 * (per_step // 3 - 1) + 8  # 9 numbers, 8 separators


def test_llmtime_shift_keeps_signed_data_in_positive_text(compose_cfg, tmp_path: Path) -> None:
    path = tmp_path / "series.csv"
    crossing_frame().to_csv(path, index=False)
    settings = to_settings(compose_cfg(*TABLE, f"data.path={path}", "data.time_column=date",
                                       "data.scaling=per_series", "data.scale_offset=0.1"))
    assert series_lengths(settings)[2] is False
    assert run_shape(settings).tokens_per_step == 18


def test_hdf5_populations_are_unsigned_unless_declared(compose_cfg, tmp_path: Path) -> None:
    path = tmp_path / "signed.h5"
    values = np.ones((10, 20, 2))
    values[3, 4, 1] = -0.5
    with h5py.File(path, "w") as handle:
        handle["trajectories"], handle["time"] = values, np.arange(20.0)
    declared = to_settings(compose_cfg("data.source=file", f"data.path={path}",
                                       "data.signed=true"))
    assert series_lengths(declared)[2] is True
    with pytest.raises(DataFormatError, match=r"negative populations \(first at system 3, step 4, "
                                        r"variable 1\); data.signed=true admits"):
        series_lengths(to_settings(compose_cfg("data.source=file", f"data.path={path}")))


def test_a_tokenizer_without_a_single_minus_is_refused_before_anything_is_reserved(
        compose_cfg, tmp_path: Path, run_dir: Path, capsys) -> None:
    from built_tokenizers import save_tiny_checkpoint

    folder = save_tiny_checkpoint(tmp_path / "mistral", "mistral")  # SentencePiece, no '-'
    capsys.readouterr()  # the checkpoint writer's progress bar
    path = tmp_path / "series.csv"
    crossing_frame(dates=False).to_csv(path, index=False)
    overrides = ["model=hf", f"model.name_or_path={folder}", *TABLE, f"data.path={path}",
                 "data.time_column=date", "eval.context_steps=12", "eval.horizon_steps=3"]
    with pytest.raises(ConfigError, match="^data.signed: .*'-' is not one token"):
        token_format(to_settings(compose_cfg(*overrides, "data.signed=true")))
    with pytest.raises(SystemExit) as exited:
        run_task(compose_cfg(*overrides), run_dir)  # auto: the table crosses zero
    err = capsys.readouterr().err.strip().splitlines()
    assert exited.value.code == 1 and len(err) == 1, err
    assert err[0].startswith("error: data.signed: ") and "compact layout" in err[0]
    assert not (tmp_path / "outputs" / "ledger.sqlite").exists()
    assert list(run_dir.iterdir()) == []


@pytest.mark.parametrize("text, overrides, fragment", [
    ("series_id,time,v0\na,0,1\na,1,inf\n", [], "row 2: series a, time 1, column 'v0': value inf "
                                                "is not finite"),
    ("series_id,time,v0\na,0,1\na,1,-2\n", ["data.signed=false"],
     "row 2: series a, time 1, column 'v0': value -2 is negative (data.signed=false declares"),
])
def test_bad_table_values_fail_before_anything_is_reserved(compose_cfg, run_dir, tmp_path, capsys,
                                                           text, overrides, fragment) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(SystemExit) as info:
        run_task(compose_cfg(*TABLE, f"data.path={path}", *overrides), run_dir)
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 1 and len(err) == 1 and err[0].startswith(f"error: {path}: ")
    assert fragment in err[0], err[0]
    assert not (tmp_path / "outputs" / "ledger.sqlite").exists()
    assert list(run_dir.iterdir()) == []


# ---- end to end ---------------------------------------------------------------------------------

def test_series_crossing_zero_train_and_forecast_with_the_numeric_head(compose_cfg, run_dir,
                                                                       tmp_path) -> None:
    """The issue's done-when: a long CSV of ragged 3-variable dated series that cross zero
    trains with the default numeric head (it died in the first step before), forecasts with 0
    parse failures, and the forecast command reads the alphabet back from the run."""
    from lora_forecast.forecast_job import ForecastJob, run_forecast_job
    from lora_forecast.run_folder import run_config, settings_from

    frame = crossing_frame()
    path = tmp_path / "series.csv"
    frame.to_csv(path, index=False)
    cfg = compose_cfg(*TABLE, f"data.path={path}", "data.time_column=date",
                      "eval.context_steps=12", "eval.horizon_steps=3")
    assert to_settings(cfg).model.head == "numeric"
    run_task(cfg, run_dir)
    results = json.loads((run_dir / "results.json").read_text())
    assert results["status"] == "completed", results
    assert results["train"] is not None and results["metrics"]["parse_failures"] == 0
    assert json.loads((run_dir / "scaling.json").read_text())["signed"] is True
    assert 0 < results["flops"]["spent"] <= results["flops"]["predicted"]
    scored = pd.read_csv(run_dir / "forecasts.csv")  # the run's test forecasts beside truth
    assert scored[[f"v{j}_forecast" for j in range(3)]].notna().all().all()  # all parsed
    assert (scored[[f"v{j}_truth" for j in range(3)]] < 0).any().any()

    newcomer = frame[frame.series_id.isin(["s00", "s01"])].groupby("series_id").head(12)
    assert (newcomer[["v0", "v1", "v2"]] < 0).any().any()
    source = tmp_path / "new.csv"
    newcomer.to_csv(source, index=False)
    config = {**run_config(run_dir), "data": {**run_config(run_dir)["data"], "path": str(source)}}
    job = ForecastJob(str(run_dir), str(source), 3, str(tmp_path / "fc"), plot_series=0)
    out = run_forecast_job(job, settings_from(config), run_config(run_dir))
    summary = json.loads((out / "forecast.json").read_text())
    assert summary["parse_failures"] == 0 and summary["series"] == 2
    assert 0 < summary["flops"]["spent"] <= summary["flops"]["predicted"]
    # no run: the untrained base model, data.signed resolved from the input's contexts
    base = ForecastJob(None, str(source), 3, str(tmp_path / "fc_base"), plot_series=0)
    out = run_forecast_job(base, to_settings(cfg), {"base": True})
    assert json.loads((out / "forecast.json").read_text())["parse_failures"] == 0
