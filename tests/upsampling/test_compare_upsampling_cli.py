"""`segcli compare-upsampling` end to end on tiny folders (random-weight decoders, two seeds each, on the
shipped frozen encoder; 37x45 scenes)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from engine_support import engine_of
from segcli.checkpoints.record import CheckpointRecord, Preprocessing
from segcli.cli.main import cli
from segcli.data.synth import SYNTH_CLASSES, encode_mask_png, make_scene
from segcli.engine import preprocess
from segcli.metrics import ConfusionMatrix
from segcli.upsampling.compare import compare_upsampling
from segcli.upsampling.decoders import decoder_filename, find_decoders, load_decoder, save_decoder
from segcli.upsampling.methods import METHOD_NAMES, TRAINING_FREE_METHODS
from segcli.upsampling.encoder import load_shared_encoder
from segcli.upsampling.network import DEFAULT_WIDTHS, UpsamplingDecoder
from segcli.upsampling.runners import ZooLogitsRunner
from segcli.upsampling.samples import find_samples

SIZE = (37, 45)  # odd on purpose
METHOD_KEYS = {"description", "upsample_params", "upsample_ms", "end_to_end_ms", "upsample_peak_bytes"}
ACCURACY_KEYS = {"miou", "pixel_acc", "per_class_iou", "boundary_f", "boundary_precision", "boundary_recall",
                 "miou_ci95", "pixel_acc_ci95", "boundary_f_ci95", "seeds", "per_seed"}
SEEDS = (0, 1)


@pytest.fixture(scope="module")
def decoders(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("decoders")
    for method in METHOD_NAMES:
        for seed in SEEDS:
            torch.manual_seed(seed)
            net = UpsamplingDecoder(len(SYNTH_CLASSES), method).eval()
            save_decoder(folder / decoder_filename(method, seed), net, SYNTH_CLASSES, seed, {"val_miou": 0.0})
    return folder


def _scenes(folder: Path, with_masks: bool, count: int = 2) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        scene = make_scene(11, index, SIZE)
        Image.fromarray(scene.image).save(folder / f"scene{index}.png")
        if with_masks:
            (folder / "masks").mkdir(exist_ok=True)
            (folder / "masks" / f"scene{index}.png").write_bytes(encode_mask_png(scene.mask))


def _invoke(*args: str):
    return CliRunner().invoke(cli, ["compare-upsampling", *args], catch_exceptions=False)


def test_decoder_file_is_small_fp16_and_loads_back(decoders):
    path = decoders / decoder_filename("transposed-learned", 1)
    assert path.stat().st_size < 400_000
    net, record = load_decoder(path)
    assert record.kwargs["method"] == "transposed-learned" and record.kwargs["seed"] == 1
    assert record.categories == SYNTH_CLASSES
    torch.manual_seed(1)
    original = UpsamplingDecoder(len(SYNTH_CLASSES), "transposed-learned").eval()
    with torch.no_grad():
        features = load_shared_encoder(DEFAULT_WIDTHS)(torch.randn(1, 3, 32, 32)).as_inputs()
        torch.testing.assert_close(net(features), original(features), atol=2e-2, rtol=2e-2)  # stored as fp16
    assert find_decoders(decoders, ("unpool",))["unpool"] == [decoders / decoder_filename("unpool", s) for s in SEEDS]


@pytest.mark.slow
def test_cli_with_masks_writes_grids_chart_and_json(tmp_path, decoders):
    _scenes(tmp_path / "images", with_masks=True)
    out, summary_path = tmp_path / "out", tmp_path / "summary.json"
    result = _invoke(str(tmp_path / "images"), "--decoders", str(decoders), "--out", str(out),
                     "--json", str(summary_path), "--boundary-px", "1")
    assert result.exit_code == 0, result.output
    assert "transposed-learned" in result.output and "mIoU" in result.output
    summary = json.loads(summary_path.read_text())
    assert summary["mode"] == "trained-decoders"
    assert summary["images"] == 2 and summary["images_with_ground_truth"] == 2 and summary["boundary_px"] == 1
    assert summary["memory_kind"] == "tensor_bytes"
    assert list(summary["methods"]) == list(METHOD_NAMES)
    for method, row in summary["methods"].items():
        assert set(row) == METHOD_KEYS | ACCURACY_KEYS
        assert 0.0 <= row["miou"] <= 1.0 and 0.0 <= row["boundary_f"] <= 1.0
        assert row["upsample_ms"] > 0 and row["end_to_end_ms"] >= row["upsample_ms"]
        assert row["upsample_peak_bytes"] > 0
    assert summary["methods"]["transposed-learned"]["upsample_params"] == sum(c * c * 16 for c in DEFAULT_WIDTHS)
    for row in summary["methods"].values():
        assert row["seeds"] == 2 and row["miou_ci95"][0] <= row["miou"] <= row["miou_ci95"][1]
    assert len(summary["pairwise"]) == 10 and summary["bootstrap"]["resampled"] == ["images", "seeds"]
    assert all(isinstance(pair["significant"], bool) for pair in summary["pairwise"])
    assert "ΔmIoU" in result.output and "95% CI" in result.output  # the intervals and verdicts on screen
    assert summary["methods"]["unpool"]["upsample_params"] == 0
    assert summary["agreement"]["bilinear"]["bilinear"] == 1.0
    assert summary["agreement"]["nearest"]["unpool"] == summary["agreement"]["unpool"]["nearest"]
    # grids: input + ground truth + 5 methods, one per image; chart: a PNG
    assert len(summary["per_image"]) == 2
    for entry in summary["per_image"]:
        grid = Image.open(entry["grid"])
        assert grid.width > 7 * 128 and Path(entry["grid"]).parent == out / "grids"
        assert set(entry["methods"]["nearest"]) >= {"miou", "pixel_acc", "boundary_f", "upsample_ms"}
    assert Image.open(out / "chart.png").format == "PNG"
    assert summary["outputs"]["chart"] == str(out / "chart.png")

    # an independent evaluation of one method's decoders reproduces the reported mIoU (mean over seeds)
    encoder = load_shared_encoder(DEFAULT_WIDTHS)
    per_seed = []
    for seed in SEEDS:
        net, record = load_decoder(decoders / decoder_filename("bilinear", seed))
        confusion = ConfusionMatrix(len(SYNTH_CLASSES))
        for index in range(2):
            scene = make_scene(11, index, SIZE)
            x = torch.nn.functional.pad(preprocess(scene.image, record.preprocessing), (0, 3, 0, 11), mode="replicate")
            with torch.no_grad():
                labels = net(encoder(x).as_inputs())[0, :, :SIZE[0], :SIZE[1]].argmax(0).numpy()
            confusion.update(labels, scene.mask)
        per_seed.append(confusion.miou())
    assert summary["methods"]["bilinear"]["per_seed"]["miou"] == pytest.approx(per_seed, abs=1e-6)
    assert summary["methods"]["bilinear"]["miou"] == pytest.approx(np.mean(per_seed), abs=1e-6)


def test_cli_without_masks_has_no_accuracy_columns(tmp_path, decoders):
    _scenes(tmp_path / "photos", with_masks=False)
    summary_path = tmp_path / "s.json"
    result = _invoke(str(tmp_path / "photos"), "--decoders", str(decoders), "--out", str(tmp_path / "out"),
                     "--json", str(summary_path), "--methods", "bilinear,unpool")
    assert result.exit_code == 0, result.output
    assert "mIoU" not in result.output
    summary = json.loads(summary_path.read_text())
    assert summary["images_with_ground_truth"] == 0 and list(summary["methods"]) == ["bilinear", "unpool"]
    for row in summary["methods"].values():
        assert set(row) == METHOD_KEYS
    assert all(entry["ground_truth"] is None for entry in summary["per_image"])
    assert (tmp_path / "out" / "chart.png").is_file() and len(list((tmp_path / "out" / "grids").glob("*.png"))) == 2


def test_voc_layout_and_split(tmp_path):
    root = tmp_path / "voc"
    (root / "JPEGImages").mkdir(parents=True)
    (root / "SegmentationClass").mkdir()
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    for name in ("a", "b", "c"):
        Image.new("RGB", (8, 6)).save(root / "JPEGImages" / f"{name}.jpg")
    Image.new("L", (8, 6)).save(root / "SegmentationClass" / "a.png")
    (root / "ImageSets" / "Segmentation" / "val.txt").write_text("a\nc\n")
    samples = find_samples(root, split="val")
    assert [s.path.stem for s in samples] == ["a", "c"]
    assert samples[0].mask_path == root / "SegmentationClass" / "a.png" and samples[1].mask_path is None
    assert len(find_samples(root)) == 3
    assert find_samples(root / "JPEGImages")[0].mask_path == root / "SegmentationClass" / "a.png"


def test_masks_folder_is_not_taken_for_images(tmp_path):
    _scenes(tmp_path / "set", with_masks=True, count=1)
    samples = find_samples(tmp_path / "set")
    assert [s.relative.as_posix() for s in samples] == ["scene0.png"]
    assert samples[0].mask_path == tmp_path / "set" / "masks" / "scene0.png"


class _TinyZooModel(torch.nn.Module):
    """A stride-4 'model' honouring the zoo contract: forward = bilinear(low_res_logits)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, len(SYNTH_CLASSES), 4, stride=4, padding=1)

    def low_res_logits(self, x):
        return self.conv(x)

    def forward(self, x):
        return torch.nn.functional.interpolate(self.low_res_logits(x), size=x.shape[-2:], mode="bilinear",
                                               align_corners=False)


