"""Per-class outputs: 1-bit masks, RGBA cut-outs and COCO RLE each give back the label map."""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segcli.errors import OutputError
from segcli.inputs import ImageSource
from segcli.outputs.plan import OutputOptions, OutputPlan
from segcli.outputs.results import ImageResult, RunInfo
from segcli.outputs.writer import write_image_outputs
from segcli.outputs.classwise import class_file_labels, cutout_pixels, kept_classes
from segcli.outputs.png import encode_mask_png
from segcli.provenance import written_by_segcli

CATEGORIES = ("__background__", "cat", "dog", "person")
RUN = RunInfo(model="m", checkpoint="c", checkpoint_source="s", device="cpu", precision="fp32",
              categories=CATEGORIES, palette="voc")
EVERY_KIND = ("label", "overlay", "json", "masks", "cutout", "rle")


def labels_with_every_class(height: int = 19, width: int = 27, seed: int = 0) -> np.ndarray:
    """Classes 0, 2 and 3 in random pixels (1 absent), some pixels the ignore label 255."""
    rng = np.random.default_rng(seed)
    labels = rng.choice(np.array([0, 2, 3], np.uint8), size=(height, width))
    labels[0, :4] = 255
    return labels


def result(labels: np.ndarray, path: str = "/in/photo.jpg") -> ImageResult:
    rgb = np.random.default_rng(1).integers(0, 256, (*labels.shape, 3), dtype=np.uint8)
    return ImageResult(Path(path), rgb, labels)


def plan(out: Path, kinds=EVERY_KIND, classes=None, **flags) -> OutputPlan:
    return OutputPlan(OutputOptions(out, outputs=kinds, classes=classes, categories=CATEGORIES, **flags))


def read_masks(folder: Path, stem: str) -> dict[str, np.ndarray]:
    masks = {}
    for path in sorted(folder.glob(f"{stem}_mask_*.png")):
        with Image.open(path) as image:
            assert image.mode == "1" and written_by_segcli(path)
            masks[path.name[len(f"{stem}_mask_"):-len(".png")]] = np.asarray(image, dtype=bool)
    return masks


@pytest.mark.parametrize("shape", [(1, 1), (3, 9), (8, 8), (17, 33)])
def test_a_one_bit_mask_reads_back_exactly(shape):
    mask = np.random.default_rng(sum(shape)).random(shape) > 0.5
    with Image.open(io.BytesIO(encode_mask_png(mask, provenance="mask"))) as image:
        assert image.mode == "1" and image.text == {"segcli": "mask"}
        np.testing.assert_array_equal(np.asarray(image, dtype=bool), mask)


def test_masks_or_ed_give_back_the_label_map(tmp_path):
    labels = labels_with_every_class()
    paths = plan(tmp_path).paths_for(Path("photo.jpg"))
    write_image_outputs(paths, result(labels), RUN)
    masks = read_masks(tmp_path, "photo")
    assert set(masks) == {"__background__", "dog", "person"}  # one per class present, none for cat
    rebuilt = np.full(labels.shape, 255, np.uint8)
    for name, mask in masks.items():
        assert not (rebuilt[mask] != 255).any()  # no pixel in two masks
        rebuilt[mask] = CATEGORIES.index(name)
    np.testing.assert_array_equal(rebuilt, labels)


def test_cutout_alpha_is_the_kept_classes_and_rgb_the_image(tmp_path):
    labels = labels_with_every_class()
    image = result(labels)
    for classes, kept in ((None, [1, 2, 3]), ((2,), [2])):  # default: every class but the background
        run = dataclasses.replace(RUN, classes=classes)
        write_image_outputs(plan(tmp_path, ("cutout",), overwrite=True).paths_for(Path("photo.jpg")), image, run,
                            replace=(tmp_path / "photo_cutout.png").exists())
        with Image.open(tmp_path / "photo_cutout.png") as cutout:
            assert cutout.mode == "RGBA"
            rgba = np.asarray(cutout)
        inside = np.isin(labels, kept)
        np.testing.assert_array_equal(rgba[..., 3], np.where(inside, 255, 0))
        np.testing.assert_array_equal(rgba[inside, :3], image.rgb[inside])
        assert not rgba[~inside].any()


