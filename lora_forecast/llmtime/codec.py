"""LLMTIME text codec: a (steps x variables) array <-> a string an LLM can continue.

Format (SPEC.md): scale x -> x / alpha, round to ``decimals``, join the variables of a time
step with ',' and time steps with ';', no spaces, no trailing ';'. This module owns the
symbols of that text (:data:`DIGITS`, :data:`POINT`, :data:`VARIABLE_SEP`, :data:`STEP_SEP`,
:data:`MINUS`); how each symbol becomes a token of a given tokenizer is
:mod:`lora_forecast.llmtime.tokens`' concern.

Two number formats (``number_format``):

* ``decimal`` (the reference study's): ``0.25,1.50;0.27,1.47``;
* ``digits`` (LLMTIME's fixed-precision digits without the point): the same values times
  ``10**decimals`` written as integers, ``25,150;27,147``. Same information, fewer symbols:
  no point, no leading zeros.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

DIGITS = "0123456789"
POINT = "."
VARIABLE_SEP = ","
STEP_SEP = ";"
MINUS = "-"
NUMBER_FORMATS = ("decimal", "digits")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_INTEGER = re.compile(r"-?\d+")


class ForecastParseError(ValueError):
    """Text that is not a well-formed LLMTIME series (e.g. a model's malformed forecast)."""


@dataclass(frozen=True)
class LLMTimeCodec:
    """Encode/decode multivariate series as LLMTIME text.

    Negative values (rare: populations are >= 0) are written with a leading '-'; a value that
    rounds to zero is written without a sign ("0.00", never "-0.00").

    Example:
        >>> codec = LLMTimeCodec(alpha=1.0)
        >>> codec.encode(np.array([[0.25, 1.5], [0.27, 1.47]]))
        '0.25,1.50;0.27,1.47'
        >>> LLMTimeCodec(alpha=10.0).encode(np.array([[2.5, 13.7]]))
        '0.25,1.37'
        >>> LLMTimeCodec(alpha=10.0).decode("0.25,1.37", n_vars=2)
        array([[ 2.5, 13.7]])
        >>> LLMTimeCodec(alpha=1.0, number_format="digits").encode(np.array([[0.25, 1.5]]))
        '25,150'

    Args:
        alpha: scale (> 0, finite); values are divided by it before rounding.
        decimals: digits after the point, 0..6 (0 writes integers without a point).
        number_format: ``decimal`` or ``digits`` (see the module docstring).
    """

    alpha: float
    decimals: int = 2
    number_format: str = "decimal"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.alpha) and self.alpha > 0):
            raise ValueError(f"alpha must be finite and > 0, got {self.alpha}")
        if not 0 <= self.decimals <= 6:
            raise ValueError(f"decimals must be in 0..6, got {self.decimals}")
        if self.number_format not in NUMBER_FORMATS:
            raise ValueError(f"number_format must be one of {NUMBER_FORMATS}, "
                             f"got {self.number_format!r}")

    @property
    def written_decimals(self) -> int:
        """Digits written after a point: ``decimals`` for ``decimal``, 0 for ``digits``."""
        return self.decimals if self.number_format == "decimal" else 0

    def max_digits(self, max_int_digits: int) -> tuple[int, int]:
        """(most digits before the point or of the whole integer, digits after the point)
        of a written number whose scaled value has at most ``max_int_digits`` integer digits."""
        if self.number_format == "decimal":
            return max_int_digits, self.decimals
        return max_int_digits + self.decimals, 0

    def quantize(self, values: np.ndarray) -> np.ndarray:
        """The values ``decode(encode(values))`` returns: ``round(x / alpha, decimals) * alpha``."""
        scaled = np.asarray(values, dtype=np.float64) / self.alpha
        return np.round(scaled, self.decimals) * self.alpha

    def encode(self, values: np.ndarray) -> str:
        """Array [T, V] (T, V >= 1, finite) -> LLMTIME text."""
        arr = np.asarray(values, dtype=np.float64)
        if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] < 1:
            raise ValueError(f"values must be [steps >= 1, variables >= 1], got shape {arr.shape}")
        if not np.isfinite(arr).all():
            raise ValueError("cannot encode NaN or inf values")
        # + 0.0 turns -0.0 (a small negative rounded to zero) into 0.0, so no "-0.00".
        scaled = np.round(arr / self.alpha, self.decimals) + 0.0
        if self.number_format == "digits":
            scaled = np.rint(scaled * 10**self.decimals) + 0.0
        fmt = f"{{:.{self.written_decimals}f}}".format
        return STEP_SEP.join(VARIABLE_SEP.join(map(fmt, row)) for row in scaled.tolist())

    def encode_number(self, value: float, int_digits: int = 1) -> str:
        """One value as written, its integer part zero-padded to ``int_digits`` digits, as a
        model that pads its integers writes it.

        Example:
            >>> LLMTimeCodec(alpha=1.0).encode_number(-7.25, int_digits=2)
            '-07.25'
        """
        text = self.encode(np.array([[value]]))
        sign = MINUS if text.startswith(MINUS) else ""
        whole, point, fraction = text.removeprefix(MINUS).partition(POINT)
        return sign + whole.zfill(int_digits) + point + fraction

    @staticmethod
    def integer_digits(number: str) -> int:
        """Digits one written number has before its point (all of them without one).

        Example:
            >>> LLMTimeCodec.integer_digits("-07.25")
            2
        """
        return len(number.removeprefix(MINUS).partition(POINT)[0])

    def decode(self, text: str, n_vars: int) -> np.ndarray:
        """LLMTIME text -> array [T, n_vars], multiplied back by alpha.

        Lenient where it is harmless: any number of decimals per value (``decimal``) and one
        trailing ';' (a generation that stopped after a separator) are accepted.

        Raises:
            ForecastParseError: empty text, a step with the wrong number of values, an empty
                field, or a field that is not a number of this format.
        """
        if n_vars < 1:
            raise ValueError(f"n_vars must be >= 1, got {n_vars}")
        body = text[:-1] if text.endswith(STEP_SEP) else text
        if not body:
            raise ForecastParseError("empty text: no time steps to decode")
        pattern = _NUMBER if self.number_format == "decimal" else _INTEGER
        steps = body.split(STEP_SEP)
        rows = [_parse_step(step, i, n_vars, pattern) for i, step in enumerate(steps)]
        values = np.array(rows, dtype=np.float64).reshape(len(rows), n_vars)
        if self.number_format == "digits":
            values = values / 10**self.decimals
        return values * self.alpha