def test_zoo_logits_runner_bilinear_matches_the_engine(tmp_path):
    _scenes(tmp_path / "set", with_masks=True)
    torch.manual_seed(0)
    record = CheckpointRecord(name="tiny", model="tiny", dataset="segcli-synth", categories=SYNTH_CLASSES,
                              filename="tiny.safetensors", preprocessing=Preprocessing())
    engine = engine_of(_TinyZooModel(), record)
    runner = ZooLogitsRunner(engine, TRAINING_FREE_METHODS)
    summary = compare_upsampling(runner, find_samples(tmp_path / "set"), boundary_px=2, draws=200)
    assert summary["mode"] == "zoo-logits" and list(summary["methods"]) == list(TRAINING_FREE_METHODS)
    # the --model path gets the same intervals (over images; one model, so no seeds) and verdicts
    assert summary["bootstrap"]["resampled"] == ["images"] and len(summary["pairwise"]) == 3
    for row in summary["methods"].values():
        assert row["seeds"] == 1 and row["miou_ci95"][0] <= row["miou"] <= row["miou_ci95"][1]
    assert all(row["upsample_params"] == 0 for row in summary["methods"].values())
    scene = make_scene(11, 0, SIZE)
    results = runner.run(scene.image)
    np.testing.assert_array_equal(results["bilinear"].labels, engine.predict(scene.image).labels)
    assert results["nearest"].labels.shape == SIZE
    # stride 4 into 37x45: not a multiple, so transposed-fixed is resized to fit, and mostly agrees with bilinear
    assert summary["agreement"]["bilinear"]["transposed-fixed"] > 0.8


