"""`predict`'s --engine option and the Ray options beside it, as one decorator (no Ray or torch import here)."""

from __future__ import annotations

from typing import Callable

import click

from segcli.distributed.settings import ClusterOptions, WorkerRange, import_ray, parse_ray_address
from segcli.errors import SegcliError

ENGINES = ("local", "ray")


def _workers_callback(ctx: click.Context, param: click.Parameter, value: str | None) -> WorkerRange | None:
    if value is None:
        return None
    try:
        return WorkerRange.parse(value)
    except SegcliError as exc:
        raise click.BadParameter(str(exc)) from None


def _address_callback(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return parse_ray_address(value)
    except SegcliError as exc:
        raise click.BadParameter(str(exc)) from None


def ray_options(func: Callable) -> Callable:
    """--engine, --ray-address, --workers, --gpus-per-worker (read back with `cluster_from_options`)."""
    options = [
        click.option("--engine", "engine_kind", type=click.Choice(ENGINES), default="local", show_default=True,
                     help="local: this process; ray: actors of a Ray instance (started here, or --ray-address), "
                          "each loading the model once (needs segcli[ray]; see the README, section predict)."),
        click.option("--ray-address", default=None, metavar="auto|HOST:PORT|ray://HOST:PORT",
                     callback=_address_callback,
                     help="With --engine ray: join this Ray cluster: auto (the one `ray start` made here), the "
                          "HOST:PORT `ray start --head` prints (from a machine of the cluster), or ray://HOST:PORT "
                          "(Ray Client, port 10001) [default: start a local instance]."),
        click.option("--workers", default=None, metavar="N|MIN,MAX", callback=_workers_callback,
                     help="With --engine ray: actors, fixed or a range Ray Data scales within "
                          "[default: one per core here; 1 up to the cluster's CPUs or GPU shares]."),
        click.option("--gpus-per-worker", type=click.FloatRange(min=0), default=None,
                     help="With --engine ray: GPU share each actor reserves (0.5: two per GPU) [default: 0]."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def cluster_from_options(kwargs: dict, batch_size: int | None, io_workers: int | None) -> ClusterOptions | None:
    """Pop the Ray options from `kwargs`: ClusterOptions for `--engine ray`, None for the local engine."""
    engine_kind = kwargs.pop("engine_kind")
    given = {name: value for name, value in (("--ray-address", kwargs.pop("ray_address")),
                                             ("--workers", kwargs.pop("workers")),
                                             ("--gpus-per-worker", kwargs.pop("gpus_per_worker")))
             if value is not None}
    if engine_kind != "ray":
        if given:
            raise click.UsageError(f"{', '.join(given)} need --engine ray")
        return None
    if io_workers is not None:
        raise click.UsageError("--io-workers is for the local engine; with --engine ray each worker decodes, "
                               "segments and writes its own images (use --workers)")
    import_ray()  # MissingDependencyError with the install hint, before anything is planned or loaded
    return ClusterOptions(address=given.get("--ray-address"), workers=given.get("--workers"),
                          gpus_per_worker=given.get("--gpus-per-worker", 0.0), batch_size=batch_size)
