"""`segcli train`: train or fine-tune a zoo model on a VOC-format folder."""

from __future__ import annotations

import math

import click

from segcli.cli.options import (
    batch_size_option, device_option, max_pixels_option, overwrite_option, precision_option, size_callback,
    size_limits_text, weights_option, workers_option, zoo_model_option,
)

MAX_SCALE = 10.0  # a larger rescale only makes a crop from a few upsampled pixels (and can exhaust memory)


def _kwarg_callback(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict:
    kwargs: dict = {}
    for item in values:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r}: use KEY=VALUE, e.g. width=0.25")
        for cast in (int, float):
            try:
                kwargs[key] = cast(text)
                break
            except ValueError:
                continue
        else:
            kwargs[key] = {"true": True, "false": False}.get(text.lower(), text)
    return kwargs


def _range_callback(ctx: click.Context, param: click.Parameter, value: str) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"{value!r}: use MIN,MAX, e.g. 0.5,2.0") from None
    if not (math.isfinite(low) and math.isfinite(high)):
        raise click.BadParameter(f"{value!r}: MIN and MAX must be finite numbers, e.g. 0.5,2.0")
    if not 0 < low <= high <= MAX_SCALE:
        raise click.BadParameter(f"{value!r}: need 0 < MIN <= MAX <= {MAX_SCALE:g}")
    return low, high


@click.command("train")
@zoo_model_option(required=True, help="Zoo model.")
@click.option("--data", "data_dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="VOC-format folder (e.g. from `segcli data synth`).")
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="Final checkpoint (.safetensors, fp16, carries its record).")
@weights_option(help="Start from this checkpoint: fine-tune; a checkpoint of another model (e.g. fcn8s for "
                    "fcn32s) initialises the tensors both share.")
@click.option("--iters", type=click.IntRange(min=1), default=None,
              help="Total iterations (with --time-budget: the most there may be).")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Or: passes over the training split.")
@click.option("--time-budget", type=click.FloatRange(min=0, min_open=True), default=None, metavar="SECONDS",
              help="Seconds from start to the last iteration: the iteration count is fixed from the measured "
                   "speed (re-measured as it goes), so the poly schedule still ends on time.")
@batch_size_option(default=8, help="Crops per training step.")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=2e-3, show_default=True,
              help="Peak learning rate (poly decay, power 0.9).")
@click.option("--warmup", "warmup_iters", type=click.IntRange(min=0), default=0, show_default=True,
              help="Iterations of linear warm-up before the poly decay.")
@click.option("--optimizer", type=click.Choice(["adamw", "sgd"]), default="adamw", show_default=True,
              help="adamw: AdamW; sgd: SGD with momentum 0.9, as the FCN and DeepLab papers (weight decay 1e-4 both).")
@click.option("--loss", type=click.Choice(["ce", "ohem"]), default="ce", show_default=True,
              help="ce: cross-entropy over all pixels; ohem: over the hard pixels only (p(true) < 0.7, "
                   "at least the hardest 25%).")
@click.option("--crop", default=None, callback=size_callback(min_side=8), help=f"Random crop HxW, {size_limits_text(8)} [default: image size].")
@click.option("--scale-range", default="0.5,2.0", show_default=True, callback=_range_callback,
              help=f"Random rescale range MIN,MAX (0 < MIN <= MAX <= {MAX_SCALE:g}).")
@click.option("--model-kwarg", "model_kwargs", multiple=True, callback=_kwarg_callback, metavar="KEY=VALUE",
              help="Builder option recorded in the checkpoint, e.g. width=0.25 (repeatable).")
@click.option("--resume", default=None, type=click.Path(exists=True, dir_okay=False),
              help="Continue from a *.state.pt file.")
@click.option("--state", "state_path", default=None, type=click.Path(dir_okay=False),
              help="Resumable state file [default: OUT.state.pt].")
@click.option("--save-every", type=click.IntRange(min=1), default=200, show_default=True,
              help="Write the resumable state file (--state) every this many iterations.")
@click.option("--bn-batches", "bn_recalibration_batches", type=click.IntRange(min=0), default=None,
              help="Batches of whole training images over which BatchNorm statistics are recomputed at the end, "
                   "at most one pass over the split (0: keep the running averages) [default: 400 images' worth].")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seeds the weights of new layers, the crops and their order: the same seed, data and "
                   "settings give the same run on the same device.")
@workers_option(default=0, minimum=0, help="loading and augmenting crops (data loader processes; 0: in this one).")
@click.option("--augment-on", type=click.Choice(["auto", "cpu", "device"]), default="auto", show_default=True,
              help="Where crops are augmented; auto: on the GPU when training there on same-size images.")
@overwrite_option("Replace an existing --out (and an earlier run's state file).")
@max_pixels_option
@device_option
@precision_option(help="auto: bf16 autocast on CUDA, fp32 on the CPU (CPU bf16 autocast gave some models "
                       "gradients far from fp32's: README, section \"evaluate, train, data\").")
def train(**options) -> None:
    """Train or fine-tune a zoo model on a VOC-format folder.

    The checkpoint is written at the end; a resumable state file (OUT.state.pt) every --save-every
    iterations and on Ctrl-C or SIGTERM, after which the same command plus --resume continues.
    """
    from rich.console import Console

    from segcli.errors import with_hint
    from segcli.training.config import BatchTooSmallError, TrainConfig, TrainingInterrupted
    from segcli.training.run import train as run_training

    if options["iters"] is not None and options["epochs"] is not None:
        raise click.UsageError("give exactly one of --iters and --epochs")
    if options["iters"] is None and options["epochs"] is None and options["time_budget"] is None:
        raise click.UsageError("give exactly one of --iters and --epochs (or --time-budget)")
    config = TrainConfig(**options)
    try:
        run_training(config, console=Console(soft_wrap=True))  # soft wrap: whole lines in log files
    except BatchTooSmallError as exc:
        raise click.BadParameter(with_hint(exc), param_hint="'--batch-size'") from None
    except TrainingInterrupted as exc:
        click.echo(with_hint(exc), err=True)
        raise SystemExit(130) from None
    except KeyboardInterrupt:
        click.echo("Interrupted before the first iteration: nothing was saved", err=True)
        raise SystemExit(130) from None