def test_cli_errors(tmp_path, decoders):
    _scenes(tmp_path / "set", with_masks=False, count=1)
    folder = str(tmp_path / "set")
    for methods, message in (("bicubic", "unknown upsampling method 'bicubic'"), (",", "no upsampling method given")):
        result = CliRunner().invoke(cli, ["compare-upsampling", folder, "--decoders", str(decoders), "--methods", methods])
        assert result.exit_code == 2 and message in result.output  # a usage error
        assert "Invalid value for --methods" in result.output
    result = CliRunner().invoke(cli, ["compare-upsampling", folder, "--weights", "x.pth"])
    assert result.exit_code == 2 and "--weights needs --model" in result.output
    empty = tmp_path / "empty"
    empty.mkdir()
    result = CliRunner().invoke(cli, ["compare-upsampling", folder, "--decoders", str(empty)])
    assert result.exit_code == 1 and "no decoder checkpoint" in result.output
    result = CliRunner().invoke(cli, ["compare-upsampling", folder, "--model", "fcn8s", "--methods", "unpool"])
    assert result.exit_code == 2 and "does not apply to a zoo model" in result.output


def test_fcn8s_geometry_fixed_transposed_reproduces_the_models_own_upsampling():
    # FCN-8s' upscore8 is a fixed bilinear transposed convolution (k16, s8) cropped at offset 31;
    # transposed-fixed with the (8, 31) geometry must give the model's forward output exactly.
    from segcli.models import build_model
    from segcli.upsampling.methods import upsample_logits_with

    torch.manual_seed(0)
    model = build_model("fcn8s", 3, width=0.0625).eval()
    record = CheckpointRecord(name="tiny-fcn8s", model="fcn8s", dataset="none", categories=("a", "b", "c"),
                              filename="x.safetensors", preprocessing=Preprocessing())
    runner = ZooLogitsRunner(engine_of(model, record), TRAINING_FREE_METHODS)
    assert runner.geometry == (8, 31)
    image = (np.random.default_rng(0).random((37, 45, 3)) * 255).astype(np.uint8)
    batch = preprocess(image, record.preprocessing)
    with torch.no_grad():
        low, full = model.low_res_logits(batch), model(batch)
        for method in TRAINING_FREE_METHODS:
            assert upsample_logits_with(method, low, (37, 45), runner.geometry).shape == full.shape
        torch.testing.assert_close(upsample_logits_with("transposed-fixed", low, (37, 45), runner.geometry), full)


