"""Unit tests of the budgeted Optuna sweeper's parts: search space, storage, slots, reporter."""

from __future__ import annotations

import time
from pathlib import Path

import optuna
import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from hydra_plugins.budgeted_optuna_sweeper._outcome import as_values
from hydra_plugins.budgeted_optuna_sweeper._search_space import (
    format_value,
    params_to_overrides,
    parse_search_space,
)
from hydra_plugins.budgeted_optuna_sweeper._study import (
    CANCELLED_ATTR,
    WORKER_ATTR,
    Heartbeat,
    absolute_storage,
    build_sampler,
    claim,
    missing,
    open_study,
    quiet_heartbeat_warnings,
    requeue,
    requeue_failures,
)
from lora_forecast.config import TrialConfig
from lora_forecast.training.pruning import (
    PRUNED_AT_ATTR,
    PRUNER_ATTR,
    TrialReporter,
    build_pruner,
    journal_path,
    open_storage,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.mark.parametrize(("line", "expected"), [
    ("lora.rank=choice(2, 4, 8)", CategoricalDistribution([2, 4, 8])),
    ("lora.rank=2,4,8", CategoricalDistribution([2, 4, 8])),
    ("data.context_tokens=range(128, 769, 128)", IntDistribution(128, 768, step=128)),
    ("train.lr=interval(1e-5, 1e-3)", FloatDistribution(1e-5, 1e-3)),
    ("train.lr=tag(log, interval(1e-5, 1e-3))", FloatDistribution(1e-5, 1e-3, log=True)),
    ("lora.rank=int(interval(2, 16))", IntDistribution(2, 16)),
    ("lora.rank=int(tag(log, interval(2, 64)))", IntDistribution(2, 64, log=True)),
    ("x=shuffle(range(1, 4))", CategoricalDistribution([3, 2, 1])),
])
def test_override_grammar_maps_to_optuna_distributions(line, expected):
    space = parse_search_space([line])
    (param,) = space.params.values()
    if "shuffle" in line:
        assert sorted(param.distribution.choices) == [1, 2, 3]
    else:
        assert param.distribution == expected


def test_fixed_values_pass_through_and_later_lines_win():
    space = parse_search_space([
        *params_to_overrides({"train.lr": "choice(1e-5, 5e-5)", "data.context_tokens": 320}),
        "+experiment=smoke", "data.context_tokens=64", "train.lr=choice(1e-4)"])
    assert space.fixed == ["+experiment=smoke", "data.context_tokens=64"]
    assert space.params["train.lr"].distribution == CategoricalDistribution([1e-4])
    assert space.overrides({"train.lr": 1e-4})[-1] == "train.lr=0.0001"


def test_grid_values_and_continuous_grid_error():
    space = parse_search_space(["a=choice(1, 2)", "b=range(0, 10, 5)"])
    assert space.grid() == {"a": [1, 2], "b": [0, 5]}
    with pytest.raises(ValueError, match="a grid needs discrete values"):
        parse_search_space(["c=interval(0, 1)"]).grid()


@pytest.mark.parametrize("value", ["b c", "it's", 5e-05, 3, True, None, [1, "x y"], "1.5"])
def test_format_value_round_trips_through_hydras_parser(value):
    parsed = OverridesParser.create().parse_override(f"k={format_value(value)}").value()
    assert parsed == value and type(parsed) is type(value)


def test_list_choices_become_overrides_that_parse_back_to_lists():
    space = parse_search_space(["lora.target_modules=choice([q_proj,v_proj],[q_proj])"])
    param = space.params["lora.target_modules"]
    assert param.distribution.choices == ("['q_proj','v_proj']", "['q_proj']")
    line = param.override("['q_proj']")
    assert OverridesParser.create().parse_override(line).value() == ["q_proj"]


@pytest.mark.parametrize(("value", "ok"), [
    (0.5, True), (3, True), (float("nan"), False), ("0.1", True), ("abc", False),
    (None, False), (float("inf"), False), ([0.1, 0.2], False),
])
def test_objective_values_must_be_finite_numbers(value, ok):
    if ok:
        assert as_values(value, 1) == [float(value)]
    else:
        with pytest.raises(ValueError):
            as_values(value, 1)


def test_storage_strings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert journal_path("journal:a/b.log").name == "b.log"
    assert journal_path("outputs/optuna.journal") == Path("outputs/optuna.journal")
    assert journal_path("postgresql://u@h/db") is None
    assert absolute_storage("sqlite:///out/o.sqlite") == f"sqlite:///{tmp_path}/out/o.sqlite"
    assert absolute_storage("journal:o.log") == f"journal:{tmp_path}/o.log"
    assert absolute_storage("mysql+pymysql://u:p@h/db") == "mysql+pymysql://u:p@h/db"


def test_registries_name_what_they_support():
    assert isinstance(build_pruner({"name": "median", "options": {"n_startup_trials": 2}}),
                      optuna.pruners.MedianPruner)
    assert isinstance(build_pruner(None), optuna.pruners.NopPruner)
    with pytest.raises(ValueError, match="pruner.name: must be one of"):
        build_pruner({"name": "nope"})
    with pytest.raises(ValueError, match="sampler.name: must be one of"):
        build_sampler("nope", None, {}, dict)


@pytest.fixture
def study(tmp_path):
    return optuna.create_study(storage=open_storage(f"sqlite:///{tmp_path}/o.sqlite"),
                               study_name="s")


def test_slots_count_study_totals_and_surplus_is_cancelled(study):
    for _ in range(2):
        trial = study.ask()
        assert claim(study, trial, 3)
        study.tell(trial, 1.0)
    first, second = study.ask(), study.ask()  # two workers asked at the same moment
    assert claim(study, first, 3) and not claim(study, second, 3)
    assert study.trials[second.number].state == TrialState.PRUNED
    assert study.trials[second.number].user_attrs[CANCELLED_ATTR] == "surplus"
    study.tell(first, 1.0)
    assert missing(study, 3) == 0


def test_requeued_failure_gives_its_slot_to_the_retry(study):
    trial = study.ask({"x": CategoricalDistribution([1, 2])})
    study.tell(trial, state=TrialState.FAIL)
    assert missing(study, 2) == 1
    assert requeue(study, study.trials[0], max_retries=1)
    assert missing(study, 2) == 2  # the failure's slot is back, held by a WAITING retry
    retry = study.ask({"x": CategoricalDistribution([1, 2])})
    assert retry.params == trial.params
    study.tell(retry, state=TrialState.FAIL)
    assert not requeue(study, study.trials[retry.number], max_retries=1)


def test_a_sweep_start_requeues_each_failure_once(study):
    for _ in range(2):
        trial = study.ask({"x": CategoricalDistribution([1, 2])})
        study.tell(trial, state=TrialState.FAIL)
    assert requeue_failures(study, max_retries=2) == 2
    assert requeue_failures(study, max_retries=2) == 0  # already retried: no duplicates
    assert [t.state for t in study.trials].count(TrialState.WAITING) == 2


def test_trials_of_a_silent_worker_elsewhere_are_failed_and_requeued(tmp_path):
    url, sampler = f"sqlite:///{tmp_path}/o.sqlite", optuna.samplers.RandomSampler()
    study, storage = open_study(url, "s", sampler, ["minimize"], (1, 1), max_retries=1)
    with quiet_heartbeat_warnings():
        trial = study.ask({"x": CategoricalDistribution([1, 2])})
    trial.set_user_attr(WORKER_ATTR, "another-host:1")  # no pid to probe from here
    with Heartbeat(storage, [trial._trial_id]):
        pass  # one beat, then the worker goes silent
    time.sleep(2.5)
    study, _ = open_study(url, "s", sampler, ["minimize"], (1, 1), max_retries=1)
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.WAITING]
    assert study.trials[1].params == trial.params


