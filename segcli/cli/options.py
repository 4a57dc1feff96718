"""Options shared by several commands, as reusable decorators (no torch import here)."""

from __future__ import annotations

from typing import Callable

import click

from segcli.models import CHOICES as MODEL_CHOICES

DEVICE_HELP = "auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps."
PRECISION_CHOICES = ("auto", "fp32", "bf16", "fp16")
# The largest side a size option takes: a network input of 8192x8192 already needs gigabytes per
# feature map, and a 60000x60000 crop or benchmark input would only end in an out-of-memory crash.
MAX_SIDE = 8192


def size_limits_text(min_side: int, max_side: int = MAX_SIDE) -> str:
    """How --help states a size option's limits."""
    return f"sides {min_side} to {max_side} pixels"


def parse_size(text: str, min_side: int = 8, max_side: int = MAX_SIDE) -> tuple[int, int]:
    """'480x640' -> (480, 640) as (height, width); '128' -> (128, 128); ASCII digits only."""
    parts = text.strip().lower().replace("×", "x").replace("*", "x").split("x")
    if len(parts) not in (1, 2) or not all(_is_number(part.strip()) for part in parts):
        raise click.BadParameter(f"{text.strip()!r} is not a size: use N (square) or HxW, e.g. 512 or 480x640")
    height, width = int(parts[0]), int(parts[-1])
    if min(height, width) < min_side:
        raise click.BadParameter(f"{text.strip()!r} is too small: sides of at least {min_side} pixels")
    if max(height, width) > max_side:
        raise click.BadParameter(f"{text.strip()!r} is too large: sides of at most {max_side} pixels")
    return height, width


def _is_number(text: str) -> bool:
    """Plain ASCII digits: str.isdigit() also accepts '²' and other digits int() refuses."""
    return text.isascii() and text.isdigit()


def parse_sizes(value: str, min_side: int = 8, max_side: int = MAX_SIDE) -> tuple[tuple[int, int], ...]:
    """'256,512' (squares) or '480x640' (HxW), comma-separated -> ((h, w), ...), each once."""
    sizes = dict.fromkeys(parse_size(item, min_side, max_side) for item in value.split(",") if item.strip())
    if not sizes:
        raise click.BadParameter("give one or more sizes, e.g. 256,512 or 480x640")
    return tuple(sizes)


def size_callback(min_side: int = 8, several: bool = False, max_side: int = MAX_SIDE) -> Callable:
    """A Click callback: one size (None stays None), or with `several` a comma list of sizes."""
    def callback(ctx: click.Context, param: click.Parameter, value: str | None):
        if value is None:
            return None
        if several:
            return parse_sizes(value, min_side, max_side)
        if "," in value:
            raise click.BadParameter(f"{value!r}: give one size, N or HxW")
        return parse_size(value, min_side, max_side)
    return callback


def _device_callback(ctx: click.Context, param: click.Parameter, value: str) -> str:
    value = value.lower()
    if value in ("auto", "cpu", "cuda", "mps") or (value.startswith("cuda:") and value[5:].isdigit()):
        return value
    raise click.BadParameter(f"{value!r}: use auto, cpu, cuda, cuda:N or mps")


def zoo_model_option(default: str | None = None, required: bool = False,
                     help: str = "Zoo model (see `segcli models`).") -> Callable:
    """--model/-m: one zoo model name (aliases accepted)."""
    if "segcli models" not in help:
        help = f"{help} Names: `segcli models`."
    return click.option("--model", "-m", "model", type=click.Choice(MODEL_CHOICES), default=default, metavar="NAME",
                        required=required, show_default=default is not None, help=help)


model_option = zoo_model_option(default="deeplabv3p")
download_option = click.option(
    "--download/--no-download", default=False, show_default=True,
    help="Download a missing published checkpoint (checked against its hash).",
)


def quiet_option(help: str = "Only errors and the final line.") -> Callable:
    return click.option("--quiet", "-q", is_flag=True, help=help)


