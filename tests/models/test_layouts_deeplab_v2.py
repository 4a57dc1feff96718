"""DeepLab v2 ResNet-101 checkpoints of kazuto1011/deeplab-pytorch, isht7 and speedinghzl (layouts as in those repositories' model code).

The published layouts are written out here from those repositories' code (names, shapes, counts), independently of
segcli's model. Full-size files are checked on the meta device (strict load, every key); the
forward is checked at small width against a DeepLab v2 wired by hand from the file's tensors
with torch.nn.functional (Caffe ResNet: stride in the 1x1 ``reduce``, ceil max-pool, every block
of a dilated stage dilated, four ASPP branches with bias summed), kazuto's MSC included.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from segcli.checkpoints.loading import (adapt_layout, detect_layout, key_mismatch_report,
                                       load_weights)
from segcli.checkpoints.manifest import read_manifest_file, shipped_manifest_path
from segcli.checkpoints.record import ResolvedCheckpoint
from segcli.engine import SegmentationEngine
from segcli.inference_options import InferenceOptions
from segcli.models import build_model
from model_testing import bn_keys, conv_keys, meta_state, state_shapes

KAZUTO_BLOCKS = (3, 4, 23, 3)
ASPP_RATES = (6, 12, 18, 24)
BGR_MEAN = (104.008, 116.669, 122.675)  # voc12.yaml / cocostuff*.yaml
KAZUTO_RELEASE = "https://github.com/kazuto1011/deeplab-pytorch/releases/download/v1.0/"
KAZUTO_FILES = {
    "deeplabv2-resnet101-msc-voc": ("deeplabv2_resnet101_msc-vocaug-20000.pth", 21),
    "deeplabv2-resnet101-msc-cocostuff164k": ("deeplabv2_resnet101_msc-cocostuff164k-100000.pth", 182),
    "deeplabv2-resnet101-msc-cocostuff10k": ("deeplabv2_resnet101_msc-cocostuff10k-20000.pth", 182),
}
OTHER_FILES = {  # record -> (file name, key prefix, multi-scale protocol)
    "deeplabv2-resnet101-voc-isht7-caffe": ("MS_DeepLab_resnet_trained_VOC.pth", "Scale.", True),
    "deeplabv2-resnet101-voc-isht7": ("isht7_VOC12_scenes_20000.pth", "Scale.", True),
    "deeplabv2-resnet101-voc-speedinghzl": ("VOC12_scenes_20000.pth", "", False),
}


def _records() -> dict:
    return {record.name: record for record in read_manifest_file(shipped_manifest_path())}


def _channels(base: int, width: float) -> int:
    return max(1, int(round(base * width)))


# --------------------------------------------------------------------------- the published layouts, written out


def kazuto_layout(num_classes: int = 21, blocks=KAZUTO_BLOCKS, width: float = 1.0) -> dict[str, tuple[int, ...]]:
    """``MSC(DeepLabV2(...))``'s state dict: ``base.layer1.conv1.{conv,bn}``, ``base.layer{2..5}.blockN.
    {reduce,conv3x3,increase}.{conv,bn}``, ``block1.shortcut``, ``base.aspp.c{0..3}`` with bias."""
    def conv_bn(prefix: str, out_channels: int, in_channels: int, k: int) -> dict:
        return conv_keys(f"{prefix}.conv", out_channels, in_channels, k) | bn_keys(f"{prefix}.bn", out_channels)

    stem = _channels(64, width)
    keys = conv_bn("base.layer1.conv1", stem, 3, 7)
    in_channels = stem
    for layer, (count, mid) in enumerate(zip(blocks, (64, 128, 256, 512)), start=2):
        mid = _channels(mid, width)
        out = 4 * mid
        for block in range(1, count + 1):
            prefix = f"base.layer{layer}.block{block}"
            keys |= conv_bn(f"{prefix}.reduce", mid, in_channels if block == 1 else out, 1)
            keys |= conv_bn(f"{prefix}.conv3x3", mid, mid, 3)
            keys |= conv_bn(f"{prefix}.increase", out, mid, 1)
            if block == 1:
                keys |= conv_bn(f"{prefix}.shortcut", out, in_channels, 1)
        in_channels = out
    for index in range(4):
        keys |= {f"base.aspp.c{index}.weight": (num_classes, in_channels, 3, 3), f"base.aspp.c{index}.bias": (num_classes,)}
    return keys


def isht7_layout(prefix: str = "Scale.", num_classes: int = 21, blocks=KAZUTO_BLOCKS,
                 width: float = 1.0) -> dict[str, tuple[int, ...]]:
    """isht7's ``MS_Deeplab`` (prefix ``Scale.``) / speedinghzl's ``Res_Deeplab`` (no prefix): torchvision-like
    names, ``layer5.conv2d_list``, BatchNorm without ``num_batches_tracked`` (2017 files)."""
    def bn(name: str, channels: int) -> dict:
        return {f"{name}.{part}": (channels,) for part in ("weight", "bias", "running_mean", "running_var")}

    stem = _channels(64, width)
    keys = conv_keys(f"{prefix}conv1", stem, 3, 7) | bn(f"{prefix}bn1", stem)
    in_channels = stem
    for layer, (count, mid) in enumerate(zip(blocks, (64, 128, 256, 512)), start=1):
        mid = _channels(mid, width)
        out = 4 * mid
        for block in range(count):
            name = f"{prefix}layer{layer}.{block}"
            keys |= conv_keys(f"{name}.conv1", mid, in_channels if block == 0 else out, 1) | bn(f"{name}.bn1", mid)
            keys |= conv_keys(f"{name}.conv2", mid, mid, 3) | bn(f"{name}.bn2", mid)
            keys |= conv_keys(f"{name}.conv3", out, mid, 1) | bn(f"{name}.bn3", out)
            if block == 0:
                keys |= conv_keys(f"{name}.downsample.0", out, in_channels, 1) | bn(f"{name}.downsample.1", out)
        in_channels = out
    for index in range(4):
        name = f"{prefix}layer5.conv2d_list.{index}"
        keys |= {f"{name}.weight": (num_classes, in_channels, 3, 3), f"{name}.bias": (num_classes,)}
    return keys


def _parameter_count(layout: dict[str, tuple[int, ...]]) -> int:
    return sum(int(np.prod(shape)) for key, shape in layout.items()
               if key.endswith(("weight", "bias")))


def test_kazuto_layout_has_the_published_model_s_tensors() -> None:
    """kazuto1011/deeplab-pytorch's DeepLabV2 ResNet-101 (libs/models/deeplabv2.py): 632 tensors, 44,048,532 parameters."""
    layout = kazuto_layout()
    assert len(layout) == 632
    assert _parameter_count(layout) == 44_048_532
    assert layout["base.layer1.conv1.conv.weight"] == (64, 3, 7, 7)
    assert layout["base.layer4.block23.increase.conv.weight"] == (1024, 256, 1, 1)
    assert layout["base.aspp.c3.weight"] == (21, 2048, 3, 3)
    assert len(isht7_layout()) == 528  # the same tensors without the 104 BatchNorm counters


