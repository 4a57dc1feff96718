"""Every published checkpoint's preprocessing, against what its own authors' code does.

The expected values are written out here from each source (cited beside it), not read from segcli;
torchvision's are read from torchvision itself at test time (the weights whose URL the record downloads).
Two checks per record: the manifest's fields, and segcli's `preprocess` against the peer's recipe
(written out here in numpy/torch) on a random image - a channel order or a scale that is wrong either
in the record or in the code shows up as a different input tensor.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import segcli
from segcli.checkpoints.manifest import read_manifest_file
from segcli.checkpoints.record import CheckpointRecord
from segcli.engine import preprocess

MANIFEST = Path(segcli.__file__).parent / "weights" / "manifest.json"
# every record as segcli reads it (class sets and preprocessing presets the file names resolved), in JSON form
RECORDS = [record.to_dict() for record in read_manifest_file(MANIFEST)]
PUBLISHED = [record for record in RECORDS if record["layout"] != "segcli"]  # "segcli": trained by segcli itself

IMAGENET = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}
# Each peer's own preprocessing, by the manifest's `layout`:
PEERS = {
    # https://github.com/VainF/DeepLabV3Plus-Pytorch predict.py / main.py: PIL RGB, T.ToTensor() (0-1),
    # T.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]); no resize at prediction
    "deeplabv3plus-pytorch": {"order": "RGB", "scale": 1.0, **IMAGENET, "resize": None},
    # https://github.com/wkentaro/pytorch-fcn torchfcn/datasets/voc.py: img[:, :, ::-1] (RGB -> BGR),
    # 0-255, minus mean_bgr = (104.00698793, 116.66876762, 122.67891434); no std, no resize
    "pytorch-fcn": {"order": "BGR", "scale": 255.0, "mean": (104.00698793, 116.66876762, 122.67891434),
                    "std": (1.0, 1.0, 1.0), "resize": None},
    # https://github.com/kazuto1011/deeplab-pytorch configs/voc12.yaml, cocostuff164k.yaml: cv2 (BGR) 0-255,
    # MEAN B 104.008, G 116.669, R 122.675
    "deeplab-pytorch": {"order": "BGR", "scale": 255.0, "mean": (104.008, 116.669, 122.675),
                        "std": (1.0, 1.0, 1.0), "resize": None},
    # https://github.com/wangleihitcs/DeepLab-V1-PyTorch datasets.py: cv2.imread (BGR) 0-255,
    # mean_bgr = (104.008, 116.669, 122.675)
    "deeplab-v1-pytorch": {"order": "BGR", "scale": 255.0, "mean": (104.008, 116.669, 122.675),
                           "std": (1.0, 1.0, 1.0), "resize": None},
}
# https://github.com/isht7/pytorch-deeplab-resnet evalpyt.py: cv2.imread (BGR), minus 104.008/116.669/122.675;
# https://github.com/speedinghzl/Pytorch-Deeplab evaluate.py: IMG_MEAN = (104.00698793, 116.66876762, 122.67891434), BGR
DEEPLAB_RESNET = {
    "isht7": {"order": "BGR", "scale": 255.0, "mean": (104.008, 116.669, 122.675), "std": (1.0, 1.0, 1.0),
              "resize": None},
    "speedinghzl": {"order": "BGR", "scale": 255.0, "mean": (104.00698793, 116.66876762, 122.67891434),
                    "std": (1.0, 1.0, 1.0), "resize": None},
}


def torchvision_weights(url: str):
    """The torchvision weights enum member that downloads `url` (None if torchvision has none)."""
    import torchvision.models.segmentation as segmentation

    for name in dir(segmentation):
        if name.endswith("_Weights"):
            for weights in getattr(segmentation, name):
                if weights.url == url:
                    return weights
    return None


def expected_for(record: dict) -> dict:
    if record["layout"] == "torchvision":
        # torchvision.models.segmentation.*_Weights.*.transforms(): SemanticSegmentation(resize_size=[520],
        # ImageNet mean/std) on an RGB image scaled to 0-1 (https://pytorch.org/vision/stable/models.html)
        weights = torchvision_weights(record["url"])
        assert weights is not None, f"{record['name']}: torchvision has no weights at {record['url']}"
        preset = weights.transforms()
        (resize,) = preset.resize_size
        return {"order": "RGB", "scale": 1.0, "mean": tuple(preset.mean), "std": tuple(preset.std), "resize": resize}
    if record["layout"] == "pytorch-deeplab-resnet":
        return DEEPLAB_RESNET["speedinghzl" if "speedinghzl" in record["name"] else "isht7"]
    assert record["layout"] in PEERS, f"{record['name']}: no independent preprocessing for layout {record['layout']}"
    return PEERS[record["layout"]]


def test_every_published_record_is_checked():
    assert {record["layout"] for record in PUBLISHED} == {"torchvision", "pytorch-deeplab-resnet", *PEERS}
    assert len(PUBLISHED) >= 20
    assert sum(record["layout"] == "deeplabv3plus-pytorch" for record in PUBLISHED) == 7


@pytest.mark.parametrize("record", PUBLISHED, ids=[record["name"] for record in PUBLISHED])
def test_manifest_preprocessing_is_the_peers(record):
    expected, got = expected_for(record), record["preprocessing"]
    assert got["channel_order"] == expected["order"]
    assert got["input_scale"] == expected["scale"]
    np.testing.assert_allclose(got["mean"], expected["mean"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(got["std"], expected["std"], rtol=0, atol=1e-9)
    assert got["resize_shorter"] == expected["resize"]


def peer_input(image: np.ndarray, expected: dict) -> torch.Tensor:
    """The peer's own recipe on an RGB uint8 image: reorder, scale, subtract, divide; [1, 3, H, W] float."""
    pixels = image.astype(np.float64)
    if expected["order"] == "BGR":
        pixels = pixels[:, :, ::-1]  # what cv2.imread gives, or pytorch-fcn's img[:, :, ::-1]
    pixels = pixels / 255.0 * expected["scale"]
    pixels = (pixels - np.array(expected["mean"])) / np.array(expected["std"])
    return torch.from_numpy(pixels.transpose(2, 0, 1)[None].astype(np.float32))


@pytest.mark.parametrize("record", PUBLISHED, ids=[record["name"] for record in PUBLISHED])
def test_segcli_builds_the_input_the_peer_builds(record):
    parsed = CheckpointRecord.from_dict(record)
    expected = expected_for(record)
    rng = np.random.default_rng(0)
    if expected["resize"] is None:
        image = rng.integers(0, 256, (23, 31, 3), dtype=np.uint8)
        torch.testing.assert_close(preprocess(image, parsed.preprocessing), peer_input(image, expected),
                                   rtol=0, atol=2e-4)
        return
    weights = torchvision_weights(record["url"])
    image = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)  # small: resize_shorter upsamples it to 520
    reference = weights.transforms()(torch.from_numpy(image).permute(2, 0, 1)).unsqueeze(0)
    ours = preprocess(image, parsed.preprocessing)
    assert ours.shape == reference.shape == (1, 3, 520, 780)
    torch.testing.assert_close(ours, reference, rtol=0, atol=1e-4)
