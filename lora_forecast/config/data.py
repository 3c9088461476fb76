"""``data.*``: the series, their split, scaling and LLMTIME text (conf/data/)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from lora_forecast.config.checks import require

NUMBER_FORMATS = ("decimal", "digits")  # lora_forecast.llmtime.codec (kept import-free here)
LAYOUTS = ("auto", "long", "wide")
MISSING = ("error", "interpolate")
SCALINGS = ("global", "per_series")


@dataclass
class SplitConfig:
    train: float = 0.8
    val: float = 0.1
    test: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        fractions = (self.train, self.val, self.test)
        require(
            all(f >= 0 for f in fractions), "data.split", f"fractions must be >= 0, got {fractions}"
        )
        require(
            math.isclose(sum(fractions), 1.0, abs_tol=1e-6),
            "data.split",
            f"train + val + test must sum to 1, got {sum(fractions):g}",
        )


@dataclass
class DataConfig:
    """Where trajectories come from and how they become text and training windows."""

    source: str = "file"
    path: str = "data/lotka_volterra_data.h5"
    # synthetic source: generated once, cached at cache_path
    systems: int = 1000
    generator_seed: int = 0
    cache_path: str = "outputs/cache/synthetic_lotka_volterra.h5"
    split: SplitConfig = field(default_factory=SplitConfig)
    alpha: Any = 10.0
    decimals: int = 2
    number_format: str = "decimal"
    context_tokens: int = 512
    # tables (path ending .csv/.parquet; see lora_forecast/data/tabular.py)
    layout: str = "auto"
    id_column: str = "series_id"
    time_column: str = "time"
    value_columns: list[str] | None = None
    variable_column: str = "variable"
    value_column: str = "value"
    missing: str = "error"
    # scaling: global (alpha) or LLMTIME per-series (each series / a quantile of its context)
    scaling: str = "global"
    scale_quantile: float = 0.9
    scale_offset: float = 0.0
    # '-' in the LLMTIME alphabet: auto (a table: from its values as the text writes them;
    # HDF5, populations: non-negative), true, or false (the data is declared non-negative)
    signed: Any = "auto"

    def __post_init__(self) -> None:
        require(
            self.source in ("file", "synthetic"),
            "data.source",
            f"must be file or synthetic, got {self.source!r}",
        )
        for key, value, allowed in (("layout", self.layout, LAYOUTS),
                                    ("missing", self.missing, MISSING),
                                    ("scaling", self.scaling, SCALINGS)):
            require(value in allowed, f"data.{key}", f"must be one of {allowed}, got {value!r}")
        require(0 < self.scale_quantile <= 1, "data.scale_quantile",
                 f"must be in (0, 1], got {self.scale_quantile}")
        require(self.scale_offset >= 0, "data.scale_offset",
                 f"must be >= 0, got {self.scale_offset}")
        require(0 <= self.decimals <= 6, "data.decimals", f"must be in 0..6, got {self.decimals}")
        require(self.number_format in NUMBER_FORMATS, "data.number_format",
                 f"must be one of {NUMBER_FORMATS}, got {self.number_format!r}")
        require(self.signed == "auto" or isinstance(self.signed, bool), "data.signed",
                 f"must be auto, true or false, got {self.signed!r}")
        if isinstance(self.alpha, str):
            require(
                self.alpha == "auto", "data.alpha", f"must be > 0 or 'auto', got {self.alpha!r}"
            )
        else:
            require(
                isinstance(self.alpha, int | float) and self.alpha > 0,
                "data.alpha",
                f"must be > 0 or 'auto', got {self.alpha!r}",
            )
        require(
            self.systems >= 3, "data.systems", f"must be >= 3 (one per split), got {self.systems}"
        )
        # The shortest possible time step is one variable "d;" (+ ".dd" with decimals).
        min_step = 2 + (self.decimals + 1 if self.decimals else 0)
        require(
            self.context_tokens >= min_step,
            "data.context_tokens",
            f"must hold at least one time step ({min_step} tokens), got {self.context_tokens}",
        )
