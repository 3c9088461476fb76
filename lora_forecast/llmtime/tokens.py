"""How LLMTIME symbols become tokens of a given tokenizer: one token per symbol, always.

The grammar, the windows and the numeric head all count on every symbol of the text (a digit,
'.', ',', ';', '-') being exactly one token, so a time step costs a known number of tokens and
a forecast is read back token by token. Tokenizers differ, so the *layout* of the text is
chosen by checking the tokenizer (never by model name), cheapest first:

* ``compact``  ``0.25,1.50;`` - tokenizers that split digits (Qwen, Llama-2/Mistral/Phi-3
  SentencePiece with digit splitting, Gemma);
* ``spaced``   `` 0 . 2 5 , 1 . 5 0 ;`` - LLMTIME's fix for GPT-2-style byte-level BPE that
  merges digit runs but keeps ``" 5"`` as one token;
* ``digit_spaced`` ``0.2 5,1.5 0;`` - a space token between consecutive digits, for tokenizers
  whose digits never take a leading space but merge up to three of them (Llama-3, tiktoken).

A layout is accepted when every symbol is one token and a probe text holding every symbol
pair that non-negative series produce tokenises to exactly the concatenation of the symbols'
tokens (ignoring a SentencePiece dummy-prefix token at the start). Text is never tokenised
with ``tokenizer(text)`` at run time: ids are mapped symbol by symbol (byte-level BPE may merge
the rare pairs ``,-`` and ``;-`` of negative values, which would shift the alignment).

Signed series: the '-' is one token of its own whatever precedes it. Qwen2.5's and Gemma's
tokenizers read ``;-`` and ``,-`` of natural text as single tokens (Qwen: ``;-`` 54433, ``,-``
4999), so ``tokenizer(";-1.2")`` gives ``[54433, 16, 13, 17]``; the series text is
``[26, 12, 16, 13, 17]`` (';', '-', '1', '.', '2'), so a number opens with the same '-' token
wherever it stands and a time step still starts right after its ';' token.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from lora_forecast.llmtime.codec import DIGITS, MINUS, POINT, STEP_SEP, VARIABLE_SEP

LAYOUTS = ("compact", "spaced", "digit_spaced")
SYMBOLS = DIGITS + POINT + VARIABLE_SEP + STEP_SEP  # written by every non-negative series
JOINER = " "  # the digit_spaced layout's symbol between consecutive digits
# Every pair of adjacent symbols a non-negative series can produce, in one probe text.
PROBE = "0.12,3.45;67.8,9.01;23,45;6.7,89.0;1"


class TokenLayoutError(ValueError):
    """The tokenizer cannot write LLMTIME with exactly one token per symbol."""


def _piece(symbol: str, layout: str) -> str:
    """The text of one symbol in ``layout`` (spaced: a leading space on every symbol)."""
    return " " + symbol if layout == "spaced" else symbol


def written_text(compact: str, layout: str) -> str:
    """``compact`` LLMTIME text as the tokenizer of ``layout`` must read it.

    Example:
        >>> written_text("0.25,1.5;", "spaced"), written_text("0.25,1.5;", "digit_spaced")
        (' 0 . 2 5 , 1 . 5 ;', '0.2 5,1.5;')
    """
    if layout == "spaced":
        return "".join(_piece(c, layout) for c in compact)
    if layout == "digit_spaced":
        out = []
        for prev, char in zip(" " + compact[:-1], compact, strict=True):
            if prev in DIGITS and char in DIGITS:
                out.append(JOINER)
            out.append(char)
        return "".join(out)
    return compact


def _strip_prefix(tokenizer: Any, ids: list[int]) -> list[int]:
    """Drop a leading SentencePiece dummy-prefix token (one that decodes to white space)."""
    if len(ids) > 1 and tokenizer.decode(ids[:1]).strip() == "":
        return ids[1:]
    return ids


def _single_token(tokenizer: Any, text: str) -> int | None:
    """The one token ``text`` encodes to, or None (several tokens, or the unknown token)."""
    ids = _strip_prefix(tokenizer, tokenizer.encode(text, add_special_tokens=False))
    if len(ids) != 1 or ids[0] == tokenizer.unk_token_id:
        return None
    return int(ids[0])


@dataclass(frozen=True)
class TokenTable:
    """Token id of every LLMTIME symbol in one layout, plus the tokenizer's end tokens.

    Attributes:
        layout: one of :data:`LAYOUTS`.
        ids: symbol -> token id ('-' only when it is one token in this layout).
        joiner: the token between consecutive digits (``digit_spaced`` only), else None.
        eos_id: the tokenizer's end-of-sequence token.
        pad_id: the padding token (the EOS when the tokenizer has none).
    """

    layout: str
    ids: dict[str, int]
    joiner: int | None
    eos_id: int
    pad_id: int

    @classmethod
    def from_tokenizer(cls, tokenizer: Any) -> TokenTable:
        """The cheapest layout in which ``tokenizer`` writes one token per symbol.

        Raises:
            TokenLayoutError: no layout works (the message says why the compact one failed).
        """
        if tokenizer.eos_token_id is None:
            raise TokenLayoutError("tokenizer has no eos_token_id: forecasts could not end")
        eos = int(tokenizer.eos_token_id)
        pad = eos if tokenizer.pad_token_id is None else int(tokenizer.pad_token_id)
        reasons = []
        for layout in LAYOUTS:
            table, reason = _try_layout(tokenizer, layout, eos, pad)
            if table is not None:
                return table
            reasons.append(f"{layout}: {reason}")
        raise TokenLayoutError(
            "tokenizer cannot write LLMTIME with one token per symbol (" + "; ".join(reasons) + ")")

    @property
    def symbol_of(self) -> dict[int, str]:
        """Token id -> symbol (joiners decode to the empty string)."""
        table = {i: s for s, i in self.ids.items()}
        if self.joiner is not None:
            table[self.joiner] = ""
        return table

    def encode(self, compact: str) -> list[int]:
        """Token ids of ``compact`` LLMTIME text, joiners inserted where the layout needs them.

        Raises:
            ValueError: a character is not an LLMTIME symbol of this tokenizer.
        """
        ids: list[int] = []
        prev = ""
        for char in compact:
            if self.joiner is not None and prev in DIGITS and prev and char in DIGITS:
                ids.append(self.joiner)
            token = self.ids.get(char)
            if token is None:
                raise ValueError(f"character {char!r} is not an LLMTIME symbol of this tokenizer"
                                 + (" ('-' is not one token here)" if char == MINUS else ""))
            ids.append(token)
            prev = char
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        """Compact LLMTIME text of token ids (joiners dropped); unknown ids raise ValueError."""
        table = self.symbol_of
        try:
            return "".join(table[int(i)] for i in ids)
        except KeyError as exc:
            raise ValueError(f"token id {exc.args[0]} is not an LLMTIME token") from None

    def head_ids(self, symbols: str = SYMBOLS, *, include_eos: bool = False) -> tuple[int, ...]:
        """Ids the numeric head scores: ``symbols`` in order, the joiner, and optionally EOS."""
        ids = [self.ids[s] for s in symbols]
        if self.joiner is not None:
            ids.append(self.joiner)
        return (*ids, self.eos_id) if include_eos else tuple(ids)

    def step_starts(self, ids: np.ndarray) -> np.ndarray:
        """Offsets of each time step's first token: 0 and every index after a ';' token."""
        after = np.flatnonzero(np.asarray(ids) == self.ids[STEP_SEP]) + 1
        starts = np.concatenate([[0], after[after < len(ids)]]) if len(ids) else after
        return starts.astype(np.int64)

    def number_tokens(self, int_digits: int, frac_digits: int, signed: bool = False) -> int:
        """Most tokens of one number: digits, the point, joiners between digits, and the '-'
        that may open it when ``signed`` (never a joiner after the '-': it is not a digit)."""
        digits = int_digits + frac_digits
        joiners = 0 if self.joiner is None else max(0, int_digits - 1) + max(0, frac_digits - 1)
        return digits + (1 if frac_digits else 0) + joiners + (1 if signed else 0)


def _try_layout(tokenizer: Any, layout: str, eos: int,
                pad: int) -> tuple[TokenTable | None, str]:
    ids: dict[str, int] = {}
    for symbol in SYMBOLS:
        token = _single_token(tokenizer, _piece(symbol, layout))
        if token is None:
            return None, f"{_piece(symbol, layout)!r} is not one token"
        ids[symbol] = token
    minus = _single_token(tokenizer, _piece(MINUS, layout))
    if minus is not None:
        ids[MINUS] = minus
    joiner = None
    if layout == "digit_spaced":
        joiner = _single_token(tokenizer, JOINER)
        if joiner is None:
            return None, "a space is not one token"
    used = [*ids.values(), *([joiner] if joiner is not None else [])]
    if len(set(used)) != len(used):
        return None, "two symbols share a token"
    table = TokenTable(layout, ids, joiner, eos, pad)
    expected = table.encode(PROBE)
    got = _strip_prefix(tokenizer, tokenizer.encode(written_text(PROBE, layout),
                                                    add_special_tokens=False))
    if got != expected:
        return None, "digits or symbols merge into multi-symbol tokens"
    return table, ""