def test_json_never_replaces_an_input_or_a_users_file(tmp_path, decoders, monkeypatch):
    import segcli.cli.compare_upsampling as command

    def refuse(*args, **kwargs):
        raise AssertionError("decoders were loaded before --json was checked")

    monkeypatch.setattr(command, "_decoder_runner", refuse)
    _scenes(tmp_path / "set", with_masks=True, count=1)
    mask = tmp_path / "set" / "masks" / "scene0.png"
    before = mask.read_bytes()
    notes = tmp_path / "notes.json"
    notes.write_text("my notes")
    folder = str(tmp_path / "set")
    result = CliRunner().invoke(cli, ["compare-upsampling", folder, "--decoders", str(decoders), "--json", str(notes)])
    assert result.exit_code == 1 and "was not written by segcli: not replaced; pass --overwrite" in result.output
    assert notes.read_text() == "my notes"
    result = CliRunner().invoke(cli, ["compare-upsampling", folder, "--decoders", str(decoders), "--json", str(mask),
                                      "--overwrite"])
    assert result.exit_code == 1 and "is an input of this run" in result.output, result.output
    assert mask.read_bytes() == before

# VOC layouts under the folder given (`segcli compare-upsampling samples/`, the example in its --help) ----------

REPOSITORY_SAMPLES = Path(__file__).resolve().parents[2] / "samples"


def _copy_of_samples(root: Path, ids: tuple[str, ...] = ("synth_3_00000", "synth_3_00004")) -> Path:
    """A small copy of the repository's samples/ folder (its VOC layout samples/synth/, `ids` only)."""
    import shutil

    source, layout = REPOSITORY_SAMPLES / "synth", root / "samples" / "synth"
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (layout / sub).mkdir(parents=True)
    for image_id in ids:
        shutil.copy(source / "JPEGImages" / f"{image_id}.jpg", layout / "JPEGImages")
        shutil.copy(source / "SegmentationClass" / f"{image_id}.png", layout / "SegmentationClass")
    (layout / "ImageSets" / "Segmentation" / "val.txt").write_text(f"{ids[-1]}\n")
    for name in ("classes.txt", "dataset.json"):
        shutil.copy(source / name, layout / name)
    return root / "samples"


def test_voc_layouts_inside_the_folder_give_image_and_mask_pairs():
    samples = find_samples(REPOSITORY_SAMPLES)
    images = sorted((REPOSITORY_SAMPLES / "synth" / "JPEGImages").glob("*.jpg"))
    assert [s.path for s in samples] == images  # the label PNGs are never taken for photos
    assert [s.mask_path for s in samples] == [REPOSITORY_SAMPLES / "synth" / "SegmentationClass" / f"{p.stem}.png"
                                              for p in images]
    assert [s.relative.as_posix() for s in samples] == [f"synth/{p.name}" for p in images]
    val = (REPOSITORY_SAMPLES / "synth" / "ImageSets" / "Segmentation" / "val.txt").read_text().split()
    assert [s.path.stem for s in find_samples(REPOSITORY_SAMPLES, split="val")] == sorted(val)


def test_a_label_folder_is_refused_not_segmented_as_photos(tmp_path):
    from segcli.errors import DatasetError

    samples = _copy_of_samples(tmp_path)
    with pytest.raises(DatasetError, match="SegmentationClass holds label masks"):
        find_samples(samples / "synth" / "SegmentationClass")


def test_cli_on_a_folder_holding_a_voc_layout_scores_against_its_masks(tmp_path, decoders):
    samples = _copy_of_samples(tmp_path)
    (samples / "extra").mkdir()
    Image.fromarray(make_scene(11, 0, SIZE).image).save(samples / "extra" / "photo.png")  # no mask: shown, not scored
    summary_path = tmp_path / "s.json"
    result = _invoke(str(samples), "--decoders", str(decoders), "--out", str(tmp_path / "out"),
                     "--json", str(summary_path), "--methods", "nearest,bilinear")
    assert result.exit_code == 0, result.output
    assert "3 image(s), 2 with masks" in result.output and "mIoU" in result.output
    summary = json.loads(summary_path.read_text())
    assert summary["images_with_ground_truth"] == 2
    assert [Path(entry["image"]).parent.name for entry in summary["per_image"]] == ["extra", "JPEGImages",
                                                                                    "JPEGImages"]
    assert all(0.0 <= row["miou"] <= 1.0 for row in summary["methods"].values())
