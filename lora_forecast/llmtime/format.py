"""The LLMTIME format of one run: the codec (numbers as text) bound to the model's tokenizer.

Everything that depends on both (series as token ids, where time steps start, prompts, the
forecast grammar, the numeric head's rows, token counts for the FLOPs prediction, reading a
forecast back) is asked of :class:`LLMTimeFormat`, so no other module knows a token id or a
separator.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lora_forecast.llmtime.codec import (
    DIGITS,
    MINUS,
    STEP_SEP,
    VARIABLE_SEP,
    ForecastParseError,
    LLMTimeCodec,
)
from lora_forecast.llmtime.grammar import LLMTimeGrammar
from lora_forecast.llmtime.tokens import TokenLayoutError, TokenTable, written_text

Series = tuple[np.ndarray, np.ndarray]  # (token ids [n], step starts [n_steps])


@dataclass(frozen=True)
class LLMTimeFormat:
    """A codec and a token table: ``values [T, V] <-> token ids``.

    ``signed`` chooses the alphabet: without it (non-negative series, the default) a forecast
    is written with the digits, '.', ',' and ';' only, exactly as before signed series existed;
    with it '-' may open every number, and the numeric head, the grammar and the token bounds
    all count it.

    Example:
        >>> from lora_forecast.models.tokenizer import qwen_tokenizer
        >>> fmt = LLMTimeFormat.for_tokenizer(LLMTimeCodec(alpha=1.0), qwen_tokenizer())
        >>> fmt.tokens.layout, fmt.encode(np.array([[1.23]]))
        ('compact', [16, 13, 17, 18])
    """

    codec: LLMTimeCodec
    tokens: TokenTable
    tokenizer: Any = field(default=None, compare=False, repr=False)  # for free-decoding text
    signed: bool = False

    def __post_init__(self) -> None:
        if self.signed and MINUS not in self.tokens.ids:
            raise TokenLayoutError(f"'-' is not one token in the tokenizer's {self.tokens.layout} "
                                   "layout, so negative values cannot be written")

    @classmethod
    def for_tokenizer(cls, codec: LLMTimeCodec, tokenizer: Any,
                      signed: bool = False) -> LLMTimeFormat:
        """Bind ``codec`` to the cheapest one-token-per-symbol layout of ``tokenizer``
        (``signed``: with '-' in the alphabet; raises TokenLayoutError if it is not one token)."""
        return cls(codec, TokenTable.from_tokenizer(tokenizer), tokenizer, signed)

    @property
    def decimals(self) -> int:
        return self.codec.decimals

    @property
    def symbols(self) -> str:
        """The symbols a series of this number format is written with ('-' last, if signed)."""
        point = "." if self.codec.written_decimals else ""
        return DIGITS + point + VARIABLE_SEP + STEP_SEP + (MINUS if self.signed else "")

    def head_ids(self, *, include_eos: bool = False) -> tuple[int, ...]:
        """Rows of the numeric head: the format's symbols (+ joiner), optionally EOS."""
        return self.tokens.head_ids(self.symbols, include_eos=include_eos)

    def text(self, values: np.ndarray) -> str:
        """The series as the tokenizer reads it (e.g. for a plain ``transformers`` prompt)."""
        return written_text(self.codec.encode(values), self.tokens.layout)

    def encode(self, values: np.ndarray) -> list[int]:
        """Token ids of the series ``values`` [T, V]."""
        return self.tokens.encode(self.codec.encode(values))

    def encode_series(self, values: np.ndarray) -> Series:
        """``(ids [n], step_starts [T])`` of one series, for cutting windows at step starts."""
        ids = np.asarray(self.encode(values), dtype=np.int64)
        return ids, self.tokens.step_starts(ids)

    def prompt(self, context: np.ndarray) -> list[int]:
        """Token ids of a forecast prompt: the context, then the ';' that opens the next step."""
        return self.tokens.encode(self.codec.encode(context) + STEP_SEP)

    def grammar(self, n_vars: int, horizon_steps: int, max_int_digits: int) -> LLMTimeGrammar:
        """The constrained-decoding grammar of ``horizon_steps`` steps of ``n_vars`` numbers,
        each with at most ``max_int_digits`` integer digits in scaled units."""
        int_digits, frac_digits = self.codec.max_digits(max_int_digits)
        return LLMTimeGrammar(n_vars, frac_digits, horizon_steps, int_digits, self.tokens,
                              signed=self.signed)

    def max_tokens_per_step(self, n_vars: int, max_int_digits: int) -> int:
        """Most tokens one time step can take (its ',' / ';' separators included): the bound
        the FLOPs prediction uses, so the reservation is never below what a run meters."""
        per_number = self.tokens.number_tokens(*self.codec.max_digits(max_int_digits),
                                               signed=self.signed)
        return n_vars * (per_number + 1)

    def decode_ids(self, ids: list[int]) -> str:
        """Compact LLMTIME text of generated token ids (joiners dropped)."""
        return self.tokens.decode(ids)

    def parse(self, text: str, horizon_steps: int, n_vars: int) -> np.ndarray:
        """The first ``horizon_steps`` steps of compact ``text`` as ``[H, V]`` original units.

        White space is ignored (free decoding in the spaced layouts writes it).

        Raises:
            ForecastParseError: fewer steps, steps the codec cannot read, non-finite values.
        """
        steps = "".join(text.split()).split(STEP_SEP)
        if len(steps) < horizon_steps:
            raise ForecastParseError(f"forecast has {len(steps)} steps, need {horizon_steps}")
        values = self.codec.decode(STEP_SEP.join(steps[:horizon_steps]), n_vars)
        if not np.isfinite(values).all():
            raise ForecastParseError("forecast holds non-finite values")
        return values

    def step_separator_counts(self) -> np.ndarray:
        """``[len(vocab)]``: how many ';' each token's text holds (free decoding counts steps
        with it; byte-level and SentencePiece tokens keep ASCII punctuation in their strings)."""
        vocab = self.tokenizer.get_vocab()
        counts = np.zeros(max(vocab.values()) + 1, dtype=np.int64)
        for token, idx in vocab.items():
            counts[idx] = token.count(STEP_SEP)
        return counts
