"""A batched, KV-cached decode loop whose model call is injected (and therefore easy to meter).

The loop left-pads the prompts, prefills them (logits of the last position only; in chunks of
``prefill_chunk`` prompts whose caches are then joined, so a batch of many rows needs no huge
prefill: moderate GEMMs run faster and hold less memory), then feeds each row's new tokens per
call with the cache: the sampled token plus, under the grammar, the tokens it forces next
(jump-forward) and a draft to verify (draft-and-verify, see :func:`decode`). With
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
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from lora_forecast.forecasting.caches import concat_rows, crop_columns, repeat_rows, select_rows
from lora_forecast.llmtime.grammar import GrammarState, LLMTimeGrammar
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
    forward calls (decode calls; each feeds a row's sampled token, the tokens the grammar
    forced after it and its draft). ``forwarded_tokens`` counts, per row, the real tokens those
    calls fed (rejected draft tokens included: they were computed); ``drafted_tokens`` and
    ``accepted_tokens`` the draft tokens verified and kept; ``draft_events`` each row's
    ``(drafted, kept)`` per verify call, in order (what a benchmark replays on another model).
    """

    tokens: list[list[int]]
    prompt_tokens: list[int]
    generated_tokens: list[int]
    prompt_width: int
    decode_steps: int
    prefill_rows: int
    forwarded_tokens: list[int] = field(default_factory=list)
    drafted_tokens: list[int] = field(default_factory=list)
    accepted_tokens: list[int] = field(default_factory=list)
    draft_events: list[list[tuple[int, int]]] = field(default_factory=list)


class Drafter(Protocol):
    """Guesses of the tokens each row writes next, for the model to verify in one call."""

    def propose(self, row: int, generated: Sequence[int], limit: int) -> Sequence[int]:
        """Up to ``limit`` tokens that may follow ``generated`` (row ``row``'s tokens so far).
        Any of them may be wrong: :func:`decode` keeps only what the model agrees with."""
        ...


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


def sampling_probs(logits: torch.Tensor,
                   sampling: Sampling) -> tuple[torch.Tensor, torch.Tensor]:
    """What sampling draws from: ``(token ids [B, k], weights [B, k])`` over the ``k`` finite
    logits (``topk`` returns them sorted, which the nucleus needs; under the grammar k <= 12),
    after temperature and top-p; the weights are not normalised (``multinomial`` does that)."""
    k = max(1, int(torch.isfinite(logits).sum(dim=-1).max()))
    top, index = logits.topk(k, dim=-1)  # [B, k], descending
    # A row with no finite logit (a finished row under a head without EOS) would give NaN
    # probabilities; its token is replaced by padding anyway, so give it any valid one.
    top[:, 0] = torch.where(torch.isfinite(top[:, 0]), top[:, 0], 0.0)
    probs = torch.softmax(top / sampling.temperature, dim=-1)
    if sampling.top_p < 1.0:
        # keep a token if the mass before it is < top_p (always keeps the most likely one)
        probs = probs.masked_fill(probs.cumsum(dim=-1) - probs >= sampling.top_p, 0.0)
    return index, probs


