"""Which precision and memory format run fastest for one model at one input size and batch, measured.

On a GPU the fastest configuration depends on the model, the input size and the batch: at batch 1,
512x512 on an H200, bf16 and channels_last were both slower than the bare fp32 model for every
zoo model (benchmarks/gpu-h200.md), at 1024 bf16 was faster for most. So `--precision auto` on
CUDA does not guess: a short trial on the first batch times each candidate configuration, always
including the bare one (fp32 without TF32, contiguous, cuDNN's autotuner off), and keeps the
fastest. The choice is cached in `$SEGCLI_HOME/execution-policy.json`, keyed by everything that
changes it: model, checkpoint (digest or name), input size, batch, GPU name and torch version.
A cache file that cannot be read is ignored with a warning and rewritten; it never stops a run.

The trial takes the device as an argument, so its logic runs on the CPU in the tests.
"""

from __future__ import annotations

import json
import threading
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn

from segcli.device import ExecutionPlan, cpu_supports_bf16
from segcli.errors import SegcliWarning

CACHE_NAME = "execution-policy.json"
CACHE_FORMAT = "segcli-execution-policy"
CACHE_VERSION = 1
NOISE_MARGIN = 0.03  # a candidate replaces the bare configuration only when at least 3 % faster
TRIAL_RUNS = (2, 5)  # warm-up calls, timed calls per candidate


class ExecutionPolicyWarning(SegcliWarning):
    """The policy cache could not be read or written; the trial's choice is used anyway."""


@dataclass(frozen=True)
class Candidate:
    """One configuration the trial times."""

    precision: str           # fp32 (no TF32) | bf16 | fp16
    channels_last: bool
    cudnn_benchmark: bool = False

    @property
    def label(self) -> str:
        layout = "CL" if self.channels_last else "contiguous"
        return f"{self.precision} {layout}" + (" cudnn.benchmark" if self.cudnn_benchmark else "")

    def plan(self, device: torch.device) -> ExecutionPlan:
        return ExecutionPlan(device, self.precision, self.channels_last)


BARE = Candidate("fp32", channels_last=False, cudnn_benchmark=False)


