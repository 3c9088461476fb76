"""``model.*``: which causal LM to load and how (conf/model/)."""

from __future__ import annotations

from dataclasses import dataclass

from lora_forecast.config.checks import require

HEADS = ("full", "numeric")  # models.numeric_head.HEAD_LOSSES (import-free; tested equal)


@dataclass
class ModelConfig:
    """Which causal LM to load. ``kind=pretrained`` calls ``from_pretrained(name_or_path)``;
    ``kind=tiny`` builds a seeded random-init Qwen2 of the shape below with the real tokenizer."""

    kind: str = "pretrained"
    name_or_path: str = "Qwen/Qwen2.5-0.5B-Instruct"
    revision: str | None = None
    dtype: str = "auto"
    # auto: transformers' choice, its sdpa as models.attention.FOLDED_SDPA (same numbers)
    attn_implementation: str = "auto"
    lm_head_bias: bool = True
    head: str = "numeric"
    # tiny-model shape (only read when kind=tiny)
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2
    intermediate_size: int = 128
    init_seed: int = 0
    # a GGUF checkpoint (models/gguf_cache.py): package:<module>, an absolute path, or a file
    # name in the folder/Hub repo model.name_or_path; dequantized once and cached
    gguf_file: str | None = None
    gguf_sha256: str | None = None  # optional pin of the GGUF file's SHA-256

    def __post_init__(self) -> None:
        require(
            self.kind in ("pretrained", "tiny"),
            "model.kind",
            f"must be pretrained or tiny, got {self.kind!r}",
        )
        require(self.head in HEADS, "model.head", f"must be one of {HEADS}, got {self.head!r}")
        require(self.kind == "tiny" or bool(self.name_or_path.strip()) or self._gguf_alone,
                 "model.name_or_path",
                 "required: a Hub id or a local folder with the model and its tokenizer "
                 "(or model.gguf_file an absolute path)")
        require(self.gguf_sha256 is None or (len(self.gguf_sha256) == 64 and all(
            c in "0123456789abcdefABCDEF" for c in self.gguf_sha256)), "model.gguf_sha256",
            f"must be 64 hex digits, got {self.gguf_sha256!r}")
        if self.kind == "tiny":
            require(
                self.hidden_size % self.num_heads == 0,
                "model.hidden_size",
                f"must be divisible by model.num_heads ({self.num_heads})",
            )
            require(
                self.num_heads % self.num_kv_heads == 0,
                "model.num_kv_heads",
                f"must divide model.num_heads ({self.num_heads})",
            )
            for key in (
                "hidden_size",
                "num_layers",
                "num_heads",
                "num_kv_heads",
                "intermediate_size",
            ):
                require(getattr(self, key) >= 1, f"model.{key}", "must be >= 1")

    @property
    def _gguf_alone(self) -> bool:
        """A GGUF file that needs no folder: an absolute path or a ``package:`` one (the
        prefix of models/gguf_cache.py, spelled here to keep this module import-free)."""
        name = self.gguf_file or ""
        return name.startswith("package:") or name.startswith(("/", "~"))
