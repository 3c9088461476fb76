"""Draft-and-verify decoding (``eval.draft``): a baseline drafts, the model verifies.

Greedy: token for token what plain decoding writes. Sampling: the distribution of whole
forecasts is the exact one, enumerated by hand from a fake model. FLOPs: what is charged is
what passed through the model, counted here by a hook on the model's forward, and never more
than the prediction.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lora_forecast.config import LoraConfig, ModelConfig
from lora_forecast.data.generator import generate_lotka_volterra
from lora_forecast.forecasting.decoding import Sampling
from lora_forecast.forecasting.drafts import ValueDrafter
from lora_forecast.forecasting.forecaster import computed_tokens_bound, max_new_tokens
from lora_forecast.llmtime import LLMTimeCodec, LLMTimeFormat
from lora_forecast.llmtime.grammar import FRAC
from lora_forecast.models.build import build_model
from lora_forecast.models.tokenizer import qwen_tokenizer
from lora_forecast.planning import forecast_cost
from tests.conftest import decode_with, forecast_with
from tests.test_jump_forward import (
    COMMA,
    DOT,
    GRAMMAR,
    ONE,
    PROMPT,
    SEMI,
    VOCAB,
    ZERO,
    assert_follows_the_exact_distribution,
    preference,
)

FMT = LLMTimeFormat.for_tokenizer(LLMTimeCodec(alpha=1.0), qwen_tokenizer())


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(ModelConfig(kind="tiny"), LoraConfig()).eval()


@pytest.fixture(scope="module")
def systems() -> np.ndarray:
    """100 generated Lotka-Volterra systems (20 steps each), scaled as the smoke run does."""
    trajectories, _ = generate_lotka_volterra(n_systems=100, n_steps=20, t_max=40.0, seed=3)
    return trajectories / (np.quantile(trajectories, 0.99) / 9.0)


@pytest.mark.parametrize("head", ["numeric", "full"])
def test_greedy_drafted_forecasts_are_token_identical_on_100_systems(model, systems, head):
    from lora_forecast.models.numeric_head import logits_fn_for

    logits_fn = logits_fn_for(head, model, FMT.head_ids(include_eos=True))
    systems = systems if head == "numeric" else systems[:10]  # 151,936 head rows, not 13
    plain = forecast_with(model, FMT, systems, horizon_steps=4, max_int_digits=2,
                          logits_fn=logits_fn)
    for draft in ("persistence", "linear_ar"):
        drafted = forecast_with(model, FMT, systems, horizon_steps=4, max_int_digits=2,
                                draft=draft, logits_fn=logits_fn)
        assert drafted.texts == plain.texts, draft
        cut = forecast_with(model, FMT, systems, horizon_steps=4, max_int_digits=2,
                            draft=draft, logits_fn=logits_fn, draft_min_chance=0.35)
        assert cut.texts == plain.texts, draft
        # the cut drafts less of what is rejected: fewer draft tokens, a higher kept share
        assert cut.drafted_tokens.sum() < drafted.drafted_tokens.sum()
        assert cut.acceptance_rate > drafted.acceptance_rate
        np.testing.assert_array_equal(drafted.generated_tokens, plain.generated_tokens)
        assert 0 < drafted.accepted_tokens.sum() < drafted.drafted_tokens.sum()  # both paths
        # every kept draft token is a generated token the model did not need a call of its own
        # for; the batch ends when its slowest row does
        assert drafted.decode_calls <= plain.decode_calls
    assert plain.drafted_tokens.sum() == 0 and np.isnan(plain.acceptance_rate)
    # the random model mostly repeats itself, which persistence anchored on it drafts well
    assert drafted.decode_calls < plain.decode_calls or draft == "linear_ar"


def keep_logits_fn(input_ids, attention_mask, position_ids, history, keep=1):
    """test_jump_forward's fake model (only '0'/'1' are finite digits; logits depend on every
    real token before and its position), answering for the last ``keep`` positions."""
    if history is not None:
        input_ids = torch.cat([history[0], input_ids], dim=1)
        position_ids = torch.cat([history[1], position_ids], dim=1)
    width = input_ids.shape[1]
    out = torch.full((input_ids.shape[0], keep, VOCAB), float("-inf"))
    out[:, :, [DOT, COMMA, SEMI]] = 0.0
    for row in range(input_ids.shape[0]):
        for j, column in enumerate(range(width - keep, width)):
            real = attention_mask[row, : column + 1].bool()
            ids = input_ids[row, : column + 1][real].tolist()
            positions = position_ids[row, : column + 1][real].tolist()
            out[row, j, [ZERO, ONE]] = torch.tensor(preference(ids, positions))
    return (out[:, -1] if keep == 1 else out), (input_ids, position_ids)


class FixedDrafter:
    """Always drafts the continuation of one fixed forecast, whatever the row wrote."""

    def __init__(self, tokens: list[int]) -> None:
        self.tokens = tokens

    def propose(self, row, generated, limit):
        return self.tokens[len(generated):][:limit]


@pytest.mark.parametrize(("jump_forward", "min_chance"), [(False, 0.0), (True, 0.0),
                                                         (False, 0.3)])
def test_sampled_drafted_forecasts_keep_the_models_distribution(jump_forward, min_chance):
    # min_chance 0.3: draft lengths follow the outcomes of earlier verifications
    drafter = FixedDrafter([ONE, DOT, ZERO, COMMA, ONE, DOT, ONE])
    result = decode_with(keep_logits_fn, [PROMPT], pad_id=0, max_new_tokens=GRAMMAR.max_length,
                         grammar=GRAMMAR, sampling=Sampling(greedy=False), repeats=4000,
                         generator=torch.Generator().manual_seed(0), jump_forward=jump_forward,
                         drafter=drafter, draft_min_chance=min_chance)
    assert_follows_the_exact_distribution(result.tokens)
    drafted, accepted = sum(result.drafted_tokens), sum(result.accepted_tokens)
    assert 0 < accepted < drafted  # both the accept and the residual draw were exercised


class WrongFractionDrafter:
    """Drafts each row's true continuation (``truth``: the model's own greedy tokens) with
    every fraction digit replaced by another digit: integer digits, '.' and separators are
    always kept, fraction digits never."""

    def __init__(self, truth: list[list[int]], grammar) -> None:
        self.tokens = []
        for row in truth:
            state, tokens = grammar.start, []
            for token in row:
                wrong = [d for d in grammar.digits if d != token]
                tokens.append(wrong[0] if state.phase == FRAC and token in grammar.digits
                              else token)
                state = grammar.advance(state, token)
            self.tokens.append(tokens)

    def propose(self, row, generated, limit):
        return self.tokens[row][len(generated):][:limit]


def test_drafts_stop_before_the_places_the_model_never_keeps(model, systems):
    from lora_forecast.models.numeric_head import numeric_logits_fn

    grammar = FMT.grammar(2, 6, 2)
    logits_fn = numeric_logits_fn(model, FMT.head_ids())
    prompts = [FMT.prompt(s[:12]) for s in systems[:12]]
    plain = decode_with(logits_fn, prompts, pad_id=FMT.tokens.pad_id, jump_forward=False,
                        max_new_tokens=grammar.max_length, grammar=grammar)
    drafter = WrongFractionDrafter(plain.tokens, grammar)
    runs = {chance: decode_with(logits_fn, prompts, pad_id=FMT.tokens.pad_id,
                                jump_forward=False, max_new_tokens=grammar.max_length,
                                grammar=grammar, drafter=drafter, draft_min_chance=chance)
            for chance in (0.0, 0.35)}
    assert runs[0.0].tokens == runs[0.35].tokens == plain.tokens
    rejected = {c: sum(r.drafted_tokens) - sum(r.accepted_tokens) for c, r in runs.items()}
    # every draft that reaches a fraction digit is rejected there: without the cut most
    # drafts do; with it, a place is drafted only while its estimate is still >= 0.35
    assert rejected[0.35] < rejected[0.0] / 3
    assert sum(runs[0.35].accepted_tokens) > 0.9 * sum(runs[0.0].accepted_tokens)


def test_a_places_chance_is_the_rows_rate_shrunk_toward_the_batchs():
    from lora_forecast.forecasting.decoding import _Acceptance
    from lora_forecast.llmtime.grammar import GrammarState

    table = _Acceptance(batch=2)
    place = GrammarState(step=0, var=1, phase=FRAC, count=1)
    assert table.chance(0, place) == 0.5  # nothing seen: the Beta(1, 1) prior's mean
    for kept in (True, True, True, False):  # row 0, in steps 1..4: the same place
        table.record(0, place._replace(step=kept + 3), kept)
    batch = (3 + 1) / (4 + 2)
    assert table.chance(1, place._replace(step=7)) == pytest.approx(batch)  # row 1 saw none
    assert table.chance(0, place) == pytest.approx((3 + 4 * batch) / (4 + 4))
    assert table.chance(0, place._replace(var=0)) == 0.5  # another place: unseen


def test_the_value_drafter_follows_the_models_own_path():
    """Hand-worked: draft [[1, 2], [1.5, 2.5], [1.75, 2.25]]; the model wrote 1.10 and 2.00,
    so step 1 is drafted as 1.10 + 0.5 and 2.00 + 0.5, step 2 from those (+0.25, -0.25)."""
    draft = np.array([[1.0, 2.0], [1.5, 2.5], [1.75, 2.25]])
    drafter = ValueDrafter(FMT, [draft, draft], signed=False)
    ids = FMT.tokens.encode
    assert FMT.decode_ids(drafter.propose(0, [], 30)) == "1.00,2.00;1.50,2.50;1.75,2.25"
    written = ids("1.10,2.00;")
    assert FMT.decode_ids(drafter.propose(0, written, 30)) == "1.60,2.50;1.85,2.25"
    # a number begun: the drafted number's remaining tokens, whether its digits agreed or not
    assert FMT.decode_ids(drafter.propose(0, written + ids("1.6"), 4)) == "0,2."
    assert FMT.decode_ids(drafter.propose(0, written + ids("1.7"), 4)) == "0,2."
    # the next step follows the value the model wrote (1.70 + 0.25), not the drafted 1.60
    assert FMT.decode_ids(drafter.propose(0, written + ids("1.70,"), 10)) == "2.50;1.95,"
    # a model that pads its integers keeps being drafted so (row 1: its own history)
    assert FMT.decode_ids(drafter.propose(1, ids("01.10,2.00;"), 6)) == "01.60,"


class ForwardCounter:
    """Counts the real tokens every forward of the model is fed (prefill included)."""

    def __init__(self, model) -> None:
        self.calls: list[int] = []
        self.handle = model.get_base_model().model.register_forward_pre_hook(
            self.count, with_kwargs=True)

    def count(self, module, args, kwargs):
        new = kwargs["input_ids"].shape[1]
        self.calls.append(int(kwargs["attention_mask"][:, -new:].sum()))


def test_flops_charged_are_the_tokens_that_passed_through_the_model(model, systems):
    """One system, so the per-row count is the total: the charge equals the FLOPs formula of
    the tokens counted at the model's input, and stays below the planner's bound."""
    from lora_forecast.config import Settings
    from lora_forecast.planning import flops_counter

    counter = ForwardCounter(model)
    try:
        fc = forecast_with(model, FMT, systems[:1], horizon_steps=6, max_int_digits=2,
                           draft="persistence", draft_tokens=5)
    finally:
        counter.handle.remove()
    prefill, *decoded = counter.calls
    assert prefill == fc.prompt_tokens[0]
    assert sum(decoded) == fc.forwarded_tokens.sum() > fc.generated_tokens.sum() - 1
    count = flops_counter(Settings(model=ModelConfig(kind="tiny")))
    charged = forecast_cost(count, fc.prompt_tokens, fc.computed_tokens)
    assert charged == forecast_cost(count, [prefill], [[sum(decoded) + 1]])
    grammar = FMT.grammar(2, 6, 2)
    bound = computed_tokens_bound(max_new_tokens(grammar, True), 5)
    assert charged <= forecast_cost(count, [prefill], [[bound]])
    assert fc.computed_tokens.max() <= bound


@pytest.mark.parametrize(("overrides", "message"), [
    (("eval.draft=nope",), "error: eval.draft: unknown baseline 'nope'; available: none, "),
    (("eval.draft=persistence", "eval.constrained=false"),
     "error: eval.draft: drafts need constrained decoding (eval.constrained=true), got "
     "'persistence'"),
])
def test_a_bad_draft_is_one_line_before_anything_is_reserved(compose_cfg, run_dir, capsys,
                                                             overrides, message):
    from lora_forecast.task import run_task

    cfg = compose_cfg(*overrides)
    with pytest.raises(SystemExit) as exited:
        run_task(cfg, run_dir)
    assert exited.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(message), err
    assert not (run_dir / "results.json").exists()


def test_drafts_default_on_cuda_only_and_an_explicit_choice_stands():
    from lora_forecast.forecasting.forecaster import resolved_draft

    assert resolved_draft(None, constrained=True, cuda=True) == "persistence"
    assert resolved_draft(None, constrained=True, cuda=False) == "none"
    assert resolved_draft(None, constrained=False, cuda=True) == "none"
    assert resolved_draft("linear_ar", constrained=True, cuda=False) == "linear_ar"


def test_a_drafted_run_scores_the_same_and_spends_what_it_computed(compose_cfg, tmp_path):
    """Greedy drafted forecasts are the plain ones, so the run's metrics are too; its
    forecasting spend adds the rejected draft tokens, and stays under its (larger) bound."""
    from lora_forecast.results import read_results
    from lora_forecast.task import run_task

    results = {}
    for draft in ("none", "persistence"):
        run_dir = tmp_path / draft
        run_task(compose_cfg(f"eval.draft={draft}", "train.max_steps=2"), run_dir)
        results[draft] = read_results(run_dir)
    plain, drafted = results["none"], results["persistence"]
    assert drafted["metrics"]["mse"] == plain["metrics"]["mse"]
    assert drafted["metrics"]["per_series"] == plain["metrics"]["per_series"]
    spent = {k: r["flops"]["spent_by_kind"]["forecasting"] for k, r in results.items()}
    bound = {k: r["flops"]["breakdown"]["forecasting"] for k, r in results.items()}
    assert spent["none"] < spent["persistence"] <= bound["persistence"]
    assert bound["none"] < bound["persistence"]
    assert spent["none"] <= bound["none"]


@pytest.mark.parametrize("n_vars", [1, 5])
def test_drafts_on_signed_ragged_series_of_1_and_5_variables(model, n_vars):
    """Values below zero (a signed alphabet: drafts may write '-'), series of different
    lengths: greedy drafted forecasts are still the plain ones."""
    from lora_forecast.models.numeric_head import logits_fn_for

    fmt = LLMTimeFormat.for_tokenizer(LLMTimeCodec(alpha=1.0), qwen_tokenizer(), signed=True)
    rng = np.random.default_rng(n_vars)
    contexts = [np.cumsum(rng.normal(0, 0.4, size=(t, n_vars)), axis=0) - 1.0
                for t in (6, 11, 8)]
    assert min(c.min() for c in contexts) < 0
    logits_fn = logits_fn_for("numeric", model, fmt.head_ids(include_eos=True))
    runs = {draft: forecast_with(model, fmt, contexts, horizon_steps=3, max_int_digits=2,
                                 draft=draft, logits_fn=logits_fn)
            for draft in ("none", "linear_ar")}
    cut = forecast_with(model, fmt, contexts, horizon_steps=3, max_int_digits=2,
                        draft="linear_ar", logits_fn=logits_fn, draft_min_chance=0.35)
    assert runs["linear_ar"].texts == runs["none"].texts == cut.texts
    assert runs["linear_ar"].drafted_tokens.sum() > 0 and cut.drafted_tokens.sum() > 0
    assert runs["none"].parsed.all()