def next_tokens(logits: torch.Tensor, sampling: Sampling,
                generator: torch.Generator | Sequence[torch.Generator] | None,
                exclude: Sequence[int] | None = None) -> torch.Tensor:
    """Pick one token per row from ``logits`` [B, V] (masked entries are -inf) -> [B].

    Rows whose logits are all -inf get an arbitrary token (callers pad finished rows).
    ``generator`` is one random stream for the batch, or one per row: then each row is sampled
    on its own (its own ``k``), so its draws do not depend on which rows share its batch.
    ``exclude`` (sampling only; -1 = none) removes one token per row AFTER temperature and
    top-p: the residual distribution of a rejected draft token (see :func:`decode`).
    """
    logits = logits.float()
    if sampling.greedy:
        return logits.argmax(dim=-1)
    if isinstance(generator, Sequence):
        if len(generator) != len(logits):
            raise ValueError(f"generator: {len(generator)} streams for {len(logits)} rows")
        return torch.cat([next_tokens(logits[r : r + 1], sampling, stream,
                                      None if exclude is None else exclude[r : r + 1])
                          for r, stream in enumerate(generator)])
    index, probs = sampling_probs(logits, sampling)
    if exclude is not None:
        banned = torch.as_tensor(list(exclude), device=index.device)[:, None]
        probs = probs.masked_fill(index == banned, 0.0)
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

    def update(self, rows: Sequence[int], tokens: Sequence[int]) -> list[bool]:
        """Count ``tokens`` (one per row of ``rows``); which of those rows are done."""
        index = torch.as_tensor(list(rows), dtype=torch.long)
        tokens = torch.as_tensor(list(tokens), dtype=torch.long)
        in_vocab = tokens < self.semicolons.shape[0]
        counts = self.semicolons[tokens.clamp(max=self.semicolons.shape[0] - 1)] * in_vocab
        self.seen[index] += counts
        return ((self.seen[index] >= self.horizon_steps) | torch.isin(tokens, self.eos)).tolist()


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
    numbers of tokens per call (jump-forward, drafts), which a ``[B, T]`` processor input
    cannot hold.
    """

    def __init__(self, grammar: LLMTimeGrammar, batch: int) -> None:
        self.grammar = grammar
        self.states = [grammar.start] * batch
        self._index: dict[Any, torch.Tensor] = {}

    def allowed_index(self, state: GrammarState, device: torch.device) -> torch.Tensor:
        index = self._index.get(state)
        if index is None:
            index = self._index[state] = torch.tensor(self.grammar.allowed(state), device=device)
        return index

    def mask(self, logits: torch.Tensor, rows: Sequence[int]) -> torch.Tensor:
        """``logits`` [B, V] of ``rows`` (one per line) with disallowed tokens at -inf."""
        out = torch.full_like(logits, float("-inf"))  # [B, V]
        for slot, row in enumerate(rows):
            index = self.allowed_index(self.states[row], logits.device)
            out[slot, index] = logits[slot, index]
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
    """Everything about a decode but its prompts, random streams and drafts.

    Attributes:
        stop: when rows finish (:class:`StopRule`).
        pad_id: id used for left padding and for rows that already finished.
        sampling: greedy or temperature/top-p sampling.
        device: where the input tensors go (the model's device).
        jump_forward: feed grammar-forced tokens without a model call of their own.
        prefill_chunk: prefill at most this many prompts per model call (None: all at once).
        max_draft_tokens: most draft tokens verified per row and call (with a ``drafter``).
        draft_min_chance: a draft stops before the first token whose estimated chance of
            being kept (with every draft token before it) is below this (0: never).
    """

    stop: StopRule
    pad_id: int
    sampling: Sampling = Sampling()
    device: torch.device | str = "cpu"
    jump_forward: bool = True
    prefill_chunk: int | None = None
    max_draft_tokens: int = 8
    draft_min_chance: float = 0.0

    def __post_init__(self) -> None:
        grammar = self.stop.grammar
        if grammar is not None and self.pad_id not in grammar.end_ids:
            raise ValueError(f"pad_id {self.pad_id} must be one of the grammar's end_ids")
        if self.max_draft_tokens < 1:
            raise ValueError(f"max_draft_tokens: must be >= 1, got {self.max_draft_tokens}")
        if not 0.0 <= self.draft_min_chance < 1.0:
            raise ValueError(f"draft_min_chance: must be in [0, 1), got {self.draft_min_chance}")


class _Acceptance:
    """How often verified draft tokens were kept, by their place in a number (the grammar
    state without its time step: variable, integer or fraction part, digits written): each
    row's own rate there, shrunk toward the batch's (a Beta(1, 1) prior on the batch's rate,
    weighed as :data:`SHRINK` observations against the row's). LLMTIME's leading digits and
    separators follow from the recent values, its last digits often do not: drafting those
    costs columns that are rarely kept."""

    SHRINK = 4

    def __init__(self, batch: int) -> None:
        self.batch: dict[GrammarState, list[int]] = {}
        self.rows: list[dict[GrammarState, list[int]]] = [{} for _ in range(batch)]

    def record(self, row: int, state: GrammarState, kept: bool) -> None:
        for table in (self.batch, self.rows[row]):
            counts = table.setdefault(state._replace(step=0), [0, 0])
            counts[0] += kept
            counts[1] += 1

    def chance(self, row: int, state: GrammarState) -> float:
        key = state._replace(step=0)
        kept, seen = self.batch.get(key, (0, 0))
        prior = (kept + 1) / (seen + 2)
        kept, seen = self.rows[row].get(key, (0, 0))
        return (kept + self.SHRINK * prior) / (seen + self.SHRINK)


class _Rows:
    """Per-row state of a decode: tokens, finished flags, counts, draft acceptance, and the
    batch slots still computed (``active``: slot -> row; finished rows leave, see
    :func:`_compact`)."""

    def __init__(self, batch: int, options: DecodeOptions, rules: _GrammarRows | None,
                 generator: torch.Generator | Sequence[torch.Generator] | None) -> None:
        self.tokens: list[list[int]] = [[] for _ in range(batch)]
        self.finished = [False] * batch
        self.forwarded, self.drafted, self.accepted = [0] * batch, [0] * batch, [0] * batch
        self.events: list[list[tuple[int, int]]] = [[] for _ in range(batch)]
        self.acceptance = _Acceptance(batch)
        self.exclude = [-1] * batch  # a rejected draft token, left out of the next draw
        self.active = list(range(batch))
        self.options, self.rules, self.generator = options, rules, generator

    def stream(self, row: int) -> torch.Generator | None:
        g = self.generator
        return g[row] if isinstance(g, Sequence) else g

    def likely_draft(self, row: int, proposal: Sequence[int]) -> list[int]:
        """The longest prefix of ``proposal`` the grammar allows after the row's state whose
        every token is kept with an estimated chance of at least ``draft_min_chance`` (the
        product of :class:`_Acceptance` rates along it; a forced token's is 1)."""
        g, state = self.rules.grammar, self.rules.states[row]
        chance, kept = 1.0, []
        for token in proposal:
            if g.is_done(state) or token not in g.allowed(state):
                break
            if len(g.allowed(state)) > 1:
                chance *= self.acceptance.chance(row, state)
            if chance < self.options.draft_min_chance:
                break
            kept.append(int(token))
            state = g.advance(state, token)
        return kept

    def verify(self, logits: torch.Tensor, drafts: list[list[int]], mask: torch.Tensor,
               positions: torch.Tensor, last_pos: torch.Tensor) -> torch.Tensor:
        """Keep each row's longest draft prefix the model agrees with; return the next-token
        logits [B, V] (after the last kept token). The rejected tokens' columns are masked in
        ``mask`` and ``last_pos`` moves back to the last kept token, in place."""
        rules, sampling = self.rules, self.options.sampling
        out = logits[:, -1].clone()
        for slot, row in enumerate(self.active):
            draft = drafts[slot]
            if not draft:
                continue
            base, kept = logits.shape[1] - 1 - len(draft), 0
            for token in draft:
                state = rules.states[row]
                index = rules.allowed_index(state, logits.device)
                agreed = _accepts(logits[slot, base + kept, index], index, token, sampling,
                                  self.stream(row))
                if len(index) > 1:
                    self.acceptance.record(row, state, agreed)
                if not agreed:
                    break
                rules.states[row] = rules.grammar.advance(state, token)
                kept += 1
            self.tokens[row] += draft[:kept]
            self.drafted[row] += len(draft)
            self.accepted[row] += kept
            self.events[row].append((len(draft), kept))
            out[slot] = logits[slot, base + kept]
            rejected = len(draft) - kept
            if rejected:
                mask[slot, mask.shape[1] - rejected:] = 0
                last_pos[slot] = positions[slot, -1 - rejected]
                self.exclude[row] = -1 if sampling.greedy else draft[kept]
            self.finished[row] = (len(self.tokens[row]) >= self.options.stop.max_new_tokens
                                  or rules.done(row))
        return out


def _accepts(logits: torch.Tensor, allowed: torch.Tensor, token: int, sampling: Sampling,
             stream: torch.Generator | None) -> bool:
    """Whether the model keeps the draft ``token`` given its logits ``[k]`` over the grammar's
    ``allowed`` ids ``[k]``: greedy, iff it is the argmax; sampling, with probability p(token)
    (speculative sampling with a deterministic draft: a rejection then draws from p without the
    token, see :func:`next_tokens`' ``exclude``, so every token keeps its probability p)."""
    logits = logits.float()
    if sampling.greedy:
        return int(allowed[logits.argmax()]) == token
    index, probs = sampling_probs(logits[None], sampling)
    p = float(probs[0][allowed[index[0]] == token].sum() / probs[0].sum())
    return float(torch.rand((), generator=stream, device=probs.device)) < p


def _compact(rows: _Rows, cache: Any, tensors: list[torch.Tensor]) -> tuple[Any, list]:
    """Drop finished rows from the batch when they are a quarter of it or more (their cache
    rows would be computed as padding until the slowest row ends)."""
    alive = [slot for slot, row in enumerate(rows.active) if not rows.finished[row]]
    if len(rows.active) - len(alive) < max(1, len(rows.active) // 4) or not _has_rows(cache):
        return cache, tensors
    index = torch.as_tensor(alive, device=tensors[0].device)
    rows.active = [rows.active[slot] for slot in alive]
    return select_rows(cache, index), [t[index] for t in tensors]


PADDING_SLACK = 1.5  # a decode call computes at most this many columns per real token fed


def _fit_width(chunks: list[list[int]], drafts: list[list[int]]) -> list[list[int]]:
    """Drafts cut so that the call's width (every row is padded to the widest) computes at
    most :data:`PADDING_SLACK` columns per real token: on a CPU, padding costs what tokens do,
    and one row with a long draft would make every row pay for it. The widest width that
    keeps ``rows x width <= slack x real tokens`` is kept (never below the longest chunk)."""
    wanted = [len(c) + len(d) for c, d in zip(chunks, drafts, strict=True)]
    if not any(drafts):
        return drafts
    floor = max(max(map(len, chunks)), 1)
    width = max(wanted)
    while width > floor and len(wanted) * width > PADDING_SLACK * sum(min(w, width)
                                                                      for w in wanted):
        width -= 1
    return [d[: max(0, width - len(c))] for c, d in zip(chunks, drafts, strict=True)]


def _has_rows(cache: Any) -> bool:
    """Whether every part of the cache is batch-first (an injected call may keep a plain step
    counter, whose rows live elsewhere: its batch must then keep its shape)."""
    if isinstance(cache, (tuple, list)):
        return all(_has_rows(item) for item in cache)
    return hasattr(cache, "layers") or isinstance(cache, torch.Tensor)


def _trim_rejected(cache: Any, mask: torch.Tensor) -> tuple[Any, torch.Tensor]:
    """Drop the trailing cache columns no row uses (rejected drafts at every row's end)."""
    used = mask.any(dim=0).nonzero()
    width = int(used[-1]) + 1 if len(used) else mask.shape[1]
    if width == mask.shape[1] or not crop_columns(cache, width, mask.shape[1]):
        return cache, mask
    return cache, mask[:, :width]


@torch.no_grad()
def decode(logits_fn: LogitsFn, prompts: Sequence[Sequence[int]], options: DecodeOptions, *,
           generator: torch.Generator | Sequence[torch.Generator] | None = None,
           repeats: int = 1, drafter: Drafter | None = None) -> DecodeResult:
    """Generate ``repeats`` continuations of each prompt: one prefill, a KV-cached token loop.

    Jump-forward: a token the grammar forces (the only allowed one: a separator after the last
    decimal, the '.' after ``max_int_digits`` digits) needs no logits of its own, so it is not
    given a model call: it enters the cache in the next call, together with the token sampled
    before it. The same tokens pass through the model (same FLOPs), in fewer calls; greedy
    tokens are the same, and so is the sampling distribution (a forced token has probability 1).

    Draft-and-verify (``drafter``, grammar only): each call also feeds a row's draft (up to
    ``max_draft_tokens`` tokens the grammar allows) and returns logits at every draft position
    (``logits_fn(..., keep=n)``); the row keeps the longest draft prefix the model agrees with
    (:func:`_accepts`), its cache columns after that are masked out (and cropped once no row
    holds any), and the model's own token at the first disagreement is drawn from the logits
    already computed, in the next call. Greedy tokens are those of plain decoding; sampled
    ones follow the same distribution. A row's draft length adapts to its acceptance: the
    draft stops where the estimated chance that all of it so far is kept (the row's and the
    batch's kept rates at each place in a number, :class:`_Acceptance`) falls below
    ``draft_min_chance``, so the last digits, which a draft rarely guesses, are not drafted
    where they are not kept; rows that finish leave the batch (:func:`_compact`). The draft
    lengths depend only on tokens already decided, never on the draws of the call that
    verifies them, so the sampling distribution stays exact.

    Args:
        logits_fn: the model call (see :data:`LogitsFn`).
        prompts: token ids per row (unpadded; rows may differ in length).
        options: the stop rule, padding, sampling, device, jump-forward, prefill chunk and
            draft bound (:class:`DecodeOptions`).
        generator: random source for sampling (seed it for determinism), or one per row
            (``len(prompts) * repeats``, in row order).
        repeats: rows per prompt (samples), adjacent in the output; the prompt is prefilled
            once and its KV cache shared (copied) by its rows.
        drafter: proposes each row's next tokens (None: plain decoding).

    Returns:
        A :class:`DecodeResult` over ``len(prompts) * repeats`` rows.
    """
    stop, pad_id, sampling = options.stop, options.pad_id, options.sampling
    grammar, cap = stop.grammar, stop.max_new_tokens
    if repeats < 1:
        raise ValueError(f"repeats: must be >= 1, got {repeats}")
    if drafter is not None and grammar is None:
        raise ValueError("drafts need the grammar (constrained decoding)")
    logits, cache, mask, last_pos = _prefill(logits_fn, prompts, pad_id, repeats,
                                             options.device, options.prefill_chunk)
    batch, width = mask.shape
    rules = _GrammarRows(grammar, batch) if grammar else None
    free = None if grammar else _FreeStop(stop.semicolons, stop.horizon_steps, stop.eos_ids,
                                          batch)
    rows = _Rows(batch, options, rules, generator)
    calls = 0
    while True:
        active = rows.active
        streams = ([rows.stream(r) for r in active] if isinstance(generator, Sequence)
                   else generator)
        excluded = [rows.exclude[r] for r in active]
        token = next_tokens(rules.mask(logits, active) if rules else logits, sampling, streams,
                            excluded if max(excluded, default=-1) >= 0 else None).tolist()
        rows.exclude = [-1] * batch
        chunks = [[] if rows.finished[r] else
                  (rules.push(r, token[slot], options.jump_forward) if rules else [token[slot]])
                  for slot, r in enumerate(active)]
        stopped = free.update(active, [c[0] if c else pad_id for c in chunks]) if free else None
        for slot, r in enumerate(active):
            chunks[slot] = chunks[slot][: cap - len(rows.tokens[r])]
            rows.tokens[r] += chunks[slot]
            rows.finished[r] = rows.finished[r] or len(rows.tokens[r]) >= cap or bool(
                rules.done(r) if rules else stopped[slot])
        if all(rows.finished):
            break
        chunk_of = dict(zip(active, chunks, strict=True))
        cache, (mask, last_pos) = _compact(rows, cache, [mask, last_pos])
        chunks = [[] if rows.finished[r] else chunk_of[r] for r in rows.active]
        drafts = [rows.likely_draft(r, drafter.propose(
            r, rows.tokens[r], min(options.max_draft_tokens, cap - len(rows.tokens[r]))))
            if drafter is not None and not rows.finished[r] else [] for r in rows.active]
        drafts = _fit_width(chunks, drafts)
        feed = [c + d for c, d in zip(chunks, drafts, strict=True)]
        ids, new_mask, positions = _step_inputs(feed, pad_id, last_pos, options.device)
        mask = torch.cat([mask, new_mask], dim=1)
        keep = 1 + max(map(len, drafts))
        if keep == 1:
            logits, cache = logits_fn(ids, mask, positions, cache)
        else:
            logits, cache = logits_fn(ids, mask, positions, cache, keep=keep)  # [B, keep, V]
        calls += 1
        for slot, r in enumerate(rows.active):
            rows.forwarded[r] += len(feed[slot])
        last_pos = positions[:, -1].clone()
        if keep > 1:
            logits = rows.verify(logits, drafts, mask, positions, last_pos)
            cache, mask = _trim_rejected(cache, mask)
    return DecodeResult(tokens=rows.tokens, prompt_tokens=[len(p) for p in prompts
                                                           for _ in range(repeats)],
                        generated_tokens=[len(t) for t in rows.tokens], prompt_width=width,
                        decode_steps=calls, prefill_rows=len(prompts),
                        forwarded_tokens=rows.forwarded, drafted_tokens=rows.drafted,
                        accepted_tokens=rows.accepted, draft_events=rows.events)
