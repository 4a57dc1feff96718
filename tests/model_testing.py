"""Shared helpers for the model-zoo tests: small options per model, seeded inputs, state-dict checks."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

# options that make each zoo model small enough for a 2-core CPU test
SMALL_OPTIONS: dict[str, dict[str, object]] = {
    "fcn32s": {"width": 0.0625},
    "fcn16s": {"width": 0.0625},
    "fcn8s": {"width": 0.0625},
    "fcn-resnet50": {"width": 0.125},
    "fcn-resnet101": {"width": 0.125},
    "deeplabv1": {"width": 0.125},
    "deeplabv2": {"width": 0.125, "depth": 50},
    "deeplabv3-resnet50": {"width": 0.125},
    "deeplabv3-resnet101": {"width": 0.125},
    "deeplabv3-mobilenet": {"width_mult": 0.5},
    "deeplabv3p-resnet50": {"width": 0.125},
    "deeplabv3p-resnet101": {"width": 0.125},
    "deeplabv3p-mobilenet": {"width_mult": 0.5},
    "lraspp": {"width_mult": 0.5},
}


def random_image(size: int = 64, seed: int = 0) -> torch.Tensor:
    """A reproducible 1x3xSxS input batch."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(1, 3, size, size, generator=generator)


def randomize_batchnorm_stats(model: nn.Module, seed: int = 0) -> None:
    """Give every BatchNorm non-trivial running stats and affine terms, so mis-wired BN shows up."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                count = module.num_features
                module.running_mean.copy_(0.1 * torch.randn(count, generator=generator))
                module.running_var.copy_(0.5 + torch.rand(count, generator=generator))
                module.weight.copy_(0.5 + torch.rand(count, generator=generator))
                module.bias.copy_(0.1 * torch.randn(count, generator=generator))


def state_shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    """Every state-dict key of ``model`` with its tensor shape."""
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


def assert_keys_with_shapes(model: nn.Module, expected: Mapping[str, tuple[int, ...]]) -> None:
    """``model``'s state dict holds each expected key, with the expected shape."""
    shapes = state_shapes(model)
    missing = sorted(key for key in expected if key not in shapes)
    assert not missing, f"missing keys: {missing}"
    wrong = {key: (shapes[key], shape) for key, shape in expected.items() if shapes[key] != tuple(shape)}
    assert not wrong, f"wrong shapes (got, expected): {wrong}"


def meta_state(expected: Mapping[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    """A shape-only state dict (meta tensors) with the given keys and shapes."""
    return {key: torch.empty(shape, device="meta") for key, shape in expected.items()}


def conv_keys(prefix: str, out_channels: int, in_channels: int, k: int) -> dict[str, tuple[int, ...]]:
    """The state-dict entry of a bias-free k x k convolution, written out."""
    return {f"{prefix}.weight": (out_channels, in_channels, k, k)}


def bn_keys(prefix: str, channels: int) -> dict[str, tuple[int, ...]]:
    """The state-dict entries of a BatchNorm2d, written out."""
    return {f"{prefix}.{name}": (channels,) for name in ("weight", "bias", "running_mean", "running_var")} | {
        f"{prefix}.num_batches_tracked": ()}
