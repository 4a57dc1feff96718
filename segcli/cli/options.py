"""Options shared by several commands, as reusable decorators (no torch import here)."""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

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
    """--batch-size; --batch, its old name, is a usage error that names it."""
    option = click.option("--batch-size", "batch_size", type=click.IntRange(min=1), default=default,
                          show_default=default is not None, help=help)
    return lambda func: replaced_option("--batch", "--batch-size", takes_value=True)(option(func))


def workers_option(default: int, minimum: int, help: str) -> Callable:
    """--workers: processes on this machine (a Ray run's actors are --ray-workers)."""
    return click.option("--workers", type=click.IntRange(min=minimum), default=default, show_default=True,
                        help=f"Processes on this machine {help}")


def weights_option(func: Callable | None = None, *, help: str = "Checkpoint: a manifest name (`segcli weights "
                   "list`) or a file. Default: a real checkpoint on disk, else the shipped one.") -> Callable:
    """--weights/-w: `@weights_option`, or `@weights_option(help=...)` where a command means more by it."""
    option = click.option("--weights", "-w", default=None, metavar="NAME|PATH", help=help)
    return option if func is None else option(func)


def precision_option(func: Callable | None = None, *,
                     help: str = "auto: bf16 on CPUs with native bf16 and on CUDA, else fp32.") -> Callable:
    """--precision: `@precision_option`, or `@precision_option(help=...)` (benchmark's list: `precisions_option`)."""
    option = click.option("--precision", type=click.Choice(PRECISION_CHOICES), default="auto", show_default=True,
                          help=help)
    return option if func is None else option(func)


def precisions_callback(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, ...]:
    """--precision as a comma list (benchmark: one row each)."""
    precisions = [item.strip().lower() for item in value.split(",") if item.strip()]
    unknown = [item for item in precisions if item not in PRECISION_CHOICES]
    if unknown or not precisions:
        raise click.BadParameter(
            f"{', '.join(unknown) or value!r}: use one or more of {', '.join(PRECISION_CHOICES)}, comma-separated")
    return tuple(dict.fromkeys(precisions))


precisions_option = click.option(
    "--precision", "precisions", callback=precisions_callback, default="auto", show_default=True, metavar="P[,P...]",
    help=f"One or more of {', '.join(PRECISION_CHOICES)}; one row each.")
device_option = click.option(
    "--device", default="auto", show_default=True, callback=_device_callback, help=DEVICE_HELP,
)
max_pixels_option = click.option(
    "--max-pixels", type=click.IntRange(min=1), default=None,
    help="Refuse images with more pixels than this [default: 100 million].",
)


def replaced_option(old: str, new: str, takes_value: bool = False) -> Callable:
    """A hidden `old` flag whose use is a usage error naming `new`, the flag that replaced it."""
    def refuse(ctx: click.Context, param: click.Parameter, value: Any) -> None:
        if value not in (None, False):
            raise click.UsageError(f"{old} was replaced by {new}", ctx=ctx)

    return click.option(old, f"replaced_{old.lstrip('-').replace('-', '_')}", is_flag=not takes_value,
                        default=None if takes_value else False, hidden=True, expose_value=False, callback=refuse,
                        help=f"Replaced by {new}.")


def bundle(name: str, options: Sequence[Callable], build: Callable[..., Any]) -> Callable:
    """A decorator: the Click `options` feed `build`, whose one typed value reaches the command as `name`.

    The command never sees the raw values: the wrapper hands `build` exactly the parameters these
    options declare (its keyword arguments), so a usage error in `build` comes before the command runs.
    """
    def decorate(func: Callable) -> Callable:
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            raw = {param: kwargs.pop(param) for param in names}
            return func(*args, **kwargs, **{name: build(**raw)})

        wrapper.__click_params__ = list(getattr(func, "__click_params__", []))  # wraps() shared func's list
        known = len(wrapper.__click_params__)
        for option in reversed(options):
            wrapper = option(wrapper)
        names = [param.name for param in reversed(wrapper.__click_params__[known:]) if param.expose_value]
        return wrapper

    return decorate
