"""`segcli serve`: load the engine once and answer HTTP requests (segcli/serve/) until Ctrl-C or SIGTERM."""

from __future__ import annotations

import os
import signal

import click

from segcli.cli.crf_options import crf_options
from segcli.cli.options import (
    device_option, download_option, max_pixels_option, model_option, precision_option, quiet_option, weights_option,
)

TOKEN_ENV = "SEGCLI_SERVE_TOKEN"
INSTALL_HINT = "segcli serve needs starlette, uvicorn and python-multipart: pip install 'segcli[serve]'"


@click.command("serve")
@model_option
@weights_option
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; only this machine by default (0.0.0.0: every interface).")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True, help="TCP port.")
@device_option
@precision_option
@crf_options
@click.option("--multiscale/--no-multiscale", default=True, show_default=True,
              help="Fuse the input scales the checkpoint's authors tested with, as predict does.")
@click.option("--alpha", type=click.FloatRange(0.0, 1.0), default=0.5, show_default=True,
              help="Overlay opacity of the mask colours.")
@click.option("--max-batch", type=click.IntRange(1, 256), default=4, show_default=True,
              help="Most same-size images that run as one batch.")
@click.option("--batch-wait-ms", type=click.FloatRange(0, 10_000), default=5.0, show_default=True,
              help="How long the first image of a batch waits for others to join it.")
@click.option("--max-pending", type=click.IntRange(min=1), default=32, show_default=True,
              help="Requests in progress (being read, decoded, waiting or running) at most; one more is "
                   "answered 503 with Retry-After.")
@click.option("--timeout", "timeout_s", type=click.FloatRange(0, min_open=True), default=60.0, show_default=True,
              help="Seconds a request may take before it is answered 504.")
@click.option("--token", default=None, metavar="TOKEN",
              help=f"Every route but /healthz and the page needs `Authorization: Bearer TOKEN` (also from ${TOKEN_ENV}).")
@max_pixels_option
@download_option
@quiet_option(help="Only errors (no start-up lines, no access log).")
@click.option("--engine", "engine_kind", type=click.Choice(("local", "ray")), default="local", show_default=True,
              help="local: this process (uvicorn); ray: replicas of a Ray Serve deployment behind its HTTP proxy, "
                   "each loading the model once (needs segcli[ray]).")
@click.option("--replicas", type=click.IntRange(min=1), default=None,
              help="With --engine ray: this many replicas [default: 1].")
@click.option("--autoscale", default=None, metavar="MIN,MAX",
              help="With --engine ray: replicas Ray Serve adds and removes with the load, between MIN and MAX (MIN >= 1).")
@click.option("--gpus-per-replica", type=click.FloatRange(min=0), default=None,
              help="With --engine ray: GPU share each replica reserves (0.5: two per GPU) [default: 0].")
@click.option("--ray-address", default=None, metavar="auto|HOST:PORT|ray://HOST:PORT",
              help="With --engine ray: join this Ray cluster (as predict's --ray-address) [default: start a local "
                   "Ray instance].")
def serve(model, weights, host, port, device, precision, crf, multiscale, alpha, max_batch, batch_wait_ms, max_pending,
          timeout_s, token, max_pixels, download, quiet, engine_kind, replicas, autoscale, gpus_per_replica,
          ray_address) -> None:
    """Serve the engine over HTTP: POST an image to /v1/segment, get predict's label PNG (or overlay, json,
    rle, cutout, masks, probs) back; a web page at /. Requests that arrive together run as one batch.

    \b
    Example:  segcli serve --model deeplabv3p --port 8000
              curl --data-binary @img.jpg -H 'Content-Type: image/jpeg' \\
                   'http://127.0.0.1:8000/v1/segment?outputs=label' > label.png
              segcli serve --engine ray --replicas 2   # 2 Ray Serve replicas
    """
    token = _checked_token(token)
    on_ray = _ray_choices(engine_kind, replicas, autoscale, gpus_per_replica, ray_address, device)
    _require_server()

    from rich.console import Console

    from segcli.cli.predict import _load_engine, single_scale
    from segcli.imageio import DEFAULT_MAX_PIXELS
    from segcli.inference_options import InferenceOptions
    from segcli.serve.app import ServeSettings, build_app

    console = Console(stderr=True, quiet=quiet, soft_wrap=True)
    settings = ServeSettings(max_batch=max_batch, batch_wait_ms=batch_wait_ms, max_pending=max_pending,
                             timeout_s=timeout_s, max_pixels=max_pixels or DEFAULT_MAX_PIXELS, token=token, alpha=alpha)
    inference = InferenceOptions(precision=precision, input_scales=single_scale(multiscale), crf=crf)
    if on_ray is not None:
        return _serve_on_ray(on_ray, (model, weights, download, inference), settings, host, port, console)
    engine = _load_engine(model, weights, device, download, inference, console)
    _run(build_app(engine, settings), host, port, quiet, console, token is not None)


