"""The single owner of the LLMTIME format: numbers as text (:mod:`.codec`), text as one token
per symbol of the model's own tokenizer (:mod:`.tokens`), the forecast grammar
(:mod:`.grammar`), and the two bound together for one run (:mod:`.format`)."""

from lora_forecast.llmtime.codec import (
    NUMBER_FORMATS,
    ForecastParseError,
    LLMTimeCodec,
    choose_alpha,
)
from lora_forecast.llmtime.format import LLMTimeFormat, Series
from lora_forecast.llmtime.grammar import GrammarState, LLMTimeGrammar, LLMTimeLogitsProcessor
from lora_forecast.llmtime.tokens import LAYOUTS, TokenLayoutError, TokenTable, written_text

__all__ = [
    "LAYOUTS",
    "NUMBER_FORMATS",
    "ForecastParseError",
    "GrammarState",
    "LLMTimeCodec",
    "LLMTimeFormat",
    "LLMTimeGrammar",
    "LLMTimeLogitsProcessor",
    "Series",
    "TokenLayoutError",
    "TokenTable",
    "choose_alpha",
    "written_text",
]