@dataclass(frozen=True)
class PolicyKey:
    """Everything a cached choice depends on."""

    model: str
    checkpoint: str          # the checkpoint's SHA-256 when published, else its name ("random": random weights)
    height: int
    width: int
    batch: int
    device_name: str         # torch.cuda.get_device_name, or "cpu"
    torch_version: str

    def text(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def for_run(cls, model: str, checkpoint: str, height: int, width: int, batch: int,
                device: torch.device) -> "PolicyKey":
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
        return cls(model, checkpoint, height, width, batch, name, torch.__version__)


@dataclass(frozen=True)
class PolicyChoice:
    candidate: Candidate
    timings_ms: dict[str, float]   # candidate label -> median ms per batch ({} when read from the cache)
    from_cache: bool
    key: PolicyKey | None = None

    def describe(self) -> str:
        """What runs and why, e.g. `fp32 CL (measured: fp32 contiguous 3.10 ms, ... per batch of 1 at 40x40)`."""
        where = "" if self.key is None else f" per batch of {self.key.batch} at {self.key.height}x{self.key.width}"
        if self.from_cache:
            return f"{self.candidate.label} (cached: measured earlier{where})"
        measured = ", ".join(f"{label} {ms:.2f} ms" for label, ms in self.timings_ms.items())
        return f"{self.candidate.label} (measured: {measured}{where})"


def candidates_for(device: torch.device) -> list[Candidate]:
    """The bare configuration first, then every precision x memory format (x cuDNN autotuner on CUDA)."""
    if device.type == "cuda":
        precisions = ["fp32", "fp16"] + (["bf16"] if torch.cuda.is_bf16_supported() else [])
        autotuner = (False, True)
    else:
        precisions = ["fp32"] + (["bf16"] if device.type == "cpu" and cpu_supports_bf16() else [])
        autotuner = (False,)
    found = [BARE]
    for precision in precisions:
        for channels_last in (False, True):
            for benchmark in autotuner:
                candidate = Candidate(precision, channels_last, benchmark)
                if candidate != BARE:
                    found.append(candidate)
    return found


Timer = Callable[[Candidate, Callable[[], object], ExecutionPlan], float]


def median_timer(candidate: Candidate, call: Callable[[], object], plan: ExecutionPlan) -> float:
    """Median milliseconds of TRIAL_RUNS timed calls after the warm-up calls (where cuDNN autotunes)."""
    warmup, iters = TRIAL_RUNS
    for _ in range(warmup):
        call()
    plan.synchronize()
    samples = []
    for _ in range(iters):
        started = time.perf_counter()
        call()
        plan.synchronize()
        samples.append((time.perf_counter() - started) * 1000.0)
    return sorted(samples)[len(samples) // 2]


def apply_candidate(model: nn.Module, candidate: Candidate, device: torch.device) -> nn.Module:
    """The model in the candidate's memory format; cuDNN's autotuner (a process-wide flag) set as it says."""
    layout = torch.channels_last if candidate.channels_last else torch.contiguous_format
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = candidate.cudnn_benchmark
    return model.to(memory_format=layout)


def run_trial(model: nn.Module, example: torch.Tensor, device: torch.device,
              candidates: Sequence[Candidate], timer: Timer = median_timer) -> dict[Candidate, float]:
    """Milliseconds per batch of `example` for each candidate (a failing candidate, e.g. out of memory, is left out)."""
    example = example.to(device)
    results: dict[Candidate, float] = {}
    for candidate in candidates:
        plan = candidate.plan(device)
        model = apply_candidate(model, candidate, device)
        batch = example.contiguous(memory_format=torch.channels_last) if candidate.channels_last else example

        def call(model=model, batch=batch, plan=plan) -> object:
            with torch.inference_mode(), plan.autocast():
                return model(batch)

        try:
            results[candidate] = float(timer(candidate, call, plan))
        except (RuntimeError, torch.cuda.OutOfMemoryError) as exc:  # this configuration cannot run: not a choice
            if candidate == BARE:
                raise
            warnings.warn(f"execution policy: {candidate.label} failed in the trial ({str(exc).splitlines()[0]})",
                          ExecutionPolicyWarning, stacklevel=2)
        if device.type == "cuda":
            torch.cuda.empty_cache()  # the autotuner's trial workspaces go back before the next candidate
    return results


def choose(timings: dict[Candidate, float], margin: float = NOISE_MARGIN) -> Candidate:
    """The fastest candidate; the bare configuration unless another beats it by more than `margin`."""
    if BARE not in timings:
        raise ValueError("the trial must time the bare fp32 configuration")
    bare_ms = timings[BARE]
    best = min(timings, key=lambda candidate: timings[candidate])
    return best if timings[best] < bare_ms * (1.0 - margin) else BARE


def default_cache_path() -> Path:
    from segcli.checkpoints.manifest import segcli_home

    return segcli_home() / CACHE_NAME


class PolicyCache:
    """The cached choices: one JSON file, read whole, rewritten whole through segcli.atomic."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path is not None else default_cache_path()

    def _entries(self) -> dict[str, dict]:
        """Every entry of a readable cache; a missing file is empty, an unreadable one empty with a warning."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (FileNotFoundError, NotADirectoryError):
            return {}
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            self._warn(f"ignored {self.path} ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})")
            return {}
        ours = isinstance(data, dict) and data.get("format") == CACHE_FORMAT
        if not (ours and isinstance(data.get("entries"), dict)):
            self._warn(f"ignored {self.path} (not a segcli execution-policy file)")
            return {}
        if data.get("version") != CACHE_VERSION:  # an older segcli's choices: measured again
            return {}
        return {key: value for key, value in data["entries"].items() if isinstance(value, dict)}

    def get(self, key: PolicyKey) -> Candidate | None:
        entry = self._entries().get(key.text())
        if entry is None:
            return None
        try:
            candidate = Candidate(str(entry["precision"]), bool(entry["channels_last"]),
                                  bool(entry["cudnn_benchmark"]))
        except (KeyError, TypeError):
            self._warn(f"ignored a malformed entry in {self.path}")
            return None
        if candidate.precision not in ("fp32", "bf16", "fp16"):
            self._warn(f"ignored an entry with precision {candidate.precision!r} in {self.path}")
            return None
        return candidate

    def put(self, key: PolicyKey, candidate: Candidate, timings: dict[Candidate, float]) -> None:
        """Add or replace one entry (atomic rewrite); a cache that cannot be written is a warning."""
        from segcli.atomic import atomic_write_json

        entries = self._entries()
        entries[key.text()] = {**asdict(candidate), "timings_ms": {c.label: round(ms, 4) for c, ms in timings.items()}}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(self.path, {"format": CACHE_FORMAT, "version": CACHE_VERSION, "entries": entries})
        except OSError as exc:
            self._warn(f"could not write {self.path} ({exc.strerror or exc}); the choice holds for this run only")

    @staticmethod
    def _warn(message: str) -> None:
        from segcli.text import printable

        warnings.warn(f"execution policy: {printable(message)}", ExecutionPolicyWarning, stacklevel=3)


def choose_execution(model: nn.Module, example: torch.Tensor, device: torch.device, key: PolicyKey,
                     cache: PolicyCache | None = None, timer: Timer = median_timer,
                     candidates: Sequence[Candidate] | None = None) -> PolicyChoice:
    """The cached choice for `key`, or a trial on `example` (then cached); the model is left in the chosen format."""
    cached = cache.get(key) if cache is not None else None
    if cached is not None:
        apply_candidate(model, cached, device)
        return PolicyChoice(cached, {}, from_cache=True, key=key)
    timings = run_trial(model, example, device, candidates or candidates_for(device), timer)
    chosen = choose(timings)
    apply_candidate(model, chosen, device)
    if cache is not None:
        cache.put(key, chosen, timings)
    return PolicyChoice(chosen, {candidate.label: ms for candidate, ms in timings.items()}, from_cache=False, key=key)


class EnginePolicy:
    """An engine's execution policy: consulted on the first batch of each (input size, batch) the engine runs
    (a trial, or the cached choice), then that batch shape runs in the chosen configuration.

    Thread-safe (folder-run lanes and serve's batcher share one engine); `choices` lists what was chosen, in
    the order the shapes came. A shape whose trial cannot run the bare model (too small, out of memory) is
    left to the engine's plan as it stands (the forward pass then fails or retries as it would without one).
    """

    def __init__(self, model_name: str, checkpoint: str, device: torch.device, cache: PolicyCache | None = None,
                 timer: Timer | None = None, candidates: Sequence[Candidate] | None = None,
                 channels_last: bool | None = None) -> None:
        self.model_name, self.checkpoint, self.device = model_name, checkpoint, device
        self.cache = cache if cache is not None else PolicyCache()
        self.timer = timer or median_timer
        self.candidates = candidates
        self.channels_last = channels_last  # --channels-last / --no-channels-last given: only that layout
        self.choices: list[PolicyChoice] = []
        self._chosen: dict[tuple[int, int, int], Candidate | None] = {}
        self._applied: Candidate | None = None
        self._lock = threading.Lock()

    def _candidates(self) -> list[Candidate]:
        found = list(self.candidates or candidates_for(self.device))
        if self.channels_last is None:
            return found
        return [c for c in found if c.channels_last == self.channels_last or c == BARE]

    def plan_for(self, model: nn.Module, batch: torch.Tensor) -> ExecutionPlan | None:
        """The plan for a [N, 3, h, w] batch (the model put in its memory format); None: no choice for it."""
        batch_size, height, width = batch.shape[0], batch.shape[-2], batch.shape[-1]
        shape = (int(height), int(width), int(batch_size))
        with self._lock:
            if shape not in self._chosen:
                self._chosen[shape] = None  # a trial that raises leaves no choice for this shape
                self._applied = None        # ... and the model in whichever format it tried last
                key = PolicyKey.for_run(self.model_name, self.checkpoint, *shape, self.device)
                choice = choose_execution(model, batch, self.device, key, self.cache, self.timer, self._candidates())
                self._chosen[shape], self._applied = choice.candidate, choice.candidate
                self.choices.append(choice)
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
            candidate = self._chosen[shape]
            if candidate is None:
                return None
            if candidate != self._applied:  # another shape's choice ran last
                apply_candidate(model, candidate, self.device)
                self._applied = candidate
            return candidate.plan(self.device)

    @classmethod
    def for_options(cls, record, device: torch.device, options, runs_on: object = None) -> "EnginePolicy | None":
        """The policy an engine built with `options` (InferenceOptions) gets: `precision="auto"` on CUDA, or
        anywhere with `execution_policy=True`; None for an explicit precision, `execution_policy=False`, or
        a model whose runtime fixes how it runs (`runs_on`: an ONNX graph)."""
        if runs_on or not cls.wanted(device, options):
            return None
        return cls(record.model, record.sha256 or record.name, device, channels_last=options.channels_last)

    @staticmethod
    def wanted(device: torch.device, options) -> bool:
        """Whether `options` on `device` leave the precision and memory format to the policy."""
        wanted = options.execution_policy if options.execution_policy is not None else device.type == "cuda"
        return options.precision == "auto" and bool(wanted)

    def describe(self) -> str:
        """The choices so far, one per batch shape ("" before the first batch)."""
        return "; ".join(choice.describe() for choice in self.choices)


def memory_format_name(channels_last: bool) -> str:
    return "channels_last" if channels_last else "contiguous"


def ran_in(plan: ExecutionPlan, policy: EnginePolicy | None) -> tuple[str, str]:
    """(precision, memory format) an engine ran in, as reports say it: the policy's choices ("/" between them
    when batch shapes chose differently); `auto` before its first batch; else the plan's."""
    if policy is None:
        return plan.precision, memory_format_name(plan.channels_last)
    chosen = list(dict.fromkeys(choice.candidate for choice in policy.choices))
    if not chosen:
        return "auto", "auto"
    return ("/".join(dict.fromkeys(c.precision for c in chosen)),
            "/".join(dict.fromkeys(memory_format_name(c.channels_last) for c in chosen)))
