"""Every supported architecture family against torch's own counter and its own modules.

For each family a tiny random-init model is built from its transformers config class, wrapped
with PEFT LoRA, and run under ``FlopCounterMode`` (tests/flops_oracle.py): a forward pass, a
train step (``loss.backward()`` on frozen weights) and the forecaster's KV-cached decode loop.
The exact accounting in the torch convention must agree (required: within 1%; held to
rounding). The model itself is the oracle for the rest: its parameter count, and the names of
the linears in its decoder layers (what PEFT's ``all-linear`` wraps).
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("peft")

from flops_oracle import (  # noqa: E402
    cached_decode,
    forward,
    measure,
    predict,
    token_ids,
    train_step,
    with_lora,
)
from torch import nn  # noqa: E402

from lora_forecast.errors import ConfigError  # noqa: E402
from lora_forecast.flops import Architecture  # noqa: E402
from lora_forecast.flops.families import (  # noqa: E402
    FAMILIES,
    UnknownLoraTarget,
    UnsupportedArchitecture,
    resolve_lora_targets,
)
from tests.conftest import count_with  # noqa: E402

pytestmark = [
    pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing:FutureWarning"),
]

VOCAB = 300
# The requirement is 1%; the count is in fact exact, and at these sizes a dropped attention
# gradient (Phi-3's dK) moves the total by only ~0.5%, so hold it to rounding.
TOLERANCE = 1e-9
SMALL = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
         "num_key_value_heads": 2, "intermediate_size": 128, "vocab_size": VOCAB,
         "pad_token_id": 0, "bos_token_id": None, "eos_token_id": None}
# model_type -> (config class, causal LM class, what differs from SMALL)
CASES = {
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", {}),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", {"head_dim": 32}),  # 4 * 32 != 64
    "llama": ("LlamaConfig", "LlamaForCausalLM", {"attention_bias": True, "mlp_bias": True}),
    "mistral": ("MistralConfig", "MistralForCausalLM", {}),
    "phi3": ("Phi3Config", "Phi3ForCausalLM", {}),
    "gemma": ("GemmaConfig", "GemmaForCausalLM", {"head_dim": 32}),
    "gemma2": ("Gemma2Config", "Gemma2ForCausalLM",
               {"head_dim": 16, "query_pre_attn_scalar": 16, "tie_word_embeddings": False}),
    # head_dim 32 != 64 / 4; a window of 4 keys, below the 6-token prompts + 4 decoded tokens
    "gemma3_text": ("Gemma3TextConfig", "Gemma3ForCausalLM",
                    {"head_dim": 32, "query_pre_attn_scalar": 32, "sliding_window": 4,
                     "layer_types": ["sliding_attention", "full_attention"]}),
}
EXTRA_TRAITS = {  # what from_hf_config must read beyond the sizes, per family
    "qwen2": {"qkv_bias": True},
    "llama": {"qkv_bias": True, "o_bias": True, "mlp_bias": True},
    "gemma": {"hidden_act": "gelu_pytorch_tanh"},
    "gemma2": {"hidden_act": "gelu_pytorch_tanh", "attn_softcap": 50.0, "final_softcap": 30.0},
    "gemma3_text": {"hidden_act": "gelu_pytorch_tanh", "attn_softcap": None,
                    "final_softcap": None, "sliding_window": 4, "sliding_layers": (0,)},
}


def _config(family: str, **overrides):
    config_class, _, extra = CASES[family]
    return getattr(transformers, config_class)(**{**SMALL, **extra, **overrides},
                                               attn_implementation="eager")


def _model(family: str, **overrides) -> tuple[nn.Module, Architecture]:
    torch.manual_seed(0)
    config = _config(family, **overrides)
    return getattr(transformers, CASES[family][1])(config), Architecture.from_hf_config(config)


def _layer_linears(model: nn.Module) -> set[str]:
    """Names of the nn.Linear modules inside the decoder layers (lm_head excluded)."""
    return {name.rsplit(".", 1)[-1] for name, module in model.named_modules()
            if isinstance(module, nn.Linear) and ".layers." in name}


def test_every_family_is_tested():
    assert set(CASES) == set(FAMILIES)


@pytest.mark.parametrize("family", CASES)
def test_reads_sizes_traits_and_counts_the_real_parameters(family):
    model, arch = _model(family)
    assert arch.family == family
    assert (arch.hidden, arch.layers, arch.heads, arch.kv_heads, arch.vocab) == (64, 2, 4, 2,
                                                                                 VOCAB)
    assert arch.head_dim == CASES[family][2].get("head_dim", 16)
    for trait, value in EXTRA_TRAITS.get(family, {}).items():
        assert getattr(arch, trait) == value
    unique = {id(p): p.numel() for p in model.parameters()}
    assert arch.parameter_count() == sum(unique.values())


@pytest.mark.parametrize("family", CASES)
def test_linear_modules_are_the_layers_linears(family):
    model, arch = _model(family)
    assert set(arch.linear_modules) == _layer_linears(model)
    assert resolve_lora_targets(arch, "all-linear") == arch.linear_modules
    assert resolve_lora_targets(family, ["all-linear"]) == arch.linear_modules
    assert set(resolve_lora_targets(arch, None)) <= _layer_linears(model)


@pytest.mark.parametrize("family", CASES)
def test_default_targets_agree_with_flop_counter(family):
    """Forward, autograd train step and cached decoding with LoRA on q/v (Phi-3: qkv_proj)."""
    model, arch = _model(family)
    targets = resolve_lora_targets(arch, None)
    model = with_lora(model, 2, targets)
    ids = token_ids(VOCAB, batch=2, tokens=6)
    common = {"context_tokens": 6, "batch_size": 2, "lora_rank": 2, "lora_targets": targets}
    assert predict(arch, mode="forward", **common) == pytest.approx(
        measure(lambda: forward(model, ids)), rel=TOLERANCE)
    model.train()
    assert predict(arch, mode="train", backward="autograd", **common) == pytest.approx(
        measure(lambda: train_step(model, ids)), rel=TOLERANCE)
    decoded = measure(lambda: cached_decode(model, ids, 4, VOCAB))
    assert predict(arch, mode="inference", new_tokens=4, **common) == pytest.approx(decoded,
                                                                                    rel=TOLERANCE)


@pytest.mark.parametrize("family", ["phi3", "qwen3", "gemma2", "gemma3_text"])
def test_all_linear_train_step_agrees_with_flop_counter(family):
    model, arch = _model(family)
    model = with_lora(model, 3, "all-linear")
    wrapped = {name.split(".")[-4] for name, _ in model.named_parameters()
               if name.endswith("lora_A.default.weight")}
    assert wrapped == set(arch.linear_modules)
    ids = token_ids(VOCAB, batch=1, tokens=5)
    measured = measure(lambda: train_step(model, ids))
    predicted = predict(arch, mode="train", context_tokens=5, lora_rank=3,
                        lora_targets=("all-linear",), backward="autograd")
    assert predicted == pytest.approx(measured, rel=TOLERANCE)


@pytest.mark.parametrize("context", [256, 1024])
def test_gemma3_below_and_beyond_its_window_agrees_with_flop_counter(context):
    """A window of 512 with a sliding and a global layer: at 1024 tokens the sliding layer's
    eager attention still scores all N x N pairs under a mask (counted), and its KV cache keeps
    511 positions, so each cached decode call scores 512 keys there (counted)."""
    model, arch = _model("gemma3_text", sliding_window=512)
    assert (arch.sliding_window, arch.sliding_layers) == (512, (0,))
    targets = ("q_proj", "v_proj")
    model = with_lora(model, 2, targets)
    ids = token_ids(VOCAB, batch=1, tokens=context)
    common = {"context_tokens": context, "lora_rank": 2, "lora_targets": targets}
    assert predict(arch, mode="forward", **common) == pytest.approx(
        measure(lambda: forward(model, ids)), rel=TOLERANCE)
    model.train()
    assert predict(arch, mode="train", backward="autograd", **common) == pytest.approx(
        measure(lambda: train_step(model, ids)), rel=TOLERANCE)
    assert predict(arch, mode="inference", new_tokens=3, **common) == pytest.approx(
        measure(lambda: cached_decode(model, ids, 3, VOCAB)), rel=TOLERANCE)


def test_windowed_kernel_would_skip_the_masked_pairs():
    """3 layers, 1 of them global, window 2, 4 tokens: eager scores 3 * 16 pairs; a kernel
    skipping masked blocks 1 + 2 + 3 + 4 = 10 in the global layer and 1 + 2 + 2 + 2 = 7 in
    each sliding one."""
    arch = Architecture(hidden=4, layers=3, heads=2, kv_heads=1, head_dim=2, intermediate=6,
                        vocab=10, family="gemma3_text", hidden_act="gelu_pytorch_tanh",
                        sliding_window=2, sliding_layers=(0, 1))
    assert arch.windowed_attention_pairs(4) == (48, 10 + 2 * 7)
    assert arch.cached_past(0, 9) == 1 and arch.cached_past(2, 9) == 9


def test_layers_without_types_slide_when_a_window_is_set():
    """transformers' cache rule: no ``layer_types`` and a window -> every layer slides."""
    config = _config("mistral", sliding_window=8)
    config.layer_types = None
    arch = Architecture.from_hf_config(config)
    assert (arch.sliding_window, arch.sliding_layers) == (8, (0, 1))
    assert Architecture.from_hf_config(_config("mistral", sliding_window=None)).sliding_layers == ()


