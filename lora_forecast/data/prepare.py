"""From the data config to what a run consumes: series, the split, the scaling, windows."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lora_forecast.config import DataConfig
from lora_forecast.data.generator import ensure_synthetic
from lora_forecast.data.scaling import Scaling, SeriesScale, fit_scaling, text_signed
from lora_forecast.data.series import SeriesSet
from lora_forecast.data.sources import read_series
from lora_forecast.data.splits import SystemSplit, split_systems
from lora_forecast.data.windows import TokenWindows, make_windows
from lora_forecast.llmtime import LLMTimeCodec, LLMTimeFormat

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PreparedData:
    """The (ragged) series, the split over them, the scaling and the text codec.

    Under global scaling ``codec`` divides by the fitted alpha (as the run always did); under
    per-series scaling values are scaled per series first (:meth:`scale_of`) and ``codec`` has
    alpha 1.
    """

    series: SeriesSet
    split: SystemSplit
    scaling: Scaling
    codec: LLMTimeCodec

    @property
    def n_vars(self) -> int:
        return self.series.n_vars

    def scaled_series(self, indices: np.ndarray) -> list[np.ndarray]:
        """The series at ``indices`` as the text will hold them: unchanged under global
        scaling (the codec divides by alpha), each scaled by its own values under per-series
        scaling (training and validation series are the model's history)."""
        values = [self.series.values[int(i)] for i in indices]
        return [self.scale_of(v).apply(v) for v in values]

    def scale_of(self, history: np.ndarray) -> SeriesScale:
        """Per-series scale for the values a forecaster sees (:meth:`Scaling.text_scale`)."""
        return self.scaling.text_scale(history)


def data_path(cfg: DataConfig) -> Path:
    """The file to read: the user's file, or the generated cache for ``source=synthetic``."""
    if cfg.source == "synthetic":
        return ensure_synthetic(Path(cfg.cache_path), cfg.systems, cfg.generator_seed)
    return Path(cfg.path)


def read_data(cfg: DataConfig) -> SeriesSet:
    """The configured series (HDF5, CSV or Parquet; see :func:`read_series`)."""
    return read_series(data_path(cfg), cfg)


def prepare_data(cfg: DataConfig) -> PreparedData:
    """Read (or generate) the series, split by series, and fit the scaling.

    ``alpha: auto`` is chosen from the training split only, so no test value leaks into it;
    ``data.signed`` is resolved here (:func:`text_signed`, as the planner resolves it).
    """
    series = read_data(cfg)
    split = split_systems(
        len(series), cfg.split.train, cfg.split.val, cfg.split.test, cfg.split.seed
    )
    signed = text_signed(cfg.signed, cfg.scaling, cfg.scale_offset, series.values)
    scaling = fit_scaling(cfg.scaling, cfg.alpha, [series.values[i] for i in split.train],
                          cfg.scale_quantile, cfg.scale_offset, series.variables, signed)
    lengths = series.lengths
    log.info(
        "data: %d series x %s steps x %d variables; split %d/%d/%d; scaling %s (alpha %.4g)%s",
        len(series), lengths[0] if (lengths == lengths[0]).all() else
        f"{lengths.min()}..{lengths.max()}", series.n_vars, len(split.train), len(split.val),
        len(split.test), scaling.kind, scaling.alpha, "; signed ('-' in the text)" * signed,
    )  # fmt: skip
    codec = LLMTimeCodec(scaling.alpha, cfg.decimals, cfg.number_format)
    return PreparedData(series, split, scaling, codec)


def token_windows(fmt: LLMTimeFormat, series: Sequence[np.ndarray], context_tokens: int,
                  stride: int) -> TokenWindows:
    """Windows of ``context_tokens`` tokens over the LLMTIME tokens of each series [T_i, V]
    (series may differ in length); padding uses the tokenizer's pad token."""
    encoded = [fmt.encode_series(values) for values in series]
    return make_windows(encoded, context_tokens, stride, fmt.tokens.pad_id)
