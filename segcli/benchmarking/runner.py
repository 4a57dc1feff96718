"""Run the benchmark: per model and input size, a bare-model baseline row, then one engine row per precision."""

from __future__ import annotations

import dataclasses
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

import numpy as np
import torch
from PIL import Image

from segcli.benchmarking.gpu_peaks import peak_tflops
from segcli.benchmarking.environment import environment_info, load_average, timing_warnings
from segcli.benchmarking.measure import (
    FLOP_CONVENTION, LatencyStats, PeakMemory, count_flops, count_parameters, measure_calls,
)
from segcli.benchmarking.subjects import BenchmarkSubject
from segcli.device import (
    ExecutionPlan, cudnn_benchmark_state, plan_execution, resolve_device, set_cudnn_benchmark,
)
from segcli.engine import SegmentationEngine, preprocess
from segcli.execution_policy import EnginePolicy
from segcli.loaded_model import LoadedModel

from segcli.inference_options import InferenceOptions

if TYPE_CHECKING:
    from segcli.checkpoints.record import CheckpointRecord
    from segcli.crf import CRFSettings

# Timed-run defaults: accelerators as MMSegmentation's benchmark (5 warm-up, 200 timed);
# CPUs get fewer, since one 512x512 ResNet forward takes about a second on 2 cores.
AUTO = "auto"  # a row whose precision and memory format the execution policy chooses (segcli.execution_policy)
DEFAULT_RUNS = {"cpu": (2, 5), "accelerator": (5, 200)}
E2E_ITERS_CAP = 20  # end-to-end runs include decoding, CRF and writing every output: slower, fewer needed


@dataclass(frozen=True)
class BenchmarkSettings:
    """What to measure; `None` run counts take the device's defaults (DEFAULT_RUNS)."""

    sizes: tuple[tuple[int, int], ...] = ((512, 512),)  # (height, width) of the network input
    batch: int = 1
    batches: tuple[int, ...] = ()    # several batch sizes (rows for each; FLOPs counted once); () : `batch` alone
    device: str = "auto"
    precisions: tuple[str, ...] = ("auto",)
    crf: "CRFSettings | None" = None   # as predict's --crf* flags give it (kernel settings not given: the record's)
    warmup: int | None = None
    iters: int | None = None
    e2e_iters: int | None = None     # default: min(iters, E2E_ITERS_CAP)
    end_to_end: bool = True
    baseline: bool = True
    data_dir: Path | None = None     # VOC-format folder for mIoU / pixel accuracy
    split: str = "val"
    onnxruntime: bool = False        # also export each model to ONNX and time it in onnxruntime (CPU)

    def __post_init__(self) -> None:
        from segcli.crf import CRFParams, CRFSettings

        if isinstance(self.crf, CRFParams):  # exact kernel settings: run as given
            object.__setattr__(self, "crf", CRFSettings.from_params(self.crf))

    @property
    def batch_sizes(self) -> tuple[int, ...]:
        return self.batches or (self.batch,)

    def runs_for(self, device: torch.device) -> tuple[int, int, int]:
        default_warmup, default_iters = DEFAULT_RUNS["cpu" if device.type == "cpu" else "accelerator"]
        warmup = default_warmup if self.warmup is None else self.warmup
        iters = default_iters if self.iters is None else self.iters
        e2e_iters = min(iters, E2E_ITERS_CAP) if self.e2e_iters is None else self.e2e_iters
        if warmup < 0 or iters < 1 or e2e_iters < 1:
            raise ValueError(f"need warmup >= 0, iters >= 1 and e2e_iters >= 1, got {warmup}, {iters}, {e2e_iters}")
        return warmup, iters, e2e_iters