def test_fused_qkv_lora_is_as_wide_as_q_k_and_v():
    """LoRA on Phi-3's qkv_proj: A is (D -> r), B is (r -> H*d + 2*KV*d), in each of 2 layers;
    the torch convention prices a (m x n) @ (n x p) product 2mnp."""
    arch = _model("phi3")[1]
    common = {"accounting": "exact", "convention": "torch", "mode": "forward",
              "context_tokens": 1, "lora_rank": 2}
    report = count_with(arch, lora_targets=("qkv_proj",), **common).breakdown
    assert report["forward/lora"] == 2 * (2 * 64 * 2 + 2 * 2 * (64 + 2 * 32))


def test_partial_rotary_factor_is_read():
    config = _config("phi3", rope_parameters={"rope_type": "default", "rope_theta": 1e4,
                                              "partial_rotary_factor": 0.5})
    assert Architecture.from_hf_config(config).rope_width == 8  # half of head_dim 16


def test_unknown_model_type_names_itself_and_the_supported_ones():
    config = transformers.GPT2Config(n_embd=64, n_layer=2, n_head=4, vocab_size=VOCAB)
    with pytest.raises(UnsupportedArchitecture) as info:
        Architecture.from_hf_config(config)
    message = str(info.value)
    assert isinstance(info.value, ConfigError) and isinstance(info.value, ValueError)
    assert "\n" not in message and "'gpt2'" in message and "model_type" in message
    assert all(family in message for family in FAMILIES)


