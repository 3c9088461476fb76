"""Structured-config schema: one dataclass per config group, validated where it is defined.

Hydra composes YAML from ``conf/`` on top of these dataclasses (registered in the ConfigStore as
``<group>/schema``), so a wrong *type* fails at composition. Semantic checks (rank >= 1, lr > 0,
...) live in ``__post_init__`` and run when :func:`to_settings` converts the composed config with
``OmegaConf.to_object``: once, at the entry point, before any model or data is loaded.

Defaults: the YAML files a user reads (``conf/<group>/<default option>.yaml``) hold the values;
each dataclass default equals what the default composition gives (interpolations resolved), so
code that builds these classes directly gets the same run. ``tests/test_config.py`` checks
every field of every group; change both sides together.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from lora_forecast.errors import ConfigError, omegaconf_key_and_reason
from lora_forecast.flops.api import ACCOUNTINGS as FLOPS_ACCOUNTINGS

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
NUMBER_FORMATS = ("decimal", "digits")  # lora_forecast.llmtime.codec (kept import-free here)
SCHEDULES = ("constant", "linear", "cosine")  # training.schedule (tested equal)
# val/loss, and lora_forecast.evaluation.scoring.POINT_MONITORS of the validation forecasts
# (kept import-free here; a test checks they agree)
MONITORS = ("val/loss", "val/mse", "val/mae", "val/mase", "val/smape", "val/mase_rel")
HEADS = ("full", "numeric")  # models.numeric_head.HEAD_LOSSES (import-free; tested equal)
LOGGERS = ("none", "wandb")  # tracking.TRACKERS (import-free; tested equal)
ACCOUNTINGS = tuple(FLOPS_ACCOUNTINGS)  # the FLOPs registry (pure Python, no torch)
LAYOUTS = ("auto", "long", "wide")
MISSING = ("error", "interpolate")
SCALINGS = ("global", "per_series")
SCHEMA_NAME = "schema"  # each group's structured-config option (conf/<group>/*.yaml defaults)


def _require(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{key}: {message}")


@dataclass
class ModelConfig:
    """Which causal LM to load. ``kind=pretrained`` calls ``from_pretrained(name_or_path)``;
    ``kind=tiny`` builds a seeded random-init Qwen2 of the shape below with the real tokenizer."""

    kind: str = "pretrained"
    name_or_path: str = "Qwen/Qwen2.5-0.5B-Instruct"
    revision: str | None = None
    dtype: str = "auto"
    attn_implementation: str = "auto"  # auto: transformers' choice (sdpa where supported)
    lm_head_bias: bool = True
    head: str = "numeric"
    # tiny-model shape (only read when kind=tiny)
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2
    intermediate_size: int = 128
    init_seed: int = 0
    # a GGUF checkpoint (models/gguf_cache.py): package:<module>, an absolute path, or a file
    # name in the folder/Hub repo model.name_or_path; dequantized once and cached
    gguf_file: str | None = None
    gguf_sha256: str | None = None  # optional pin of the GGUF file's SHA-256

    def __post_init__(self) -> None:
        _require(
            self.kind in ("pretrained", "tiny"),
            "model.kind",
            f"must be pretrained or tiny, got {self.kind!r}",
        )
        _require(self.head in HEADS, "model.head", f"must be one of {HEADS}, got {self.head!r}")
        _require(self.kind == "tiny" or bool(self.name_or_path.strip()) or self._gguf_alone,
                 "model.name_or_path",
                 "required: a Hub id or a local folder with the model and its tokenizer "
                 "(or model.gguf_file an absolute path)")
        _require(self.gguf_sha256 is None or (len(self.gguf_sha256) == 64 and all(
            c in "0123456789abcdefABCDEF" for c in self.gguf_sha256)), "model.gguf_sha256",
            f"must be 64 hex digits, got {self.gguf_sha256!r}")
        if self.kind == "tiny":
            _require(
                self.hidden_size % self.num_heads == 0,
                "model.hidden_size",
                f"must be divisible by model.num_heads ({self.num_heads})",
            )
            _require(
                self.num_heads % self.num_kv_heads == 0,
                "model.num_kv_heads",
                f"must divide model.num_heads ({self.num_heads})",
            )
            for key in (
                "hidden_size",
                "num_layers",
                "num_heads",
                "num_kv_heads",
                "intermediate_size",
            ):
                _require(getattr(self, key) >= 1, f"model.{key}", "must be >= 1")

    @property
    def _gguf_alone(self) -> bool:
        """A GGUF file that needs no folder: an absolute path or a ``package:`` one (the
        prefix of models/gguf_cache.py, spelled here to keep this module import-free)."""
        name = self.gguf_file or ""
        return name.startswith("package:") or name.startswith(("/", "~"))


@dataclass
class LoraConfig:
    """LoRA adapter (PEFT). ``alpha=None`` means alpha = rank: scaling 1, as in the reference.

    ``target_modules``: null = the model family's q/v (Phi-3: its fused ``qkv_proj``), a list of
    module names, or ``all-linear`` (every linear of the decoder layers, as in PEFT); checked
    against the family before any weight is loaded.
    """

    rank: int = 4
    alpha: float | None = None
    dropout: float = 0.0
    target_modules: Any = None

    def __post_init__(self) -> None:
        _require(self.rank >= 1, "lora.rank", f"must be >= 1, got {self.rank}")
        _require(
            self.alpha is None or self.alpha > 0, "lora.alpha", f"must be > 0, got {self.alpha}"
        )
        _require(
            0.0 <= self.dropout < 1.0, "lora.dropout", f"must be in [0, 1), got {self.dropout}"
        )
        targets = self.target_modules
        _require(
            targets is None or isinstance(targets, str)
            or (len(targets) >= 1 and all(isinstance(t, str) for t in targets)),
            "lora.target_modules",
            f"must be null, all-linear or a non-empty list of module names, got {targets!r}",
        )

    @property
    def scaling_alpha(self) -> float:
        return float(self.rank if self.alpha is None else self.alpha)


@dataclass
class SplitConfig:
    train: float = 0.8
    val: float = 0.1
    test: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        fractions = (self.train, self.val, self.test)
        _require(
            all(f >= 0 for f in fractions), "data.split", f"fractions must be >= 0, got {fractions}"
        )
        _require(
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
        _require(
            self.source in ("file", "synthetic"),
            "data.source",
            f"must be file or synthetic, got {self.source!r}",
        )
        for key, value, allowed in (("layout", self.layout, LAYOUTS),
                                    ("missing", self.missing, MISSING),
                                    ("scaling", self.scaling, SCALINGS)):
            _require(value in allowed, f"data.{key}", f"must be one of {allowed}, got {value!r}")
        _require(0 < self.scale_quantile <= 1, "data.scale_quantile",
                 f"must be in (0, 1], got {self.scale_quantile}")
        _require(self.scale_offset >= 0, "data.scale_offset",
                 f"must be >= 0, got {self.scale_offset}")
        _require(0 <= self.decimals <= 6, "data.decimals", f"must be in 0..6, got {self.decimals}")
        _require(self.number_format in NUMBER_FORMATS, "data.number_format",
                 f"must be one of {NUMBER_FORMATS}, got {self.number_format!r}")
        _require(self.signed == "auto" or isinstance(self.signed, bool), "data.signed",
                 f"must be auto, true or false, got {self.signed!r}")
        if isinstance(self.alpha, str):
            _require(
                self.alpha == "auto", "data.alpha", f"must be > 0 or 'auto', got {self.alpha!r}"
            )
        else:
            _require(
                isinstance(self.alpha, int | float) and self.alpha > 0,
                "data.alpha",
                f"must be > 0 or 'auto', got {self.alpha!r}",
            )
        _require(
            self.systems >= 3, "data.systems", f"must be >= 3 (one per split), got {self.systems}"
        )
        # The shortest possible time step is one variable "d;" (+ ".dd" with decimals).
        min_step = 2 + (self.decimals + 1 if self.decimals else 0)
        _require(
            self.context_tokens >= min_step,
            "data.context_tokens",
            f"must hold at least one time step ({min_step} tokens), got {self.context_tokens}",
        )


@dataclass
class TrainConfig:
    """Optimisation, validation, early stopping and checkpointing."""

    max_steps: int = 2000
    batch_size: int = 4
    grad_accum: int = 1
    lr: float = 1e-5
    weight_decay: float = 0.0
    schedule: str = "constant"
    warmup_steps: int = 0
    max_grad_norm: float | None = None
    precision: str = "auto"
    seed: int = 0
    eval_every: int = 100
    val_max_windows: int | None = 64
    eval_forecast: bool = False
    eval_forecast_systems: int = 8
    compare_zero_shot: bool = False
    monitor: str = "val/loss"
    patience: int | None = None
    min_delta: float = 0.0
    checkpoint_every: int | None = None
    keep_checkpoints: int = 2
    resume: str = "never"
    resume_from: str | None = None
    compile: bool = False
    gradient_checkpointing: bool = False

    def __post_init__(self) -> None:
        _require(self.max_steps >= 0, "train.max_steps", f"must be >= 0, got {self.max_steps}")
        _require(self.batch_size >= 1, "train.batch_size", f"must be >= 1, got {self.batch_size}")
        _require(self.grad_accum >= 1, "train.grad_accum", f"must be >= 1, got {self.grad_accum}")
        _require(self.lr > 0, "train.lr", f"must be > 0, got {self.lr}")
        _require(
            self.weight_decay >= 0, "train.weight_decay", f"must be >= 0, got {self.weight_decay}"
        )
        _require(
            self.schedule in SCHEDULES,
            "train.schedule",
            f"must be one of {SCHEDULES}, got {self.schedule!r}",
        )
        _require(
            self.warmup_steps >= 0, "train.warmup_steps", f"must be >= 0, got {self.warmup_steps}"
        )
        _require(
            self.precision in PRECISIONS,
            "train.precision",
            f"must be one of {PRECISIONS}, got {self.precision!r}",
        )
        _require(self.eval_every >= 1, "train.eval_every", f"must be >= 1, got {self.eval_every}")
        _require(
            self.patience is None or self.patience >= 1,
            "train.patience",
            f"must be >= 1 or null, got {self.patience}",
        )
        _require(
            self.checkpoint_every is None or self.checkpoint_every >= 1,
            "train.checkpoint_every",
            f"must be >= 1 or null, got {self.checkpoint_every}",
        )
        _require(
            self.keep_checkpoints >= 1,
            "train.keep_checkpoints",
            f"must be >= 1, got {self.keep_checkpoints}",
        )
        _require(
            self.resume in ("never", "auto"),
            "train.resume",
            f"must be never or auto, got {self.resume!r}",
        )
        _require(
            self.monitor in MONITORS,
            "train.monitor",
            f"must be one of {', '.join(MONITORS)}, got {self.monitor!r}"
            + ("; probabilistic scores need samples, which validation forecasts (greedy) "
               "do not draw" if self.monitor in ("val/wql", "val/crps", "val/msis",
                                                 "val/coverage_80") else ""),
        )
        _require(
            self.monitor == "val/loss" or self.eval_forecast,
            "train.monitor",
            f"{self.monitor} needs train.eval_forecast=true",
        )

    @property
    def tokens_per_step_factor(self) -> int:
        """Sequences per optimiser step (batch x accumulation)."""
        return self.batch_size * self.grad_accum


@dataclass
class EvalConfig:
    """Forecast protocol on the test split."""

    n_systems: int | None = None
    context_steps: int = 50
    horizon_steps: int = 10
    batch_size: int | None = None
    constrained: bool = True
    num_samples: int = 1
    temperature: float = 0.7
    top_p: float = 0.9
    max_int_digits: int = 2
    seed: int = 0
    bootstrap: int = 1000
    plot_systems: int = 4
    baselines: list[str] = field(default_factory=lambda: ["persistence", "linear_ar"])
    season_length: int = 1
    skip_llm: bool = False
    compile: bool = False
    jump_forward: bool | None = None
    prefill_tokens: int | None = 8192

    def __post_init__(self) -> None:
        _require(
            self.n_systems is None or self.n_systems >= 1,
            "eval.n_systems",
            f"must be >= 1 or null (all test systems), got {self.n_systems}",
        )
        _require(
            self.context_steps >= 1, "eval.context_steps", f"must be >= 1, got {self.context_steps}"
        )
        _require(
            self.horizon_steps >= 1, "eval.horizon_steps", f"must be >= 1, got {self.horizon_steps}"
        )
        _require(self.batch_size is None or self.batch_size >= 1, "eval.batch_size",
                 f"must be >= 1 or null (as many as memory holds), got {self.batch_size}")
        _require(self.prefill_tokens is None or self.prefill_tokens >= 1, "eval.prefill_tokens",
                 f"must be >= 1 or null (one prefill per batch), got {self.prefill_tokens}")
        _require(self.season_length >= 1, "eval.season_length",
                 f"must be >= 1, got {self.season_length}")
        _require(self.num_samples >= 1, "eval.num_samples", f"must be >= 1, got {self.num_samples}")
        _require(self.temperature > 0, "eval.temperature", f"must be > 0, got {self.temperature}")
        _require(0 < self.top_p <= 1, "eval.top_p", f"must be in (0, 1], got {self.top_p}")
        _require(
            self.max_int_digits >= 1,
            "eval.max_int_digits",
            f"must be >= 1, got {self.max_int_digits}",
        )


@dataclass
class BudgetConfig:
    """The study's FLOPs budget and the ledger that enforces it."""

    max_flops: float = 1e17
    study: str = "default"
    ledger_url: str = "sqlite:///outputs/ledger.sqlite"
    accounting: str = "exact"
    backward: str = "rule"
    dry_run: bool = False

    def __post_init__(self) -> None:
        _require(self.max_flops > 0, "budget.max_flops", f"must be > 0, got {self.max_flops}")
        _require(
            self.accounting in ACCOUNTINGS,
            "budget.accounting",
            f"must be one of {ACCOUNTINGS}, got {self.accounting!r}",
        )
        _require(
            self.backward in ("rule", "autograd"),
            "budget.backward",
            f"must be rule or autograd, got {self.backward!r}",
        )
        _require(
            self.accounting == "exact" or self.backward == "rule",
            "budget.backward",
            "autograd needs budget.accounting=exact (the seed formulas define only the rule)",
        )