@dataclass
class BenchmarkRow:
    """One line of the table; all times in milliseconds per batch unless named per image."""

    model: str
    weights: str                 # checkpoint name, or "random"
    variant: str                 # "baseline" (bare nn.Module, fp32, contiguous) or "engine"
    height: int
    width: int
    batch: int
    device: str
    precision: str
    channels_last: bool
    crf: bool
    parameters: int
    gflops: float                # per image at this size (FlopCounterMode, 2 FLOPs per multiply-add)
    mean_ms: float               # model-only latency per batch
    p50_ms: float
    p95_ms: float
    min_ms: float
    max_ms: float
    std_ms: float
    images_per_s: float
    achieved_gflops_per_s: float
    peak_memory_mb: float | None
    memory_method: str
    warmup: int
    iters: int
    time_vs_baseline: float | None = None   # this row's mean_ms / the bare fp32 model's (< 1: faster)
    e2e_mean_ms: float | None = None        # what `predict` does per batch: decode JPEG .. every output written
    e2e_p50_ms: float | None = None
    e2e_p95_ms: float | None = None
    e2e_images_per_s: float | None = None
    e2e_iters: int | None = None
    e2e_peak_memory_mb: float | None = None
    decode_ms: float | None = None           # per image, means over the end-to-end runs
    preprocess_ms: float | None = None
    forward_ms: float | None = None
    upsample_ms: float | None = None
    crf_ms: float | None = None
    encode_ms: float | None = None           # writing the label PNG, overlay and JSON (encode, rename)
    e2e_stages_ms: dict[str, float] | None = None  # per image, every stage and "other"; sums to e2e_mean_ms / batch
    miou: float | None = None
    pixel_accuracy: float | None = None
    checkpoint_source: str = ""
    p10_ms: float | None = None              # model-only, like p50_ms
    p90_ms: float | None = None
    spread: float | None = None              # (p90_ms - p10_ms) / p50_ms: how steady the timings were
    e2e_lanes: int | None = None             # images the end-to-end pipeline runs side by side
    cudnn_benchmark: bool | None = None      # cuDNN's autotuner during the timed calls (CUDA only)
    peak_tflops: float | None = None         # the GPU's dense peak at this precision (gpu_peaks.py); None: unknown
    peak_share: float | None = None          # achieved FLOP/s / peak_tflops

    @property
    def achieved_tflops_per_s(self) -> float:
        return self.achieved_gflops_per_s / 1000.0

    @property
    def size(self) -> str:
        return f"{self.height}x{self.width}"

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["size"] = self.size
        data["achieved_tflops_per_s"] = self.achieved_tflops_per_s
        return data


@dataclass
class BenchmarkReport:
    environment: dict[str, Any]
    settings: dict[str, Any]
    rows: list[BenchmarkRow] = field(default_factory=list)
    load_average: dict[str, Any] = field(default_factory=dict)  # "start", "end" (1, 5, 15 min), "cores"
    interrupted: bool = False  # Ctrl-C: the rows measured until then

    @property
    def warnings(self) -> list[str]:
        return timing_warnings(self.load_average, [(row.model, row.size, row.spread) for row in self.rows])

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": "segcli-benchmark", "version": 1,
            "environment": self.environment, "settings": self.settings,
            "load_average": self.load_average, "warnings": self.warnings, "interrupted": self.interrupted,
            "conventions": {
                "flops": FLOP_CONVENTION,
                "latency": "ms per batch, device synchronised around each timed call; warm-up calls discarded",
                "model_only": "engine.forward on a preprocessed batch already on the device (autocast, memory format)",
                "end_to_end": ("what `segcli predict FOLDER` does per image, through its own pipeline and schedule: "
                               "decode a JPEG file, preprocess, forward, upsample, CRF (if on), argmax, then write "
                               "the label PNG, overlay PNG and JSON summary (encoded, renamed into place); "
                               "e2e_stages_ms per image adds up to e2e_mean_ms / batch ('other': scheduler, Python)"),
                "baseline": "bare nn.Module, fp32, contiguous, under torch.inference_mode(), no engine",
                "time_vs_baseline": "row mean_ms / baseline mean_ms at the same model, size and batch "
                                    "(< 1: faster; 0.41 = 0.41x the bare model's time)",
                "size": "network input size; checkpoints that resize the shorter side are benchmarked without that resize",
                "peak_memory": "see memory_method per row; measured over the timed calls (the warm-up, where "
                               "cuDNN's autotuner allocates its trial workspaces, is left out)",
                "peak_share": "achieved TFLOP/s / the GPU's dense peak at the row's precision "
                              "(segcli/benchmarking/gpu_peaks.py, vendor datasheets); null: GPU not in the table",
                "spread": "(p90_ms - p10_ms) / p50_ms of the model-only timed calls",
                "load_average": "os.getloadavg() (1, 5, 15 min) before the first and after the last row, and the cores",
            },
            "rows": [row.to_dict() for row in self.rows],
        }


