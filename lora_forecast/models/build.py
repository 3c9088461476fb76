"""Build the causal LM a run fine-tunes: load (or random-init) the base model, add the optional
lm_head bias of the reference study, and wrap the attention projections with PEFT LoRA.
"""

from __future__ import annotations

import logging

import torch
from peft import LoraConfig as PeftLoraConfig
from peft import PeftModel, get_peft_model
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    PretrainedConfig,
    PreTrainedModel,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from lora_forecast.config import LoraConfig, ModelConfig
from lora_forecast.errors import ModelLoadError
from lora_forecast.flops import Architecture, resolve_lora_targets
from lora_forecast.models.attention import attention_choices, prefer_folded_sdpa
from lora_forecast.models.gguf_cache import resolve_checkpoint
from lora_forecast.models.tokenizer import qwen_tokenizer

log = logging.getLogger(__name__)

QWEN2_5_VOCAB_ROWS = 151936  # embedding rows of Qwen2.5 (tokenizer has 151669 entries)
DTYPES = {"auto": "auto", "fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def tiny_qwen2_config(cfg: ModelConfig) -> Qwen2Config:
    """A small Qwen2 shape with the real vocabulary, RoPE theta and norm eps of Qwen2.5, and
    the special tokens of the Qwen2.5 tokenizer it is paired with."""
    tokenizer = qwen_tokenizer()
    return Qwen2Config(
        vocab_size=QWEN2_5_VOCAB_ROWS,
        hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_kv_heads,
        intermediate_size=cfg.intermediate_size,
        max_position_embeddings=32768,
        rope_theta=1_000_000.0,
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.pad_token_id,  # Qwen2.5 has no BOS: <|endoftext|> as in its config
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def _unavailable(cfg: ModelConfig, exc: Exception) -> ModelLoadError:
    return ModelLoadError(
        f"model.name_or_path: cannot load {cfg.name_or_path!r} (Hub unreachable or no local "
        f"weights); run offline with model=tiny or point model.name_or_path=/local/dir at a "
        f"downloaded copy ({type(exc).__name__})"
    )


def pretrained_config(cfg: ModelConfig) -> PretrainedConfig:
    """A pretrained model's config only (a local folder, the HF cache, or one small Hub request).

    Raises:
        ModelLoadError: in one sentence naming ``model=tiny`` and local paths when offline.
    """
    cfg = resolve_checkpoint(cfg)  # a GGUF file: its dequantized, cached folder
    try:
        return AutoConfig.from_pretrained(cfg.name_or_path, revision=cfg.revision)
    except (OSError, ValueError) as exc:
        raise _unavailable(cfg, exc) from None


def check_model_available(cfg: ModelConfig) -> None:
    """Fail fast, before the budget is touched, when the attention is unknown or a pretrained
    model cannot be resolved."""
    known = attention_choices()
    if cfg.attn_implementation not in known:
        raise ModelLoadError(f"model.attn_implementation: must be one of {', '.join(known)}, "
                             f"got {cfg.attn_implementation!r}")
    if cfg.kind == "pretrained":
        pretrained_config(cfg)


def load_dtype(cfg: ModelConfig, on_cuda: bool) -> torch.dtype | str:
    """The dtype weights are loaded in. ``auto`` keeps the checkpoint's dtype (bf16 for Qwen2.5)
    on CUDA, but means float32 on CPU: CPUs without native bf16 emulate bf16 matmuls, measured
    ~200x slower than fp32 on this project's machines (a full-size training step ran >10 min)."""
    if cfg.dtype == "auto" and not on_cuda:
        return torch.float32
    return DTYPES.get(cfg.dtype, cfg.dtype)


def _load_pretrained(cfg: ModelConfig) -> PreTrainedModel:
    cfg = resolve_checkpoint(cfg)
    dtype = load_dtype(cfg, torch.cuda.is_available())
    attn = None if cfg.attn_implementation == "auto" else cfg.attn_implementation
    try:
        if cfg.dtype == "auto" and dtype == torch.float32:
            stored = getattr(pretrained_config(cfg), "dtype", None)
            log.info("model.dtype=auto on CPU: computing in float32 (checkpoint stores %s; "
                     "CPU bf16 matmuls are emulated and slow)", stored)
        return AutoModelForCausalLM.from_pretrained(
            cfg.name_or_path,
            revision=cfg.revision,
            dtype=dtype,
            attn_implementation=attn,  # None: transformers' choice (sdpa where supported)
        )
    except OSError as exc:
        raise _unavailable(cfg, exc) from None
    except ValueError as exc:  # e.g. an attention implementation the family lacks
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelLoadError(f"model.name_or_path: cannot load {cfg.name_or_path!r}: "
                             f"{reason}") from None


def load_base_model(cfg: ModelConfig) -> PreTrainedModel:
    """Load the frozen base model: ``from_pretrained`` or a seeded random-init tiny Qwen2.

    Raises:
        ModelLoadError: in one sentence naming ``model=tiny`` and local paths when offline.
    """
    if cfg.kind == "pretrained":
        model = _load_pretrained(cfg)
    else:
        config = tiny_qwen2_config(cfg)
        config._attn_implementation = ("sdpa" if cfg.attn_implementation == "auto"
                                       else cfg.attn_implementation)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.init_seed)
            model = Qwen2ForCausalLM(config)
        if cfg.dtype not in ("auto", "fp32"):  # initialised in fp32, then stored like a checkpoint
            model = model.to(DTYPES[cfg.dtype])
    if cfg.attn_implementation == "auto":
        prefer_folded_sdpa(model)
    model.config.use_cache = False
    return model


def add_lm_head_bias(
    model: PreTrainedModel, dtype: torch.dtype | None = None
) -> torch.nn.Parameter:
    """Give ``lm_head`` a zero-initialised bias (the reference study's trainable output bias).

    The weight stays tied to the input embeddings; only the new bias is trainable. ``dtype``
    defaults to the weight's; float32 keeps small updates of a bias beside bf16 weights (bf16
    has 8 significant bits: lr 1e-5 steps would round away).
    """
    head = model.get_output_embeddings()
    bias = torch.nn.Parameter(torch.zeros(head.out_features, dtype=dtype or head.weight.dtype))
    head.bias = bias
    return bias


def apply_lora(model: PreTrainedModel, cfg: LoraConfig) -> PeftModel:
    """Freeze the base model and wrap ``cfg.target_modules`` with LoRA (A Kaiming, B zeros).

    The targets are resolved for the model's family exactly as the FLOPs accounting resolves
    them (null = its q/v, ``all-linear``, or names), so what is trained is what is counted.
    """
    targets = resolve_lora_targets(Architecture.from_hf_config(model.config),
                                   cfg.target_modules)
    peft_config = PeftLoraConfig(
        r=cfg.rank,
        lora_alpha=cfg.scaling_alpha,
        lora_dropout=cfg.dropout,
        target_modules=list(targets),
        bias="none",
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, peft_config)


def build_model(model_cfg: ModelConfig, lora_cfg: LoraConfig) -> PeftModel:
    """Base model + optional lm_head bias + LoRA, with exactly the intended parameters trainable.

    With bf16/fp16 base weights the trainable tensors are float32 (PEFT's
    ``autocast_adapter_dtype`` for LoRA A/B; the numeric head's bias here), so the optimiser's
    state is float32 too.
    """
    base = load_base_model(model_cfg)
    # The numeric head computes its logits in float32 (any bias dtype works); the full head
    # adds the bias inside lm_head's own matmul, which needs the weight's dtype.
    bias_dtype = torch.float32 if model_cfg.head == "numeric" else None
    bias = add_lm_head_bias(base, bias_dtype) if model_cfg.lm_head_bias else None
    model = apply_lora(base, lora_cfg)
    if bias is not None:
        bias.requires_grad_(True)
    trainable, total = model.get_nb_trainable_parameters()  # PEFT's count: tied weights once
    log.info("trainable parameters: %d of %d (%.4f%%)", trainable, total, 100 * trainable / total)
    return model


def enable_gradient_checkpointing(model: PreTrainedModel | PeftModel) -> None:
    """Recompute each decoder layer's activations in the backward instead of keeping them.

    Non-reentrant checkpointing works with a frozen base whose trainable tensors sit inside the
    layers (LoRA) or after them (the lm_head bias, the numeric head). transformers also turns
    on ``enable_input_require_grads`` (PEFT's companion), which only reentrant checkpointing
    needs: here it would make autograd differentiate the first layer back to the frozen
    embeddings for nothing, so it is turned off again.
    """
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    model.disable_input_require_grads()


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every trainable tensor by name (LoRA A/B and the lm_head bias), detached copies."""
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def load_trainable_state(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Copy a :func:`trainable_state` back in place; names must match exactly."""
    params = dict(model.named_parameters())
    missing = set(state) - set(params)
    if missing:
        raise KeyError(f"trainable state names not in model: {sorted(missing)[:3]}")
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value)
