"""Forecasting with a tiny random-init Qwen2 and the real tokenizer (CPU, greedy unless noted)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import LogitsProcessorList

from lora_forecast.config import LoraConfig, ModelConfig
from lora_forecast.forecasting.decoding import Sampling, left_pad, next_tokens
from lora_forecast.llmtime import (
    LLMTimeCodec,
    LLMTimeFormat,
    LLMTimeGrammar,
    LLMTimeLogitsProcessor,
)
from lora_forecast.models.build import build_model, load_base_model
from lora_forecast.models.logits import full_head_logits_fn
from lora_forecast.models.numeric_head import logits_fn_for
from lora_forecast.models.tokenizer import qwen_tokenizer
from tests.conftest import decode_with, forecast_with

H, V, MAX_INT = 2, 2, 2
CODEC = LLMTimeCodec(alpha=10.0)
FMT = LLMTimeFormat.for_tokenizer(CODEC, qwen_tokenizer())
ALPHABET = FMT.tokens


@pytest.fixture(scope="module")
def peft_model():
    return build_model(ModelConfig(kind="tiny"), LoraConfig()).eval()


@pytest.fixture(scope="module")
def base_model():
    return load_base_model(ModelConfig(kind="tiny")).eval()


@pytest.fixture(scope="module")
def contexts() -> list[np.ndarray]:
    """Systems of different lengths and magnitudes, so left padding matters."""
    rng = np.random.default_rng(0)
    return [rng.uniform(0.0, 30.0, size=(t, V)) for t in (2, 5, 3, 7, 4)]


@pytest.fixture(scope="module")
def greedy(peft_model, contexts):
    """Greedy constrained forecasts of all systems, 4 per batch, with jump-forward (shared by
    several tests)."""
    return forecast_with(peft_model, FMT, contexts, horizon_steps=H, batch_size=4,
                    max_int_digits=MAX_INT, progress=False, jump_forward=True)


def chosen_tokens(text: str) -> int:
    """Tokens of an LLMTIME text the grammar leaves a choice for (hand-derived: separators are
    forced, and so is a '.' after MAX_INT integer digits)."""
    forced = sum(c in ",;" for c in text)
    forced += sum(len(n.split(".")[0]) == MAX_INT for n in text.replace(";", ",").split(","))
    return len(text) - forced


def grammar(tok) -> LLMTimeGrammar:
    return FMT.grammar(V, H, MAX_INT)


def prompts(contexts) -> list[list[int]]:
    return [FMT.prompt(c) for c in contexts]


def test_forecast_restores_training_mode(peft_model, contexts):
    peft_model.train()
    forecast_with(peft_model, FMT, contexts[:1], horizon_steps=1, progress=False)
    assert peft_model.training
    peft_model.eval()


def test_constrained_forecast_always_parses_and_stops_at_the_horizon(greedy, contexts):
    fc = greedy
    s = len(contexts)
    assert fc.point.shape == (s, H, V) and fc.samples.shape == (s, 1, H, V)
    assert fc.parsed.all() and fc.parse_failures == 0 and fc.sample_parse_failures == 0
    assert np.isfinite(fc.point).all()
    np.testing.assert_array_equal(fc.lower, fc.point)
    np.testing.assert_array_equal(fc.upper, fc.point)
    g = grammar(qwen_tokenizer())
    for i, (text,) in enumerate(fc.texts):
        assert g.accepts(ALPHABET.encode(text))  # complete, nothing after the horizon
        assert fc.generated_tokens[i, 0] == len(text)
        np.testing.assert_allclose(fc.samples[i, 0], CODEC.decode(text, V))
    assert fc.prompt_tokens.tolist() == [len(p) for p in prompts(contexts)]
    # the loop ran exactly as long as its longest row: prefill + one call per chosen token but
    # the last; forced tokens (separators, the '.' after MAX_INT digits) ride along (jump-forward)
    assert [b.rows for b in fc.batches] == [4, 1]
    assert fc.batches[0].decode_steps == max(chosen_tokens(t) for (t,) in fc.texts[:4]) - 1
    assert fc.decode_calls == sum(b.decode_steps for b in fc.batches)
    assert fc.batches[0].prompt_width == max(fc.prompt_tokens[:4])


def test_free_decoding_counts_failures_and_keeps_the_shape(peft_model, contexts):
    fc = forecast_with(peft_model, FMT, contexts, horizon_steps=H, batch_size=4,
                  constrained=False, max_int_digits=MAX_INT, progress=False)
    s = len(contexts)
    assert fc.point.shape == (s, H, V) and fc.parsed.shape == (s, 1)
    assert fc.parse_failures == int((~fc.parsed[:, 0]).sum()) > 0  # random model: garbage
    assert np.isnan(fc.point[~fc.parsed[:, 0]]).all()
    assert np.isnan(fc.samples[~fc.parsed]).all()
    assert (fc.generated_tokens >= 1).all()
    assert (fc.generated_tokens <= grammar(qwen_tokenizer()).max_length + 1).all()


def scripted_logits_fn(scripts: list[list[int]], vocab: int = 151936):
    """A fake model: row r emits scripts[r] token by token (then EOS)."""

    def logits_fn(input_ids, attention_mask, position_ids, step):
        step = 0 if step is None else step + 1
        logits = torch.zeros(len(scripts), vocab)
        for r, script in enumerate(scripts):
            logits[r, script[step] if step < len(script) else 151645] = 1.0
        return logits, step

    return logits_fn


def test_free_decoding_parses_the_first_horizon_steps_and_stops_after_them(contexts):
    tok = qwen_tokenizer()
    good = "1.00,2.00;3.00,4.00;7.00,8.00;9"
    scripts = [
        tok.encode(good),  # real BPE merges ('.,' etc.) are fine in free decoding
        tok.encode("1.00,2.00;3.00"),  # EOS inside step 2: a failure
        tok.encode("1.0x,2.00;3.00,4.00;"),  # junk: a failure
        [*tok.encode("1.00,2.00;3.0"), 151900, *tok.encode("0,4.00;")],  # spare embedding row
        [*tok.encode("1.00,2.00;3.0"), tok.convert_tokens_to_ids("<|im_start|>"),
         *tok.encode("0,4.00;")],  # a special token other than EOS/pad is junk too
    ]
    fc = forecast_with(None, FMT, contexts[:5], horizon_steps=H, constrained=False, progress=False,
                  logits_fn=scripted_logits_fn(scripts))
    assert fc.parsed[:, 0].tolist() == [True, False, False, False, False]
    assert fc.parse_failures == 4 and fc.sample_parse_failures == 4
    assert fc.texts[3][0] == "1.00,2.00;3.0\ufffd0,4.00;"
    np.testing.assert_allclose(fc.point[0], [[10, 20], [30, 40]])
    assert fc.texts[0][0] == "1.00,2.00;3.00,4.00;"  # stopped at the H-th ';'
    assert fc.generated_tokens[1, 0] == len(scripts[1]) + 1  # its EOS counts


def test_parse_forecast_rejects_short_and_non_finite_text():
    assert FMT.parse("1.00,2.00;3.00,4.00;", 2, V).shape == (2, V)
    for text in ("1.00,2.00", "1.00,2.00;3.00", "", ";;;"):
        with pytest.raises(ValueError):
            FMT.parse(text, 2, V)


def test_batched_equals_one_by_one_under_greedy(peft_model, contexts, greedy):
    batched = greedy
    single = forecast_with(peft_model, FMT, contexts, horizon_steps=H, batch_size=1,
                      max_int_digits=MAX_INT, progress=False)
    assert len(set(batched.prompt_tokens.tolist())) == len(contexts)  # padding differs per row
    assert batched.texts == single.texts
    np.testing.assert_array_equal(batched.samples, single.samples)
    np.testing.assert_array_equal(batched.generated_tokens, single.generated_tokens)


def test_sampling_is_seeded_and_quantiles_bracket_the_median(peft_model, contexts):
    kwargs = dict(horizon_steps=H, batch_size=3, num_samples=3, temperature=1.5, top_p=0.95,
                  max_int_digits=MAX_INT, progress=False)
    a = forecast_with(peft_model, FMT, contexts[:1], seed=1, **kwargs)
    b = forecast_with(peft_model, FMT, contexts[:1], seed=1, **kwargs)
    c = forecast_with(peft_model, FMT, contexts[:1], seed=2, **kwargs)
    assert a.texts == b.texts and a.texts != c.texts
    np.testing.assert_array_equal(a.samples, b.samples)
    assert a.samples.shape == (1, 3, H, V) and a.parsed.all()
    assert (a.lower <= a.point).all() and (a.point <= a.upper).all()
    assert (a.lower < a.upper).any()


def test_next_tokens_survives_rows_without_finite_logits():
    logits = torch.full((2, 50), float("-inf"))
    logits[0, [3, 7]] = torch.tensor([1.0, 2.0])
    generator = torch.Generator().manual_seed(0)
    for sampling in (Sampling(), Sampling(greedy=False, temperature=0.7, top_p=0.9)):
        assert next_tokens(logits, sampling, generator)[0] in (3, 7)
    top = next_tokens(logits, Sampling(greedy=False, top_p=0.5), generator)
    assert top[0] == 7  # the nucleus of mass 0.5 holds only the most likely token


def test_alphabet_only_head_without_eos_samples_to_the_horizon(peft_model, contexts):
    """A numeric-style head (logits over '0-9.,;' only, no EOS) under sampling: rows that finish
    early see no finite logit at all and must not break the loop."""
    full = full_head_logits_fn(peft_model)
    alphabet = torch.tensor(ALPHABET.encode("0123456789.,;"))

    def alphabet_only(input_ids, attention_mask, position_ids, cache):
        logits, cache = full(input_ids, attention_mask, position_ids, cache)
        out = torch.full_like(logits, float("-inf"))
        out[:, alphabet] = logits[:, alphabet]
        return out, cache

    fc = forecast_with(peft_model, FMT, contexts[:2], horizon_steps=H, batch_size=4, num_samples=2,
                  temperature=3.0, top_p=1.0, max_int_digits=MAX_INT, logits_fn=alphabet_only,
                  progress=False, seed=1)
    assert fc.parsed.all() and fc.samples.shape == (2, 2, H, V)
    assert len(set(fc.generated_tokens.flatten().tolist())) > 1  # rows finished at different steps


def test_processor_inside_generate_matches_our_loop(base_model, contexts):
    tok = qwen_tokenizer()
    g = grammar(tok)
    rows = prompts(contexts[:3])
    ours = decode_with(full_head_logits_fn(base_model), rows, pad_id=tok.pad_token_id,
                  max_new_tokens=g.max_length, grammar=g)
    input_ids, mask = left_pad(rows, tok.pad_token_id)
    width = input_ids.shape[1]
    out = base_model.generate(
        input_ids=input_ids, attention_mask=mask, do_sample=False,
        logits_processor=LogitsProcessorList([LLMTimeLogitsProcessor(g, prompt_length=width)]),
        max_new_tokens=g.max_length + 1, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id)
    for r, tokens in enumerate(out[:, width:].tolist()):
        text_tokens = [t for t in tokens if t not in g.end_ids]
        assert text_tokens == ours.tokens[r]
        assert tokens[len(text_tokens)] == tok.eos_token_id  # only EOS once done


def no_cache_logits_fn(model):
    """Reference: recompute the whole (padded) context every step; the 'cache' is the history."""

    def logits_fn(input_ids, attention_mask, position_ids, history):
        if history is not None:
            input_ids = torch.cat([history[0], input_ids], dim=1)
            position_ids = torch.cat([history[1], position_ids], dim=1)
        out = model(input_ids=input_ids, attention_mask=attention_mask,
                    position_ids=position_ids, use_cache=False, logits_to_keep=1)
        return out.logits[:, -1, :], (input_ids, position_ids)

    return logits_fn


def test_kv_cached_loop_equals_full_recompute(peft_model, contexts, greedy):
    full = forecast_with(peft_model, FMT, contexts[:2], horizon_steps=H, batch_size=2,
                    max_int_digits=MAX_INT, logits_fn=no_cache_logits_fn(peft_model),
                    progress=False)
    assert full.texts == greedy.texts[:2]
    np.testing.assert_array_equal(full.samples, greedy.samples[:2])


def test_sampled_forecasts_share_the_prefill_and_are_seeded(peft_model, contexts):
    """N samples per system prefill each prompt once (one prefill row per system), are
    deterministic under a seed, and keep the [S, N, ...] shapes."""
    full = full_head_logits_fn(peft_model)
    prefill_rows: list[int] = []

    def recording(input_ids, attention_mask, position_ids, cache):
        if cache is None:
            prefill_rows.append(input_ids.shape[0])
        return full(input_ids, attention_mask, position_ids, cache)

    kwargs = dict(horizon_steps=H, batch_size=8, num_samples=4, temperature=1.5, top_p=0.95,
                  max_int_digits=MAX_INT, progress=False, seed=3)
    a = forecast_with(peft_model, FMT, contexts, logits_fn=recording, **kwargs)
    b = forecast_with(peft_model, FMT, contexts, **kwargs)
    assert prefill_rows == [2, 2, 1]  # 8 rows // 4 samples = 2 systems per batch, 5 systems
    assert [(x.rows, x.prefill_rows) for x in a.batches] == [(8, 2), (8, 2), (4, 1)]
    assert a.texts == b.texts
    np.testing.assert_array_equal(a.samples, b.samples)
    assert a.samples.shape == (5, 4, H, V) and a.parsed.all()
    assert a.prompt_tokens.shape == (5,) and a.generated_tokens.shape == (5, 4)
    assert (a.lower <= a.point).all() and (a.point <= a.upper).all()


def test_greedy_repeats_give_identical_rows_equal_to_one_row(peft_model, contexts):
    """The copied DynamicCache is right: every repeat continues exactly like a lone row."""
    tok = qwen_tokenizer()
    g, rows = grammar(tok), prompts(contexts[:3])
    options = dict(pad_id=tok.pad_token_id, max_new_tokens=g.max_length, grammar=g)
    once = decode_with(full_head_logits_fn(peft_model), rows, **options)
    thrice = decode_with(full_head_logits_fn(peft_model), rows, repeats=3, **options)
    assert thrice.tokens == [t for t in once.tokens for _ in range(3)]
    assert thrice.prefill_rows == 3 and len(thrice.tokens) == 9
    assert thrice.prompt_tokens == [p for p in once.prompt_tokens for _ in range(3)]


def hashed_logits_fn(vocab: int = 12):
    """A batch-independent fake model: each row's logits are a fixed function of its own history
    (the 'cache' is the history tensor, batch first), so results never depend on batching."""

    def logits_fn(input_ids, attention_mask, position_ids, history):
        history = input_ids if history is None else torch.cat([history, input_ids], dim=1)
        weights = torch.arange(1, history.shape[1] + 1, dtype=torch.float32)
        code = (history.float() * weights).sum(dim=1, keepdim=True)  # [B, 1]
        return torch.sin(code * 0.37 + torch.arange(vocab) * 1.3) * 3.0, history

    return logits_fn


def test_shared_prefill_equals_expanded_rows_for_the_same_draws():
    """decode(prompts, repeats=N) == decode(each prompt N times) token for token under sampling:
    the first token of every sample is drawn from the shared prefill logits, in the same order."""
    semicolons = torch.zeros(12, dtype=torch.long)
    semicolons[5] = 1
    rows = [[1, 2, 3], [4, 7], [9, 8, 6, 3]]
    options = dict(pad_id=0, max_new_tokens=9, semicolons=semicolons, horizon_steps=2,
                   eos_ids=(0,), sampling=Sampling(greedy=False, temperature=2.0, top_p=0.95))
    shared = decode_with(hashed_logits_fn(), rows, repeats=4,
                    generator=torch.Generator().manual_seed(7), **options)
    expanded = decode_with(hashed_logits_fn(), [p for p in rows for _ in range(4)],
                      generator=torch.Generator().manual_seed(7), **options)
    assert shared.tokens == expanded.tokens
    assert shared.prefill_rows == 3 and expanded.prefill_rows == 12
    assert len({tuple(t) for t in shared.tokens}) > 3  # the samples of a prompt do differ


@pytest.mark.parametrize("lm_head_bias", [False, True])
def test_numeric_head_forecasts_equal_the_full_heads_under_greedy(contexts, lm_head_bias):
    """What run.py does for model.head=numeric vs full: the same tokens, the same numbers."""
    model = build_model(ModelConfig(kind="tiny", lm_head_bias=lm_head_bias), LoraConfig()).eval()
    allowed = FMT.head_ids(include_eos=True)
    options = dict(horizon_steps=H, batch_size=4, max_int_digits=MAX_INT, progress=False)
    if lm_head_bias:  # small enough to keep the model's preferences, large enough to move some
        unbiased = forecast_with(model, FMT, contexts, **options).texts
        with torch.no_grad():
            bias = model.get_output_embeddings().bias
            bias.normal_(0.0, 0.05, generator=torch.Generator().manual_seed(0))
        assert forecast_with(model, FMT, contexts, **options).texts != unbiased  # not vacuous
    runs = {head: forecast_with(model, FMT, contexts, logits_fn=logits_fn_for(head, model, allowed),
                           **options) for head in ("full", "numeric")}
    assert runs["numeric"].texts == runs["full"].texts
    np.testing.assert_array_equal(runs["numeric"].samples, runs["full"].samples)
    assert all(FMT.parse(t[0], H, V).shape == (H, V) for t in runs["full"].texts)
