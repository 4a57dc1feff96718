"""`predict`'s --engine option and the Ray options beside it, as one decorator: the command receives
`cluster`, a segcli.distributed.settings.ClusterOptions for `--engine ray`, else None (no Ray or torch
import here: `--engine ray` checks for Ray only once the other flags are checked)."""

from __future__ import annotations

import click

from segcli.cli.options import bundle
from segcli.distributed.settings import ClusterOptions, WorkerRange, parse_ray_address
from segcli.errors import SegcliError

ENGINES = ("local", "ray")


def _ray_workers_callback(ctx: click.Context, param: click.Parameter, value: str | None) -> WorkerRange | None:
    if value is None:
        return None
    try:
        return WorkerRange.parse(value)
    except SegcliError:
        raise click.BadParameter(f"{value!r}: give N or MIN,MAX, whole numbers with 1 <= MIN <= MAX") from None


def _address_callback(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return parse_ray_address(value)
    except SegcliError as exc:
        raise click.BadParameter(str(exc)) from None


def build_cluster(engine_kind: str, ray_address: str | None, ray_workers: WorkerRange | None,
                  gpus_per_worker: float | None) -> ClusterOptions | None:
    """ClusterOptions for `--engine ray` (images per call: the command adds --batch-size); None for the local engine."""
    given = {flag: value for flag, value in (("--ray-address", ray_address), ("--ray-workers", ray_workers),
                                             ("--gpus-per-worker", gpus_per_worker)) if value is not None}
    if engine_kind != "ray":
        if given:
            raise click.UsageError(f"{', '.join(given)} {'needs' if len(given) == 1 else 'need'} --engine ray")
        return None
    return ClusterOptions(address=ray_address, workers=ray_workers,
                          gpus_per_worker=0.0 if gpus_per_worker is None else gpus_per_worker)


cluster_options = bundle("cluster", [
    click.option("--engine", "engine_kind", type=click.Choice(ENGINES), default="local", show_default=True,
                 help="local: this process; ray: actors of a Ray instance (started here, or --ray-address), "
                      "each loading the model once (needs segcli[ray]; see the README, section predict)."),
    click.option("--ray-address", default=None, metavar="auto|HOST:PORT|ray://HOST:PORT", callback=_address_callback,
                 help="With --engine ray: join this Ray cluster: auto (the one `ray start` made here), the "
                      "HOST:PORT `ray start --head` prints (from a machine of the cluster), or ray://HOST:PORT "
                      "(Ray Client, port 10001) [default: start a local instance]."),
    click.option("--ray-workers", default=None, metavar="N|MIN,MAX", callback=_ray_workers_callback,
                 help="With --engine ray: Ray actors, fixed or a range Ray Data scales within "
                      "[default: one per core here; 1 up to the cluster's CPUs or GPU shares]."),
    click.option("--gpus-per-worker", type=click.FloatRange(min=0), default=None,
                 help="With --engine ray: GPU share each actor reserves (0.5: two per GPU) [default: 0]."),
], build_cluster)
