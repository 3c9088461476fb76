"""The LLMTIME output grammar as a token-level state machine, and a logits processor enforcing it.

A forecast of ``horizon_steps`` steps with ``n_vars`` variables and ``decimals`` decimals is

    number (',' number){n_vars - 1}  (';' number (',' number){n_vars - 1}){horizon_steps - 1}
    number = '-'? digit{1..max_int_digits} ('.' digit{decimals})?   ('.' part iff decimals > 0;
                                                                  '-' only when signed)

e.g. ``"0.25,1.50;0.27,1.47"`` (2 steps, 2 variables, 2 decimals). Every symbol is one token of
the tokenizer (:class:`lora_forecast.llmtime.tokens.TokenTable`); in the ``digit_spaced``
layout a joiner token stands between consecutive digits, and the grammar requires it there.
There is no trailing ';': the sequence is complete right after the last fraction digit of the
last variable of the last step. Leading zeros are allowed ("007"); a lone "0" is allowed.

Negative numbers are allowed only in a signed grammar (``signed=True``, the run's alphabet has
'-': its series hold negative values, see ``data.signed``), and there only as the first token of
a number: never after a digit, the point or another '-'. Unsigned (the default, non-negative
data such as populations), forbidding '-' removes a whole class of nonsense forecasts.

With ``decimals == 0`` (integers, also the ``digits`` number format) the end of the last
number is ambiguous ("1" or "12"?), so there the grammar also allows EOS after each digit of
the last number; the EOS is then part of the constrained sequence. With ``decimals > 0`` the
sequence ends without EOS.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from transformers import LogitsProcessor

from lora_forecast.llmtime.codec import DIGITS, MINUS, POINT, STEP_SEP, VARIABLE_SEP
from lora_forecast.llmtime.tokens import TokenTable

INT, FRAC, DONE = 0, 1, 2  # phases of GrammarState


class GrammarState(NamedTuple):
    """Position in the forecast: time step, variable, phase (INT/FRAC/DONE), digits in phase,
    and whether a digit must come next (a joiner or a number's '-' was just written)."""

    step: int = 0
    var: int = 0
    phase: int = INT
    count: int = 0
    joined: bool = False


class LLMTimeGrammar:
    """Deterministic state machine over single-character LLMTIME tokens (see module docstring).

    Args:
        n_vars: variables per time step (numbers joined by ',').
        decimals: fraction digits per number (0: integers, no '.').
        horizon_steps: time steps to produce (joined by ';', no trailing ';').
        max_int_digits: most digits before the '.' (at least one is required).
        tokens: the tokenizer's symbol ids, joiner and end tokens; EOS is the only token
            allowed once the sequence is complete, EOS and pad are accepted after it.
        signed: allow '-' as the first token of every number (``tokens`` must have it).
    """

    def __init__(self, n_vars: int, decimals: int, horizon_steps: int, max_int_digits: int,
                 tokens: TokenTable, signed: bool = False) -> None:
        for name, value, low in (("n_vars", n_vars, 1), ("decimals", decimals, 0),
                                 ("horizon_steps", horizon_steps, 1),
                                 ("max_int_digits", max_int_digits, 1)):
            if value < low:
                raise ValueError(f"{name}: must be >= {low}, got {value}")
        self.n_vars, self.decimals = n_vars, decimals
        self.horizon_steps, self.max_int_digits = horizon_steps, max_int_digits
        self.tokens = tokens
        self.digits = tuple(tokens.ids[d] for d in DIGITS)
        self.dot, self.joiner = tokens.ids[POINT], tokens.joiner
        self.comma, self.semicolon = tokens.ids[VARIABLE_SEP], tokens.ids[STEP_SEP]
        self.minus = tokens.ids[MINUS] if signed else None
        self.eos_id = tokens.eos_id
        self.end_ids = frozenset((tokens.eos_id, tokens.pad_id))
        self._allowed_cache: dict[GrammarState, tuple[int, ...]] = {}

    @property
    def start(self) -> GrammarState:
        return GrammarState()

    @property
    def max_length(self) -> int:
        """Most tokens one complete sequence can take (EOS included when decimals == 0)."""
        numbers = self.horizon_steps * self.n_vars
        per_number = self.tokens.number_tokens(self.max_int_digits, self.decimals,
                                               signed=self.minus is not None)
        return numbers * per_number + (numbers - 1) + (0 if self.decimals else 1)

    def is_done(self, state: GrammarState) -> bool:
        return state.phase == DONE

    def _last_number(self, state: GrammarState) -> bool:
        return state.step == self.horizon_steps - 1 and state.var == self.n_vars - 1

    def _separator(self, state: GrammarState) -> int:
        return self.comma if state.var < self.n_vars - 1 else self.semicolon

    def allowed(self, state: GrammarState) -> tuple[int, ...]:
        """Token ids that may follow ``state`` (only ``eos_id`` once done)."""
        cached = self._allowed_cache.get(state)
        if cached is None:
            cached = self._allowed_cache[state] = self._compute_allowed(state)
        return cached

    def _compute_allowed(self, state: GrammarState) -> tuple[int, ...]:
        if state.phase == DONE:
            return (self.eos_id,)
        if state.joined:  # a joiner is always followed by a digit
            return self.digits
        # Another digit: directly, or (digit_spaced layout) after a joiner.
        digits = (self.joiner,) if self.joiner is not None and state.count else self.digits
        if state.phase == INT:
            out = list(digits) if state.count < self.max_int_digits else []
            if state.count == 0 and self.minus is not None:  # a number may open with '-'
                out.append(self.minus)
            if state.count >= 1 and self.decimals:
                out.append(self.dot)
            elif state.count >= 1:  # integer-only numbers end after any digit
                out.append(self.eos_id if self._last_number(state) else self._separator(state))
            return tuple(out)
        # FRAC: the separator comes right after the last fraction digit; the grammar never
        # rests at count == decimals of the last number (it moves to DONE), see advance().
        return digits if state.count < self.decimals else (self._separator(state),)

    def advance(self, state: GrammarState, token: int) -> GrammarState:
        """The state after ``token``; raises ``ValueError`` for a token not in :meth:`allowed`."""
        if state.phase == DONE:
            if token in self.end_ids:
                return state
            raise ValueError(f"token {token} after a complete forecast (only EOS/pad allowed)")
        if token not in self.allowed(state):
            raise ValueError(f"token {token} not allowed in state {state}")
        if token in (self.joiner, self.minus):  # a digit must follow either (None: absent)
            return state._replace(joined=True)
        if token == self.dot:
            return GrammarState(state.step, state.var, FRAC, 0)
        if token == self.comma:
            return GrammarState(state.step, state.var + 1, INT, 0)
        if token == self.semicolon:
            return GrammarState(state.step + 1, 0, INT, 0)
        if token == self.eos_id:
            return GrammarState(state.step, state.var, DONE, 0)
        nxt = GrammarState(state.step, state.var, state.phase, state.count + 1)
        return self._auto_finish(nxt)

    def _auto_finish(self, state: GrammarState) -> GrammarState:
        """Move to DONE when the last number cannot continue."""
        if not self._last_number(state):
            return state
        full_frac = state.phase == FRAC and state.count == self.decimals
        full_int = state.phase == INT and not self.decimals and state.count == self.max_int_digits
        return GrammarState(state.step, state.var, DONE, 0) if full_frac or full_int else state

    def accepts(self, tokens: list[int]) -> bool:
        """Whether ``tokens`` is one complete sequence (ending exactly when it becomes done)."""
        state = self.start
        for i, token in enumerate(tokens):
            if self.is_done(state):
                return False
            try:
                state = self.advance(state, token)
            except ValueError:
                return False
            if self.is_done(state) and i != len(tokens) - 1:
                return False
        return self.is_done(state)


class LLMTimeLogitsProcessor(LogitsProcessor):
    """Mask every token the grammar does not allow next to ``-inf``, per batch row.

    Each row's state is tracked from the tokens after the prompt; with left padding all rows
    share the padded prompt width, ``prompt_length``. Pass ``prompt_length=0`` to feed only the
    generated tokens (what :func:`lora_forecast.forecasting.decoding.decode` does). Works inside
    ``model.generate(..., logits_processor=LogitsProcessorList([processor]))``: once a row is
    done only EOS is allowed, and the pad tokens ``generate`` appends after EOS are accepted.
    The processor re-synchronises (starts over) when it sees a new batch or a shorter input.
    """

    def __init__(self, grammar: LLMTimeGrammar, prompt_length: int) -> None:
        self.grammar = grammar
        self.prompt_length = prompt_length
        self.states: list[GrammarState] = []
        self._consumed = 0
        self._index: dict[GrammarState, torch.Tensor] = {}

    def reset(self) -> None:
        self.states, self._consumed = [], 0

    @property
    def done(self) -> list[bool]:
        """Per row: whether its forecast is complete."""
        return [self.grammar.is_done(s) for s in self.states]

    def update(self, input_ids: torch.Tensor) -> None:
        """Advance each row's state over the tokens of ``input_ids`` it has not seen yet."""
        batch, generated = input_ids.shape[0], input_ids.shape[1] - self.prompt_length
        if generated < 0:
            raise ValueError(f"input ({input_ids.shape[1]} tokens) is shorter than the prompt "
                             f"length {self.prompt_length}")
        if len(self.states) != batch or generated < self._consumed:
            self.states, self._consumed = [self.grammar.start] * batch, 0
        start = self.prompt_length + self._consumed
        for row, tokens in enumerate(input_ids[:, start:].tolist()):
            state = self.states[row]
            for token in tokens:
                state = self.grammar.advance(state, token)
            self.states[row] = state
        self._consumed = generated

    def _allowed_index(self, state: GrammarState, device: torch.device) -> torch.Tensor:
        index = self._index.get(state)
        if index is None or index.device != device:
            index = torch.tensor(self.grammar.allowed(state), dtype=torch.long, device=device)
            self._index[state] = index
        return index

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        self.update(input_ids)
        out = torch.full_like(scores, float("-inf"))  # [B, V]
        for row, state in enumerate(self.states):
            index = self._allowed_index(state, scores.device)
            out[row, index] = scores[row, index]
        return out
