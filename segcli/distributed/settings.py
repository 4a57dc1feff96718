"""What a Ray run needs to know, as small picklable records: the engine each actor builds, and the cluster."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from segcli.errors import MissingDependencyError, SegcliError

if TYPE_CHECKING:
    from segcli.checkpoints.record import ResolvedCheckpoint
    from segcli.engine import SegmentationEngine
    from segcli.inference_options import InferenceOptions

INSTALL_HINT = "running on Ray needs Ray Data: pip install 'segcli[ray]' (or pip install 'ray[data]')"


def import_ray() -> Any:
    """The `ray` module with Ray Data, or a MissingDependencyError that says what to install."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise MissingDependencyError(INSTALL_HINT, hint="--engine ray needs it") from None
    return ray


def parse_ray_address(address: str) -> str:
    """--ray-address as ray.init takes it: `auto`, `ray://HOST:PORT` (Ray Client, needs ray[client]) or the
    `HOST:PORT` that `ray start --head` prints (the cluster's GCS address, from a machine of the cluster)."""
    address = address.strip()
    if address == "auto":
        return address
    client = address.startswith("ray://")
    rest = address[len("ray://"):] if client else address
    host, sep, port = rest.rpartition(":")
    if client and (not sep or "]" in port):  # ray://HOST, ray://[::1]: Ray Client's port (10001)
        host, port = rest, None
    port_ok = port is None or (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535)
    if "://" in rest or not host or not port_ok or any(character.isspace() for character in host):
        raise SegcliError(f"{address!r}: use auto, HOST:PORT (as `ray start --head` prints it) or ray://HOST:PORT")
    return address


@dataclass(frozen=True)
class WorkerRange:
    """How many actors segment: a fixed pool (`minimum == maximum`) or one Ray Data grows and shrinks."""

    minimum: int
    maximum: int

    def __post_init__(self) -> None:
        if not 1 <= self.minimum <= self.maximum:
            raise SegcliError(f"workers must be N or MIN,MAX with 1 <= MIN <= MAX, got {self}")

    @classmethod
    def parse(cls, text: str) -> "WorkerRange":
        """`4` -> 4 actors; `1,8` -> between 1 and 8."""
        parts = [part.strip() for part in str(text).split(",")]
        if len(parts) not in (1, 2) or not all(part.isdigit() for part in parts):
            raise SegcliError(f"{text!r}: give workers as N or MIN,MAX (whole numbers)")
        numbers = [int(part) for part in parts]
        return cls(numbers[0], numbers[-1])

    def __str__(self) -> str:
        return str(self.minimum) if self.minimum == self.maximum else f"{self.minimum},{self.maximum}"


@dataclass(frozen=True)
class ClusterOptions:
    """Where the actors run and how many images each takes per call."""

    address: str | None = None             # None: start a local Ray instance; auto, HOST:PORT or ray://HOST:PORT: join one
    workers: WorkerRange | None = None     # None: one per CPU core here, or up to the cluster's CPUs (GPUs)
    gpus_per_worker: float = 0.0           # GPU share each actor reserves (0.5: two actors per GPU)
    batch_size: int | None = None          # images per actor call; None: 1 without GPUs, 4 with

    def images_per_call(self) -> int:
        if self.batch_size is not None:
            return self.batch_size
        return 4 if self.gpus_per_worker > 0 else 1  # as the local engine's Schedule.auto


@dataclass(frozen=True)
class EngineSettings:
    """The engine of a `predict` run, rebuilt identically in each actor from a checkpoint resolved once."""

    checkpoint: "ResolvedCheckpoint"        # resolved and hash-checked on the driver; actors load its path
    device: str = "auto"
    options: "InferenceOptions | None" = None  # precision, tiling, TTA, input scales, CRF: as predict builds them

    @classmethod
    def resolve(cls, model: str, weights: str | None = None, allow_download: bool = False,
                **choices) -> "EngineSettings":
        """Find and check the checkpoint here, once (CheckpointError as the local engine gives it)."""
        from segcli.checkpoints.resolve import resolve_checkpoint

        return cls(resolve_checkpoint(model, weights, allow_download=allow_download), **choices)

    def build(self) -> "SegmentationEngine":
        """The engine `segcli predict` builds with the same options (`SegmentationEngine.load` without the lookup)."""
        from segcli.engine import SegmentationEngine

        return SegmentationEngine.from_checkpoint(self.checkpoint, device=self.device, options=self.options)
