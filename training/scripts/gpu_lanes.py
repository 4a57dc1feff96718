"""The GPU session's training lanes and its real-run / rehearsal sizes (used by gpu_session.py)."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class Lane:
    """One training run: `segcli train --model MODEL ...`, written as STEM.safetensors."""

    name: str                       # unique; candidates for one stem differ in name (the importer picks one)
    model: str                      # zoo name
    stem: str                       # shipped checkpoint name (file stem in segcli/weights/)
    init: str | None = None         # --weights: a manifest name or file; None: from scratch
    kwargs: dict = field(default_factory=dict)  # --model-kwarg, recorded in the checkpoint
    lr: float = 1e-3
    warmup: int = 0
    batch: int = 32
    precision: str = "auto"         # bf16 autocast on CUDA


# The lanes, in start order (the lead may edit this table; LANES=name,name selects some).
# Fine-tuning lanes start at a lower rate with a warm-up (a fresh optimizer on trained weights).
# Small models on 128-pixel scenes are launch-bound on a GPU: bigger batches do more per launch.
LANES: tuple[Lane, ...] = (
    Lane("deeplabv3p", "deeplabv3p", "deeplabv3p-mobilenet-synth", init=os.environ.get("DEEPLABV3P_INIT", "deeplabv3p-mobilenet-synth"),
         lr=1e-3, warmup=200, batch=64),
    Lane("deeplabv1", "deeplabv1", "deeplabv1-synth", kwargs={"width": 0.25}, lr=1e-3, warmup=100),
    Lane("deeplabv2", "deeplabv2", "deeplabv2-synth", kwargs={"width": 0.25, "depth": 50}, lr=2e-3, warmup=100),
    Lane("fcn8s", "fcn8s", "fcn8s-synth", init="fcn8s-synth", kwargs={"width": 0.125}, lr=1e-3, warmup=100),
    Lane("fcn16s", "fcn16s", "fcn16s-synth", init="fcn8s-synth", kwargs={"width": 0.125}, lr=1e-3, warmup=100),
    Lane("fcn32s", "fcn32s", "fcn32s-synth", init="fcn8s-synth", kwargs={"width": 0.125}, lr=1e-3, warmup=100),
)
# Candidates left out of the one real session (15 device-minutes: every lane shares the GPU, and the
# shipped deeplabv3p's target needs the most of it): deeplabv3p at output stride 8, deeplabv1 from
# fcn8s-synth's VGG trunk at width 0.125, lraspp from its shipped weights. Add them back here.


@dataclass(frozen=True)
class Settings:
    """Real-run or rehearsal sizes; every number here can be overridden by an environment variable."""

    rehearsal: bool
    seconds: float                  # the whole session, from start to the last file under $OUT
    device: str
    train_scenes: int               # seed 1, 128x128 (the held-out test draw is seed 2)
    test_scenes: int
    scene_size: str
    crop: str
    scale_range: str
    parallel: int                   # lanes training at once
    lane_reserve: float             # seconds kept after a lane's training: BN, validation, save, evaluate, pack
    pytest_timeout: float
    benchmark_args: tuple[str, ...]
    benchmark_timeout: float
    iters_cap: int | None           # --iters: the most iterations a lane may run
    data_workers: int
    batch: int | None = None        # every lane's --batch-size (None: the lane's own)
    bn_batches: int = 50            # --bn-batches
    train_budget: float | None = None  # at most this --time-budget per lane (None: all the time left)

    @classmethod
    def from_environment(cls) -> "Settings":
        rehearsal = os.environ.get("REHEARSAL", "0") not in ("", "0")
        cores = os.cpu_count() or 2
        if rehearsal:
            base = cls(True, 1500.0, "cpu", 16, 4, "64x64", "48x48", "0.75,1.5", 2, 150.0, 300.0,
                       ("--sizes", "32", "--precision", "fp32", "--warmup", "0", "--iters", "1", "--e2e-iters", "1"),
                       300.0, 2, 2, batch=2, bn_batches=2, train_budget=30.0)
        else:
            base = cls(False, 550.0, "cuda", 10000, 300, "128x128", "128x128", "0.75,1.5", len(LANES), 60.0, 110.0,
                       ("--sizes", "512,1024", "--precision", "fp32,bf16", "--warmup", "10", "--iters", "50",
                        "--e2e-iters", "5"), 120.0, None, max(1, cores - 4))
        overrides = {"SESSION_SECONDS": ("seconds", float), "TRAIN_SCENES": ("train_scenes", int),
                     "PARALLEL": ("parallel", int), "LANE_RESERVE": ("lane_reserve", float),
                     "PYTEST_TIMEOUT": ("pytest_timeout", float), "BENCHMARK_TIMEOUT": ("benchmark_timeout", float)}
        values = asdict(base)
        for variable, (key, cast) in overrides.items():
            if os.environ.get(variable):
                values[key] = cast(os.environ[variable])
        if os.environ.get("ITERS_CAP"):
            values["iters_cap"] = int(os.environ["ITERS_CAP"])
        values["benchmark_args"] = tuple(values["benchmark_args"])
        return cls(**values)
