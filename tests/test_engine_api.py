"""One way to build an engine: `SegmentationEngine.from_checkpoint` (a resolved file or a `LoadedModel`),
`load` = resolve + from_checkpoint, every inference setting in `InferenceOptions`, and `segcli.load` /
`segcli.predict` at the package root without importing torch on `import segcli`."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from robustness_support import tiny_model, tiny_record
from segcli.checkpoints.record import ResolvedCheckpoint
from segcli.engine import SegmentationEngine
from segcli.inference_options import FROM_OPTIONS, InferenceOptions
from segcli.loaded_model import LoadedModel
from segcli.tiling import TilingPolicy, TTAParams

PACKAGE = Path(__file__).resolve().parents[1] / "segcli"
SCRIPTS = ("benchmarks", "training")  # the repository's scripts build engines through the same door


def _image(seed: int = 0, height: int = 40, width: int = 48) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_from_checkpoint_builds_an_in_memory_model_with_the_options_plan():
    net = tiny_model()
    engine = SegmentationEngine.from_checkpoint(
        LoadedModel(net, tiny_record(), source="my network"), device="cpu",
        options=InferenceOptions(precision="fp32", channels_last=False, tta=TTAParams()))
    assert (engine.plan.device.type, engine.plan.precision, engine.plan.channels_last) == ("cpu", "fp32", False)
    assert engine.source == "my network" and engine.checkpoint is None and engine.options.tta == TTAParams()
    assert engine.record == tiny_record() and engine.model is net
    image = _image()
    expected = tiny_model().eval()(engine_input(engine, image)).argmax(1)[0].numpy()
    plain = SegmentationEngine.from_checkpoint(LoadedModel(tiny_model(), tiny_record()), device="cpu",
                                               options=InferenceOptions(precision="fp32", channels_last=False))
    np.testing.assert_array_equal(plain.predict(image).labels, expected)


def engine_input(engine: SegmentationEngine, image: np.ndarray) -> torch.Tensor:
    from segcli.engine import preprocess

    return preprocess(image, engine.record.preprocessing)


def test_from_checkpoint_loads_a_resolved_file_and_sets_the_options_input_scales(tiny_checkpoint):
    from segcli.checkpoints.record import SOURCE_PATH
    from segcli.checkpoints.resolve import resolve_checkpoint

    resolved = resolve_checkpoint("lraspp", str(tiny_checkpoint))
    assert resolved.source == SOURCE_PATH
    engine = SegmentationEngine.from_checkpoint(resolved, device="cpu", options=InferenceOptions(precision="fp32"))
    assert engine.checkpoint == resolved and engine.source == resolved.describe()
    assert engine.input_scales == resolved.record.input_scales == (1.0,)
    multi = SegmentationEngine.from_checkpoint(
        resolved, device="cpu", options=InferenceOptions(precision="fp32", input_scales=(0.5, 1.0)))
    assert multi.input_scales == multi.model.input_scales == (0.5, 1.0)
    assert not np.allclose(_logits(multi), _logits(engine))  # the 0.5 scale's logits are max-fused in


def _logits(engine: SegmentationEngine) -> np.ndarray:
    from segcli.engine import preprocess

    return engine.forward(preprocess(_image(3), engine.record.preprocessing)).numpy()


def test_a_model_whose_runtime_fixes_its_execution_runs_there_whatever_the_options_say():
    engine = SegmentationEngine.from_checkpoint(
        LoadedModel(tiny_model(), tiny_record(), runs_on=("cpu", "fp32")), device="auto",
        options=InferenceOptions(precision="bf16"))
    assert (engine.plan.device.type, engine.plan.precision) == ("cpu", "fp32")
    bf16 = SegmentationEngine.from_checkpoint(LoadedModel(tiny_model(), tiny_record()), device="cpu",
                                              options=InferenceOptions(precision="bf16"))
    assert bf16.plan.precision == "bf16"


def test_an_onnx_checkpoint_is_said_to_run_on_the_cpu_in_fp32(tmp_path):
    from segcli.checkpoints.loading import runtime_execution
    from segcli.checkpoints.record import SOURCE_PATH

    assert runtime_execution(ResolvedCheckpoint(tiny_record(), tmp_path / "graph.onnx", SOURCE_PATH)) == ("cpu", "fp32")
    assert runtime_execution(ResolvedCheckpoint(tiny_record(), tmp_path / "w.safetensors", SOURCE_PATH)) is None


def test_the_old_doors_are_gone(tiny_checkpoint):
    engine = SegmentationEngine.from_checkpoint(LoadedModel(tiny_model(), tiny_record()), device="cpu")
    with pytest.raises(AttributeError):
        engine.tiling = TilingPolicy.parse("32")
    with pytest.raises(AttributeError):
        engine.tta = TTAParams()
    for door in ({"precision": "fp32"}, {"channels_last": False}):
        with pytest.raises(TypeError):
            SegmentationEngine.load("lraspp", str(tiny_checkpoint), device="cpu", **door)
    with pytest.raises(TypeError):
        SegmentationEngine(tiny_model(), tiny_record(), tiling=TilingPolicy.parse("32"))


def test_crf_is_one_typed_value():
    from segcli.crf import CRFParams, CRFSettings

    with pytest.raises(TypeError, match="CRFSettings"):
        InferenceOptions(crf=CRFParams())
    engine = SegmentationEngine.from_checkpoint(LoadedModel(tiny_model(), tiny_record()), device="cpu",
                                                options=InferenceOptions(crf=CRFSettings(method="fast")))
    with pytest.raises(TypeError, match="CRFSettings"):
        engine.predict(_image(), crf=CRFParams())
    assert engine.crf_for(None) is None
    params, settings = engine.crf_for(FROM_OPTIONS)
    assert settings == CRFSettings(method="fast") and params == CRFParams()


def test_segcli_load_and_predict_at_the_package_root(tiny_checkpoint):
    import segcli

    options = InferenceOptions(precision="fp32")
    engine = segcli.load("lraspp", str(tiny_checkpoint), device="cpu", options=options)
    assert isinstance(engine, SegmentationEngine) and engine.checkpoint.path == tiny_checkpoint
    image = _image(5)
    first = segcli.predict(image, model="lraspp", weights=str(tiny_checkpoint), device="cpu", options=options)
    np.testing.assert_array_equal(first.labels, engine.predict(image).labels)
    again = segcli.predict(_image(6), model="lraspp", weights=str(tiny_checkpoint), device="cpu", options=options)
    np.testing.assert_array_equal(again.labels, engine.predict(_image(6)).labels)
    assert {"load", "predict", "SegmentationEngine", "InferenceOptions"} <= set(segcli.__all__)
    with pytest.raises(AttributeError):
        segcli.no_such_name  # noqa: B018


def test_import_segcli_and_its_root_names_import_no_torch():
    code = ("import sys, segcli; names = sorted(segcli.__all__); "
            "print('torch' in sys.modules, 'load' in names and 'predict' in names, callable(segcli.__getattr__))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.split() == ["False", "True", "True"]


def test_public_modules_say_what_they_export():
    import importlib

    for name in ("segcli.engine", "segcli.inference_options", "segcli.crf", "segcli.checkpoints.record",
                 "segcli.errors"):
        module = importlib.import_module(name)
        assert module.__all__ and all(hasattr(module, item) for item in module.__all__), name


def _engine_builds_elsewhere() -> list[str]:
    """`SegmentationEngine(` calls and assignments to an engine's model or a model's input scales, outside
    segcli/engine.py (every engine is built by `SegmentationEngine.from_checkpoint`)."""
    found = []
    scripts = [path for folder in SCRIPTS for path in (PACKAGE.parent / folder).rglob("*.py")]
    for path in sorted(PACKAGE.rglob("*.py")) + sorted(scripts):
        if path == PACKAGE / "engine.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load" \
                    and any(keyword.arg in ("precision", "channels_last") for keyword in node.keywords):
                found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} load(precision/channels_last=)")
            if isinstance(node, ast.Call) and (
                    (isinstance(node.func, ast.Name) and node.func.id == "SegmentationEngine")
                    or (isinstance(node.func, ast.Attribute) and node.func.attr == "SegmentationEngine")):
                found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} SegmentationEngine(")
            targets = node.targets if isinstance(node, ast.Assign) else \
                [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else []
            for target in targets:
                if isinstance(target, ast.Attribute) and _is_engine_model(target):
                    found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {ast.unparse(target)} =")
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "set_input_scales" \
                    and node.args and isinstance(node.args[0], ast.Attribute) and node.args[0].attr == "model":
                found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} set_input_scales(....model)")
    return found


def _is_engine_model(target: ast.Attribute) -> bool:
    text = ast.unparse(target)
    return text.endswith("engine.model") or text.endswith(".model.input_scales")


def test_only_the_engine_builds_engines_and_sets_their_models_scales():
    assert _engine_builds_elsewhere() == []


def test_the_scan_finds_what_it_looks_for(tmp_path, monkeypatch):
    """The scan above is not vacuous: it flags each form in a module planted in a copy of the package."""
    planted = tmp_path / "segcli"
    planted.mkdir()
    (planted / "engine.py").write_text("x = 1\n")
    (planted / "caller.py").write_text(
        "from segcli.engine import SegmentationEngine\n"
        "engine = SegmentationEngine(None, None)\n"
        "engine.model = None\n"
        "engine.model.input_scales = (1.0,)\n"
        "set_input_scales(engine.model, (1.0,))\n"
        "engine = SegmentationEngine.load('m', precision='fp32')\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", planted)
    assert sorted(line.split(" ", 1)[1] for line in _engine_builds_elsewhere()) == [
        "SegmentationEngine(", "engine.model =", "engine.model.input_scales =", "load(precision/channels_last=)",
        "set_input_scales(....model)"]


def test_the_synthetic_scenes_warning_points_at_the_line_that_called_segcli(tmp_path):
    import dataclasses
    import warnings

    import segcli
    from segcli.checkpoints.record import SYNTHETIC_DATASET
    from segcli.checkpoints.saving import save_segcli_checkpoint
    from segcli.errors import SyntheticScenesWarning

    path = save_segcli_checkpoint(tmp_path / "synth.safetensors", tiny_model(),
                                  dataclasses.replace(tiny_record("synth"), dataset=SYNTHETIC_DATASET))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        segcli.load("lraspp", str(path), device="cpu")
        segcli.predict(_image(), model="lraspp", weights=str(path), device="cpu")
    shown = [(Path(item.filename).name, item.lineno) for item in caught if item.category is SyntheticScenesWarning]
    here = Path(__file__).name
    assert [name for name, _ in shown] == [here, here] and shown[1][1] == shown[0][1] + 1


@pytest.mark.slow
def test_the_one_liner_runs_the_shipped_weights_from_any_folder(tmp_path):
    """`python -c "import segcli; segcli.load('deeplabv3p').predict('img.jpg')"` with the shipped weights, offline."""
    from PIL import Image

    sample = sorted((PACKAGE.parent / "samples" / "synth" / "JPEGImages").glob("*.jpg"))[0]
    (tmp_path / "img.jpg").write_bytes(sample.read_bytes())
    code = ("import segcli; p = segcli.load('deeplabv3p').predict('img.jpg'); "
            "print(p.labels.shape, p.labels.dtype, int(p.labels.max()) < len(segcli.load('deeplabv3p').record.categories))")
    result = subprocess.run([sys.executable, "-W", "ignore", "-c", code], cwd=tmp_path, capture_output=True,
                            text=True, timeout=300, check=True)
    width, height = Image.open(sample).size
    assert result.stdout.split() == [f"({height},", f"{width})", "uint8", "True"]