def test_full_size_kazuto_file_loads_strictly_unchanged() -> None:
    with torch.device("meta"):
        model = build_model("deeplabv2", 21)
    assert sum(parameter.numel() for parameter in model.parameters()) == 44_048_532
    published = meta_state(kazuto_layout())
    assert detect_layout(published) == "deeplab-pytorch"
    adapted = adapt_layout(published, "deeplab-pytorch", set(model.state_dict()))
    assert adapted.state_dict.keys() == published.keys() and not adapted.notes  # nothing renamed
    assert state_shapes(model) == kazuto_layout()
    model.load_state_dict(adapted.state_dict, strict=True, assign=True)


@pytest.mark.parametrize("prefix", ["Scale.", ""])
def test_full_size_isht7_and_speedinghzl_files_are_renamed_and_load_strictly(prefix) -> None:
    with torch.device("meta"):
        model = build_model("deeplabv2", 21)
    published = meta_state(isht7_layout(prefix))
    assert detect_layout(published) == "pytorch-deeplab-resnet"
    adapted = adapt_layout(published, "pytorch-deeplab-resnet", set(model.state_dict()))
    assert any("renamed" in note for note in adapted.notes)
    expected = {key: shape for key, shape in kazuto_layout().items() if not key.endswith("num_batches_tracked")}
    assert {key: tuple(value.shape) for key, value in adapted.state_dict.items()} == expected
    # what load_weights checks before loading: every key, every shape (the BatchNorm counters may be absent)
    assert key_mismatch_report(model.state_dict(), adapted.state_dict) is None


def test_a_torchvision_resnet_file_does_not_fit() -> None:
    import torchvision

    from segcli.errors import CheckpointError

    with torch.device("meta"):
        model = build_model("deeplabv2", 21)
        resnet = torchvision.models.resnet101(weights=None)
    state = {f"backbone.{key}": value for key, value in resnet.state_dict().items() if not key.startswith("fc.")}
    with pytest.raises(CheckpointError, match="missing keys.*unexpected"):
        load_weights(model, state, "resnet101.pth", "deeplabv2")


