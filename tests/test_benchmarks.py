"""The benchmarks' contract at toy size: the README's commands run, and their last line is the
JSON of ratios the issue asks for. Timings are not asserted (they belong to the benchmarks);
the numbers that are exact by construction are.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks import ceiling, forecasting, training
from benchmarks.common import model_configs
from lora_forecast.models.build import build_model


def per_shape(summary: dict) -> list[float]:
    """The matmul rates the ceiling measured, one per GEMM shape of the model."""
    return [v for k, v in summary.items() if k.startswith("peak_flops_shape_")]


def _last_json_line(capsys: pytest.CaptureFixture[str]) -> dict:
    lines = capsys.readouterr().out.strip().splitlines()
    return json.loads(lines[-1])


@pytest.mark.integration  # separate processes or a whole command
def test_forecasting_benchmark_matches_its_peers_token_for_token(capsys):
    summary = forecasting.main(["--layers", "1", "--systems", "3", "--reference-systems", "1",
                                "--context-steps", "4", "--horizon", "2", "--repeats", "1"])
    assert _last_json_line(capsys) == pytest.approx(summary)
    # greedy, same model, same grammar: generate(), the reference loop, ours with and without
    # jump-forward all write the same tokens
    assert summary["identical"] is True and summary["identical_generate"] is True
    assert summary["identical_systems"] == summary["compared_systems"] == 1
    assert summary["reference_extrapolated"] is False  # uncapped: every token was timed
    assert summary["speedup"] > 0 and summary["speedup_vs_generate"] > 0
    # 2 steps x 2 variables, each value ends in one separator; 3 systems
    assert summary["ours_generated_tokens"] >= 3 * 2 * 2 * 2
    # without jump-forward: one batch, one prefill, then one call per token but the last
    longest = summary["ours_generated_tokens"] / 3
    assert longest - 1 <= summary["decode_calls_without_jump_forward"] <= longest
    # jump-forward: the 3 separators of every forecast ride along with the next call
    assert summary["decode_calls_jump_forward"] <= summary["decode_calls_without_jump_forward"] - 3
    assert summary["decode_calls_ratio"] == pytest.approx(
        summary["decode_calls_jump_forward"] / summary["decode_calls_without_jump_forward"])
    # ours ran as the product does on a CPU: without jump-forward
    assert summary["jump_forward"] is False
    assert summary["decode_calls"] == summary["decode_calls_without_jump_forward"]
    assert summary["prefill_seconds"] > 0 and summary["decode_seconds"] > 0
    # the ceiling: measured peak, MFU and bandwidth fraction are rates, not placeholders
    assert summary["peak_flops"] == max(per_shape(summary)) > 0
    assert summary["mfu"] > 0 and summary["decode_bandwidth_fraction"] > 0
    assert summary["bandwidth_bytes_per_s"] > 0
    # "d.dd,d.dd;" per step: the synthetic data scaled by 10 stays below 10
    assert summary["tokens_per_step"] == 10.0
    # unsized batches: 3 small systems fit in memory together, one batch of 3 rows
    assert (summary["rows_per_decode_call"], summary["forecast_batches"]) == (3, 1)


@pytest.mark.integration  # separate processes or a whole command
def test_forecasting_benchmark_reports_the_compiled_forecaster(capsys):
    summary = forecasting.main(["--layers", "1", "--systems", "2", "--reference-systems", "1",
                                "--context-steps", "3", "--horizon", "1", "--repeats", "1",
                                "--no-generate", "--compile"])
    assert summary["identical_compile"] is True  # greedy tokens equal the eager forecaster's
    assert summary["speedup_compile"] > 0 and summary["speedup_vs_generate"] is None
    assert _last_json_line(capsys) == pytest.approx(summary)  # the printed line is the summary


@pytest.mark.integration  # separate processes or a whole command
def test_forecasting_benchmark_caps_and_extrapolates_the_reference(capsys):
    summary = forecasting.main(["--layers", "1", "--systems", "2", "--reference-systems", "1",
                                "--reference-tokens", "3", "--context-steps", "4",
                                "--horizon", "3", "--repeats", "1"])
    assert summary["reference_generated_tokens"] == 3
    assert summary["reference_extrapolated"] is True
    assert summary["identical"] is True  # compared on the reference's 3-token prefix
    assert _last_json_line(capsys) == pytest.approx(summary)  # the printed line is the summary


def counted_flops(loss_fn, backward: bool) -> int:
    """FLOPs torch's FlopCounterMode sees in one loss (and its backward) of the benchmark's
    2-layer, rank-8 model on its 1 x 16 batch."""
    torch.manual_seed(0)
    model_cfg, lora_cfg = model_configs(2, 8)
    model = build_model(model_cfg, lora_cfg).train()
    with FlopCounterMode(display=False) as counter, torch.set_grad_enabled(backward):
        loss = loss_fn(model, *training.random_batch(1, 16))
        if backward:
            loss.backward()
    return counter.get_total_flops()


@pytest.mark.integration  # separate processes or a whole command
def test_training_benchmark_reports_the_exact_flops_ratio(capsys, monkeypatch):
    monkeypatch.setattr(ceiling, "bf16_support", lambda device: (False, "no bf16 in this test"))
    argv = ["--layers", "2", "--batch", "1", "--context", "16", "--steps", "1", "--warmup", "0",
            "--variants", "reference,numeric,numeric+bf16,numeric+ckpt", "--profile"]
    summary = training.main(argv)
    out = capsys.readouterr().out
    assert json.loads(out.strip().splitlines()[-1]) == pytest.approx(summary)
    assert "skipping the bf16 variants" in out and "speedup_bf16" not in summary
    assert summary["speedup_ckpt"] > 0 and summary["numeric+ckpt_mfu"] > 0
    # Independently of count_flops: torch's FlopCounterMode on the same 2-layer model and batch.
    # Under the budget's rule (backward = 2 x forward) the ratio is the forward ratio; with
    # autograd it is the forward+backward ratio. The conventions differ in a few small terms
    # (the causal discount, the loss), under 0.5% here; a wrong head size is off by 5x.
    ref_fwd, ref_all = (counted_flops(training.reference_loss, b) for b in (False, True))
    num_fwd, num_all = (counted_flops(training.NUMERIC, b) for b in (False, True))
    assert summary["flops_ratio"] == pytest.approx(num_fwd / ref_fwd, rel=5e-3)
    assert summary["flops_ratio_autograd"] == pytest.approx(num_all / ref_all, rel=5e-3)
    assert 0 < summary["flops_ratio"] < 1
    assert summary["speedup"] > 0 and summary["memory_ratio"] > 0
    assert "speedup_at_24_layers_extrapolated" in summary  # depth < 24: extrapolated too
    assert 0 < summary["numeric_matmul_share"] < 1 and 0 < summary["reference_matmul_share"] < 1
    assert {"numeric_tokens_per_s", "reference_tokens_per_s"} <= summary.keys()
    # MFU: the FLOPs autograd really computes (what FlopCounterMode counts) per second
    seconds = 1 * 16 / summary["numeric_tokens_per_s"]
    assert summary["mfu"] == pytest.approx(num_all / seconds / summary["peak_flops"], rel=5e-3)
    assert summary["peak_flops"] == max(per_shape(summary)) > 0
    assert summary["tokens_per_step"] == 10.0


def test_bf16_support_follows_the_cpu_flags():
    flags = Path("/proc/cpuinfo").read_text()
    native, why = ceiling.bf16_support(torch.device("cpu"))
    assert native == ("avx512_bf16" in flags or "amx_bf16" in flags)
    assert why


def test_the_higher_of_two_ceilings_is_taken_per_shape():
    before = ceiling.Ceiling(5.0, None, 10.0, {"a": 5.0, "b": 3.0}, "note")
    after = ceiling.Ceiling(4.0, 7.0, 12.0, {"a": 2.0, "b": 4.0}, "other")
    higher = before.higher(after)
    assert higher.per_shape == {"a": 5.0, "b": 4.0} and higher.peak_flops == 5.0
    assert (higher.peak_flops_bf16, higher.bandwidth) == (7.0, 12.0)


def test_ceiling_measures_positive_rates():
    rates = ceiling.matmul_flops_per_s([(8, 16, 32)], torch.float32, torch.device("cpu"),
                                       repeats=1, min_seconds=0.01)
    assert list(rates) == ["8x16x32"] and rates["8x16x32"] > 0
    assert ceiling.copy_bandwidth(torch.device("cpu"), mib=4, repeats=1) > 0


def test_training_benchmark_needs_both_variants():
    with pytest.raises(SystemExit):
        training.main(["--variants", "numeric"])


@pytest.mark.integration  # separate processes or a whole command
def test_gpu_check_prints_its_json_contract_on_cpu(capsys):
    """The GPU check at toy size on CPU: the JSON keys README promises, numbers that follow from
    each other, and MFU null off the GPU table (CPU)."""
    from benchmarks import gpu_check

    summary = gpu_check.main(["--device", "cpu", "--layers", "2", "--steps", "2", "--batch", "1",
                              "--context", "32", "--systems", "2", "--context-steps", "4",
                              "--horizon", "2"])  # fmt: skip
    assert _last_json_line(capsys) == pytest.approx(summary)
    assert summary["device"] == "cpu" and summary["layers"] == 2 and summary["steps"] == 2
    assert summary["mfu"] is None and summary["bf16_peak_flops_per_s"] is None
    assert summary["step_s"] > 0 and summary["peak_memory_gib"] > 0
    assert summary["train_tokens_per_s"] == pytest.approx(32 / summary["step_s"])
    assert summary["achieved_flops_per_s"] == pytest.approx(
        summary["step_flops"] / summary["step_s"])
    # 2 systems x 2 steps x 2 variables, each value >= 4 tokens ('d.dd') plus a separator
    assert summary["forecast_tokens"] >= 2 * 2 * 2 * 4 and summary["forecast_parsed"] == 2
    assert summary["forecast_tokens_per_s"] == pytest.approx(
        summary["forecast_tokens"] / summary["forecast_s"])


@pytest.mark.parametrize(("name", "peak"), [
    ("NVIDIA H100 80GB HBM3", 989e12), ("NVIDIA H100 PCIe", 756e12), ("NVIDIA H200", 989e12),
    ("NVIDIA A100-SXM4-80GB", 312e12), ("NVIDIA L40S", 362e12), ("NVIDIA L4", 121e12),
    ("Tesla T4", None),
])
def test_gpu_check_mfu_table_matches_device_names(monkeypatch, name: str, peak: float | None):
    """The lookup gpu_check really calls, with CUDA's device name stubbed (datasheet peaks)."""
    from benchmarks import gpu_check

    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
    assert gpu_check.bf16_peak(torch.device("cuda", 0)) == (name, peak)
    assert gpu_check.bf16_peak(torch.device("cpu")) == ("cpu", None)


