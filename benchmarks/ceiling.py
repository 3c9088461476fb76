"""The machine's ceiling, measured in the benchmark's own run: matmul FLOP/s and memory bandwidth.

A ratio against a peer says nothing about how much faster anything could be; MFU (model FLOPs
per second / the measured matmul peak) and the bandwidth fraction (bytes of weights a decode
call reads per second / the measured copy bandwidth) do. The peak is measured with ``torch.mm``
at the model's own GEMM shapes in the run's precision, best of a few repeats (the CPU may be
shared), so it is what the matrix units deliver to these shapes, not a datasheet number. A
shared machine's rate drifts by tens of percent within minutes, so the benchmarks measure the
ceiling before AND after their timed runs and divide by the higher of the two
(:meth:`Ceiling.higher`): MFU errs low, never high.

bf16 is measured only where the hardware has it natively (CUDA capability >= 8.0; on CPU the
``avx512_bf16`` or ``amx_bf16`` flags): emulated bf16 matmuls run ~100x slower and would take
minutes while measuring nothing useful.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from benchmarks.common import synchronize

NATIVE_BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def bf16_support(device: torch.device) -> tuple[bool, str]:
    """(native bf16 matmuls?, why): CUDA capability >= 8.0, or a CPU bf16 instruction flag."""
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        return major >= 8, f"CUDA capability {major}.{minor} (native bf16 needs >= 8.0)"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            flags = next((line.split(":", 1)[1].split() for line in cpuinfo
                          if line.startswith("flags")), [])
    except OSError:
        flags = []
    found = [f for f in NATIVE_BF16_CPU_FLAGS if f in flags]
    capability = torch.backends.cpu.get_cpu_capability()
    if found:
        return True, f"CPU flags {', '.join(found)} ({capability})"
    return False, f"CPU ({capability}) has none of {', '.join(NATIVE_BF16_CPU_FLAGS)}"


def _best_seconds(fn, device: torch.device, repeats: int, min_seconds: float) -> float:
    """Best time of one ``fn()`` call over ``repeats`` timed batches of at least ``min_seconds``."""
    fn()  # warm-up (kernel selection, allocation)
    best = float("inf")
    for _ in range(repeats):
        calls, start = 0, time.perf_counter()
        synchronize(device)
        while True:
            fn()
            calls += 1
            synchronize(device)
            elapsed = time.perf_counter() - start
            if elapsed >= min_seconds:
                break
        best = min(best, elapsed / calls)
    return best


def matmul_flops_per_s(shapes: Sequence[tuple[int, int, int]], dtype: torch.dtype,
                       device: torch.device, repeats: int = 3,
                       min_seconds: float = 0.2) -> dict[str, float]:
    """FLOP/s of ``(m x k) @ (k x n)`` for each shape (2mkn FLOPs, torch's count), best of
    ``repeats``; keyed ``"m x k x n"``."""
    out = {}
    for m, k, n in shapes:
        a = torch.randn(m, k, device=device).to(dtype)
        b = torch.randn(k, n, device=device).to(dtype)
        seconds = _best_seconds(lambda a=a, b=b: torch.mm(a, b), device, repeats, min_seconds)
        out[f"{m}x{k}x{n}"] = 2 * m * k * n / seconds
    return out


def copy_bandwidth(device: torch.device, mib: int = 256, repeats: int = 3) -> float:
    """Bytes/s moved by a large tensor copy, counting what is read plus what is written."""
    src = torch.ones(mib * 2**20 // 4, device=device)
    dst = torch.empty_like(src)
    seconds = _best_seconds(lambda: dst.copy_(src), device, repeats, 0.2)
    return 2 * src.numel() * src.element_size() / seconds


@dataclass(frozen=True)
class Ceiling:
    """The measured machine: matmul peak per precision (None: skipped) and copy bandwidth."""

    peak_flops: float  # fp32, best over the model's shapes
    peak_flops_bf16: float | None
    bandwidth: float  # bytes/s, read + write
    per_shape: dict[str, float]
    bf16_note: str

    def higher(self, other: Ceiling) -> Ceiling:
        """Per shape, per precision and for the bandwidth, the higher of two measurements."""
        per_shape = {shape: max(rate, other.per_shape.get(shape, rate))
                     for shape, rate in self.per_shape.items()}
        bf16 = [p for p in (self.peak_flops_bf16, other.peak_flops_bf16) if p is not None]
        return Ceiling(max(per_shape.values()), max(bf16) if bf16 else None,
                       max(self.bandwidth, other.bandwidth), per_shape, self.bf16_note)

    def as_dict(self) -> dict[str, object]:
        return {"peak_flops": self.peak_flops, "peak_flops_bf16": self.peak_flops_bf16,
                "bandwidth_bytes_per_s": self.bandwidth,
                "bf16_native": self.peak_flops_bf16 is not None,
                **{f"peak_flops_shape_{shape}": rate for shape, rate in self.per_shape.items()}}


def measure(shapes: Sequence[tuple[int, int, int]], device: torch.device,
            bf16: bool = True) -> Ceiling:
    """Measure the ceiling at ``shapes`` (fp32; bf16 too when asked and native)."""
    native, why = bf16_support(device)
    per_shape = matmul_flops_per_s(shapes, torch.float32, device)
    peak_bf16 = None
    if bf16 and native:
        peak_bf16 = max(matmul_flops_per_s(shapes, torch.bfloat16, device).values())
    note = f"bf16: {'measured' if peak_bf16 else 'skipped (not native)' if bf16 else 'not run'}"
    note += f": {why}"
    return Ceiling(max(per_shape.values()), peak_bf16, copy_bandwidth(device), per_shape, note)


def remeasure(before: Ceiling, shapes: Sequence[tuple[int, int, int]], device: torch.device,
              bf16: bool = True) -> Ceiling:
    """Measure again after the timed runs; print it; return the higher of both, per shape."""
    after = measure(shapes, device, bf16)
    print_ceiling(after, "ceiling after the runs")
    higher = before.higher(after)
    print(f"MFU and bandwidth fractions below use the higher of the two: fp32 peak "
          f"{higher.peak_flops / 1e9:.1f} GFLOP/s, copy {higher.bandwidth / 1e9:.1f} GB/s")
    return higher


def print_ceiling(ceiling: Ceiling, label: str = "ceiling") -> None:
    shapes = ", ".join(f"{s} {f / 1e9:.0f}" for s, f in ceiling.per_shape.items())
    print(f"{label}: fp32 matmul {ceiling.peak_flops / 1e9:.1f} GFLOP/s (best of: {shapes}), "
          f"copy bandwidth {ceiling.bandwidth / 1e9:.1f} GB/s (read + write)")
    if ceiling.peak_flops_bf16:
        print(f"ceiling: bf16 matmul {ceiling.peak_flops_bf16 / 1e9:.1f} GFLOP/s")
    print(ceiling.bf16_note)