# --------------------------------------------------------------------------- the peers' forward, wired by hand


def _conv_bn(x, state, conv: str, bn: str, stride=1, padding=0, dilation=1, relu=True):
    x = F.conv2d(x, state[f"{conv}.weight"], stride=stride, padding=padding, dilation=dilation)
    x = F.batch_norm(x, state[f"{bn}.running_mean"], state[f"{bn}.running_var"], state[f"{bn}.weight"],
                     state[f"{bn}.bias"], training=False, eps=1e-5)
    return F.relu(x) if relu else x


def kazuto_single_scale(x: torch.Tensor, state: dict, blocks=KAZUTO_BLOCKS) -> torch.Tensor:
    """``DeepLabV2.forward`` from kazuto's file tensors: output stride 8, logits before upsampling."""
    x = _conv_bn(x, state, "base.layer1.conv1.conv", "base.layer1.conv1.bn", stride=2, padding=3)
    x = F.max_pool2d(x, 3, 2, 1, ceil_mode=True)
    stages = zip((2, 3, 4, 5), blocks, (1, 2, 1, 1), (1, 1, 2, 4))
    for layer, count, stride, dilation in stages:
        for block in range(1, count + 1):
            name = f"base.layer{layer}.block{block}"
            step = stride if block == 1 else 1
            h = _conv_bn(x, state, f"{name}.reduce.conv", f"{name}.reduce.bn", stride=step)  # stride in the 1x1
            h = _conv_bn(h, state, f"{name}.conv3x3.conv", f"{name}.conv3x3.bn", padding=dilation, dilation=dilation)
            h = _conv_bn(h, state, f"{name}.increase.conv", f"{name}.increase.bn", relu=False)
            shortcut = x if block > 1 else _conv_bn(x, state, f"{name}.shortcut.conv", f"{name}.shortcut.bn",
                                                    stride=step, relu=False)
            x = F.relu(h + shortcut)
    return sum(F.conv2d(x, state[f"base.aspp.c{i}.weight"], state[f"base.aspp.c{i}.bias"], padding=rate,
                        dilation=rate) for i, rate in enumerate(ASPP_RATES))


def kazuto_msc(x: torch.Tensor, state: dict, blocks=KAZUTO_BLOCKS) -> torch.Tensor:
    """``MSC.eval()``: scales 0.5 and 0.75 by ``scale_factor``, logits resized to the 1x ones, element-wise max."""
    logits = kazuto_single_scale(x, state, blocks)
    pyramid = [kazuto_single_scale(F.interpolate(x, scale_factor=p, mode="bilinear", align_corners=False), state, blocks)
               for p in (0.5, 0.75)]
    resized = [F.interpolate(p, size=logits.shape[2:], mode="bilinear", align_corners=False) for p in pyramid]
    return torch.max(torch.stack([logits] + resized), dim=0)[0]


def isht7_single_scale(x: torch.Tensor, state: dict, prefix: str, blocks=KAZUTO_BLOCKS) -> torch.Tensor:
    """isht7's / speedinghzl's ``Res_Deeplab`` forward, read with their own key names."""
    x = _conv_bn(x, state, f"{prefix}conv1", f"{prefix}bn1", stride=2, padding=3)
    x = F.max_pool2d(x, 3, 2, 1, ceil_mode=True)
    for layer, count, stride, dilation in zip((1, 2, 3, 4), blocks, (1, 2, 1, 1), (1, 1, 2, 4)):
        for block in range(count):
            name = f"{prefix}layer{layer}.{block}"
            step = stride if block == 0 else 1
            h = _conv_bn(x, state, f"{name}.conv1", f"{name}.bn1", stride=step)
            h = _conv_bn(h, state, f"{name}.conv2", f"{name}.bn2", padding=dilation, dilation=dilation)
            h = _conv_bn(h, state, f"{name}.conv3", f"{name}.bn3", relu=False)
            shortcut = x if block else _conv_bn(x, state, f"{name}.downsample.0", f"{name}.downsample.1",
                                                stride=step, relu=False)
            x = F.relu(h + shortcut)
    branches = [F.conv2d(x, state[f"{prefix}layer5.conv2d_list.{i}.weight"], state[f"{prefix}layer5.conv2d_list.{i}.bias"],
                         padding=rate, dilation=rate) for i, rate in enumerate(ASPP_RATES)]
    return sum(branches)


