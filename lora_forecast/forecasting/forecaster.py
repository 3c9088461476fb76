"""Forecast time series with a causal LM by continuing their LLMTIME text.

For each system the prompt is ``fmt.prompt(context)`` (the context's LLMTIME tokens and the
step separator that opens the next step); the model then writes ``horizon_steps`` further
steps. ``num_samples > 1`` samples
(LLMTIME-style): each prompt is prefilled ONCE and its KV cache shared by its samples, so the
long prompt is not recomputed per sample. The point forecast is the per-step median over the
samples that parsed and the band their 10%/90% quantiles. Every sample that does not parse is
recorded as such (NaN in ``samples``, False in ``parsed``), never silently dropped.

Batches hold as many systems as free memory allows unless a ``batch_size`` is given
(:mod:`lora_forecast.forecasting.rows`). Each (system, sample) row samples from its own
random stream, seeded by ``(seed, system, sample)``, so a sampled forecast is the same
whatever batch it ran in (up to float rounding of the batched model call).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tqdm.auto import tqdm

from lora_forecast.flops import Architecture
from lora_forecast.forecasting.decoding import (
    DecodeOptions,
    DecodeResult,
    Sampling,
    StopRule,
    decode,
)
from lora_forecast.forecasting.drafts import ValueDrafter, draft_forecasts
from lora_forecast.forecasting.rows import free_memory_bytes, row_memory, systems_per_batch
from lora_forecast.llmtime import LLMTimeFormat
from lora_forecast.llmtime.grammar import LLMTimeGrammar
from lora_forecast.models.compiled import compiled
from lora_forecast.models.logits import LogitsFn, full_head_logits_fn

if TYPE_CHECKING:
    from lora_forecast.config import EvalConfig

QUANTILES = (0.1, 0.9)
PREFILL_TOKENS = 1024  # default prompt tokens per prefill call (``eval.prefill_tokens``)
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ForecastOptions:
    """How forecasts are decoded, built once per command (:meth:`from_eval`) and passed whole.

    Attributes:
        horizon_steps: steps to forecast (H).
        batch_size: rows (system x sample) per forward batch: ``max(1, batch_size //
            num_samples)`` systems, each prefilled once; None: as many systems as free memory
            holds (:func:`batch_systems`; all of them when only a ``logits_fn`` is given).
        constrained: enforce the LLMTIME grammar (always parses); False decodes freely and
            parses the first H ';'-separated steps of the text.
        num_samples: samples per system (N).
        temperature, top_p: sampling settings (ignored when decoding greedily).
        max_int_digits: most integer digits per number under the grammar; also sets the token
            cap of free decoding.
        seed: seeds each row's sampling stream (with its system and sample index).
        greedy: None means greedy iff ``num_samples == 1`` (the reference protocol).
        jump_forward: feed grammar-forced tokens without a model call of their own (same
            tokens, fewer decode calls; see :func:`~lora_forecast.forecasting.decoding.decode`);
            None: :func:`default_jump_forward` of the model's device.
        compile: run the model calls under ``torch.compile`` (eager if it cannot work here).
        prefill_tokens: most prompt tokens (padding included) per prefill call: a batch's
            prompts are prefilled in chunks of that many, at least one prompt (None: at once).
        draft: the baseline (:data:`~lora_forecast.evaluation.baselines.BASELINES`) whose
            forecasts are drafted and verified (:mod:`lora_forecast.forecasting.drafts`);
            ``"none"``: plain decoding; None: :func:`resolved_draft` for the model's device.
            Under the grammar only.
        draft_tokens: most draft tokens per row and decode call.
        draft_min_chance: a row's draft stops before the first token whose estimated chance
            of being kept is below this (see :class:`DecodeOptions`; 0: never).
    """

    horizon_steps: int
    batch_size: int | None = None
    constrained: bool = True
    num_samples: int = 1
    temperature: float = 0.7
    top_p: float = 0.9
    max_int_digits: int = 3
    seed: int = 0
    greedy: bool | None = None
    jump_forward: bool | None = None
    compile: bool = False
    prefill_tokens: int | None = PREFILL_TOKENS
    draft: str | None = None
    draft_tokens: int = 8
    draft_min_chance: float = 0.0

    def __post_init__(self) -> None:
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size: must be >= 1 or None, got {self.batch_size}")
        if self.draft not in (None, "none") and not self.constrained:
            raise ValueError("draft: drafts need constrained decoding (eval.constrained=true)")

    @classmethod
    def from_eval(cls, ev: EvalConfig, **overrides: Any) -> ForecastOptions:
        """The ``eval.*`` settings of the same names (``greedy`` stays None), then
        ``overrides`` (e.g. ``num_samples=1`` for greedy validation forecasts)."""
        names = {f.name for f in fields(cls)} - {"greedy"}
        return replace(cls(**{n: getattr(ev, n) for n in names}), **overrides)


@dataclass(frozen=True)
class DecodeBatch:
    """Compute actually spent on one batch: a prefill over ``[prefill_rows, prompt_width]``
    tokens (one row per system), then ``decode_steps`` cached forward calls (decode calls)
    over all ``rows`` (system x sample, padding included)."""

    rows: int
    prompt_width: int
    decode_steps: int
    prefill_rows: int


@dataclass
class Forecast:
    """Forecasts of S systems, N samples each, H steps, V variables (original scale).

    ``samples`` [S, N, H, V] is NaN where a sample did not parse (``parsed`` [S, N] False);
    ``point`` [S, H, V] is the per-step median over parsed samples (NaN where none parsed);
    ``lower``/``upper`` their 10%/90% quantiles (equal to ``point`` when N == 1).
    ``prompt_tokens`` [S] and ``generated_tokens`` [S, N] count real (unpadded) tokens, the
    EOS of free decoding included: each system's prompt is prefilled once (yielding every
    sample's first token), then each sample decodes the rest; ``batches`` the padded compute
    per batch. ``forwarded_tokens`` [S, N] counts the tokens each sample's decode calls fed
    (rejected draft tokens included), ``drafted_tokens``/``accepted_tokens`` [S, N] the draft
    tokens verified and kept.
    """

    point: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    samples: np.ndarray
    parsed: np.ndarray
    texts: list[list[str]]
    prompt_tokens: np.ndarray
    generated_tokens: np.ndarray
    batches: list[DecodeBatch]
    forwarded_tokens: np.ndarray
    drafted_tokens: np.ndarray
    accepted_tokens: np.ndarray
    draft_events: list[list[tuple[int, int]]]  # per (system, sample), in order

    @property
    def computed_tokens(self) -> np.ndarray:
        """``[S, N]`` positions whose next-token logits each sample computed: the last prompt
        position (its first token) plus every token its decode calls fed, rejected drafts
        included; 0 for a sample that generated nothing. What the meter charges
        (``count("inference", prompt, new_tokens=computed)``)."""
        return np.where(self.generated_tokens > 0, self.forwarded_tokens + 1, 0)

    @property
    def acceptance_rate(self) -> float:
        """Draft tokens the model kept, over those it verified (NaN without drafts)."""
        drafted = int(self.drafted_tokens.sum())
        return float(self.accepted_tokens.sum()) / drafted if drafted else float("nan")

    @property
    def decode_calls(self) -> int:
        """Cached model calls after the prefills, over all batches."""
        return sum(b.decode_steps for b in self.batches)

    @property
    def parse_failures(self) -> int:
        """Systems (forecasts) without a single parsable sample."""
        return int((~self.parsed.any(axis=1)).sum())

    @property
    def sample_parse_failures(self) -> int:
        """Samples that did not parse, over all systems."""
        return int((~self.parsed).sum())


def max_new_tokens(grammar: LLMTimeGrammar, constrained: bool) -> int:
    """Most tokens one forecast sample may generate: the grammar's longest sequence, plus one
    (the EOS that ends free text) when decoding is unconstrained. The FLOPs prediction bounds
    forecasts with this same cap (``lora_forecast.planning.run_shape``)."""
    return grammar.max_length if constrained else grammar.max_length + 1


def computed_tokens_bound(max_new: int, draft_tokens: int | None) -> int:
    """Most positions one sample computes logits for (:attr:`Forecast.computed_tokens`),
    given its cap on generated tokens: ``max_new`` in plain decoding; with drafts of at most
    ``draft_tokens`` tokens, every decode call that feeds the row (at most one per generated
    token) may also carry that many rejected draft tokens, so ``max_new * (1 + draft_tokens)
    + 1``. The FLOPs prediction reserves this bound; the meter charges what was computed."""
    return max_new if draft_tokens is None else max_new * (1 + draft_tokens) + 1


def forecast(model: torch.nn.Module | None, fmt: LLMTimeFormat,
             contexts: np.ndarray | Sequence[np.ndarray], options: ForecastOptions, *,
             logits_fn: LogitsFn | None = None, progress: bool = True) -> Forecast:
    """Forecast ``options.horizon_steps`` steps after each context.

    Args:
        model: the causal LM (put in eval mode for the call, then restored); may be None when
            ``logits_fn`` is given (inputs then stay on the CPU).
        fmt: the LLMTIME format (codec and the model's tokenizer) the model was trained with.
        contexts: ``[S, Tc, V]`` array, or S arrays ``[Tc_s, V]`` of different lengths.
        options: how to decode (:class:`ForecastOptions`).
        logits_fn: the model call; default :func:`full_head_logits_fn` of ``model``.
        progress: show a tqdm bar over batches.

    Returns:
        A :class:`Forecast`.
    """
    if model is None and logits_fn is None:
        raise ValueError("forecast needs a model or a logits_fn")
    o = options
    horizon_steps, num_samples = o.horizon_steps, o.num_samples
    series = _as_series(contexts)
    n_sys, n_vars = len(series), series[0].shape[1]
    sampling = _sampling(num_samples, o.greedy, o.temperature, o.top_p)
    eos, pad = fmt.tokens.eos_id, fmt.tokens.pad_id
    grammar = fmt.grammar(n_vars, horizon_steps, o.max_int_digits)
    prompts = [fmt.prompt(c) for c in series]
    device = next(model.parameters()).device if model is not None else torch.device("cpu")
    logits_fn = logits_fn or full_head_logits_fn(model)
    if o.compile:
        logits_fn = compiled(logits_fn, "eval.compile", device.type)
    jump_forward = default_jump_forward(device) if o.jump_forward is None else o.jump_forward
    cap = max_new_tokens(grammar, o.constrained)
    stop = (StopRule(cap, grammar=grammar) if o.constrained else
            StopRule(cap, semicolons=_separator_counts(fmt), horizon_steps=horizon_steps,
                     eos_ids=(eos, pad)))
    tokens: dict[tuple[int, int], list[int]] = {}
    counts: dict[tuple[int, int], tuple[int, int, int]] = {}  # forwarded, drafted, accepted
    events: dict[tuple[int, int], list[tuple[int, int]]] = {}
    batches: list[DecodeBatch] = []
    width = max(map(len, prompts))
    prefill_chunk = prompts_per_prefill(o.prefill_tokens, width, n_sys)
    options = DecodeOptions(stop, pad, sampling, device, jump_forward, prefill_chunk,
                            o.draft_tokens, o.draft_min_chance)
    signed = grammar.minus is not None
    draft = resolved_draft(o.draft, o.constrained, device.type == "cuda")
    drafts = None if draft == "none" else draft_forecasts(draft, series, horizon_steps, signed)
    per_batch = (batch_systems(model, width, cap, num_samples, n_sys, prefill_chunk)
                 if o.batch_size is None else max(1, o.batch_size // num_samples))
    system_batches = [range(i, min(i + per_batch, n_sys)) for i in range(0, n_sys, per_batch)]
    with _eval_mode(model):
        for systems in tqdm(system_batches, desc="forecast", unit="batch", disable=not progress):
            jobs = [(s, n) for s in systems for n in range(num_samples)]  # system-major rows
            streams = None if sampling.greedy else [row_stream(o.seed, s, n, device)
                                                    for s, n in jobs]
            drafter = None if drafts is None else ValueDrafter(
                fmt, [drafts[s] for s, _ in jobs], signed)
            result: DecodeResult = decode(logits_fn, [prompts[s] for s in systems], options,
                                          repeats=num_samples, generator=streams,
                                          drafter=drafter)
            tokens.update(zip(jobs, result.tokens, strict=True))
            counts.update(zip(jobs, zip(result.forwarded_tokens, result.drafted_tokens,
                                        result.accepted_tokens, strict=True), strict=True))
            events.update(zip(jobs, result.draft_events, strict=True))
            batches.append(DecodeBatch(len(jobs), result.prompt_width, result.decode_steps,
                                       result.prefill_rows))

    texts = [[_text(tokens[s, n], o.constrained, fmt) for n in range(num_samples)]
             for s in range(n_sys)]
    samples, parsed = _parse_all(texts, fmt, horizon_steps, n_vars)
    point, lower, upper = summarise(samples, parsed)
    return Forecast(point=point, lower=lower, upper=upper, samples=samples, parsed=parsed,
                    texts=texts, prompt_tokens=np.array([len(p) for p in prompts]),
                    generated_tokens=np.array([[len(tokens[s, n]) for n in range(num_samples)]
                                               for s in range(n_sys)]),
                    batches=batches, forwarded_tokens=_per_sample(counts, 0, n_sys, num_samples),
                    drafted_tokens=_per_sample(counts, 1, n_sys, num_samples),
                    accepted_tokens=_per_sample(counts, 2, n_sys, num_samples),
                    draft_events=[events[s, n] for s in range(n_sys) for n in range(num_samples)])


def _per_sample(counts: dict[tuple[int, int], tuple[int, ...]], field_index: int, n_sys: int,
                num_samples: int) -> np.ndarray:
    """``[S, N]`` of one field of the per-(system, sample) decode counts."""
    return np.array([[counts[s, n][field_index] for n in range(num_samples)]
                     for s in range(n_sys)])


def prompts_per_prefill(prefill_tokens: int | None, width: int, prompts: int) -> int:
    """Prompts of ``width`` (padded) tokens per prefill call under ``eval.prefill_tokens``:
    as many as it holds, at least one; None: all ``prompts`` at once."""
    return prompts if prefill_tokens is None else max(1, prefill_tokens // width)


DEFAULT_DRAFT = "persistence"  # the draft ``eval.draft=null`` picks where drafts pay


def resolved_draft(draft: str | None, constrained: bool, cuda: bool) -> str:
    """``eval.draft``, with None resolved where it pays: :data:`DEFAULT_DRAFT` on CUDA, where a
    decode call is latency-bound and verifying a few tokens per row costs about what one does;
    ``"none"`` on a CPU, where a call's matmuls cost per column (README, Performance: drafts
    pay there for a few rows of a big model, not for a batch of many) and without the grammar.
    """
    if draft is not None:
        return draft
    return DEFAULT_DRAFT if cuda and constrained else "none"


def default_jump_forward(device: torch.device) -> bool:
    """Jump-forward where it saves time: on CUDA, where a decode call of a 0.5B model is bound
    by latency and k tokens per row cost about what one does. On a CPU a call's matmuls cost in
    proportion to its columns, and a batch pads every row to its longest chunk: measured
    (README, Performance) 0.99x in time at 10 rows and 0.72x at 100 for 0.72x the calls."""
    return device.type == "cuda"


def batch_systems(model: torch.nn.Module | None, prompt_width: int, max_new: int,
                  num_samples: int, n_systems: int, prefill_chunk: int) -> int:
    """Systems per batch when ``batch_size`` is None: as many as free memory holds (at most
    ``n_systems``) with ``prefill_chunk`` prompts prefilled at a time, from ``model``'s
    architecture, weight precision and device; all of them without a model (an injected
    ``logits_fn`` has no size to go by)."""
    if model is None:
        return n_systems
    param = next(model.parameters())
    memory = row_memory(Architecture.from_hf_config(model.config), prompt_width, max_new,
                        param.element_size())
    free = free_memory_bytes(param.device)
    fits = systems_per_batch(memory, num_samples, free, min(prefill_chunk, n_systems))
    log.info("forecast: %d systems x %d sample(s), %d per batch (memory for %d: %.1f GiB free, "
             "%.1f MiB per system, prefilled %d at a time)", n_systems, num_samples,
             min(fits, n_systems), fits, free / 2**30,
             (num_samples * memory.kv_cache_per_row + memory.logits_per_prompt) / 2**20,
             prefill_chunk)
    return min(fits, n_systems)


def row_stream(seed: int, system: int, sample: int, device: torch.device) -> torch.Generator:
    """The random stream of one (system, sample) row: the same in any batch."""
    state = np.random.SeedSequence([seed, system, sample]).generate_state(1, dtype=np.uint64)
    return torch.Generator(device=device).manual_seed(int(state[0]))


def summarise(samples: np.ndarray, parsed: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per-step median and 10%/90% quantiles over the parsed samples: 3 x ``[S, H, V]``."""
    shape = (samples.shape[0], *samples.shape[2:])
    point, lower, upper = (np.full(shape, np.nan) for _ in range(3))
    for s in range(samples.shape[0]):
        ok = samples[s, parsed[s]]  # [n_ok, H, V]
        if len(ok):
            point[s] = np.median(ok, axis=0)
            lower[s], upper[s] = np.quantile(ok, QUANTILES, axis=0)
    return point, lower, upper


