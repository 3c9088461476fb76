"""A batched, KV-cached decode loop whose model call is injected (and therefore easy to meter).

The loop left-pads the prompts, prefills them (logits of the last position only; in chunks of
``prefill_chunk`` prompts whose caches are then joined, so a batch of many rows needs no huge
prefill: moderate GEMMs run faster and hold less memory), then feeds each row's new tokens per
call with the cache: the sampled token plus, under the grammar, the tokens it forces next
(jump-forward, see :func:`decode`). With
``repeats > 1`` (LLMTIME-style sampling) each distinct prompt is prefilled once and its
logits, mask, positions and KV cache are copied to its ``repeats`` rows, so a long prompt is
not recomputed per sample. It stops exactly when every row is finished: constrained, when each
row's :class:`LLMTimeGrammar` is complete (no token is produced after the horizon);
unconstrained, when each row has written ``horizon_steps`` ';' characters (the ';' that would
open step ``horizon_steps + 1``), emitted EOS, or hit ``max_new_tokens``.

The only effectful dependency is a :data:`~lora_forecast.models.logits.LogitsFn`;
:func:`~lora_forecast.models.logits.full_head_logits_fn` wraps a causal LM. Any function with
the same signature works (a numeric head, or a no-cache reference that carries its own history
in the opaque cache slot).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from lora_forecast.llmtime.grammar import LLMTimeGrammar
from lora_forecast.models.logits import LogitsFn


@dataclass(frozen=True)
class Sampling:
    """Greedy (argmax) or ancestral sampling with temperature and nucleus (top-p) filtering."""

    greedy: bool = True
    temperature: float = 1.0
    top_p: float = 1.0

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise ValueError(f"temperature: must be > 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p: must be in (0, 1], got {self.top_p}")


@dataclass
class DecodeResult:
    """Generated ids per row (EOS kept if produced, nothing after a row finished) and counts.

    Rows are ``prompts x repeats``, each prompt's samples adjacent. ``prompt_tokens``/
    ``generated_tokens`` are per row (unpadded); ``prefill_rows``, ``prompt_width`` and
    ``decode_steps`` describe the compute actually done: one prefill over
    ``[prefill_rows, prompt_width]`` (the distinct prompts) plus ``decode_steps`` cached
    forward calls over all ``B`` rows (decode calls; each feeds a row's sampled token and the
    tokens the grammar forced after it).
    """

    tokens: list[list[int]]
    prompt_tokens: list[int]
    generated_tokens: list[int]
    prompt_width: int
    decode_steps: int
    prefill_rows: int


def left_pad(prompts: Sequence[Sequence[int]], pad_id: int,
             device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Stack prompts right-aligned: returns (input_ids [B, W], attention_mask [B, W])."""
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("every prompt needs at least one token")
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt):] = torch.as_tensor(list(prompt), dtype=torch.long)
        mask[row, width - len(prompt):] = 1
    return ids.to(device), mask.to(device)


def next_tokens(logits: torch.Tensor, sampling: Sampling,
                generator: torch.Generator | Sequence[torch.Generator] | None) -> torch.Tensor:
    """Pick one token per row from ``logits`` [B, V] (masked entries are -inf) -> [B].

    Rows whose logits are all -inf get an arbitrary token (callers pad finished rows).
    Sampling works on the ``k`` finite logits only (``topk`` returns them sorted, which the
    nucleus needs): under the grammar k <= 12, so sorting and ``multinomial`` stay cheap.
    ``generator`` is one random stream for the batch, or one per row: then each row is sampled
    on its own (its own ``k``), so its draws do not depend on which rows share its batch.
    """
    logits = logits.float()
    if sampling.greedy:
        return logits.argmax(dim=-1)
    if isinstance(generator, Sequence):
        if len(generator) != len(logits):
            raise ValueError(f"generator: {len(generator)} streams for {len(logits)} rows")
        return torch.cat([next_tokens(logits[r : r + 1], sampling, stream)
                          for r, stream in enumerate(generator)])
    k = max(1, int(torch.isfinite(logits).sum(dim=-1).max()))
    top, index = logits.topk(k, dim=-1)  # [B, k], descending
    # A row with no finite logit (a finished row under a head without EOS) would give NaN
    # probabilities; its token is replaced by padding anyway, so give it any valid one.
    top[:, 0] = torch.where(torch.isfinite(top[:, 0]), top[:, 0], 0.0)
    probs = torch.softmax(top / sampling.temperature, dim=-1)
    if sampling.top_p < 1.0:
        # keep a token if the mass before it is < top_p (always keeps the most likely one)
        probs = probs.masked_fill(probs.cumsum(dim=-1) - probs >= sampling.top_p, 0.0)
    choice = torch.multinomial(probs, 1, generator=generator)  # [B, 1]
    return index.gather(-1, choice).squeeze(-1)


