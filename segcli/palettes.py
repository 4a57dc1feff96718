"""Class names and colour palettes of the datasets segcli knows (no torch import)."""

from __future__ import annotations

import functools

Color = tuple[int, int, int]

VOC_CLASSES: tuple[str, ...] = (
    "__background__", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep",
    "sofa", "train", "tvmonitor",
)

CITYSCAPES_CLASSES: tuple[str, ...] = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
    "motorcycle", "bicycle",
)

CITYSCAPES_COLORS: tuple[Color, ...] = (
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
    (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
    (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100),
    (0, 80, 100), (0, 0, 230), (119, 11, 32),
)

# The procedural scenes (`segcli data synth`, the shipped "-synth" checkpoints): eight vivid colours
# of mid luminance (0.08-0.36, visible on dark and on light photos), at least 40 CIELAB units apart.
SYNTH_DATASET = "segcli-synth"
SYNTH_COLORS: tuple[Color, ...] = (
    (0, 0, 0),        # background (never painted on overlays)
    (230, 25, 45),    # disc: red
    (0, 165, 60),     # box: green
    (40, 90, 235),    # triangle: blue
    (245, 130, 0),    # ring: orange
    (225, 0, 175),    # star: magenta
    (0, 160, 190),    # striped: cyan
    (175, 155, 0),    # wire: olive
    (128, 68, 38),    # dots: brown
)

PALETTE_NAMES: tuple[str, ...] = ("voc", "cityscapes", "synth")
BACKGROUND_NAMES = frozenset({"background", "__background__", "_background_"})

IGNORE_INDEX = 255
IGNORE_COLOR: Color = (224, 224, 192)  # how VOC's own PNGs draw label 255


def voc_colors(n: int = 256) -> list[Color]:
    """The standard bit-interleaved VOC colour map; entry 255 is the 'ignore' colour."""
    colors: list[Color] = []
    for index in range(n):
        r = g = b = 0
        c = index
        for shift in range(7, -1, -1):
            r |= ((c >> 0) & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        colors.append((r, g, b))
    return colors


@functools.lru_cache(maxsize=1)
def _voc_table() -> tuple[Color, ...]:
    return tuple(voc_colors(256))


def palette_colors(palette: str | tuple[Color, ...] | list, n_classes: int) -> list[Color]:
    """256 colours for a palettized PNG: the named dataset palette (or explicit colours), VOC fill."""
    base = list(_voc_table())
    if palette == "voc" or palette is None:
        colors = base
    elif palette == "cityscapes":
        colors = list(CITYSCAPES_COLORS) + base[len(CITYSCAPES_COLORS):]
    elif palette == "synth":
        colors = list(SYNTH_COLORS) + base[len(SYNTH_COLORS):]
    elif isinstance(palette, (tuple, list)):
        explicit = [tuple(int(v) for v in c) for c in palette]
        colors = explicit + base[len(explicit):]
    else:
        from segcli.errors import UnknownNameError

        names = ", ".join(map(repr, PALETTE_NAMES))
        raise UnknownNameError(f"unknown palette {palette!r}: use {names} or a list of RGB colours")
    colors = list(colors[:256])
    colors[IGNORE_INDEX] = IGNORE_COLOR
    return colors


def flat_palette(palette: str | tuple[Color, ...] | list, n_classes: int) -> list[int]:
    """The 768-entry flat list PIL's ``Image.putpalette`` takes."""
    return [v for color in palette_colors(palette, n_classes) for v in color]


def display_palette(palette: str | tuple[Color, ...] | list | None, dataset: str) -> str | tuple[Color, ...] | list:
    """The palette outputs are drawn with: the synthetic scenes' own colours for a checkpoint trained
    on them that names only the default VOC palette (VOC's dark colours vanish on dark photos)."""
    if dataset == SYNTH_DATASET and palette in (None, "voc"):
        return "synth"
    return "voc" if palette is None else palette


def background_index(categories: tuple[str, ...] | list[str]) -> int | None:
    """Index of the class named background (VOC's "__background__"), None when there is none (Cityscapes)."""
    for index, name in enumerate(categories):
        if name.lower() in BACKGROUND_NAMES:
            return index
    return None
