"""`segcli serve --engine ray`: the same Starlette app (segcli.serve.app) as the ASGI ingress of a Ray Serve
deployment (https://docs.ray.io/en/latest/serve/http-guide.html). Each replica loads the engine once
(`SegmentationEngine.load`, as the local server does) and builds the app around it, with its own batcher,
counters and model thread; Ray Serve's HTTP proxy spreads the requests over the replicas.

The command's process is the driver: it starts or joins Ray (segcli.distributed.run.ray_session), starts
Serve's proxy on --host/--port, deploys, and waits for Ctrl-C or SIGTERM; then it deletes the application
(each replica answers the requests it holds, its batcher drains) and a local Ray instance shuts down.
"""

from __future__ import annotations

import logging
import signal
import threading
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Callable

from segcli.errors import MissingDependencyError, SegcliError

if TYPE_CHECKING:
    from segcli.engine import SegmentationEngine
    from segcli.inference_options import InferenceOptions
    from segcli.serve.app import ServeSettings

APP_NAME = "segcli"
INSTALL_HINT = "serving on Ray needs Ray Serve: pip install 'segcli[ray]' (or pip install 'ray[serve]')"
HEADROOM = 8  # requests past --max-pending a replica takes in (/healthz, /metrics): the app answers 503 itself


class ServeOnRayError(SegcliError):
    """Ray or Ray Serve could not start, or the deployment failed."""


@dataclass(frozen=True)
class Replicas:
    """How many replicas: a fixed number (`--replicas N`) or a range Ray Serve autoscales within."""

    minimum: int
    maximum: int
    autoscale: bool = False

    def __post_init__(self) -> None:
        if not 1 <= self.minimum <= self.maximum:
            raise SegcliError(f"replicas must be at least 1 and MIN <= MAX, got {self.minimum},{self.maximum}")

    @classmethod
    def parse_range(cls, text: str) -> "Replicas":
        """`--autoscale MIN,MAX`: `1,4` -> between 1 and 4 replicas."""
        parts = [part.strip() for part in str(text).split(",")]
        if len(parts) != 2 or not all(part.isascii() and part.isdigit() for part in parts):
            raise SegcliError(f"{text!r}: give autoscale as MIN,MAX (whole numbers, 1 <= MIN <= MAX)")
        return cls(int(parts[0]), int(parts[1]), autoscale=True)

    def __str__(self) -> str:
        count = f"{self.minimum} to {self.maximum}" if self.autoscale else str(self.minimum)
        return f"{count} replica{'s' * (self.maximum != 1)}{' (autoscaled)' * self.autoscale}"


@dataclass(frozen=True)
class ReplicaSpec:
    """What every replica builds: the engine `segcli serve` loads, and the app's settings (picklable)."""

    model: str
    weights: str | None
    device: str
    options: "InferenceOptions"  # precision, input scales, CRF: as `segcli serve` builds them
    settings: "ServeSettings"

    def build_engine(self) -> "SegmentationEngine":
        from segcli.engine import SegmentationEngine

        return SegmentationEngine.load(self.model, weights=self.weights, device=self.device, options=self.options)


def replica_device(device: str, gpus_per_replica: float) -> str:
    """The device replicas load the engine on. Ray (2.60) shows every GPU to an actor that reserved none, so
    without --gpus-per-replica `auto` is the CPU (not a GPU other replicas or jobs hold), and CUDA is refused."""
    if gpus_per_replica > 0:
        return device
    if device.startswith("cuda"):
        raise SegcliError(f"device {device} needs a GPU share per replica (gpus_per_replica): a replica gets the GPU "
                          "share it reserves", hint="pass --gpus-per-replica")
    return "cpu" if device == "auto" else device


def deployment_options(replicas: Replicas, gpus_per_replica: float, settings: "ServeSettings") -> dict[str, Any]:
    """Ray Serve's deployment options for the replicas (https://docs.ray.io/en/latest/serve/configure-serve-deployment.html)."""
    options: dict[str, Any] = {
        "name": APP_NAME,
        "ray_actor_options": {"num_cpus": 1, "num_gpus": gpus_per_replica},
        # the app refuses past --max-pending (503, Retry-After) as the local server does; Serve must not cap earlier
        "max_ongoing_requests": settings.max_pending + HEADROOM,
        # a replica being removed answers what it holds: up to --timeout for the last request, then drains
        "graceful_shutdown_timeout_s": settings.timeout_s + 5.0,
        "graceful_shutdown_wait_loop_s": 0.5,
        "max_constructor_retry_count": 2,  # a replica that cannot load the model fails the start, not retried 20 times
    }
    if replicas.autoscale:
        options["autoscaling_config"] = {"min_replicas": replicas.minimum, "max_replicas": replicas.maximum,
                                         "target_ongoing_requests": settings.max_batch}
    else:
        options["num_replicas"] = replicas.minimum
    return options


def import_serve() -> Any:
    """The `ray.serve` module, or a MissingDependencyError that says what to install."""
    import importlib
    import inspect

    try:
        serve = importlib.import_module("ray.serve")
    except ImportError:
        raise MissingDependencyError(INSTALL_HINT, hint="segcli serve --engine ray needs it") from None
    app = inspect.signature(serve.ingress).parameters.get("app")
    if app is None or app.default is inspect.Parameter.empty:  # no app built in each replica (tested: Ray 2.60)
        raise MissingDependencyError(f"serving on Ray needs a newer Ray Serve (this one is Ray "
                                     f"{getattr(importlib.import_module('ray'), '__version__', '?')}): "
                                     "pip install -U 'ray[serve]'")
    return serve