class _FreeStop:
    """Unconstrained stopping: ``horizon_steps`` ';' characters seen, or an EOS token."""

    def __init__(self, semicolons: torch.Tensor, horizon_steps: int, eos_ids: Sequence[int],
                 batch: int) -> None:
        self.semicolons = semicolons  # [V] count of ';' characters in each token's text
        self.horizon_steps = horizon_steps
        self.eos = torch.as_tensor(list(eos_ids), dtype=torch.long)
        self.seen = torch.zeros(batch, dtype=torch.long)

    def update(self, tokens: torch.Tensor) -> torch.Tensor:
        tokens = tokens.cpu()
        in_vocab = tokens < self.semicolons.shape[0]
        counts = self.semicolons[tokens.clamp(max=self.semicolons.shape[0] - 1)] * in_vocab
        self.seen += counts
        return (self.seen >= self.horizon_steps) | torch.isin(tokens, self.eos)


def repeat_rows(cache: Any, repeats: int) -> Any:
    """``cache`` with each batch row repeated ``repeats`` times in place (repeat_interleave).

    A transformers ``Cache`` (``DynamicCache`` in transformers 5) has
    ``batch_repeat_interleave``, which repeats every layer's keys/values along dim 0. Other
    opaque caches of injected :data:`LogitsFn` s may be tensors (batch first) or tuples/lists of
    them; ``None`` and plain numbers (a step counter) carry no batch dimension.
    """
    if hasattr(cache, "batch_repeat_interleave"):
        cache.batch_repeat_interleave(repeats)
        return cache
    if isinstance(cache, torch.Tensor):
        return cache.repeat_interleave(repeats, dim=0)
    if isinstance(cache, (tuple, list)):
        return type(cache)(repeat_rows(item, repeats) for item in cache)
    if cache is None or isinstance(cache, (int, float)):
        return cache
    raise TypeError(f"cannot repeat the rows of a {type(cache).__name__} cache")


def concat_rows(caches: Sequence[Any]) -> Any:
    """The caches of consecutive row chunks (equal widths) joined into one, batch first.

    A transformers ``Cache`` keeps the first chunk's object (and with it each layer's type,
    e.g. sliding-window layers) and concatenates every layer's keys and values along dim 0,
    as its own ``batch_repeat_interleave`` rewrites them. Other opaque caches may be tensors
    (batch first), tuples/lists of them, ``None`` or plain numbers (see :func:`repeat_rows`).
    """
    first = caches[0]
    if len(caches) == 1:
        return first
    if hasattr(first, "layers"):
        for i, layer in enumerate(first.layers):
            layer.keys = torch.cat([c.layers[i].keys for c in caches], dim=0)
            layer.values = torch.cat([c.layers[i].values for c in caches], dim=0)
        return first
    if isinstance(first, torch.Tensor):
        return torch.cat(list(caches), dim=0)
    if isinstance(first, (tuple, list)):
        return type(first)(concat_rows(items) for items in zip(*caches, strict=True))
    if first is None or isinstance(first, (int, float)):
        return first
    raise TypeError(f"cannot join the rows of {type(first).__name__} caches")