@pytest.mark.parametrize(("family", "targets", "missing"), [
    ("phi3", ["q_proj", "v_proj"], "['q_proj', 'v_proj']"),
    ("llama", ["qkv_proj"], "['qkv_proj']"),
    ("gemma2", "lm_head", "['lm_head']"),
])
def test_missing_targets_name_themselves_and_what_is_available(family, targets, missing):
    with pytest.raises(UnknownLoraTarget) as info:
        resolve_lora_targets(family, targets)
    message = str(info.value)
    assert message.startswith("lora.target_modules: ") and missing in message
    assert all(name in message for name in FAMILIES[family].linear_modules)
    arch = _model(family)[1]
    with pytest.raises(ValueError, match="lora_targets"):
        count_with(arch, accounting="exact", mode="forward", context_tokens=2, lora_rank=2,
                    lora_targets=[targets] if isinstance(targets, str) else targets)


def test_targets_come_back_deduplicated_in_module_order():
    assert resolve_lora_targets("llama", ["v_proj", "q_proj", "v_proj"]) == ("q_proj", "v_proj")
    assert resolve_lora_targets("phi3", None) == ("qkv_proj",)
    assert resolve_lora_targets("qwen2", ()) == ()


# Coursework prices of the family traits, counted by hand on a layer small enough to write out:
# D=4, one layer, H=2 query heads sharing KV=1 head of width d=2, I=6, V=10, n=3 tokens.
def _tiny(family: str, **traits) -> Architecture:
    return Architecture(hidden=4, layers=1, heads=2, kv_heads=1, head_dim=2, intermediate=6,
                        vocab=10, qkv_bias=False, family=family, **traits)