@pytest.mark.integration  # separate processes or a whole command
def test_drafting_benchmark_trains_measures_and_replays(tmp_path, capsys):
    """A few training steps and a 1-layer replay: the numbers are consistent with each other
    and every drafted forecast is the plain one, token for token."""
    from benchmarks import drafting

    summary = drafting.main(["--systems", "1", "2", "--timed-systems", "2", "--layers", "1",
                             "--train-steps", "20", "--horizon", "3", "--cache",
                             str(tmp_path)])
    out = capsys.readouterr().out
    assert json.loads(out.strip().splitlines()[-1]) == json.loads(json.dumps(summary))
    for n, measured in summary["measured"].items():
        assert measured["identical"], n
        assert 0 <= measured["acceptance_rate"] <= 1
        assert measured["decode_calls_ratio"] == pytest.approx(
            measured["decode_calls_draft"] / measured["decode_calls_plain"])
        assert measured["decode_calls_draft"] <= measured["decode_calls_plain"]
    replayed = summary["replayed"][2]
    assert replayed["identical"] and replayed["identical_generate"]
    assert replayed["speedup_draft"] == pytest.approx(replayed["seconds_plain"]
                                                      / replayed["seconds_draft"])
    for kind in ("plain", "draft"):  # a lower bound on decode time, over the time measured
        assert 0 < replayed[f"{kind}_ceiling_fraction"] <= 1
    assert (tmp_path / "small-20-steps" / "run" / "results.json").is_file()  # cached
