"""`segcli benchmark --onnxruntime`: the same subject exported to ONNX and run by onnxruntime, as one more row.

The graph is exported at the row's size (static; dynamic when the batch is above 1), verified, and run
behind the engine exactly as `predict --weights FILE.onnx` runs it: model-only time is the graph
(normalisation, model, argmax) on the batch; end-to-end time adds decode, upsample and encode.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
import torch

from segcli.benchmarking.measure import measure_calls
from segcli.inference_options import InferenceOptions

PRECISION_LABEL = "onnxruntime fp32"  # the table's precision column: which runtime, in which precision


def onnxruntime_row(run):
    """Measure `run`'s subject (a `segcli.benchmarking.runner._SizeRun`, which calls this) through onnxruntime
    at its size and batch; returns its `BenchmarkRow`. Not imported back from the runner: the runner is this
    module's only caller, so the dependency runs one way."""
    from segcli.engine import SegmentationEngine, preprocess
    from segcli.loaded_model import LoadedModel
    from segcli.export.exporter import ExportSettings, export_model
    from segcli.checkpoints.formats import ONNX_RUNS_ON as RUNS_ON
    from segcli.checkpoints.onnx_model import (IDENTITY_PREPROCESSING, OnnxRuntimeModel, read_onnx_metadata,
                                               record_from_metadata)
    from segcli.export.verify import scenes

    with tempfile.TemporaryDirectory(prefix="segcli-benchmark-") as folder:
        path = Path(folder) / f"{run.subject.name}.onnx"
        settings = ExportSettings(size=(run.height, run.width), dynamic=run.batch > 1)
        export_model(run.subject.model, run.record, path, settings)
        graph = LoadedModel(OnnxRuntimeModel(path), record_from_metadata(read_onnx_metadata(path), path),
                            source=f"{run.subject.source} exported to ONNX", runs_on=RUNS_ON)
        engine = SegmentationEngine.from_checkpoint(graph, options=InferenceOptions(channels_last=False))
        plan = engine.plan
        images = scenes(run.batch, run.height, run.width, first_index=0)
        batch = torch.cat([preprocess(image, IDENTITY_PREPROCESSING) for image in images])
        samples, memory = measure_calls(lambda: engine.forward(batch), run.warmup, run.iters, plan.synchronize,
                                        plan.device)
        row = run._row("onnxruntime", plan, samples, memory)
        row.precision = PRECISION_LABEL
        if run.settings.end_to_end:
            run._measure_end_to_end(engine, row)
    return row