def overwrite_option(help: str) -> Callable:
    """--overwrite: what it replaces differs per command, so each says it."""
    return click.option("--overwrite", is_flag=True, help=help)


def batch_size_option(default: int | None, help: str) -> Callable:
    """--batch-size (also accepted as --batch, its old name in train and benchmark)."""
    return click.option("--batch-size", "--batch", "batch_size", type=click.IntRange(min=1), default=default,
                        show_default=default is not None, help=help)
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


max_pixels_option = click.option(
    "--max-pixels", type=click.IntRange(min=1), default=None,
    help="Refuse images with more pixels than this [default: 100 million].",
)


def crf_options(func: Callable) -> Callable:
    """--crf, --crf-full and the kernel parameters; unset ones come from the checkpoint, else DeepLab v2."""
    options = [
        click.option("--crf/--no-crf", "crf", default=False, show_default=True,
                     help="Refine with a fully connected CRF (pydensecrf: pip install 'segcli[crf]'; without "
                          "it, or on a CUDA device, the same CRF in torch). Fast by default: mean field at half "
                          "size, then full-size updates on the uncertain pixels only (README, section \"CPU and GPU\")."),
        click.option("--crf-full", is_flag=True,
                     help="With --crf: the reference CRF instead (every label, every iteration, full size)."),
        click.option("--crf-method", type=click.Choice(["fast", "full", "torch"]), default=None,
                     help="With --crf: fast [default; on a CUDA device, or without pydensecrf, the torch CRF], "
                          "full (= --crf-full), or torch (the reference CRF in torch on the model's device)."),
        click.option("--crf-iters", type=click.IntRange(1, 100), default=None,
                     help="Mean-field iterations, honoured as given [default: the checkpoint's, else 10 "
                          "(DeepLab v2); the fast CRF stops at 5 when this is not given]."),
        click.option("--crf-bilateral-weight", type=click.FloatRange(min=0), default=None,
                     help="Appearance kernel weight w1 [default: the checkpoint's, else 4 (DeepLab v2)]."),
        click.option("--crf-bilateral-xy", type=click.FloatRange(min=0, min_open=True), default=None,
                     help="Appearance kernel spatial sigma [default: the checkpoint's, else 67]."),
        click.option("--crf-bilateral-rgb", type=click.FloatRange(min=0, min_open=True), default=None,
                     help="Appearance kernel colour sigma [default: the checkpoint's, else 3]."),
        click.option("--crf-gaussian-weight", type=click.FloatRange(min=0), default=None,
                     help="Smoothness kernel weight w2 [default: the checkpoint's, else 3]."),
        click.option("--crf-gaussian-xy", type=click.FloatRange(min=0, min_open=True), default=None,
                     help="Smoothness kernel spatial sigma [default: the checkpoint's, else 1]."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def crf_settings_from_options(kwargs: dict):
    """CRFSettings from the --crf* options (None when --crf is off); checks pydensecrf early.

    Only the kernel settings the user gave are recorded: the engine fills the rest from the
    checkpoint record (`crf_defaults`), else DeepLab v2's.
    """
    use_crf, full, method = kwargs.pop("crf"), kwargs.pop("crf_full"), kwargs.pop("crf_method")
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
        if given or full or method:
            named = sorted(given) + (["full"] if full else []) + (["method"] if method else [])
            raise click.UsageError(f"--crf-* options need --crf (given: {', '.join(named)})")
        return None
    if full and method not in (None, "full"):
        raise click.UsageError(f"--crf-full and --crf-method {method} disagree: give one")
    method = "full" if full else (method or "fast")
    from segcli.crf import INSTALL_HINT, CRFSettings, crf_available
    from segcli.errors import MissingDependencyError

    if method == "full" and not crf_available():  # "fast" runs the torch CRF without pydensecrf
        raise MissingDependencyError(INSTALL_HINT)
    return CRFSettings(given=tuple(given.items()), method=method)
