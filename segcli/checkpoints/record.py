"""A checkpoint is a small frozen record: where it comes from, what it predicts, how to feed it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CAFFE_BGR_MEAN = (104.00699, 116.66877, 122.67891)

# State-dict layouts segcli reads unchanged.
LAYOUTS = (
    "segcli",                 # segcli's own files: keys of segcli's model, plain state dict / safetensors
    "torchvision",            # torchvision's segmentation checkpoints (may hold aux_classifier.*)
    "deeplabv3plus-pytorch",  # DeepLabV3Plus-Pytorch: {"model_state": ..., "optimizer_state": ...}
    "pytorch-fcn",            # Caffe-converted FCN-VGG16: conv1_1 ... score_fr, upscore*
)


@dataclass(frozen=True)
class Preprocessing:
    """How an RGB uint8 image becomes the model's input tensor."""

    mean: tuple[float, float, float] = IMAGENET_MEAN  # per channel, in the order of `channel_order`
    std: tuple[float, float, float] = IMAGENET_STD    # (1, 1, 1) for Caffe models
    input_scale: float = 1.0         # 1.0: pixels scaled to [0, 1] first; 255.0: raw 0..255 (Caffe)
    channel_order: str = "RGB"       # "BGR" for the Caffe-converted FCNs
    resize_shorter: int | None = None  # resize the shorter side to this before the model (torchvision: 520)

    def to_dict(self) -> dict[str, Any]:
        return {
            "mean": list(self.mean), "std": list(self.std), "input_scale": self.input_scale,
            "channel_order": self.channel_order, "resize_shorter": self.resize_shorter,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Preprocessing":
        return cls(
            mean=tuple(data.get("mean", IMAGENET_MEAN)),
            std=tuple(data.get("std", IMAGENET_STD)),
            input_scale=float(data.get("input_scale", 1.0)),
            channel_order=data.get("channel_order", "RGB"),
            resize_shorter=data.get("resize_shorter"),
        )


TORCHVISION_PREPROCESSING = Preprocessing(resize_shorter=520)
IMAGENET_PREPROCESSING = Preprocessing()
CAFFE_PREPROCESSING = Preprocessing(
    mean=CAFFE_BGR_MEAN, std=(1.0, 1.0, 1.0), input_scale=255.0, channel_order="BGR"
)


@dataclass(frozen=True)
class CheckpointRecord:
    """One known checkpoint. `num_classes` comes from `categories`, never typed twice."""

    name: str                           # manifest name, e.g. "deeplabv3-resnet50-coco"
    model: str                          # zoo model name it loads into, e.g. "deeplabv3-resnet50"
    dataset: str                        # "COCO-VOC21", "VOC2012-aug", "Cityscapes", "segcli-synth"
    categories: tuple[str, ...]         # class names, index = label value
    filename: str                       # file name in caches / weights/
    layout: str = "segcli"              # one of LAYOUTS
    palette: str | tuple[tuple[int, int, int], ...] = "voc"  # "voc", "cityscapes" or explicit RGB
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    url: str | None = None              # download address; None: no public download
    sha256: str | None = None           # full hex digest, or a >= 8-digit prefix (torch.hub style); None: unpublished
    model_kwargs: tuple[tuple[str, Any], ...] = ()  # builder keywords (output_stride, width, ...)
    metrics: tuple[tuple[str, Any], ...] = ()       # e.g. (("miou", 0.664), ("source", "torchvision docs"))
    license: str = "unknown"
    notes: str = ""

    @property
    def num_classes(self) -> int:
        return len(self.categories)

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.model_kwargs)

    @property
    def metric_dict(self) -> dict[str, Any]:
        return dict(self.metrics)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "model": self.model, "dataset": self.dataset,
            "categories": list(self.categories), "filename": self.filename, "layout": self.layout,
            "palette": self.palette if isinstance(self.palette, str) else [list(c) for c in self.palette],
            "preprocessing": self.preprocessing.to_dict(), "url": self.url, "sha256": self.sha256,
            "model_kwargs": self.kwargs, "metrics": self.metric_dict, "license": self.license,
            "notes": self.notes,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "CheckpointRecord":
        palette = data.get("palette", "voc")
        if not isinstance(palette, str):
            palette = tuple(tuple(int(v) for v in c) for c in palette)
        return cls(
            name=data["name"], model=data["model"], dataset=data.get("dataset", "unknown"),
            categories=tuple(data["categories"]), filename=data["filename"],
            layout=data.get("layout", "segcli"), palette=palette,
            preprocessing=Preprocessing.from_dict(data.get("preprocessing", {})),
            url=data.get("url"), sha256=data.get("sha256"),
            model_kwargs=tuple(sorted((data.get("model_kwargs") or {}).items())),
            metrics=tuple(sorted((data.get("metrics") or {}).items())),
            license=data.get("license", "unknown"), notes=data.get("notes", ""),
        )


SOURCE_PATH = "path"
SOURCE_TORCH_HUB = "torch-hub-cache"
SOURCE_SEGCLI_CACHE = "segcli-cache"
SOURCE_SHIPPED = "shipped"
SOURCE_DOWNLOAD = "download"
SOURCE_LABELS = {
    SOURCE_PATH: "file given", SOURCE_TORCH_HUB: "torch hub cache", SOURCE_SEGCLI_CACHE: "segcli cache",
    SOURCE_SHIPPED: "shipped with segcli", SOURCE_DOWNLOAD: "downloaded",
}


@dataclass(frozen=True)
class ResolvedCheckpoint:
    """A record and the file on disk that holds its weights (what lookup returns and loading takes)."""

    record: CheckpointRecord  # what the file predicts and how to feed it
    path: Path                # the file to load
    source: str               # one of the SOURCE_* names: where the file was found

    def describe(self) -> str:
        """One line for the CLI, e.g. `weights: lraspp-coco (torch hub cache: /root/.cache/...)`."""
        return f"weights: {self.record.name} ({SOURCE_LABELS[self.source]}: {self.path})"
