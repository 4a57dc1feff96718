"""DeepLab v1 LargeFOV (VGG16) checkpoint of wangleihitcs/DeepLab-V1-PyTorch (layouts as in those repositories' model code).

Its file is ``VGG16_LargeFOV.state_dict()`` saved from DataParallel: ``module.features.N`` for the
13 VGG16 convolutions, fc6 (3x3, dilation 12, 1024), fc7 and fc8, all with bias: 32 tensors. The
forward is wired by hand here: max-pools 3/2/1 (floor) x3, 3/1/1 x2, conv5 dilation 2, an
``AvgPool2d(3, 1, 1)`` after pool5, logits resized to the input with ``align_corners=True``.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from segcli.checkpoints.loading import adapt_layout, detect_layout
from segcli.checkpoints.manifest import read_manifest_file, shipped_manifest_path
from segcli.checkpoints.record import ResolvedCheckpoint
from segcli.engine import SegmentationEngine
from segcli.inference_options import InferenceOptions
from segcli.models import build_model
from model_testing import meta_state, state_shapes

RECORD = "deeplabv1-vgg16-largefov-voc"
FILE_URL = "https://github.com/wangleihitcs/DeepLab-V1-PyTorch/raw/master/exp/model_last_20000_poly2.pth"
BGR_MEAN = (104.008, 116.669, 122.675)
# features index -> (in, out) channels of VGG16's 13 convolutions
VGG_CONVS = {0: (3, 64), 2: (64, 64), 5: (64, 128), 7: (128, 128), 10: (128, 256), 12: (256, 256), 14: (256, 256),
             17: (256, 512), 19: (512, 512), 21: (512, 512), 24: (512, 512), 26: (512, 512), 28: (512, 512)}
POOL_AFTER = {2: (2, "max"), 7: (2, "max"), 14: (2, "max"), 21: (1, "max"), 28: (1, "max+avg")}


def _records() -> dict:
    return {record.name: record for record in read_manifest_file(shipped_manifest_path())}


def wangleihitcs_layout(num_classes: int = 21, width: float = 1.0, prefix: str = "module.") -> dict:
    def scaled(channels: int) -> int:
        return channels if channels == 3 else max(1, int(round(channels * width)))

    keys = {}
    for index, (in_channels, out_channels) in VGG_CONVS.items():
        keys[f"{prefix}features.{index}.weight"] = (scaled(out_channels), scaled(in_channels), 3, 3)
        keys[f"{prefix}features.{index}.bias"] = (scaled(out_channels),)
    fc = scaled(1024)
    keys |= {f"{prefix}features.32.weight": (fc, scaled(512), 3, 3), f"{prefix}features.32.bias": (fc,),
             f"{prefix}features.35.weight": (fc, fc, 1, 1), f"{prefix}features.35.bias": (fc,),
             f"{prefix}features.38.weight": (num_classes, fc, 1, 1), f"{prefix}features.38.bias": (num_classes,)}
    return keys


def test_published_layout_has_the_counts_facts_gives() -> None:
    layout = wangleihitcs_layout()
    assert len(layout) == 32
    assert sum(int(np.prod(shape)) for shape in layout.values()) == 20_505_429
    assert layout["module.features.32.weight"] == (1024, 512, 3, 3)
    assert layout["module.features.38.weight"] == (21, 1024, 1, 1)


def test_full_size_file_loads_strictly_after_the_dataparallel_prefix() -> None:
    with torch.device("meta"):
        model = build_model("deeplabv1", 21)
    published = meta_state(wangleihitcs_layout())
    assert detect_layout(published) == "deeplab-v1-pytorch"
    adapted = adapt_layout(published, "deeplab-v1-pytorch", set(model.state_dict()))
    assert adapted.notes == ["stripped the 'module.' prefix (saved from DataParallel)"]
    assert state_shapes(model) == wangleihitcs_layout(prefix="")
    model.load_state_dict(adapted.state_dict, strict=True, assign=True)


def wangleihitcs_forward(x: torch.Tensor, state: dict, size: int) -> torch.Tensor:
    """``VGG16_LargeFOV(split="test", input_size=size).forward`` from the file's tensors."""
    for index in VGG_CONVS:
        dilation = 2 if index >= 24 else 1
        x = F.relu(F.conv2d(x, state[f"module.features.{index}.weight"], state[f"module.features.{index}.bias"],
                            padding=dilation, dilation=dilation))
        if index in POOL_AFTER:
            stride, kind = POOL_AFTER[index]
            x = F.max_pool2d(x, 3, stride, 1)
            if kind == "max+avg":
                x = F.avg_pool2d(x, 3, 1, 1)
    x = F.relu(F.conv2d(x, state["module.features.32.weight"], state["module.features.32.bias"], padding=12, dilation=12))
    x = F.relu(F.conv2d(x, state["module.features.35.weight"], state["module.features.35.bias"]))
    x = F.conv2d(x, state["module.features.38.weight"], state["module.features.38.bias"])
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=True)


def _random_state(layout: dict, seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in layout.items():
        if len(shape) == 1:
            state[key] = 0.1 * torch.randn(shape, generator=generator)
        else:
            state[key] = torch.randn(shape, generator=generator) * (2.0 / int(np.prod(shape[1:]))) ** 0.5
    return state


@pytest.mark.parametrize("size", [64, 65])  # 64: floor and ceil max-pooling differ
def test_published_file_gives_the_peers_labels(tmp_path, size) -> None:
    record = _records()[RECORD]
    state = _random_state(wangleihitcs_layout(21, width=0.125), seed=1)
    path = tmp_path / record.filename
    torch.save(state, path)
    small = dataclasses.replace(record, model_kwargs=(("width", 0.125),))
    engine = SegmentationEngine.from_checkpoint(ResolvedCheckpoint(small, path, "path"), device="cpu",
                                                options=InferenceOptions(precision="fp32", channels_last=False))
    image = np.random.default_rng(2).integers(0, 256, size=(size, size, 3), dtype=np.uint8)
    bgr = image[:, :, ::-1].astype(np.float32) - np.array(BGR_MEAN, dtype=np.float32)
    x = torch.from_numpy(np.ascontiguousarray(bgr.transpose(2, 0, 1)))[None]
    with torch.no_grad():
        peer = wangleihitcs_forward(x, state, size)
        torch.testing.assert_close(engine.model(x), peer, rtol=1e-4, atol=1e-4)
    assert (engine.predict(image).labels == peer.argmax(1)[0].numpy()).mean() >= 0.98


def test_record_carries_the_ports_protocol() -> None:
    from segcli.palettes import VOC_CLASSES

    record = _records()[RECORD]
    assert (record.model, record.layout, record.url, record.sha256) == ("deeplabv1", "deeplab-v1-pytorch", FILE_URL, None)
    assert record.filename == "model_last_20000_poly2.pth" and record.categories == VOC_CLASSES
    assert record.preprocessing.mean == BGR_MEAN and record.preprocessing.channel_order == "BGR"
    assert record.input_scales == (1.0,)
    assert dict(record.crf_defaults) == {"iterations": 10, "gaussian_weight": 3.0, "gaussian_xy": 3.0,
                                         "bilateral_weight": 5.0, "bilateral_xy": 140.0, "bilateral_rgb": 5.0}
    assert record.metric_dict["miou"] == 0.6544 and record.metric_dict["miou_crf"] == 0.696