def _checked_token(token: str | None) -> str | None:
    """--token, else $SEGCLI_SERVE_TOKEN; set but empty is refused (an unset secret in a deploy script would serve
    every route open), as is a token an HTTP header cannot carry (servers strip its edge spaces; no control
    characters)."""
    where = "'--token'"
    if token is None and TOKEN_ENV in os.environ:
        token, where = os.environ[TOKEN_ENV], f"${TOKEN_ENV}"
        if not token.strip():
            raise click.UsageError(f"${TOKEN_ENV} is set but empty: give it a token, or unset it to serve without one")
    if token is None:
        return None
    if not token.strip():
        raise click.BadParameter("the token is empty", param_hint=where)
    if not token.isprintable():  # a space is printable; a newline, a tab or an escape is not
        raise click.BadParameter("the token holds a control character, which no HTTP header can carry",
                                 param_hint=where)
    if token != token.strip():
        raise click.BadParameter("the token starts or ends with a space, which HTTP servers strip from headers",
                                 param_hint=where)
    return token


def _ray_choices(engine_kind, replicas, autoscale, gpus_per_replica, ray_address, device) -> tuple | None:
    """(Replicas, GPUs per replica, address, the replicas' device) for --engine ray, None for the local server;
    usage errors (exit 2) for Ray options without --engine ray, --replicas with --autoscale, a bad range or
    address, CUDA without a GPU share."""
    from segcli.distributed.settings import parse_ray_address
    from segcli.errors import SegcliError, with_hint
    from segcli.serve.on_ray import Replicas, replica_device

    given = [name for name, value in (("--replicas", replicas), ("--autoscale", autoscale),
                                      ("--gpus-per-replica", gpus_per_replica), ("--ray-address", ray_address))
             if value is not None]
    if engine_kind != "ray":
        if given:
            raise click.UsageError(f"{', '.join(given)} need{'s' * (len(given) == 1)} --engine ray")
        return None
    if replicas is not None and autoscale is not None:
        raise click.UsageError("give --replicas N (a fixed number) or --autoscale MIN,MAX, not both")
    try:
        count = Replicas.parse_range(autoscale) if autoscale is not None else Replicas(replicas or 1, replicas or 1)
    except SegcliError as exc:
        raise click.BadParameter(str(exc), param_hint="'--autoscale'") from None
    try:
        address = None if ray_address is None else parse_ray_address(ray_address)
    except SegcliError as exc:
        raise click.BadParameter(str(exc), param_hint="'--ray-address'") from None
    try:
        device = replica_device(device, gpus_per_replica or 0.0)
    except SegcliError as exc:
        raise click.UsageError(with_hint(exc)) from None
    return count, gpus_per_replica or 0.0, address, device


def _serve_on_ray(on_ray: tuple, engine_choice: tuple, settings, host: str, port: int, console) -> None:
    """The checkpoint resolved (and downloaded, hash-checked) here once, before Ray starts; each replica loads it."""
    import warnings

    from rich.markup import escape

    from segcli.checkpoints.record import SOURCE_PATH
    from segcli.checkpoints.resolve import resolve_checkpoint, synthetic_scenes_warning
    from segcli.serve.on_ray import ReplicaSpec, import_serve, serve_on_ray
    from segcli.text import printable

    replicas, gpus_per_replica, address, device = on_ray
    model, weights, download, inference = engine_choice
    import_serve()  # the install hint before anything loads
    resolved = resolve_checkpoint(model, weights, allow_download=download)
    warning = synthetic_scenes_warning(resolved.record)
    if warning:  # what SegmentationEngine.load warns here for the local server; the replicas' warnings stay there
        warnings.warn(warning, stacklevel=2)
    if resolved.source == SOURCE_PATH:  # replicas may start in another directory
        weights = str(resolved.path.resolve())
    console.print(f"[bold]{resolved.record.model}[/] {escape(printable(resolved.describe()))} on Ray Serve",
                  highlight=False)
    spec = ReplicaSpec(model, weights, device, inference, settings)
    serve_on_ray(spec, replicas, gpus_per_replica, address, host, port,
                 lambda line: console.print(line, highlight=False, markup=False))


def _require_server() -> None:
    from segcli.errors import MissingDependencyError

    from importlib.util import find_spec

    # python-multipart (starlette's form parser) is importable as python_multipart, or multipart before 0.0.13
    if not (find_spec("starlette") and find_spec("uvicorn") and (find_spec("python_multipart") or find_spec("multipart"))):
        raise MissingDependencyError(INSTALL_HINT)


def _run(app, host: str, port: int, quiet: bool, console, with_token: bool) -> None:
    """Run uvicorn until Ctrl-C or SIGTERM: it stops accepting, answers the requests in flight, the batcher
    finishes its queue, and the command exits 0."""
    import uvicorn

    config = uvicorn.Config(app, host=host, port=port, log_level="warning" if quiet else "info",
                            access_log=not quiet, lifespan="on", timeout_graceful_shutdown=None)
    server = uvicorn.Server(config)
    received: list[int] = []
    # uvicorn handles the signals while it runs and raises the one it caught again when it has stopped;
    # these handlers take that second delivery, so a server that drained exits 0, not 130/143
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, lambda signum, frame: received.append(signum))
    host_text = f"[{host}]" if ":" in host else host
    console.print(f"serving on http://{host_text}:{port}/ (the page) and /v1/segment"
                  f"{' (token needed)' if with_token else ''}; Ctrl-C stops", highlight=False)
    server.run()
    if not server.started:
        from segcli.errors import SegcliError

        raise SegcliError(f"could not listen on {host}:{port} (in use, or not an address of this machine)")
    console.print("stopped: every request in flight was answered", highlight=False)
