"""Execution plans: `--precision fp32` on CUDA switches TF32 off (checked without a GPU: the flags are
process settings); other plans leave the settings alone."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from segcli.device import ExecutionPlan

CUDA = torch.device("cuda")  # a device object needs no GPU; nothing here runs on one


def tf32_flags() -> tuple[bool, bool]:
    return torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32


def test_fp32_on_cuda_means_fp32_inside_the_forward_and_the_settings_come_back():
    before = tf32_flags()
    torch.backends.cudnn.allow_tf32 = True  # torch's default: TF32 convolutions
    try:
        plan = ExecutionPlan(CUDA, "fp32", channels_last=True)
        with plan.autocast():
            assert tf32_flags() == (False, False)
            assert torch.get_float32_matmul_precision() == "highest"
        with plan.numerics():
            assert tf32_flags() == (False, False)
        assert tf32_flags() == (True, before[1])
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


def test_other_plans_leave_tf32_as_it_was():
    before = tf32_flags()
    for plan in (ExecutionPlan(CUDA, "bf16", True), ExecutionPlan(torch.device("cpu"), "fp32", False)):
        with plan.numerics():
            assert tf32_flags() == before
    with ExecutionPlan(torch.device("cpu"), "fp32", False).autocast():
        assert tf32_flags() == before


@pytest.mark.slow
def test_fp32_keeps_to_the_new_precision_api_once_a_process_uses_it():
    """torch >= 2.9 raises when the legacy and new TF32 settings are mixed: keep to the one in use."""
    if not hasattr(torch.backends.cudnn, "conv") or not hasattr(torch.backends.cudnn.conv, "fp32_precision"):
        return  # this torch has only the legacy flags, which the tests above cover
    script = (
        "import torch\n"
        "from segcli.device import ExecutionPlan\n"
        "torch.backends.cudnn.conv.fp32_precision = 'tf32'\n"
        "torch.backends.cuda.matmul.fp32_precision = 'tf32'\n"
        "with ExecutionPlan(torch.device('cuda'), 'fp32', True).numerics():\n"
        "    inside = (torch.backends.cudnn.conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision)\n"
        "after = (torch.backends.cudnn.conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision)\n"
        "print(inside, after)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "('ieee', 'ieee') ('tf32', 'tf32')"


@pytest.mark.parametrize("classes, dtype", [(21, np.uint8), (300, np.int64)])
def test_labels_taken_where_the_logits_are_equal_the_host_argmax_byte_for_byte(classes, dtype):
    """Ties included (logits rounded to a few values): the first maximal class on every path."""
    from segcli.device import labels_to_host

    generator = torch.Generator().manual_seed(0)
    logits = torch.randint(0, 4, (3, classes, 17, 23), generator=generator).float() / 2
    labels = labels_to_host(logits, np.dtype(dtype))
    expected = [logits[index].argmax(0).numpy().astype(dtype) for index in range(3)]  # the per-image host path
    assert labels.dtype == dtype and labels.shape == (3, 17, 23)
    for index in range(3):
        assert labels[index].tobytes() == expected[index].tobytes()


def test_pinned_for_leaves_cpu_runs_alone():
    from segcli.device import pinned_for

    tensor = torch.rand(2, 3)
    assert pinned_for(tensor, torch.device("cpu")) is tensor

