"""Options shared by several commands, as reusable decorators (no torch import here)."""

from __future__ import annotations

from typing import Callable

import click

from segcli.models import CHOICES as MODEL_CHOICES

DEVICE_HELP = "auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps."
PRECISION_CHOICES = ("auto", "fp32", "bf16", "fp16")


def _device_callback(ctx: click.Context, param: click.Parameter, value: str) -> str:
    value = value.lower()
    if value in ("auto", "cpu", "cuda", "mps") or (value.startswith("cuda:") and value[5:].isdigit()):
        return value
    raise click.BadParameter(f"{value!r}: use auto, cpu, cuda, cuda:N or mps")


model_option = click.option(
    "--model", "-m", "model", type=click.Choice(MODEL_CHOICES), default="deeplabv3p", show_default=True,
    help="Zoo model (see `segcli models`).",
)
weights_option = click.option(
    "--weights", "-w", default=None, metavar="NAME|PATH",
    help="Checkpoint: a manifest name (`segcli weights list`) or a file. Default: a real checkpoint on disk, else the shipped one.",
)
device_option = click.option(
    "--device", default="auto", show_default=True, callback=_device_callback, help=DEVICE_HELP,
)
precision_option = click.option(
    "--precision", type=click.Choice(PRECISION_CHOICES), default="auto", show_default=True,
    help="auto: bf16 on CPUs with native bf16 and on CUDA, else fp32.",
)


def crf_options(func: Callable) -> Callable:
    """--crf and its kernel parameters; defaults from DeepLab v2 (ResNet-101, VOC)."""
    options = [
        click.option("--crf/--no-crf", "crf", default=False, show_default=True,
                     help="Refine with a fully connected CRF (needs pydensecrf2)."),
        click.option("--crf-iters", type=click.IntRange(1, 100), default=None,
                     help="Mean-field iterations [DeepLab: 10]."),
        click.option("--crf-bilateral-weight", type=click.FloatRange(min=0), default=None,
                     help="Appearance kernel weight w1 [DeepLab v2: 4]."),
        click.option("--crf-bilateral-xy", type=click.FloatRange(min=0, min_open=True), default=None,
                     help="Appearance kernel spatial sigma [DeepLab v2: 67]."),
        click.option("--crf-bilateral-rgb", type=click.FloatRange(min=0, min_open=True), default=None,
                     help="Appearance kernel colour sigma [DeepLab v2: 3]."),
        click.option("--crf-gaussian-weight", type=click.FloatRange(min=0), default=None,
                     help="Smoothness kernel weight w2 [DeepLab v2: 3]."),
        click.option("--crf-gaussian-xy", type=click.FloatRange(min=0, min_open=True), default=None,
                     help="Smoothness kernel spatial sigma [DeepLab v2: 1]."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def crf_params_from_options(kwargs: dict):
    """Build CRFParams from the --crf* options (None when --crf is off); checks pydensecrf early."""
    use_crf = kwargs.pop("crf")
    overrides = {
        "iterations": kwargs.pop("crf_iters"),
        "bilateral_weight": kwargs.pop("crf_bilateral_weight"),
        "bilateral_xy": kwargs.pop("crf_bilateral_xy"),
        "bilateral_rgb": kwargs.pop("crf_bilateral_rgb"),
        "gaussian_weight": kwargs.pop("crf_gaussian_weight"),
        "gaussian_xy": kwargs.pop("crf_gaussian_xy"),
    }
    given = {name: value for name, value in overrides.items() if value is not None}
    if not use_crf:
        if given:
            raise click.UsageError(f"--crf-* options need --crf (given: {', '.join(sorted(given))})")
        return None
    from dataclasses import replace

    from segcli.crf import INSTALL_HINT, CRFParams, crf_available
    from segcli.errors import MissingDependencyError

    if not crf_available():
        raise MissingDependencyError(INSTALL_HINT)
    return replace(CRFParams(), **given)
