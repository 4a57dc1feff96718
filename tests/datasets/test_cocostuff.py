"""COCO-Stuff's 182 label ids as kazuto1011/deeplab-pytorch numbers them (COCO-Stuff id - 1)."""

from __future__ import annotations

from segcli.datasets.cocostuff import COCOSTUFF_CLASSES, COCOSTUFF_COLORS, UNUSED_IDS
from segcli.palettes import voc_colors

# spot checks against COCO-Stuff's labels.txt (id: name), shifted by one
LABELS_TXT = {1: "person", 12: "street sign", 26: "hat", 83: "blender", 91: "hair brush", 92: "banner",
              96: "building-other", 133: "mirror-stuff", 145: "playingfield", 157: "sky-other", 182: "wood"}


def test_182_names_in_id_order() -> None:
    assert len(COCOSTUFF_CLASSES) == 182 == len(set(COCOSTUFF_CLASSES))
    for cocostuff_id, name in LABELS_TXT.items():
        assert COCOSTUFF_CLASSES[cocostuff_id - 1] == name


def test_eleven_thing_ids_are_unused_171_remain() -> None:
    assert len(UNUSED_IDS) == 11 and all(0 <= index < 91 for index in UNUSED_IDS)
    assert [COCOSTUFF_CLASSES[index] for index in UNUSED_IDS] == [
        "street sign", "hat", "shoe", "eye glasses", "plate", "mirror", "window", "desk", "door", "blender",
        "hair brush"]


def test_palette_is_the_pascal_map_at_the_cocostuff_id() -> None:
    assert len(COCOSTUFF_COLORS) == 182 == len(set(COCOSTUFF_COLORS))
    assert (0, 0, 0) not in COCOSTUFF_COLORS  # black is COCO-Stuff's 'unlabeled' (id 0)
    # bit-interleaved by hand: id 1 = 0b001 -> red 128; id 2 -> green 128; id 7 = 0b111 -> grey 128;
    # id 182 = 0b10_110_110 -> green 128+64+32, blue 128+64
    assert COCOSTUFF_COLORS[0] == (128, 0, 0) and COCOSTUFF_COLORS[1] == (0, 128, 0)
    assert COCOSTUFF_COLORS[6] == (128, 128, 128) and COCOSTUFF_COLORS[181] == (0, 224, 192)
    assert COCOSTUFF_COLORS[:20] == tuple(voc_colors(21)[1:])  # the VOC colours, one id on
