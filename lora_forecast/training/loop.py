"""The training loop on ``accelerate``: metered, validated, early-stopped, checkpointed, resumable.

Reads top to bottom in :meth:`Trainer.fit`: resume -> (budget check, step, log, validate,
checkpoint)* -> final checkpoint and adapters. Every FLOP goes through the meter before it is
spent, so a run stops cleanly (``stopped_budget``) instead of overrunning its reservation.
Data parallel (``accelerate launch`` / torchrun): every rank trains on its own shard of each
step's windows and DDP averages the gradients; rank 0 alone writes files and decides when to
stop (budget, signals, early stopping, pruning), and its decision reaches every rank
(:mod:`lora_forecast.training.distributed`).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from accelerate import Accelerator
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from lora_forecast.config import TrainConfig
from lora_forecast.models.build import (
    enable_gradient_checkpointing,
    load_trainable_state,
    trainable_state,
)
from lora_forecast.models.compiled import compiled
from lora_forecast.training import checkpoint as ckpt
from lora_forecast.training.batches import BatchOrder, collate, label_tokens
from lora_forecast.training.distributed import LossModule, from_rank0, global_sum
from lora_forecast.training.early_stopping import EarlyStopping
from lora_forecast.training.schedule import build_optimizer
from lora_forecast.training.signals import StopRequest

log = logging.getLogger(__name__)

LossFn = Callable[[torch.nn.Module, dict[str, torch.Tensor]], torch.Tensor]


class Meter(Protocol):
    """What the loop needs from the FLOPs meter (see ``lora_forecast.budget.meter``)."""

    @property
    def spent(self) -> float: ...
    def can_afford(self, cost: float) -> bool: ...
    def add(self, cost: float, kind: str) -> None: ...
    def flush(self) -> None: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class Tracker(Protocol):
    def log(self, metrics: dict[str, float], step: int) -> None: ...


class Reporter(Protocol):
    def report(self, step: int, value: float) -> bool: ...


@dataclass
class TrainHooks:
    """The loop's collaborators, injected so the loop itself has no global side effects."""

    loss_fn: LossFn
    meter: Meter
    step_flops: float  # one optimiser step: batch x grad_accum windows, forward + backward
    val_window_flops: float  # one validation window forward
    val_forecast_flops: float = 0.0  # bound on one forecast_validator call (planner's)
    tracker: Tracker | None = None
    reporter: Reporter | None = None
    # model -> ({"val/mse": ..., other val/ scores}, FLOPs spent)
    forecast_validator: Callable[[torch.nn.Module], tuple[dict[str, float], float]] | None = None
    stop: StopRequest = field(default_factory=StopRequest)
    budget: float = math.inf
    progress: bool = True


@dataclass
class TrainResult:
    steps: int
    end_reason: str  # max_steps | early_stopped | stopped_budget | interrupted | pruned
    best_metric: float | None
    best_step: int | None
    history: list[dict[str, float]]
    resumed_from: str | None = None
    zero_shot_metric: float | None = None  # the untrained model's (compare_zero_shot)

    def summary(self) -> dict[str, Any]:
        train_losses = [h["train/loss"] for h in self.history if "train/loss" in h]
        return {
            "steps": self.steps,
            "end_reason": self.end_reason,
            "best_metric": self.best_metric,
            "best_step": self.best_step,
            "final_train_loss": train_losses[-1] if train_losses else None,
            "resumed_from": self.resumed_from,
            **self._zero_shot(),
            "history": self.history,
        }

    def _zero_shot(self) -> dict[str, Any]:
        """Under ``compare_zero_shot``: the untrained model's score and which model was kept
        (the untrained one when no adapter beat its step-0 evaluation)."""
        if self.zero_shot_metric is None:
            return {}
        return {"zero_shot_metric": self.zero_shot_metric,
                "kept": "untrained" if self.best_step == 0 else "adapter"}


