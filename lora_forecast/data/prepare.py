"""From the data config to what a run consumes: trajectories, the split, the codec, windows."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lora_forecast.config import DataConfig
from lora_forecast.data.generator import ensure_synthetic
from lora_forecast.data.loader import load_trajectories
from lora_forecast.data.splits import SystemSplit, split_systems
from lora_forecast.data.windows import TokenWindows, make_windows
from lora_forecast.llmtime import LLMTimeCodec, LLMTimeFormat, choose_alpha

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PreparedData:
    """Trajectories [S, T, V] (float64), time [T], the system split and the fitted codec."""

    trajectories: np.ndarray
    time: np.ndarray
    split: SystemSplit
    codec: LLMTimeCodec

    @property
    def n_vars(self) -> int:
        return self.trajectories.shape[2]


def data_path(cfg: DataConfig) -> Path:
    """The HDF5 file to read: the user's file, or the generated cache for ``source=synthetic``."""
    if cfg.source == "synthetic":
        return ensure_synthetic(Path(cfg.cache_path), cfg.systems, cfg.generator_seed)
    return Path(cfg.path)


def prepare_data(cfg: DataConfig) -> PreparedData:
    """Load (or generate) the trajectories, split by system, and fit the codec's alpha.

    ``alpha: auto`` is chosen from the training split only, so no test value leaks into it.
    """
    trajectories, time = load_trajectories(data_path(cfg))
    split = split_systems(
        len(trajectories), cfg.split.train, cfg.split.val, cfg.split.test, cfg.split.seed
    )
    alpha = choose_alpha(trajectories[split.train]) if cfg.alpha == "auto" else float(cfg.alpha)
    log.info(
        "data: %d systems x %d steps x %d variables; split %d/%d/%d; alpha %.4g",
        *trajectories.shape,
        len(split.train),
        len(split.val),
        len(split.test),
        alpha,
    )
    return PreparedData(trajectories, time, split,
                        LLMTimeCodec(alpha, cfg.decimals, cfg.number_format))


def token_windows(fmt: LLMTimeFormat, series: Sequence[np.ndarray], context_tokens: int,
                  stride: int) -> TokenWindows:
    """Windows of ``context_tokens`` tokens over the LLMTIME tokens of each series [T_i, V]
    (series may differ in length); padding uses the tokenizer's pad token."""
    encoded = [fmt.encode_series(values) for values in series]
    return make_windows(encoded, context_tokens, stride, fmt.tokens.pad_id)