def synthetic_jpeg(height: int, width: int, seed: int = 0) -> bytes:
    """A smooth random colour image with some texture, JPEG-encoded (quality 90)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, size=(max(2, height // 16), max(2, width // 16), 3), dtype=np.uint8)
    image = Image.fromarray(coarse).resize((width, height), Image.BILINEAR)
    noisy = np.asarray(image, dtype=np.int16) + rng.integers(-12, 13, size=(height, width, 3))
    buffer = io.BytesIO()
    Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def decode_jpeg(data: bytes) -> np.ndarray:
    """Decoded as `predict` decodes files (segcli.imageio)."""
    from segcli.imageio import load_image_bytes

    return load_image_bytes(data, "benchmark.jpg").rgb


def run_benchmark(
    subjects: Iterable[BenchmarkSubject],
    settings: BenchmarkSettings,
    on_row: Callable[[BenchmarkRow], None] | None = None,
    command: str | None = None,
) -> BenchmarkReport:
    """Measure every subject at every size: baseline row, then one engine row per precision. Ctrl-C
    (KeyboardInterrupt) ends the run early: the report holds the rows measured and says `interrupted`."""
    device = resolve_device(settings.device)
    plans = _unique_plans(settings.device, settings.precisions)
    warmup, iters, e2e_iters = settings.runs_for(device)
    report = BenchmarkReport(environment_info(device), _settings_dict(settings, warmup, iters, e2e_iters, command))
    report.load_average = {"start": load_average(), "end": None, "cores": os.cpu_count()}
    try:
        _measure(subjects, settings, plans, (warmup, iters, e2e_iters), device, report, on_row)
    except KeyboardInterrupt:
        report.interrupted = True
    report.load_average["end"] = load_average()
    return report


def _measure(subjects: Iterable[BenchmarkSubject], settings: BenchmarkSettings, plans: list[ExecutionPlan],
             runs: tuple[int, int, int], device: torch.device, report: BenchmarkReport,
             on_row: Callable[[BenchmarkRow], None] | None) -> None:
    warmup, iters, e2e_iters = runs
    for subject in subjects:
        accuracy_cache: dict[str, tuple[float, float]] = {}
        flops_cache: dict[tuple[int, int], float] = {}
        for (height, width), batch in [(size, batch) for size in settings.sizes for batch in settings.batch_sizes]:
            runner = _SizeRun(subject, settings, device, height, width, warmup, iters, e2e_iters, batch, flops_cache)
            baseline = runner.baseline_row() if settings.baseline else None
            for row in ([baseline] if baseline else []):
                report.rows.append(row)
                if on_row:
                    on_row(row)
            for plan in plans:
                row = runner.engine_row(plan, accuracy_cache)
                if baseline is not None:
                    row.time_vs_baseline = row.mean_ms / baseline.mean_ms
                report.rows.append(row)
                if on_row:
                    on_row(row)
            if settings.onnxruntime:  # segcli.benchmarking.onnxruntime_row
                from segcli.benchmarking.onnxruntime_row import onnxruntime_row

                row = onnxruntime_row(runner)
                row.time_vs_baseline = row.mean_ms / baseline.mean_ms if baseline is not None else None
                report.rows.append(row)
                if on_row:
                    on_row(row)
        del subject


def _unique_plans(device: str, precisions: Sequence[str]) -> "list[ExecutionPlan | str]":
    """The rows' plans; "auto" stays AUTO where the execution policy decides (on CUDA: measured per size and batch)."""
    plans: "list[ExecutionPlan | str]" = []
    for precision in precisions:
        plan = plan_execution(device, precision)
        plan = AUTO if precision == "auto" and EnginePolicy.wanted(plan.device, InferenceOptions()) else plan
        if plan not in plans:  # "auto" may resolve to a precision also listed
            plans.append(plan)
    return plans