def _separator_counts(fmt: LLMTimeFormat) -> torch.Tensor:
    """``[len(vocab)]`` step separators per token, for stopping free decoding."""
    if fmt.tokenizer is None:
        raise ValueError("unconstrained decoding needs the format's tokenizer")
    return torch.from_numpy(fmt.step_separator_counts())


def _as_series(contexts: np.ndarray | Sequence[np.ndarray]) -> list[np.ndarray]:
    series = [np.asarray(c, dtype=float) for c in contexts]
    if not series:
        raise ValueError("contexts: need at least one system")
    n_vars = {c.shape[1] if c.ndim == 2 else -1 for c in series}
    if len(n_vars) != 1 or -1 in n_vars or any(len(c) == 0 for c in series):
        raise ValueError("contexts: every system must be a non-empty [Tc, V] array with one V")
    return series


def _sampling(num_samples: int, greedy: bool | None, temperature: float, top_p: float) -> Sampling:
    if num_samples < 1:
        raise ValueError(f"num_samples: must be >= 1, got {num_samples}")
    greedy = num_samples == 1 if greedy is None else greedy
    if greedy and num_samples > 1:
        raise ValueError("greedy decoding gives identical samples: use num_samples=1")
    return Sampling(greedy=greedy, temperature=temperature, top_p=top_p)