def _coursework(arch: Architecture, **kwargs) -> dict[str, float]:
    args = {"accounting": "exact", "mode": "forward", "context_tokens": 3, **kwargs}
    return dict(count_with(arch, **args).breakdown)


def _spec_mm(m: int, n: int, p: int) -> int:
    """SPEC: (m x n) @ (n x p) costs m * p * (2n - 1)."""
    return m * p * (2 * n - 1)


NORM_ROW = 4 * 4 + 12  # RMSNorm over D=4: x^2, mean, +eps, sqrt, inverse, x*inv, *w


def test_qwen3_norms_every_query_and_key_head():
    got = _coursework(_tiny("qwen3"))
    per_head_row = 4 * 2 + 12  # RMSNorm over d=2
    assert got["forward/norm"] == 3 * 3 * NORM_ROW + 3 * (2 + 1) * per_head_row


def test_gemma_scales_embeddings_offsets_norms_and_uses_tanh_gelu():
    got = _coursework(_tiny("gemma", hidden_act="gelu_pytorch_tanh"))
    assert got["forward/embed_scale"] == 3 * 4  # x * sqrt(D)
    assert got["forward/norm"] == 3 * (3 * NORM_ROW + 4)  # + (1 + w): D adds a call
    # 0.5x(1 + tanh(b(x + k x^3))): 8 ops + tanh (10); then * up
    assert got["forward/mlp_act"] == 3 * 6 * (8 + 10 + 1)


def test_gemma2_sandwich_norms_and_soft_capping():
    arch = _tiny("gemma2", hidden_act="gelu_pytorch_tanh", attn_softcap=50.0,
                 final_softcap=30.0)
    got = _coursework(arch)
    assert got["forward/norm"] == 5 * (3 * NORM_ROW + 4)  # 4 in the layer, 1 final
    causal_pairs = 1 + 2 + 3
    assert got["forward/attn_softcap"] == 2 * causal_pairs * 12  # s / c, tanh, * c
    assert got["forward/lm_head_softcap"] == 3 * 10 * 12
    train = _coursework(arch, mode="train", lora_rank=1, backward="autograd")
    # backward per score and logit: g * c, g * (1 - t^2) (3), / c
    assert train["backward/attn_softcap"] == 2 * causal_pairs * 5
    assert train["backward/lm_head_softcap"] == 3 * 10 * 5


def test_gemma3_norms_every_head_and_sandwiches_both_blocks():
    got = _coursework(_tiny("gemma3_text", hidden_act="gelu_pytorch_tanh"))
    per_head_row = 4 * 2 + 12  # RMSNorm over d=2, plus (1 + w): d adds a call
    qk = (3 * 2 * per_head_row + 2) + (3 * 1 * per_head_row + 2)
    assert got["forward/norm"] == 5 * (3 * NORM_ROW + 4) + qk  # 4 in the layer, 1 final
    assert got["forward/embed_scale"] == 3 * 4


def test_phi3_fused_projections_and_partial_rotary():
    arch = _tiny("phi3", rotary_dim=1)
    got = _coursework(arch)
    assert got["forward/qkv_proj"] == _spec_mm(3, 4, 2 * 2 + 2 * 1 * 2)
    assert got["forward/gate_up_proj"] == _spec_mm(3, 4, 2 * 6)
    assert got["forward/rope"] == 3 * 3 * (2 + 1) * 1  # x*cos + rot(x)*sin on 1 of 2 dims
    train = _coursework(arch, mode="train", lora_rank=1, backward="autograd")
    unfused = _coursework(_tiny("mistral", rotary_dim=1), mode="train", lora_rank=1,
                          lora_targets=("q_proj", "k_proj", "v_proj"), backward="autograd")
    # q/k/v are three slices of one (3 x 8) output: 2 adds per element of it; the MLP's normed
    # input (3 x 4) feeds one gate_up_proj instead of gate and up: 1 add less per element
    fused_adds = train["backward/grad_accumulation"] - unfused["backward/grad_accumulation"]
    assert fused_adds == 2 * 3 * 8 - 3 * 4
