"""``hydra/sweeper=budgeted_optuna``: an Optuna (>= 4) sweeper that never spends past the budget.

Why we hand-write it instead of installing ``hydra-optuna-sweeper``: the published plugin
(1.3.0) pins ``optuna < 3``; beside the SQLAlchemy 2 that pip installs with it, its RDB storage
fails (AssertionError in ``get_current_version``); one failed job kills the sweep at its default
``max_failure_rate`` (0), a NaN result crashes it, and it has no pruning. Its development branch
needs an unreleased Hydra. This package lives under ``hydra_plugins/`` (a namespace package:
there is no ``hydra_plugins/__init__.py``), where Hydra's plugin scanner finds it.

What it adds on top of the usual Optuna sweeper:

* budget admission: before launching a trial, its config is composed and its FLOPs predicted;
  a trial that would push the study past ``budget.max_flops`` is told PRUNED with
  ``rejected_by=budget`` and never launched;
* pruning: jobs report validation metrics to their trial (``lora_forecast.training.pruning``);
* robustness: failed, NaN or non-numeric results mark the trial FAIL and the sweep goes on
  (up to ``max_failure_rate``); trials left RUNNING by a dead worker are failed and re-queued;
* ``n_trials`` is the study's total, so re-running a command resumes it, and several machines
  sharing one storage URL complete exactly ``n_trials`` trials together.

Modules: :mod:`.config` (the structured config), :mod:`.sweeper` (the Hydra plugin class);
the rest start with ``_`` so Hydra's scanner does not import them (and Optuna) at every start.
"""