class Trainer:
    """One fine-tuning run. ``fit()`` returns a :class:`TrainResult`."""

    def __init__(
        self,
        model: torch.nn.Module,
        train_set: Dataset,
        val_set: Dataset,
        cfg: TrainConfig,
        run_dir: Path,
        hooks: TrainHooks,
        accelerator: Accelerator,
    ) -> None:
        self.cfg, self.run_dir, self.hooks, self.acc = cfg, run_dir, hooks, accelerator
        self.train_set, self.val_set = train_set, val_set
        if cfg.gradient_checkpointing:
            enable_gradient_checkpointing(model)
        # the step's forward (and so its backward graph) compiled; validation stays eager
        step_loss = (compiled(hooks.loss_fn, "train.compile", accelerator.device.type)
                     if cfg.compile else hooks.loss_fn)
        optimizer, scheduler = build_optimizer(model, cfg)
        # ``model`` stays the bare PEFT model (saving, validation, forecasting); training steps
        # go through ``net``, the loss module DDP wraps (see training.distributed for why).
        self.model = model
        self.net, self.optimizer, self.scheduler = accelerator.prepare(
            LossModule(model, step_loss), optimizer, scheduler
        )
        # One draw of batch_size x grad_accum windows per optimiser step, then split into
        # micro-batches: a step trains on the same windows however it is accumulated, and the
        # data position a checkpoint needs is the step counter itself.
        self.order = BatchOrder(
            len(train_set),
            cfg.batch_size * cfg.grad_accum,
            cfg.seed,
            accelerator.num_processes,
            accelerator.process_index,
        )
        if accelerator.num_processes > 1:
            log.info("data parallel: process %d of %d, %d windows per step on each",
                     accelerator.process_index, accelerator.num_processes, self.order.batch_size)
        self.stopper = EarlyStopping(cfg.patience, cfg.min_delta)
        self.step = 0
        self.history: list[dict[str, float]] = []
        self.resumed_from: str | None = None

    # -- the run ---------------------------------------------------------------------------
    def fit(self) -> TrainResult:
        self._resume()
        end_reason = self._evaluate_untrained() or "max_steps"
        bar = tqdm(
            total=self.cfg.max_steps,
            initial=self.step,
            desc="train",
            disable=not (self.hooks.progress and self.acc.is_main_process),
        )
        while self.step < self.cfg.max_steps and end_reason == "max_steps":
            reason = from_rank0(self.acc, self._before_step())
            if reason:
                end_reason = reason
                break
            record = self._train_step()
            bar.update(1)
            bar.set_postfix(loss=f"{record['train/loss']:.4f}")
            evaluated = self.step % self.cfg.eval_every == 0 or self.step == self.cfg.max_steps
            reason = self._evaluate(record) if evaluated else None
            self._log(record)  # before checkpointing: a resumed history must hold this step
            if reason:
                end_reason = reason
                break  # _finish checkpoints this step
            if self._checkpoint_due(evaluated):
                self.save_checkpoint()
        bar.close()
        self._finish()
        return TrainResult(
            self.step,
            end_reason,
            None if math.isinf(self.stopper.best) else self.stopper.best,
            None if self.stopper.best_step < 0 else self.stopper.best_step,
            self.history,
            self.resumed_from,
            next((h.get(self.cfg.monitor) for h in self.history if h["step"] == 0), None),
        )

    def _evaluate_untrained(self) -> str | None:
        """``compare_zero_shot``: validate the untrained model at step 0, as any evaluation,
        so it is the best so far (``best/`` holds it) until an adapter beats it. Skipped on a
        resumed run (its history has it)."""
        if not self.cfg.compare_zero_shot or self.step != 0:
            return None
        record: dict[str, float] = {"step": 0, **self._flops_record()}
        reason = self._evaluate(record)
        record.update(self._flops_record())
        self._log(record)
        return reason

    def _before_step(self) -> str | None:
        """An end reason decided before a step (rank 0's is the one every rank follows)."""
        if self.hooks.stop.requested:
            return "interrupted"
        if not self.hooks.meter.can_afford(self.hooks.step_flops):
            return "stopped_budget"
        return None

    def _checkpoint_due(self, evaluated: bool) -> bool:
        """``checkpoint_every`` steps, or at every evaluation when it is null."""
        every = self.cfg.checkpoint_every
        return evaluated if every is None else self.step % every == 0

    def _log(self, record: dict[str, float]) -> None:
        self.history.append(record)
        if self.hooks.tracker is not None and self.acc.is_main_process:
            self.hooks.tracker.log(record, step=record["step"])

    # -- one optimiser step ------------------------------------------------------------------
    def _train_step(self) -> dict[str, float]:
        started = time.perf_counter()
        self.net.train()
        indices = self.order.indices(self.step).tolist()  # this rank's windows of this step
        size = self.cfg.batch_size
        batches = [
            collate(self.train_set, indices[i : i + size], self.acc.device)
            for i in range(0, len(indices), size)
        ]
        total_tokens = global_sum(self.acc, sum(label_tokens(b) for b in batches))
        ranks = self.acc.num_processes
        loss_sum = 0.0
        for k, batch in enumerate(batches):
            # Weight each micro-batch by its share of the step's loss tokens over all ranks
            # (times the rank count, which DDP's gradient mean divides out), so k micro-batches
            # on P ranks equal one batch k x P times larger (padding makes shares unequal).
            share = label_tokens(batch) / max(total_tokens, 1)
            sync = self.acc.no_sync(self.net) if k < len(batches) - 1 else nullcontext()
            with sync, self.acc.autocast():
                loss = self.net(batch)
            self.acc.backward(loss * share * ranks)
            loss_sum += float(loss.detach()) * share
        loss_sum = global_sum(self.acc, loss_sum)
        max_norm = self.cfg.max_grad_norm if self.cfg.max_grad_norm is not None else math.inf
        grad_norm = float(self.acc.clip_grad_norm_(self._trainable(), max_norm))
        lr = self.scheduler.get_last_lr()[0]
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        self.hooks.meter.add(self.hooks.step_flops, "training")
        seconds = time.perf_counter() - started
        n_tokens = sum(int(b["attention_mask"].sum()) for b in batches)
        return {
            "step": self.step,
            "train/loss": loss_sum,
            "lr": lr,
            "grad_norm": grad_norm,
            "tokens_per_s": n_tokens / max(seconds, 1e-9),
            **self._flops_record(),
        }

    def _trainable(self) -> list[torch.nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def _flops_record(self) -> dict[str, float]:
        spent = self.hooks.meter.spent
        return {"flops/spent": spent, "flops/budget_fraction": spent / self.hooks.budget}

    # -- validation, early stopping, pruning ---------------------------------------------------
    def _evaluate(self, record: dict[str, float]) -> str | None:
        """Validate, update early stopping / best adapter; returns an end reason or None."""
        n_windows = self._val_window_count()
        # the whole evaluation must fit before any of it runs, forecast validation included
        forecast_bound = self.hooks.val_forecast_flops if self.hooks.forecast_validator else 0.0
        affordable = self.hooks.meter.can_afford(n_windows * self.hooks.val_window_flops
                                                 + forecast_bound)
        if not from_rank0(self.acc, affordable):
            return "stopped_budget"
        record["val/loss"] = self.validation_loss(n_windows)
        self.hooks.meter.add(n_windows * self.hooks.val_window_flops, "validation")
        if self.hooks.forecast_validator is not None:
            scores, cost = self.hooks.forecast_validator(self.model)
            record.update(scores)
            self.hooks.meter.add(cost, "validation")
        monitored = record[self.cfg.monitor]
        if self.stopper.update(monitored, self.step) and self.acc.is_main_process:
            self._save_adapter(self.run_dir / "best")
        self.hooks.meter.flush()
        return from_rank0(self.acc, self._verdict(monitored) if self.acc.is_main_process else None)

    def _verdict(self, monitored: float) -> str | None:
        """Rank 0's end reason after an evaluation: pruned (asks the trial), early stopped."""
        if self.hooks.reporter is not None and self.hooks.reporter.report(self.step, monitored):
            return "pruned"
        return "early_stopped" if self.stopper.should_stop else None

    def _val_window_count(self) -> int:
        cap = self.cfg.val_max_windows
        return len(self.val_set) if cap is None else min(cap, len(self.val_set))

    @torch.no_grad()
    def validation_loss(self, n_windows: int) -> float:
        """Token-weighted mean loss over the first ``n_windows`` validation windows.

        Data-parallel ranks split the windows (rank r takes every P-th, from r) and sum loss
        and tokens over all ranks, so each window is computed once and every rank gets the
        single-process value.
        """
        self.net.eval()
        mine = list(range(self.acc.process_index, n_windows, self.acc.num_processes))
        total, tokens = 0.0, 0
        for start in range(0, len(mine), self.cfg.batch_size):
            batch = collate(self.val_set, mine[start : start + self.cfg.batch_size],
                            self.acc.device)
            with self.acc.autocast():
                loss = self.hooks.loss_fn(self.model, batch)
            n = label_tokens(batch)
            total, tokens = total + float(loss) * n, tokens + n
        return global_sum(self.acc, total) / max(global_sum(self.acc, tokens), 1)

    # -- persistence -------------------------------------------------------------------------
    def _save_adapter(self, directory: Path) -> None:
        self.model.save_pretrained(str(directory))
        torch.save(trainable_state(self.model), directory / "trainable.pt")

    def save_checkpoint(self) -> Path | None:
        if not self.acc.is_main_process:
            return None
        self.hooks.meter.flush()
        state = {
            "step": self.step,
            "history": self.history,
            "early_stopping": self.stopper.state_dict(),
            "meter": self.hooks.meter.state_dict(),
        }
        return ckpt.save_checkpoint(
            self.run_dir / "checkpoints",
            self.step,
            trainable=trainable_state(self.model),
            optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict(),
            state=state,
            keep=self.cfg.keep_checkpoints,
        )

    def _resume(self) -> None:
        checkpoint = self._find_checkpoint()
        if checkpoint is None:
            return
        load_trainable_state(self.model, checkpoint.trainable)
        self.optimizer.load_state_dict(checkpoint.optimizer)
        self.scheduler.load_state_dict(checkpoint.scheduler)
        ckpt.restore_rng(checkpoint.rng)
        state = checkpoint.state
        self.step = state["step"]  # also the data position (see BatchOrder in __init__)
        self.history = state["history"]
        self.stopper.load_state_dict(state["early_stopping"])
        owner = state["meter"].get("run_id")
        ours = (None, getattr(self.hooks.meter, "run_id", None))
        if owner in ours or not self.acc.is_main_process:  # ranks > 0 only mirror the count
            self.hooks.meter.load_state_dict(state["meter"])
        else:  # weights from another run: its FLOPs stay on that run's ledger row
            log.info("checkpoint %s belongs to another run; metering starts at 0", checkpoint.path)
        self.resumed_from = str(checkpoint.path)
        log.info("resumed from %s at step %d", checkpoint.path, self.step)

    def _find_checkpoint(self) -> ckpt.Checkpoint | None:
        if self.cfg.resume_from:
            return ckpt.load_checkpoint(Path(self.cfg.resume_from))
        if self.cfg.resume == "auto":
            found = ckpt.latest_valid_checkpoint(self.run_dir / "checkpoints")
            if found is None:
                log.info(
                    "train.resume=auto: no valid checkpoint in %s; starting fresh", self.run_dir
                )
            return found
        return None

    def _finish(self) -> None:
        if self.step > 0 and self.acc.is_main_process:
            last = ckpt.list_checkpoints(self.run_dir / "checkpoints")
            if not last or not last[-1].name.endswith(f"{self.step:07d}"):
                self.save_checkpoint()
            self._save_adapter(self.run_dir / "adapter")
            (self.run_dir / "train_history.json").write_text(json.dumps(self.history))
        self.hooks.meter.flush()
