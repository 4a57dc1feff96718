"""A checkpoint is a small frozen record: where it comes from, what it predicts, how to feed it.

Records come from JSON that segcli does not control (a manifest someone edited, the metadata of a
downloaded safetensors file), so `from_dict` checks every field and raises ValueError naming it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from segcli.errors import CheckpointError, SegcliError
from segcli.models import LAYOUTS as LAYOUT_TABLE
from segcli.text import printable

__all__ = ["CAFFE_BGR_MEAN", "CAFFE_PREPROCESSING", "CHANNEL_ORDERS", "CheckpointRecord", "IMAGENET_MEAN",
           "IMAGENET_PREPROCESSING", "IMAGENET_STD", "LAYOUTS", "MAX_CLASSES", "Preprocessing", "ResolvedCheckpoint",
           "SOURCE_DOWNLOAD", "SOURCE_LABELS", "SOURCE_PATH", "SOURCE_SEGCLI_CACHE", "SOURCE_SHIPPED",
           "SOURCE_TORCH_HUB", "SYNTHETIC_DATASET", "TORCHVISION_PREPROCESSING", "parse_record"]

if TYPE_CHECKING:
    from segcli.crf import CRFParams

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CAFFE_BGR_MEAN = (104.00699, 116.66877, 122.67891)
MAX_CLASSES = 255  # label PNGs hold the class index in one byte, and 255 is the ignore label
MAX_RESIZE = 16384
MAX_CLASS_NAME = 64  # characters; the longest VOC/COCO/Cityscapes name has 15, and a name becomes overlay legend text
MAX_TEXT_FIELD = 5000  # name, model, dataset, license, url, notes: one line each (notes may quote a path)
CHANNEL_ORDERS = ("RGB", "BGR")

LAYOUTS = tuple(LAYOUT_TABLE)  # the state-dict layouts segcli reads: segcli.models.LAYOUT_SPECS says what each is

SYNTHETIC_DATASET = "segcli-synth"  # the procedural scenes of `segcli data synth`: not photographs
# the data a record's mIoU was measured on, by the record's dataset tag (a metric "miou_on" overrides)
MIOU_MEASURED_ON = {
    SYNTHETIC_DATASET: "synthetic scenes",
    "COCO-VOC21": "COCO val2017",
    "VOC2012-aug": "VOC 2012 val",
    "VOC-SBD": "VOC 2011 val",
    "Cityscapes": "Cityscapes val",
}


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
        """Checked: three finite means, three positive finite stds, a positive scale, RGB or BGR."""
        data = _mapping(data, "preprocessing")
        std = _numbers(data.get("std", IMAGENET_STD), "preprocessing.std", 3)
        if any(value <= 0 for value in std):
            raise ValueError(f"preprocessing.std must be positive (it divides the pixels), got {list(std)}")
        scale = _numbers([data.get("input_scale", 1.0)], "preprocessing.input_scale", 1)[0]
        if scale <= 0:
            raise ValueError(f"preprocessing.input_scale must be positive, got {scale}")
        order = data.get("channel_order", "RGB")
        if order not in CHANNEL_ORDERS:
            raise ValueError(f"preprocessing.channel_order must be RGB or BGR, got {order!r}")
        resize = data.get("resize_shorter")
        if resize is not None and (type(resize) is not int or not 1 <= resize <= MAX_RESIZE):
            raise ValueError(f"preprocessing.resize_shorter must be empty or a whole number of pixels in "
                             f"1..{MAX_RESIZE}, got {resize!r}")
        return cls(mean=_numbers(data.get("mean", IMAGENET_MEAN), "preprocessing.mean", 3), std=std,
                   input_scale=scale, channel_order=order, resize_shorter=resize)


def _mapping(value: Any, field_name: str) -> dict[str, Any]:
    if not isinstance(value, dict) or not all(isinstance(key, str) for key in value):
        raise ValueError(f"{field_name} must be a JSON object, got {type(value).__name__}")
    return value


def _numbers(value: Any, field_name: str, count: int | None) -> tuple[float, ...]:
    """`count` finite numbers (None: any number of them)."""
    numbers_given = isinstance(value, (list, tuple)) and all(
        isinstance(item, (int, float)) and not isinstance(item, bool) for item in value)
    right_count = numbers_given and (count is None or len(value) == count)
    if not numbers_given or not right_count or not all(math.isfinite(item) for item in value):
        wanted = f"{count} finite number{'s' * (count > 1)}" if count is not None else "a list of finite numbers"
        raise ValueError(f"{field_name} must be {wanted}, got {str(value)[:80]}")
    return tuple(float(item) for item in value)


finite_numbers = _numbers  # the same check for other readers of untrusted JSON (exported graphs' metadata)


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
    input_scales: tuple[float, ...] = (1.0,)         # test-time input scales, logits max-fused (kazuto's MSC)
    crf_defaults: tuple[tuple[str, Any], ...] = ()  # CRFParams fields as the checkpoint's authors published them

    def __post_init__(self) -> None:
        from segcli.models import check_input_scales

        object.__setattr__(self, "input_scales", check_input_scales(self.input_scales))
        if self.crf_defaults:
            self.crf_params()  # unknown names and out-of-range values fail here, with the record

    def crf_params(self, **given: Any) -> "CRFParams":
        """The dense CRF settings: what the user `given` (None: not given), else the authors', else segcli's."""
        from segcli.crf import CRFParams

        from dataclasses import fields

        chosen = dict(self.crf_defaults) | {name: value for name, value in given.items() if value is not None}
        unknown = sorted(set(chosen) - {field.name for field in fields(CRFParams)})
        if unknown:
            raise ValueError(f"crf_defaults: unknown CRF setting {', '.join(unknown)}")
        return CRFParams(**chosen)

    @property
    def num_classes(self) -> int:
        return len(self.categories)

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.model_kwargs)

    @property
    def metric_dict(self) -> dict[str, Any]:
        return dict(self.metrics)

    @property
    def miou_measured_on(self) -> str:
        """Where the recorded mIoU comes from, e.g. "COCO val2017" or "synthetic scenes"."""
        return str(self.metric_dict.get("miou_on") or MIOU_MEASURED_ON.get(self.dataset, self.dataset))

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "model": self.model, "dataset": self.dataset,
            "categories": list(self.categories), "filename": self.filename, "layout": self.layout,
            "palette": self.palette if isinstance(self.palette, str) else [list(c) for c in self.palette],
            "preprocessing": self.preprocessing.to_dict(), "url": self.url, "sha256": self.sha256,
            "model_kwargs": self.kwargs, "metrics": self.metric_dict, "license": self.license,
            "notes": self.notes, "input_scales": list(self.input_scales), "crf_defaults": dict(self.crf_defaults),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "CheckpointRecord":
        """A record from its JSON form; any field of the wrong type or out of range raises ValueError."""
        data = _mapping(data, "the record")
        categories = _categories(data.get("categories"))
        layout = data.get("layout", "segcli")
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
        sha256 = _text(data, "sha256", required=False)
        if sha256 is not None and not _SHA256_PATTERN.match(sha256):
            raise ValueError(f"sha256 must be 8 to 64 lowercase hex digits, got {sha256!r}")
        metrics = _mapping(data.get("metrics") or {}, "metrics")
        if "miou_on" in metrics:  # the one metric printed as text (`segcli weights list`)
            _text({"metrics.miou_on": metrics["miou_on"]}, "metrics.miou_on")
        filename = _text(data, "filename", plain=False)
        if "/" in filename or "\\" in filename or filename in (".", ".."):
            raise ValueError(f"filename must be a bare file name, got {filename!r}")
        return cls(
            name=_text(data, "name"), model=_text(data, "model"),
            dataset=_text(data, "dataset", "unknown"), categories=categories, filename=filename,
            layout=layout, palette=_palette(data.get("palette", "voc"), len(categories)),
            preprocessing=Preprocessing.from_dict(data.get("preprocessing", {})),
            url=_text(data, "url", required=False), sha256=sha256,
            model_kwargs=_scalars(data.get("model_kwargs") or {}, "model_kwargs"),
            metrics=tuple(sorted(metrics.items())),
            license=_text(data, "license", "unknown"), notes=_text(data, "notes", ""),
            input_scales=_numbers(data.get("input_scales", [1.0]), "input_scales", None),
            crf_defaults=_scalars(data.get("crf_defaults") or {}, "crf_defaults"),
        )


_SHA256_PATTERN = re.compile(r"^[0-9a-f]{8,64}$")


def _shown(text: str, limit: int = 40) -> str:
    """Some of `text`, safe to print inside an error line."""
    return printable(text[:limit]) + ("..." if len(text) > limit else "")


def _text(data: dict[str, Any], key: str, default: str | None = None, required: bool = True,
          plain: bool = True) -> Any:
    """A one-line string field: control, format (bidi) and line-break characters are refused (unless not
    `plain`: a file name is whatever the file system allows, printed through `printable`), as are strings
    over MAX_TEXT_FIELD characters (a record's text reaches the terminal)."""
    value = data.get(key, default)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value and default is None:
        shown = _shown(value) if isinstance(value, str) else repr(value)[:80]
        raise ValueError(f"{key} must be a{' non-empty' if default is None else ''} string, got {shown}")
    if (plain and not value.isprintable()) or len(value) > MAX_TEXT_FIELD:
        raise ValueError(f"{key} must be one line of at most {MAX_TEXT_FIELD} printable characters (no control "
                         f"or bidi characters), got '{_shown(value)}'")
    return value


def _class_name_problem(name: str) -> str | None:
    if not name.isprintable():
        return "holds control, bidi or line-break characters"
    if len(name) > MAX_CLASS_NAME:
        return f"has {len(name):,} characters (at most {MAX_CLASS_NAME})"
    return None


def _categories(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(name, str) and name for name in value):
        raise ValueError(f"categories must be a list of class names, got {printable(str(value)[:80])}")
    for index, name in enumerate(value[:MAX_CLASSES + 1]):
        problem = _class_name_problem(name)
        if problem is not None:
            raise ValueError(f"categories[{index}] {problem}: '{_shown(name)}'; class names are at most "
                             f"{MAX_CLASS_NAME} printable characters")
    if not 1 <= len(value) <= MAX_CLASSES:
        raise ValueError(f"categories lists {len(value)} classes; segcli handles 1 to {MAX_CLASSES} classes "
                         f"(label PNGs hold one byte per pixel, 255 is the ignore label)")
    if len(set(value)) != len(value):
        raise ValueError(f"categories repeats a class name: {sorted({n for n in value if value.count(n) > 1})}")
    return tuple(value)


def _palette(value: Any, num_classes: int) -> str | tuple[tuple[int, int, int], ...]:
    if isinstance(value, str):
        from segcli.palettes import palette_colors

        try:
            palette_colors(value, num_classes)
        except SegcliError as exc:
            raise ValueError(f"palette: {exc}") from None
        return value
    colours_given = isinstance(value, list) and all(
        isinstance(colour, list) and len(colour) == 3
        and all(type(channel) is int and 0 <= channel <= 255 for channel in colour) for colour in value)
    if not colours_given or not num_classes <= len(value) <= 256:
        raise ValueError(f"palette must be a palette name or one [r, g, b] (0..255 each) per class "
                         f"({num_classes}), got {str(value)[:80]}")
    return tuple(tuple(colour) for colour in value)


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float))


def _scalars(value: Any, field_name: str) -> tuple[tuple[str, Any], ...]:
    """Builder keywords: numbers, strings, true/false or flat lists of them (kept as tuples: hashable)."""
    items = _mapping(value, field_name)
    checked = {}
    for key, item in items.items():
        if isinstance(item, (list, tuple)) and all(_is_scalar(element) for element in item):
            item = tuple(item)
        elif not _is_scalar(item):
            raise ValueError(f"{field_name}.{key} must be a number, a string, true/false or a list of them, "
                             f"got {item!r}")
        checked[key] = item
    return tuple(sorted(checked.items()))


def parse_record(data: Any, origin: str) -> CheckpointRecord:
    """`CheckpointRecord.from_dict`, any problem raised as one CheckpointError line naming `origin`."""
    try:
        return CheckpointRecord.from_dict(data)
    except ValueError as exc:
        raise CheckpointError(f"{origin}: {exc}") from None


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