def random_file_state(layout: dict[str, tuple[int, ...]], seed: int) -> dict[str, torch.Tensor]:
    """Random tensors in a published layout, at scales that keep a deep ResNet's activations sane."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in layout.items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(20000)
        elif key.endswith("running_var") or (len(shape) == 1 and key.endswith("weight")):
            state[key] = 0.5 + torch.rand(shape, generator=generator)
        elif len(shape) == 1:
            state[key] = 0.1 * torch.randn(shape, generator=generator)
        else:
            fan_in = int(np.prod(shape[1:]))
            state[key] = torch.randn(shape, generator=generator) * (1.0 / fan_in) ** 0.5
    return state


def bgr_minus_mean(image_rgb: np.ndarray) -> torch.Tensor:
    """The peers' input: OpenCV BGR, 0-255, minus the BGR mean, no std, NCHW."""
    bgr = image_rgb[:, :, ::-1].astype(np.float32) - np.array(BGR_MEAN, dtype=np.float32)
    return torch.from_numpy(np.ascontiguousarray(bgr.transpose(2, 0, 1)))[None]


def _labels(logits: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=False).argmax(1)[0].numpy()


SMALL = {"width": 0.125, "depth": 50}  # every channel count / 8, ResNet-50's blocks: the same wiring, faster
SMALL_BLOCKS = (3, 4, 6, 3)


def _small_engine(record, path, input_scales=None) -> SegmentationEngine:
    """The record's file at SMALL width, as predict loads it (`input_scales=(1.0,)`: --no-multiscale)."""
    small = dataclasses.replace(record, model_kwargs=tuple(sorted(SMALL.items())))
    options = InferenceOptions(precision="fp32", channels_last=False, input_scales=input_scales)
    return SegmentationEngine.from_checkpoint(ResolvedCheckpoint(small, path, "path"), device="cpu", options=options)


@pytest.mark.slow
@pytest.mark.parametrize("size", [(64, 64), (57, 83)])  # 64: ceil and floor max-pool differ at every scale
def test_kazuto_file_gives_the_peers_msc_labels(tmp_path, size) -> None:
    record = _records()["deeplabv2-resnet101-msc-voc"]
    state = random_file_state(kazuto_layout(21, SMALL_BLOCKS, SMALL["width"]), seed=1)
    path = tmp_path / record.filename
    torch.save(state, path)
    engine = _small_engine(record, path)
    image = np.random.default_rng(4).integers(0, 256, size=(*size, 3), dtype=np.uint8)

    with torch.no_grad():
        peer = kazuto_msc(bgr_minus_mean(image), state, SMALL_BLOCKS)
        torch.testing.assert_close(engine.model(bgr_minus_mean(image)), F.interpolate(
            peer, size=size, mode="bilinear", align_corners=False), rtol=1e-4, atol=1e-4)
        single = kazuto_single_scale(bgr_minus_mean(image), state, SMALL_BLOCKS)
    assert ((peer - single) > 1.0).float().mean() > 0.2  # the smaller scales win many logits
    labels = engine.predict(image).labels
    assert (labels == _labels(peer, size)).mean() >= 0.98

    engine = _small_engine(record, path, input_scales=(1.0,))  # what predict --no-multiscale does
    assert (engine.predict(image).labels == _labels(single, size)).mean() >= 0.98


@pytest.mark.parametrize("record_name", sorted(OTHER_FILES))
def test_isht7_and_speedinghzl_files_give_the_peers_single_scale_logits(tmp_path, record_name) -> None:
    filename, prefix, multiscale = OTHER_FILES[record_name]
    record = _records()[record_name]
    state = random_file_state(isht7_layout(prefix, 21, SMALL_BLOCKS, SMALL["width"]), seed=2)
    path = tmp_path / filename
    torch.save(state, path)
    engine = _small_engine(record, path)
    assert engine.model.input_scales == engine.input_scales == ((0.5, 0.75, 1.0) if multiscale else (1.0,))
    engine = _small_engine(record, path, input_scales=(1.0,))
    assert engine.model.input_scales == (1.0,)
    image = np.random.default_rng(5).integers(0, 256, size=(64, 48, 3), dtype=np.uint8)
    with torch.no_grad():
        peer = isht7_single_scale(bgr_minus_mean(image), state, prefix, SMALL_BLOCKS)
        torch.testing.assert_close(engine.model.low_res_logits(bgr_minus_mean(image)), peer, rtol=1e-4, atol=1e-4)
    assert (engine.predict(image).labels == _labels(peer, (64, 48))).mean() >= 0.98