def _settings_dict(settings: BenchmarkSettings, warmup: int, iters: int, e2e_iters: int, command: str | None) -> dict:
    return {
        "command": command,
        "sizes": [f"{h}x{w}" for h, w in settings.sizes],
        "batch": settings.batch, "batches": list(settings.batch_sizes), "device": settings.device,
        "precisions": list(settings.precisions),
        "crf": None if settings.crf is None else {"method": settings.crf.method, "given": dict(settings.crf.given)},
        "warmup": warmup, "iters": iters, "e2e_iters": e2e_iters,
        "end_to_end": settings.end_to_end, "baseline": settings.baseline,
        "data_dir": None if settings.data_dir is None else str(settings.data_dir), "split": settings.split,
        "onnxruntime": settings.onnxruntime,
    }


class _SizeRun:
    """One subject at one input size: shared inputs and FLOP count, then rows."""

    def __init__(self, subject: BenchmarkSubject, settings: BenchmarkSettings, device: torch.device,
                 height: int, width: int, warmup: int, iters: int, e2e_iters: int, batch: int | None = None,
                 flops_cache: dict[tuple[int, int], float] | None = None) -> None:
        self.subject, self.settings, self.device = subject, settings, device
        self.batch = batch or settings.batch
        flops_cache = {} if flops_cache is None else flops_cache
        self.height, self.width = height, width
        self.warmup, self.iters, self.e2e_iters = warmup, iters, e2e_iters
        # the size is the network input: drop a checkpoint's shorter-side resize (torchvision: 520)
        self.record = dataclasses.replace(
            subject.record, preprocessing=dataclasses.replace(subject.record.preprocessing, resize_shorter=None))
        self.jpegs = [synthetic_jpeg(height, width, seed=index) for index in range(self.batch)]
        images = [decode_jpeg(data) for data in self.jpegs]
        self.batch_cpu = torch.cat([preprocess(image, self.record.preprocessing) for image in images])
        model = self._contiguous_model()
        self.parameters = count_parameters(model)
        if (height, width) not in flops_cache:  # once per model and size, whatever the batch
            flops_cache[height, width] = count_flops(model, self.batch_cpu[:1].to(device)) / 1e9
        self.gflops = flops_cache[height, width]
        self.gpu_name = torch.cuda.get_device_name(device) if device.type == "cuda" else None

    def _contiguous_model(self) -> torch.nn.Module:
        # the engine converts the module to channels_last in place; undo it for the bare baseline
        return self.subject.model.eval().to(self.device).to(memory_format=torch.contiguous_format)

    def _row(self, variant: str, plan: ExecutionPlan, samples: list[float], memory: PeakMemory) -> BenchmarkRow:
        stats = LatencyStats.from_samples(samples)
        batch = self.batch
        peak = peak_tflops(self.gpu_name, plan.precision)
        return BenchmarkRow(
            model=self.subject.name, weights=self.subject.weights, variant=variant,
            height=self.height, width=self.width, batch=batch, device=str(plan.device),
            precision=plan.precision, channels_last=plan.channels_last,
            crf=variant == "engine" and self.settings.crf is not None,
            parameters=self.parameters, gflops=self.gflops,
            mean_ms=stats.mean_ms, p50_ms=stats.p50_ms, p95_ms=stats.p95_ms, min_ms=stats.min_ms,
            max_ms=stats.max_ms, std_ms=stats.std_ms, p10_ms=stats.p10_ms, p90_ms=stats.p90_ms, spread=stats.spread,
            images_per_s=batch * 1000.0 / stats.mean_ms,
            achieved_gflops_per_s=self.gflops * batch * 1000.0 / stats.mean_ms,
            peak_memory_mb=memory.peak_mb, memory_method=memory.method,
            warmup=self.warmup, iters=self.iters, checkpoint_source=self.subject.source,
            cudnn_benchmark=cudnn_benchmark_state(self.device), peak_tflops=peak,
            peak_share=None if peak is None else self.gflops * batch / stats.mean_ms / peak,
        )

    def baseline_row(self) -> BenchmarkRow:
        """The bare module, fp32, contiguous, under inference_mode: what the engine is compared with."""
        model = self._contiguous_model()
        batch = self.batch_cpu.to(self.device)
        plan = ExecutionPlan(self.device, "fp32", channels_last=False)

        def call() -> None:
            with torch.inference_mode():
                model(batch)

        set_cudnn_benchmark(self.device, False)  # torch's default; an earlier engine row may have turned it on
        samples, memory = measure_calls(call, self.warmup, self.iters, plan.synchronize, self.device)
        return self._row("baseline", plan, samples, memory)

    def engine_row(self, plan: "ExecutionPlan | str", accuracy_cache: dict[str, tuple[float, float]]) -> BenchmarkRow:
        engine = _engine(self.subject, self.record, plan, self.settings, self.device)
        batch = self.batch_cpu.to(self.device)
        if plan == AUTO:  # the execution policy's trial (or cached choice) for this size and batch; the row: what ran
            engine.forward(batch)
            plan = engine.plan
        if plan.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        samples, memory = measure_calls(lambda: engine.forward(batch), self.warmup, self.iters, plan.synchronize,
                                        self.device)
        row = self._row("engine", plan, samples, memory)
        if self.settings.end_to_end:
            self._measure_end_to_end(engine, row)
        if self.settings.data_dir is not None:
            key = plan.precision
            if key not in accuracy_cache:
                accuracy_cache[key] = _accuracy(self.subject, plan, self.settings)
            row.miou, row.pixel_accuracy = accuracy_cache[key]
        return row

    def _measure_end_to_end(self, engine: SegmentationEngine, row: BenchmarkRow) -> None:
        """What `predict` does per image, every default output written (see segcli/benchmarking/end_to_end.py)."""
        from segcli.benchmarking.end_to_end import measure_end_to_end

        result = measure_end_to_end(engine, self.jpegs, self.batch, self.warmup, self.e2e_iters)
        stats, stages = result.stats, result.stage_ms
        row.e2e_mean_ms, row.e2e_p50_ms, row.e2e_p95_ms = stats.mean_ms, stats.p50_ms, stats.p95_ms
        row.e2e_images_per_s = self.batch * 1000.0 / stats.mean_ms
        row.e2e_iters, row.e2e_peak_memory_mb = self.e2e_iters, result.peak_memory_mb
        row.e2e_lanes = result.lanes
        row.e2e_stages_ms = {stage: round(value, 3) for stage, value in stages.items()}
        row.decode_ms, row.preprocess_ms = stages["decode"], stages["preprocess"]
        row.forward_ms, row.upsample_ms = stages["forward"], stages["upsample"]
        row.crf_ms = stages["crf"] if self.settings.crf is not None else None
        row.encode_ms = stages["label"] + stages["overlay"] + stages["json"] + stages["rename"]


def _accuracy(subject: BenchmarkSubject, plan: ExecutionPlan, settings: BenchmarkSettings) -> tuple[float, float]:
    """mIoU and pixel accuracy on the VOC-format folder, with the checkpoint's own preprocessing."""
    from segcli.evaluation import evaluate_folder

    metrics = evaluate_folder(_engine(subject, subject.record, plan, settings), settings.data_dir, settings.split)
    return metrics["miou"], metrics["pixel_acc"]


def _engine(subject: BenchmarkSubject, record: CheckpointRecord, plan: "ExecutionPlan | str",
            settings: BenchmarkSettings, device: torch.device | None = None) -> SegmentationEngine:
    """The engine of one row: the subject's model on the plan's device, precision and memory format (AUTO: as
    the execution policy chooses on `device`)."""
    options = InferenceOptions(precision="auto", crf=settings.crf) if plan == AUTO else \
        InferenceOptions(precision=plan.precision, channels_last=plan.channels_last, crf=settings.crf)
    device = device if plan == AUTO else plan.device
    return SegmentationEngine.from_checkpoint(LoadedModel(subject.model, record, subject.source),
                                              device=device, options=options)
