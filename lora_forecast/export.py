"""``python -m lora_forecast.export run=<run dir> out=<dir> [merge=true]``.

Writes the run's best adapter in PEFT format (``<out>/adapter``: ``adapter_config.json`` +
weights, loadable with ``PeftModel.from_pretrained``) and, with ``merge=true``, the base model
with LoRA merged in (``merge_and_unload``) and the tokenizer (``<out>/merged``), which plain
``transformers`` loads with ``AutoModelForCausalLM.from_pretrained``. ``<out>/lora_forecast.json``
records how values were scaled into text, so forecasts map back to original units. Everything
is written to a temporary folder beside ``out`` and renamed at the end: no half-written export.

A run with ``model.lm_head_bias=true`` (the reference study's trainable output bias) also gets
``lm_head_bias.safetensors`` in both folders: Qwen2's ``lm_head`` has no bias parameter, so
``from_pretrained`` would silently drop it; one line puts it back (README, "Exporting").
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig

from lora_forecast.command import hydra_command
from lora_forecast.errors import ConfigError
from lora_forecast.job import atomic_directory, new_output_folder
from lora_forecast.llmtime import LLMTimeCodec, LLMTimeFormat

if TYPE_CHECKING:
    import torch

    from lora_forecast.config import Settings

EXPORT_INFO = "lora_forecast.json"
BIAS_FILE = "lm_head_bias.safetensors"


@dataclass
class ExportConfig:
    """What to export and where."""

    run: str = "???"
    out: str = "???"
    merge: bool = False


ConfigStore.instance().store(name="export_schema", node=ExportConfig)


def export_run(run_dir: Path, out: Path, merge: bool) -> Path:
    """Export ``run_dir``'s best adapter (and the merged model) into the new folder ``out``.

    Args:
        run_dir: a finished run directory (results.json, best/trainable.pt).
        out: destination; must not exist yet, or be an empty folder.
        merge: also write the merged model with its tokenizer.

    Returns:
        ``out``.

    Raises:
        ConfigError: not a run directory, no adapter, or ``out`` not empty.
    """
    from lora_forecast.models.tokenizer import load_tokenizer
    from lora_forecast.run_folder import load_run_model, run_config, run_scaling, settings_from

    out = new_output_folder(out)
    settings = settings_from(run_config(run_dir))
    model = load_run_model(settings, run_dir)
    bias = model.get_base_model().get_output_embeddings().bias
    with atomic_directory(out) as tmp:
        model.save_pretrained(tmp / "adapter")
        _save_bias(bias, tmp / "adapter")
        scaling = run_scaling(run_dir)
        signed = bool((scaling or {}).get("signed", False))  # the run's alphabet: '-' or not
        fmt = LLMTimeFormat.for_tokenizer(
            LLMTimeCodec(1.0, settings.data.decimals, settings.data.number_format),
            load_tokenizer(settings.model), signed)
        info = {"run": str(run_dir), "decimals": settings.data.decimals,
                "number_format": settings.data.number_format, "layout": fmt.tokens.layout,
                "example_prompt": fmt.text(_example(len((scaling or {}).get("variables")
                                                        or ("var0", "var1")))),
                "signed": signed, "scaling": scaling}
        (tmp / EXPORT_INFO).write_text(json.dumps(info, indent=2))
        if merge:
            merged = model.merge_and_unload()
            merged.config.use_cache = True  # generation with a KV cache by default
            merged.get_output_embeddings().bias = None  # saved apart, see _save_bias
            merged.save_pretrained(tmp / "merged")
            load_tokenizer(settings.model).save_pretrained(tmp / "merged")
            _save_bias(bias, tmp / "merged")
    return out


def _save_bias(bias, folder: Path) -> None:
    """The trained lm_head bias as ``{"bias": [vocab]}`` (nothing when the run has none)."""
    if bias is not None:
        from safetensors.torch import save_file

        save_file({"bias": bias.detach().contiguous().cpu()}, str(folder / BIAS_FILE))


def _example(n_vars: int) -> np.ndarray:
    """Two steps of ``n_vars`` scaled values for ``example_prompt`` (the run's own width).

    Example:
        >>> _example(2).tolist()
        [[0.25, 1.5], [0.27, 1.52]]
    """
    return np.round(np.array([[0.25], [0.27]]) + 1.25 * np.arange(n_vars), 2)


def load_exported_model(settings: Settings, export_dir: str | Path) -> torch.nn.Module:
    """The base model with an exported adapter (``python -m lora_forecast.export``) loaded:
    its PEFT weights (``adapter/adapter_model.safetensors``) and, where the run trained one,
    the lm_head bias PEFT does not save (``adapter/lm_head_bias.safetensors``).

    Raises:
        ConfigError: the folder holds no exported adapter.
    """
    import torch
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    from lora_forecast.models.build import build_model

    folder = Path(export_dir) / "adapter"
    weights = folder / "adapter_model.safetensors"
    if not weights.is_file():
        raise ConfigError(f"{export_dir}: no exported adapter ({weights.name} in adapter/)")
    model = build_model(settings.model, settings.lora)
    set_peft_model_state_dict(model, load_file(str(weights)))
    bias = model.get_base_model().get_output_embeddings().bias
    if bias is not None and (folder / BIAS_FILE).is_file():
        with torch.no_grad():
            bias.copy_(load_file(str(folder / BIAS_FILE))["bias"])
    model.eval()
    return model


@hydra_command("export")
def cli(cfg: DictConfig) -> None:
    """Export a run's adapter (and with ``merge=true`` the merged model)."""
    path = export_run(Path(cfg.run), Path(cfg.out), bool(cfg.merge))
    print(f"exported {cfg.run} -> {path}" + (" (adapter + merged model)" if cfg.merge else ""))


if __name__ == "__main__":
    cli()
