"""Drafts for draft-and-verify decoding: a classical forecaster's next steps, as LLMTIME tokens.

LLMTIME text is predictable: most digits of the next value follow from the recent values, and a
classical forecaster (linear AR, persistence, any registered baseline) guesses them for free.
:func:`draft_forecasts` forecasts every context with the baseline ``eval.draft`` names, and
:class:`ValueDrafter` writes, for a row, the continuation of what it has written so far as
the tokens the model would write: the draft's steps anchored on the model's own values. The
model verifies every draft token (:func:`lora_forecast.forecasting.decoding.decode`), so a
bad draft costs compute, never correctness.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lora_forecast.evaluation.baselines import Band, baseline_fn
from lora_forecast.llmtime import LLMTimeFormat
from lora_forecast.llmtime.codec import STEP_SEP, VARIABLE_SEP

__all__ = ["ValueDrafter", "draft_forecasts", "separator_ids"]


def draft_forecasts(name: str, contexts: Sequence[np.ndarray], horizon_steps: int,
                    signed: bool) -> list[np.ndarray]:
    """``[H, V]`` forecasts of each (scaled) context by the baseline ``name`` on unit steps;
    non-finite values fall back to the last observation, and an unsigned format's drafts are
    clipped at 0 (the grammar would refuse a '-')."""
    fn = baseline_fn(name)
    drafts = []
    for context in contexts:
        n = len(context)
        made = fn(np.asarray(context, dtype=np.float64), np.arange(n, dtype=np.float64),
                  np.arange(n, n + horizon_steps, dtype=np.float64))
        values = np.asarray(made.point if isinstance(made, Band) else made, dtype=np.float64)
        values = np.where(np.isfinite(values), values, context[-1])
        drafts.append(values if signed else np.clip(values, 0.0, None))
    return drafts


class ValueDrafter:
    """Proposes each row's next tokens from its draft forecast, anchored on what it wrote.

    Number ``(h, v)`` (step ``h``, variable ``v``) is drafted as the row's own value at
    ``(h - 1, v)`` (or, ahead of what it wrote, the value drafted there) plus the draft
    forecast's step ``draft[h, v] - draft[h - 1, v]``; step 0 is the draft's own value. So once
    the model departs from the draft, the next numbers follow the model's path with the
    draft's trend instead of the draft's path. A number the row has begun is completed with
    the drafted number's remaining tokens, whether or not its first digits agreed: the last
    digits are the uncertain ones, and the separator and next number after them usually
    hold.

    Args:
        fmt: the format the model writes (codec and tokens).
        drafts: per decode row, its draft forecast ``[H, V]`` (the contexts' units).
        signed: the grammar allows '-' (else drafted values are clipped at 0).
    """

    def __init__(self, fmt: LLMTimeFormat, drafts: Sequence[np.ndarray], signed: bool) -> None:
        self.fmt, self.drafts, self.signed = fmt, [np.asarray(d, float) for d in drafts], signed
        self.separators = separator_ids(fmt)
        self.comma, self.semicolon = (fmt.tokens.ids[s] for s in (VARIABLE_SEP, STEP_SEP))
        self._read = [_Written() for _ in drafts]

    def propose(self, row: int, generated: Sequence[int], limit: int) -> list[int]:
        written = self._read[row].update(generated, self.separators, self.fmt)
        draft = self.drafts[row]
        horizon, n_vars = draft.shape
        number = len(written.values)
        typed = len(generated) - written.number_start
        planned: dict[int, tuple[float, int]] = {}  # number -> (value, integer digits)
        out: list[int] = []
        while len(out) < limit + typed and number < horizon * n_vars:
            step, var = divmod(number, n_vars)
            before = number - n_vars
            if step == 0:
                value, width = draft[0, var], 1
            elif before < len(written.values):
                value, width = written.values[before], written.widths[before]
            else:
                value, width = planned[before]
            if step > 0:
                value += draft[step, var] - draft[step - 1, var]
            value = value if self.signed else max(value, 0.0)
            planned[number] = value, width
            out += self._number(value, width)
            if number < horizon * n_vars - 1:
                out.append(self.comma if var < n_vars - 1 else self.semicolon)
            number += 1
        return out[typed:typed + limit]

    def _number(self, value: float, width: int) -> list[int]:
        """``value``'s tokens, its integer part zero-padded to ``width`` digits as the model
        wrote the number it is anchored on (a model that writes "07.25" keeps doing so)."""
        return self.fmt.tokens.encode(self.fmt.codec.encode_number(value, width))


class _Written:
    """The values a row has written so far, and their integer digits, read incrementally (its
    tokens only grow)."""

    def __init__(self) -> None:
        self.values: list[float] = []
        self.widths: list[int] = []
        self.scanned = 0
        self.number_start = 0

    def update(self, generated: Sequence[int], separators: frozenset[int],
               fmt: LLMTimeFormat) -> _Written:
        for i in range(self.scanned, len(generated)):
            if generated[i] in separators:
                text = fmt.decode_ids(list(generated[self.number_start:i]))
                self.values.append(float(fmt.codec.decode(text, 1)[0, 0]))
                self.widths.append(fmt.codec.integer_digits(text))
                self.number_start = i + 1
        self.scanned = len(generated)
        return self


def separator_ids(fmt: LLMTimeFormat) -> frozenset[int]:
    """The token ids that end a number (',' between variables, ';' between steps)."""
    return frozenset(fmt.tokens.ids[s] for s in (VARIABLE_SEP, STEP_SEP))