def test_reporter_is_none_outside_a_sweep_or_without_its_study(tmp_path):
    assert TrialReporter.from_settings(TrialConfig()) is None
    missing_study = TrialConfig(f"sqlite:///{tmp_path}/o.sqlite", "nope", 0)
    assert TrialReporter.from_settings(missing_study) is None


def test_reporter_prunes_a_trial_worse_than_the_median(tmp_path):
    url = f"sqlite:///{tmp_path}/o.sqlite"
    study = optuna.create_study(storage=open_storage(url), study_name="s")
    study.set_user_attr(PRUNER_ATTR, {"name": "median", "options": {"n_startup_trials": 1}})
    good = study.ask()
    for step, value in ((10, 1.0), (20, 0.5)):
        good.report(value, step)
    study.tell(good, 0.5)
    bad = study.ask()
    reporter = TrialReporter.from_settings(TrialConfig(url, "s", bad.number))
    assert reporter is not None and reporter.number == bad.number
    assert reporter.report(10, 0.9) is False  # better than the median so far
    assert reporter.report(20, 3.0) is True
    assert study.trials[bad.number].user_attrs[PRUNED_AT_ATTR] == 20
    assert study.trials[bad.number].intermediate_values == {10: 0.9, 20: 3.0}


def test_reporter_survives_a_trial_finished_elsewhere(tmp_path):
    url = f"journal:{tmp_path}/o.log"
    study = optuna.create_study(storage=open_storage(url), study_name="s")
    trial = study.ask()
    reporter = TrialReporter.from_settings(TrialConfig(url, "s", trial.number))
    study.tell(trial, state=TrialState.FAIL)  # e.g. failed as stale by another worker
    assert reporter.report(10, 1.0) is False
    assert reporter.report(20, 1.0) is False


def test_results_hold_the_best_trial_or_the_pareto_front(tmp_path):
    from hydra_plugins.budgeted_optuna_sweeper._results import summarize

    def overrides(params):
        return [f"{k}={v}" for k, v in params.items()]

    single = optuna.create_study()
    for x in (1, 2):
        single.enqueue_trial({"x": x})
        single.optimize(lambda t: t.suggest_int("x", 0, 3) ** 2, n_trials=1)
    summary = summarize(single, "postgresql://me:secret@db/optuna", 2, overrides)
    assert (summary["best_params"], summary["best_overrides"]) == ({"x": 1}, ["x=1"])
    assert summary["storage"] == "postgresql://me:***@db/optuna"

    multi = optuna.create_study(directions=["minimize", "maximize"])
    multi.optimize(lambda t: (t.suggest_float("x", 0, 1), t.suggest_float("y", 0, 1)),
                   n_trials=4)
    front = summarize(multi, "journal:o.log", 4, overrides)["pareto_front"]
    assert front and all(len(p["values"]) == 2 for p in front)