def replica_class() -> type:
    """The deployment's class: Ray Serve builds the ASGI app after the constructor (`__serve_build_asgi_app__`),
    so the app wraps the engine this replica loaded."""
    serve = import_serve()

    class SegcliReplica:
        def __init__(self, spec: ReplicaSpec) -> None:
            self.spec, self.engine = spec, spec.build_engine()
            self.replica = serve.get_replica_context().replica_id.unique_id

        def __serve_build_asgi_app__(self):
            from segcli.serve.app import build_app

            return build_app(self.engine, replace(self.spec.settings, replica=self.replica))

    return serve.ingress()(SegcliReplica)


def serve_on_ray(spec: ReplicaSpec, replicas: Replicas, gpus_per_replica: float, address: str | None, host: str,
                 port: int, say: Callable[[str], None]) -> None:
    """Start (or join, `address`) Ray, deploy, serve until Ctrl-C or SIGTERM, then drain and stop."""
    import ray

    from segcli.atomic import terminate_as_interrupt
    from segcli.distributed.run import ray_session
    from segcli.distributed.settings import ClusterOptions, WorkerRange

    import_serve()
    cluster = ClusterOptions(address=address, workers=WorkerRange(replicas.maximum, replicas.maximum))
    with ray_session(ray, cluster):  # a local instance gets a CPU per replica at least; shut down at the end
        quiet_ray_loggers()
        with terminate_as_interrupt():  # SIGTERM while the replicas load: nothing is left deployed
            deploy(spec, replicas, gpus_per_replica, host, port)
        host_text = f"[{host}]" if ":" in host else host
        say(f"serving on http://{host_text}:{port}/ (the page) and /v1/segment through Ray Serve, {replicas}"
            f"{' (token needed)' if spec.settings.token is not None else ''}; Ctrl-C stops")
        wait_for_stop()
        say("stopping: the replicas answer the requests they hold")
        undeploy()
    say("stopped: every request in flight was answered")


def deploy(spec: ReplicaSpec, replicas: Replicas, gpus_per_replica: float, host: str, port: int) -> None:
    """Start Serve's HTTP proxy on host:port and run the application; returns once every replica is up. A start
    that fails or is interrupted leaves no half-deployed application behind (on a cluster that outlives us)."""
    serve = import_serve()
    from ray.serve.exceptions import RayServeException

    _refuse_a_second_segcli(serve)
    try:
        serve.start(http_options={"host": host, "port": port})
        _check_proxy_address(host, port)
        deployment = serve.deployment(replica_class()).options(**deployment_options(replicas, gpus_per_replica,
                                                                                     spec.settings))
        serve.run(deployment.bind(spec), name=APP_NAME, route_prefix="/", blocking=False)
    except (RuntimeError, ValueError, TimeoutError, RayServeException) as exc:
        _delete_if_deployed(serve)
        raise ServeOnRayError(f"Ray Serve could not deploy segcli: {_last_line(exc)}") from None
    except BaseException:  # Ctrl-C or SIGTERM while the replicas load
        _delete_if_deployed(serve)
        raise


def _delete_if_deployed(serve) -> None:
    from ray.serve.exceptions import RayServeException

    try:
        serve.delete(APP_NAME)
    except (RuntimeError, RayServeException) as exc:  # Serve itself did not start: nothing of ours to delete
        logging.getLogger(__name__).debug("nothing to delete: %s", exc)


def _refuse_a_second_segcli(serve) -> None:
    """On a shared cluster, another `segcli serve --engine ray` already runs: replacing it would cut off its users."""
    if APP_NAME in serve.status().applications:  # empty when Serve has not started on the cluster
        raise ServeOnRayError(f"Ray Serve on this cluster already runs an application named {APP_NAME!r} (another "
                              "segcli server on Ray): stop it first (serve shutdown, or its Ctrl-C)")


def _check_proxy_address(host: str, port: int) -> None:
    """Serve started earlier on the cluster keeps its proxy's address (serve.start ignores new HTTP options)."""
    from ray.serve.context import _get_global_client  # Ray Serve's own handle on the controller

    http = _get_global_client().http_config
    if (http.host, http.port) != (host, port):
        raise ServeOnRayError(f"Ray Serve already runs on this cluster with its HTTP proxy on {http.host}:{http.port}, "
                              f"not {host}:{port}: serve on that address, or restart Serve",
                              hint=f"pass --host {http.host} --port {http.port}")


def undeploy() -> None:
    """Delete the application: each replica answers what it holds and drains its batcher; returns when all are gone.
    Serve itself stays: on a cluster it is shared, and a local instance goes with Ray (serve.shutdown here would
    race its controller's own shutdown and print a raylet warning on stdout)."""
    import_serve().delete(APP_NAME)


def wait_for_stop() -> int:
    """Block until SIGINT or SIGTERM; the signal's number (later ones are taken too, the drain goes on)."""
    received: list[int] = []
    stop = threading.Event()

    def handler(signum, frame) -> None:
        received.append(signum)
        stop.set()

    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, handler)
    while not stop.wait(0.5):
        pass
    return received[0]


def quiet_ray_loggers() -> None:
    """Ray Serve's driver-side INFO lines (deployments updating, replicas starting) stay out of the terminal."""
    for name in ("ray", "ray.serve"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _last_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__