@dataclass
class LoggerConfig:
    """Experiment tracking. ``name=none`` logs nothing; ``wandb`` is offline unless mode=online."""

    name: str = "none"
    project: str = "lora-forecast"
    entity: str | None = None
    mode: str = "offline"
    group: str | None = None
    tags: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        _require(
            self.name in LOGGERS,
            "logger.name",
            f"must be one of {LOGGERS}, got {self.name!r}",
        )
        _require(
            self.mode in ("offline", "online", "disabled"),
            "logger.mode",
            f"must be offline, online or disabled, got {self.mode!r}",
        )


@dataclass
class TrialConfig:
    """Set by the budgeted Optuna sweeper so a job can report to (and be pruned by) its trial."""

    storage: str | None = None
    study_name: str | None = None
    number: int | None = None


@dataclass
class Settings:
    """The whole run, validated. Built once by :func:`to_settings`; never mutated afterwards."""

    model: ModelConfig = field(default_factory=ModelConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    trial: TrialConfig = field(default_factory=TrialConfig)
    experiment: str = "default"
    task: str = "finetune"
    output_dir: str = "outputs"

    def __post_init__(self) -> None:
        _require(
            self.task in ("finetune", "evaluate", "baselines"),
            "task",
            f"must be finetune, evaluate or baselines, got {self.task!r}",
        )


GROUP_SCHEMAS: dict[str, type] = {
    "model": ModelConfig,
    "lora": LoraConfig,
    "data": DataConfig,
    "train": TrainConfig,
    "eval": EvalConfig,
    "budget": BudgetConfig,
    "logger": LoggerConfig,
}


def register_configs() -> None:
    """Register the root schema and one ``<group>/schema`` node per group for YAML to extend."""
    store = ConfigStore.instance()
    store.store(name="settings_schema", node=Settings)
    for group, schema in GROUP_SCHEMAS.items():
        store.store(group=group, name=SCHEMA_NAME, node=schema)


def resolved_config(cfg: DictConfig) -> dict[str, Any]:
    """The composed config as a plain resolved dict, without Hydra's own node.

    The ``hydra`` node is dropped *before* resolving: in a sweep it holds interpolations
    (``hydra.job.num``) that only exist once a job runs.
    """
    unresolved = OmegaConf.to_container(cfg, resolve=False)
    unresolved.pop("hydra", None)
    resolved = OmegaConf.to_container(OmegaConf.create(unresolved), resolve=True)
    assert isinstance(resolved, dict)
    return resolved


def to_settings(cfg: DictConfig) -> Settings:
    """Convert the composed Hydra config into validated :class:`Settings` (raises ConfigError)."""
    try:
        merged = OmegaConf.merge(OmegaConf.structured(Settings), resolved_config(cfg))
    except OmegaConfBaseException as exc:  # e.g. train.lr='${oops}': an unresolvable value
        key, reason = omegaconf_key_and_reason(exc)
        raise ConfigError(f"{key}: {reason}" if key else reason) from exc
    settings = OmegaConf.to_object(merged)
    assert isinstance(settings, Settings)
    return settings