def test_rle_decodes_through_pycocotools_to_the_label_map(tmp_path):
    coco_mask = pytest.importorskip("pycocotools.mask", reason="pycocotools not installed (segcli[coco])")
    labels = labels_with_every_class(23, 31)
    write_image_outputs(plan(tmp_path, ("rle",)).paths_for(Path("photo.jpg")), result(labels), RUN)
    document = json.loads((tmp_path / "photo.rle.json").read_text())
    assert document["images"] == [{"id": 1, "file_name": "photo.jpg", "width": 31, "height": 23}]
    assert [c["name"] for c in sorted(document["categories"], key=lambda c: c["id"])] == list(CATEGORIES)
    rebuilt = np.full(labels.shape, 255, np.uint8)
    for annotation in document["annotations"]:
        mask = coco_mask.decode(annotation["segmentation"]).astype(bool)
        assert annotation["area"] == mask.sum() and annotation["image_id"] == 1
        ys, xs = np.nonzero(mask)
        assert annotation["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
        rebuilt[mask] = annotation["category_id"]
    assert sorted(a["category_id"] for a in document["annotations"]) == [0, 2, 3]
    np.testing.assert_array_equal(rebuilt, labels)


def test_classes_limit_masks_and_rle(tmp_path):
    coco_mask = pytest.importorskip("pycocotools.mask", reason="pycocotools not installed (segcli[coco])")
    labels = labels_with_every_class()
    run = dataclasses.replace(RUN, classes=(1, 3))  # cat (absent) and person
    write_image_outputs(plan(tmp_path, ("masks", "rle"), classes=(1, 3)).paths_for(Path("photo.jpg")),
                        result(labels), run)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo.rle.json", "photo_mask_person.png"]
    [annotation] = json.loads((tmp_path / "photo.rle.json").read_text())["annotations"]
    assert annotation["category_id"] == 3
    np.testing.assert_array_equal(coco_mask.decode(annotation["segmentation"]).astype(bool), labels == 3)


def test_a_rerun_removes_masks_of_classes_no_longer_present(tmp_path):
    first = labels_with_every_class()
    paths = plan(tmp_path, ("masks", "json")).paths_for(Path("photo.jpg"))
    write_image_outputs(paths, result(first), RUN)
    assert set(read_masks(tmp_path, "photo")) == {"__background__", "dog", "person"}
    second = np.where(first == 3, 1, first).astype(np.uint8)  # person became cat
    run = plan(tmp_path, ("masks", "json"), overwrite=True).prepare([ImageSource(Path("/in/photo.jpg"),
                                                                                 Path("photo.jpg"))])
    [item] = run.todo
    assert item.replace
    write_image_outputs(item.paths, result(second), RUN, replace=True)
    assert set(read_masks(tmp_path, "photo")) == {"__background__", "cat", "dog"}
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_skip_existing_redoes_a_set_missing_a_mask_its_summary_lists(tmp_path):
    labels = labels_with_every_class()
    source = ImageSource(Path("/in/photo.jpg"), Path("photo.jpg"))
    write_image_outputs(plan(tmp_path, ("masks", "json")).paths_for(source.relative), result(labels), RUN)
    assert plan(tmp_path, ("masks", "json"), skip_existing=True).prepare([source]).skipped == [source]
    (tmp_path / "photo_mask_dog.png").unlink()
    again = plan(tmp_path, ("masks", "json"), skip_existing=True).prepare([source])
    assert again.skipped == [] and [item.source for item in again.todo] == [source]


def test_a_mask_name_never_collides_with_another_inputs_outputs(tmp_path):
    cat = ImageSource(tmp_path / "in/cat.jpg", Path("cat.jpg"))
    named_like_a_mask = ImageSource(tmp_path / "in/cat_mask_dog.jpg", Path("cat_mask_dog.jpg"))
    with pytest.raises(OutputError, match=r"cat\.jpg and .*cat_mask_dog\.jpg would both write .*/cat_mask_dog\.png"):
        plan(tmp_path / "out").prepare([cat, named_like_a_mask])
    # limited to other classes, the names no longer meet
    assert len(plan(tmp_path / "out", classes=(3,)).prepare([cat, named_like_a_mask]).todo) == 2


def test_a_file_the_user_owns_at_a_mask_name_is_never_replaced(tmp_path):
    (tmp_path / "photo_mask_dog.png").write_bytes(b"mine")
    run = plan(tmp_path, ("masks", "json"), overwrite=True).prepare(
        [ImageSource(Path("/in/photo.jpg"), Path("photo.jpg"))])
    assert run.todo == [] and "photo_mask_dog.png exists and was not written by segcli" in run.failed[0][1].reason
    assert (tmp_path / "photo_mask_dog.png").read_bytes() == b"mine"


def test_class_file_labels_are_safe_and_unique():
    assert class_file_labels(("background", "a/b", "a:b", "", ".hidden", "x\ny", "fine name")) == (
        "background", "1_a_b", "2_a_b", "3_", "4_.hidden", "x_y", "fine name")


def test_cutout_default_keeps_every_class_but_the_background():
    assert kept_classes(RUN, cutout=True) == [1, 2, 3]
    assert kept_classes(RUN) == [0, 1, 2, 3]
    assert kept_classes(dataclasses.replace(RUN, classes=(0,)), cutout=True) == [0]
    labels = np.array([[0, 1], [255, 2]], np.uint8)
    rgba = cutout_pixels(np.full((2, 2, 3), 9, np.uint8), labels, [1, 2])
    np.testing.assert_array_equal(rgba[..., 3], [[0, 255], [0, 255]])


def test_masks_alone_are_never_taken_for_a_complete_set(tmp_path):
    source = ImageSource(Path("/in/photo.jpg"), Path("photo.jpg"))
    write_image_outputs(plan(tmp_path, ("masks",)).paths_for(source.relative), result(labels_with_every_class()), RUN)
    again = plan(tmp_path, ("masks",), skip_existing=True).prepare([source])
    assert again.skipped == [] and again.todo[0].replace  # no mark says the set is whole: it is made again