def _text(tokens: list[int], constrained: bool, fmt: LLMTimeFormat) -> str:
    """The generated text up to the first EOS/pad. Free decoding keeps other special tokens
    as text, and ids beyond the tokenizer (spare embedding rows) as U+FFFD, so that junk
    makes the sample fail to parse instead of silently vanishing."""
    end_ids = (fmt.tokens.eos_id, fmt.tokens.pad_id)
    cut = next((i for i, t in enumerate(tokens) if t in end_ids), len(tokens))
    tokens = tokens[:cut]
    if constrained:
        return fmt.decode_ids(tokens)
    tokenizer = fmt.tokenizer
    text, run = [], []
    for token in [*tokens, None]:
        if token is not None and token < len(tokenizer):
            run.append(token)
            continue
        text.append(tokenizer.decode(run, skip_special_tokens=False) if run else "")
        text.append("" if token is None else "\ufffd")
        run = []
    return "".join(text)


def _parse_all(texts: list[list[str]], fmt: LLMTimeFormat, horizon_steps: int,
               n_vars: int) -> tuple[np.ndarray, np.ndarray]:
    n_sys, n_samples = len(texts), len(texts[0])
    samples = np.full((n_sys, n_samples, horizon_steps, n_vars), np.nan)
    parsed = np.zeros((n_sys, n_samples), dtype=bool)
    for s in range(n_sys):
        for n in range(n_samples):
            try:
                samples[s, n] = fmt.parse(texts[s][n], horizon_steps, n_vars)
                parsed[s, n] = True
            except ValueError:
                pass  # recorded: parsed[s, n] stays False, samples stay NaN
    return samples, parsed


@contextmanager
def _eval_mode(model: torch.nn.Module | None) -> Iterator[None]:
    was_training = model is not None and model.training
    if model is not None:
        model.eval()
    try:
        yield
    finally:
        if model is not None:
            model.train(was_training)
