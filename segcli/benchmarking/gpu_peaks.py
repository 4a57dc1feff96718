"""Dense peak TFLOP/s per GPU and precision, from the vendors' datasheets, for a row's share of the peak.

Figures are dense (the datasheets print the 2:4-sparsity figures for tensor cores, twice these).
fp32 rows run with TF32 off (segcli.device.strict_fp32), so their peak is the plain FP32 figure,
not TF32's. A GPU not in the table gets no share (`peak_share` None; the report says so).

Sources:
- NVIDIA H100 Tensor Core GPU datasheet (nvidia.com/en-us/data-center/h100/): H100 SXM FP32 67,
  BF16/FP16 1,979 with sparsity (989 dense); H100 PCIe FP32 51, BF16/FP16 1,513 (756 dense);
  H100 NVL FP32 60, BF16/FP16 1,671 (835 dense).
- NVIDIA H200 Tensor Core GPU datasheet (nvidia.com/en-us/data-center/h200/): H200 SXM FP32 67,
  BF16/FP16 1,979 with sparsity (989 dense); H200 NVL FP32 60, BF16/FP16 1,671 (835 dense).
- NVIDIA A100 Tensor Core GPU datasheet (nvidia.com/en-us/data-center/a100/): FP32 19.5,
  BF16/FP16 312 dense (SXM and PCIe alike).
"""

from __future__ import annotations

PEAK_SOURCE = "vendor datasheets (NVIDIA H100, H200, A100): dense figures; fp32 rows without TF32 use the FP32 figure"

# (substring of torch.cuda.get_device_name, lower case) -> {precision: dense TFLOP/s}; first match wins
_PEAKS: tuple[tuple[str, dict[str, float]], ...] = (
    ("h200 nvl", {"fp32": 60.0, "bf16": 835.5, "fp16": 835.5}),
    ("h200", {"fp32": 67.0, "bf16": 989.5, "fp16": 989.5}),
    ("h100 nvl", {"fp32": 60.0, "bf16": 835.5, "fp16": 835.5}),
    ("h100 pcie", {"fp32": 51.0, "bf16": 756.5, "fp16": 756.5}),
    ("h100", {"fp32": 67.0, "bf16": 989.5, "fp16": 989.5}),  # "NVIDIA H100 80GB HBM3": the SXM board
    ("a100", {"fp32": 19.5, "bf16": 312.0, "fp16": 312.0}),
)


def peak_tflops(gpu_name: str | None, precision: str) -> float | None:
    """The dense peak of this GPU at this precision, or None when the GPU is not in the table."""
    if not gpu_name:
        return None
    name = gpu_name.lower()
    for pattern, peaks in _PEAKS:
        if pattern in name:
            return peaks.get(precision)
    return None