def _prefill(logits_fn: LogitsFn, prompts: Sequence[Sequence[int]], pad_id: int, repeats: int,
             device: torch.device | str,
             prefill_chunk: int | None) -> tuple[torch.Tensor, Any, torch.Tensor, torch.Tensor]:
    """Prefill the distinct prompts once, then expand to ``prompts x repeats`` rows.

    All prompts are left-padded to one width, so chunks of ``prefill_chunk`` of them (None: all
    at once) give caches that join row-wise. Returns the last-position logits [B, V], the
    cache, the attention mask [B, W] and each row's last position [B]. Every sample of a
    prompt then draws its own first token from the same (shared) prefill logits.
    """
    input_ids, mask = left_pad(prompts, pad_id, device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)  # [P, W]
    step = prefill_chunk or len(prompts)
    chunks = [logits_fn(input_ids[i : i + step], mask[i : i + step], positions[i : i + step],
                        None) for i in range(0, len(prompts), step)]
    logits = torch.cat([chunk_logits for chunk_logits, _ in chunks])  # [P, V]
    cache = concat_rows([chunk_cache for _, chunk_cache in chunks])
    last_pos = positions[:, -1]
    if repeats > 1:
        logits, mask, last_pos = (t.repeat_interleave(repeats, dim=0)
                                  for t in (logits, mask, last_pos))
        cache = repeat_rows(cache, repeats)
    return logits, cache, mask, last_pos


class _GrammarRows:
    """Each row's grammar state; masks logits to the allowed tokens and finds forced tokens.

    Hand-written instead of :class:`LLMTimeLogitsProcessor` because rows advance by different
    numbers of tokens per call under jump-forward, which a ``[B, T]`` processor input cannot hold.
    """

    def __init__(self, grammar: LLMTimeGrammar, batch: int) -> None:
        self.grammar = grammar
        self.states = [grammar.start] * batch
        self._index: dict[Any, torch.Tensor] = {}

    def mask(self, logits: torch.Tensor) -> torch.Tensor:
        out = torch.full_like(logits, float("-inf"))  # [B, V]
        for row, state in enumerate(self.states):
            index = self._index.get(state)
            if index is None:
                index = torch.tensor(self.grammar.allowed(state), device=logits.device)
                self._index[state] = index
            out[row, index] = logits[row, index]
        return out

    def push(self, row: int, token: int, jump_forward: bool) -> list[int]:
        """Advance ``row`` by ``token`` and then by every token the grammar forces after it."""
        g, state = self.grammar, self.grammar.advance(self.states[row], token)
        tokens = [token]
        while jump_forward and not g.is_done(state) and len(g.allowed(state)) == 1:
            tokens.append(g.allowed(state)[0])
            state = g.advance(state, tokens[-1])
        self.states[row] = state
        return tokens

    def done(self, row: int) -> bool:
        return self.grammar.is_done(self.states[row])


def _step_inputs(chunks: list[list[int]], pad_id: int, last_pos: torch.Tensor,
                 device: torch.device | str) -> tuple[torch.Tensor, ...]:
    """One decode call's (input_ids, new mask columns, position_ids), each [B, k].

    Rows feed different numbers of tokens (a finished row none): they are left-padded to the
    widest with masked pad tokens, so every row's last column is its newest real token.
    """
    ids, new_mask = left_pad([c or [pad_id] for c in chunks], pad_id)
    new_mask[[r for r, c in enumerate(chunks) if not c]] = 0
    real = new_mask.to(device)
    positions = last_pos[:, None] + real.cumsum(-1)  # masked columns repeat a position: unused
    return ids.to(device), real, positions


@dataclass(frozen=True)
class StopRule:
    """When a row is done: its grammar is complete (constrained), or, free, after
    ``horizon_steps`` ';' characters or an ``eos_ids`` token; never past ``max_new_tokens``.

    Attributes:
        max_new_tokens: hard cap on generated tokens per row.
        grammar: constrain every row to the LLMTIME grammar; rows finish when it is complete.
        semicolons: unconstrained only: ``[V]`` count of ';' characters per token id.
        horizon_steps: unconstrained only: a row finishes after this many ';' characters.
        eos_ids: unconstrained only: tokens that finish a row.
    """

    max_new_tokens: int
    grammar: LLMTimeGrammar | None = None
    semicolons: torch.Tensor | None = None
    horizon_steps: int | None = None
    eos_ids: Sequence[int] = ()

    def __post_init__(self) -> None:
        if self.grammar is None and (self.semicolons is None or self.horizon_steps is None):
            raise ValueError("unconstrained decoding needs semicolons and horizon_steps")