def _parse_step(step: str, index: int, n_vars: int, pattern: re.Pattern[str]) -> list[float]:
    fields = step.split(VARIABLE_SEP)
    if len(fields) != n_vars:
        raise ForecastParseError(
            f"step {index}: expected {n_vars} values, got {len(fields)} in {step!r}")
    for j, field in enumerate(fields):
        if not field:
            raise ForecastParseError(f"step {index}, value {j}: empty field in {step!r}")
        if not pattern.fullmatch(field):
            raise ForecastParseError(f"step {index}, value {j}: {field!r} is not a number")
    return [float(field) for field in fields]


def choose_alpha(train_values: np.ndarray, quantile: float = 0.99, target: float = 9.0) -> float:
    """Scale so the ``quantile`` of the values maps to ``target`` (most values get one digit).

    Used for ``data.alpha: auto``; call it on the TRAINING split only, so validation and test
    data do not leak into the encoding. A degenerate quantile (all zeros) gives alpha = 1.

    Example:
        >>> choose_alpha(np.linspace(0.0, 18.0, 101), quantile=0.5, target=9.0)
        1.0
        >>> round(choose_alpha(np.array([0.5, 2.0, 13.5]), quantile=1.0, target=9.0), 6)
        1.5

    Args:
        train_values: training values, any shape (finite).
        quantile: which quantile to map, in (0, 1].
        target: where it lands after scaling (> 0).

    Returns:
        alpha > 0.
    """
    values = np.asarray(train_values, dtype=np.float64)
    if values.size == 0 or not np.isfinite(values).all():
        raise ValueError("train_values must be non-empty and finite")
    if not 0 < quantile <= 1 or not target > 0:
        raise ValueError(f"need 0 < quantile <= 1 and target > 0, got {quantile}, {target}")
    level = float(np.quantile(np.abs(values), quantile))
    return level / target if level > 0 else 1.0