@pytest.mark.slow
def test_full_size_kazuto_forward_matches_by_hand() -> None:
    torch.manual_seed(0)
    model = build_model("deeplabv2", 21).eval()
    state = random_file_state(kazuto_layout(), seed=3)
    load_weights(model, state, "deeplabv2_resnet101_msc-vocaug-20000.pth", "deeplabv2")
    x = torch.randn(1, 3, 41, 41, generator=torch.Generator().manual_seed(6)) * 50
    with torch.no_grad():
        torch.testing.assert_close(model.low_res_logits(x), kazuto_single_scale(x, state), rtol=1e-3, atol=1e-3)


# --------------------------------------------------------------------------- the manifest records


def test_every_published_v2_file_has_a_record_with_its_protocol() -> None:
    from segcli.datasets.cocostuff import COCOSTUFF_CLASSES, COCOSTUFF_COLORS
    from segcli.palettes import VOC_CLASSES

    records = _records()
    for name, (filename, classes) in KAZUTO_FILES.items():
        record = records[name]
        assert (record.model, record.layout, record.filename) == ("deeplabv2", "deeplab-pytorch", filename)
        assert record.url == KAZUTO_RELEASE + filename and record.sha256 is None
        assert record.num_classes == classes
        assert record.input_scales == (0.5, 0.75, 1.0)
        assert record.crf_defaults == (("bilateral_rgb", 3.0), ("bilateral_weight", 4.0), ("bilateral_xy", 67.0),
                                       ("gaussian_weight", 3.0), ("gaussian_xy", 1.0), ("iterations", 10))
        if classes == 182:
            assert record.categories == COCOSTUFF_CLASSES and record.palette == COCOSTUFF_COLORS
        else:
            assert record.categories == VOC_CLASSES and record.palette == "voc"
    for name, (filename, _, _) in OTHER_FILES.items():
        record = records[name]
        assert (record.model, record.layout, record.filename) == ("deeplabv2", "pytorch-deeplab-resnet", filename)
        assert record.categories == VOC_CLASSES and record.url is None and record.sha256 is None
    for record in [records[name] for name in [*KAZUTO_FILES, *OTHER_FILES]]:
        assert record.preprocessing.channel_order == "BGR" and record.preprocessing.std == (1.0, 1.0, 1.0)
        assert record.preprocessing.input_scale == 255.0 and record.preprocessing.resize_shorter is None
        assert record.kwargs == {} and "miou" in record.metric_dict and record.metric_dict["source"]
    assert records["deeplabv2-resnet101-msc-voc"].metric_dict["miou"] == 0.7665
    assert records["deeplabv2-resnet101-msc-voc"].metric_dict["miou_crf"] == 0.7793
    assert records["deeplabv2-resnet101-msc-cocostuff164k"].metric_dict["miou"] == 0.391
    assert records["deeplabv2-resnet101-voc-isht7-caffe"].metric_dict["miou"] == 0.7554


def test_models_doc_table_lists_every_deeplab_v1_v2_checkpoint_with_its_miou() -> None:
    from pathlib import Path

    readme = (Path(__file__).parents[2] / "docs" / "MODELS.md").read_text()
    table = readme[readme.index("## Models"):readme.index("## Checkpoints")]
    for record in _records().values():
        if record.model in ("deeplabv1", "deeplabv2") and record.layout != "segcli":
            row = next(line for line in table.splitlines() if f"`{record.name}`" in line)
            miou = record.metric_dict["miou"] * 100
            assert f"{miou:.2f}" in row or f"{miou:.1f}" in row, (record.name, row)


def test_renamed_kazuto_file_keeps_the_authors_multiscale_protocol(tmp_path) -> None:
    """A published file saved under another name gets its layout's record: multi-scale and CRF settings too."""
    from segcli.checkpoints.resolve import record_from_file

    torch.manual_seed(0)
    state = {key: torch.randn(shape) * 0.01 for key, shape in kazuto_layout(width=0.0625).items()}
    path = tmp_path / "my renamed deeplab.pth"
    torch.save(state, path)
    record = record_from_file("deeplabv2", path)
    published = next(r for r in _records().values() if r.layout == "deeplab-pytorch" and r.num_classes == 21)
    assert record.layout == "deeplab-pytorch" and record.num_classes == 21
    assert record.input_scales == published.input_scales == (0.5, 0.75, 1.0)
    assert record.crf_defaults == published.crf_defaults and record.crf_defaults