@dataclass(frozen=True)
class DecodeOptions:
    """Everything about a decode but its prompts and random streams.

    Attributes:
        stop: when rows finish (:class:`StopRule`).
        pad_id: id used for left padding and for rows that already finished.
        sampling: greedy or temperature/top-p sampling.
        device: where the input tensors go (the model's device).
        jump_forward: feed grammar-forced tokens without a model call of their own.
        prefill_chunk: prefill at most this many prompts per model call (None: all at once).
    """

    stop: StopRule
    pad_id: int
    sampling: Sampling = Sampling()
    device: torch.device | str = "cpu"
    jump_forward: bool = True
    prefill_chunk: int | None = None

    def __post_init__(self) -> None:
        grammar = self.stop.grammar
        if grammar is not None and self.pad_id not in grammar.end_ids:
            raise ValueError(f"pad_id {self.pad_id} must be one of the grammar's end_ids")


@torch.no_grad()
def decode(logits_fn: LogitsFn, prompts: Sequence[Sequence[int]], options: DecodeOptions, *,
           generator: torch.Generator | Sequence[torch.Generator] | None = None,
           repeats: int = 1) -> DecodeResult:
    """Generate ``repeats`` continuations of each prompt: one prefill, a KV-cached token loop.

    Jump-forward: a token the grammar forces (the only allowed one: a separator after the last
    decimal, the '.' after ``max_int_digits`` digits) needs no logits of its own, so it is not
    given a model call: it enters the cache in the next call, together with the token sampled
    before it. The same tokens pass through the model (same FLOPs), in fewer calls; greedy
    tokens are the same, and so is the sampling distribution (a forced token has probability 1).

    Args:
        logits_fn: the model call (see :data:`LogitsFn`).
        prompts: token ids per row (unpadded; rows may differ in length).
        options: the stop rule, padding, sampling, device, jump-forward and prefill chunk
            (:class:`DecodeOptions`).
        generator: random source for sampling (seed it for determinism), or one per row
            (``len(prompts) * repeats``, in row order).
        repeats: rows per prompt (samples), adjacent in the output; the prompt is prefilled
            once and its KV cache shared (copied) by its rows.

    Returns:
        A :class:`DecodeResult` over ``len(prompts) * repeats`` rows.
    """
    stop, pad_id, device, jump_forward = (options.stop, options.pad_id, options.device,
                                          options.jump_forward)
    grammar, max_new_tokens = stop.grammar, stop.max_new_tokens
    if repeats < 1:
        raise ValueError(f"repeats: must be >= 1, got {repeats}")
    logits, cache, mask, last_pos = _prefill(logits_fn, prompts, pad_id, repeats, device,
                                             options.prefill_chunk)
    batch, width = mask.shape
    rules = _GrammarRows(grammar, batch) if grammar else None
    free = None if grammar else _FreeStop(stop.semicolons, stop.horizon_steps, stop.eos_ids,
                                          batch)
    rows: list[list[int]] = [[] for _ in range(batch)]
    finished = [False] * batch
    calls = 0
    while True:
        token = next_tokens(rules.mask(logits) if rules else logits, options.sampling,
                            generator).tolist()
        chunks = [[] if finished[r] else
                  (rules.push(r, token[r], jump_forward) if rules else [token[r]])
                  for r in range(batch)]
        stopped = free.update(torch.as_tensor([c[0] if c else pad_id for c in chunks])) \
            if free else None
        for r, chunk in enumerate(chunks):
            chunks[r] = chunk[: max_new_tokens - len(rows[r])]
            rows[r] += chunks[r]
            finished[r] = finished[r] or len(rows[r]) >= max_new_tokens or bool(
                rules.done(r) if rules else stopped[r])
        if all(finished):
            break
        ids, new_mask, positions = _step_inputs(chunks, pad_id, last_pos, device)
        mask = torch.cat([mask, new_mask], dim=1)
        last_pos = positions[:, -1]
        logits, cache = logits_fn(ids, mask, positions, cache)
        calls += 1
    return DecodeResult(tokens=rows, prompt_tokens=[len(p) for p in prompts for _ in
                                                    range(repeats)],
                        generated_tokens=[len(r) for r in rows], prompt_width=width,
                        decode_steps=calls, prefill_rows=len(prompts))
