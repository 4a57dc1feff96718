"""Class names and colour palettes of the datasets segcli knows (no torch import)."""

from __future__ import annotations

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


def palette_colors(palette: str | tuple[Color, ...] | list, n_classes: int) -> list[Color]:
    """256 colours for a palettized PNG: the named dataset palette (or explicit colours), VOC fill."""
    base = voc_colors(256)
    if palette == "voc" or palette is None:
        colors = base
    elif palette == "cityscapes":
        colors = list(CITYSCAPES_COLORS) + base[len(CITYSCAPES_COLORS):]
    elif isinstance(palette, (tuple, list)):
        explicit = [tuple(int(v) for v in c) for c in palette]
        colors = explicit + base[len(explicit):]
    else:
        from segcli.errors import UnknownNameError

        raise UnknownNameError(f"unknown palette {palette!r}: use 'voc', 'cityscapes' or a list of RGB colours")
    colors = list(colors[:256])
    colors[IGNORE_INDEX] = IGNORE_COLOR
    return colors


def flat_palette(palette: str | tuple[Color, ...] | list, n_classes: int) -> list[int]:
    """The 768-entry flat list PIL's ``Image.putpalette`` takes."""
    return [v for color in palette_colors(palette, n_classes) for v in color]
