"""What the benchmark knows about a device: its datasheet peak FLOP/s and its peak memory."""

import jax

# Dense datasheet peaks in TFLOP/s, matched against jax's device_kind (lower case,
# most specific first). bfloat16 is the tensor-core / MXU rate without sparsity.
# float32 is half of it: on NVIDIA that is the TF32 tensor-core rate, which XLA
# uses for float32 matmuls at the default precision; on TPU, default-precision
# float32 matmuls run as bfloat16 passes, so half is a conservative figure.
PEAK_BF16_TFLOPS: tuple[tuple[str, float], ...] = (
    ("h100 pcie", 756.0),
    ("h100", 989.0),  # SXM ("NVIDIA H100 80GB HBM3")
    ("h200", 989.0),
    ("a100", 312.0),
    ("tpu v5 lite", 197.0),  # v5e
    ("tpu v5e", 197.0),
    ("tpu v5p", 459.0),
    ("tpu v5", 459.0),
    ("tpu v4", 275.0),
)
FLOAT32_FRACTION = 0.5


def device_peak_flops(
    device_kind: str, compute_dtype: str, override_tflops: float | None = None
) -> tuple[float | None, str]:
    """Peak FLOP/s of one device and where the figure comes from (None when unknown)."""
    if override_tflops is not None:
        return float(override_tflops) * 1e12, "--peak_tflops"
    kind = device_kind.lower()
    for pattern, tflops in PEAK_BF16_TFLOPS:
        if pattern in kind:
            if compute_dtype == "bfloat16":
                return tflops * 1e12, f"{pattern} bf16 dense datasheet"
            return (
                tflops * FLOAT32_FRACTION * 1e12,
                f"{pattern} bf16 dense datasheet x {FLOAT32_FRACTION} for float32",
            )
    return None, "unknown device: pass --peak_tflops"


def peak_memory_bytes() -> int | None:
    """Largest ``peak_bytes_in_use`` over local devices, None where not reported (CPU)."""
    peaks = []
    for device in jax.local_devices():
        stats = device.memory_stats()  # None on CPU
        if stats and "peak_bytes_in_use" in stats:
            peaks.append(int(stats["peak_bytes_in_use"]))
    return max(peaks) if peaks else None
