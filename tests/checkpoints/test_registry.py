"""The manifest as a registry: shared class sets and preprocessing presets written once, the merged table
(shipped + the user's records) parsed once per process and read again only when a file changes."""

from __future__ import annotations

import json
import os
import pathlib

import pytest

from segcli.checkpoints import manifest
from segcli.checkpoints.manifest import find_record, load_manifest, read_manifest_file
from segcli.checkpoints.record import CheckpointRecord
from segcli.errors import CheckpointError, UnknownNameError

SHIPPED_TEXT = manifest.shipped_manifest_path().read_text(encoding="utf-8")


@pytest.fixture
def home(tmp_path, monkeypatch):
    """An empty SEGCLI_HOME and a copy of the shipped manifest (so tests may edit it)."""
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    (shipped / "manifest.json").write_text(SHIPPED_TEXT, encoding="utf-8")
    monkeypatch.setattr(manifest, "shipped_weights_dir", lambda: shipped)
    monkeypatch.setenv("SEGCLI_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def manifest_reads(monkeypatch):
    """How many times a file called manifest.json is read (as text or bytes, or opened)."""
    reads: list[str] = []
    for method in ("read_text", "read_bytes"):
        original = getattr(pathlib.Path, method)

        def counted(self, *args, _original=original, **kwargs):
            if self.name == "manifest.json":
                reads.append(str(self))
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(pathlib.Path, method, counted)
    return reads


def _record(name: str, categories=("a", "b")) -> CheckpointRecord:
    return CheckpointRecord(name=name, model="lraspp", dataset="x", categories=categories, filename=f"{name}.pth")


def _lists_holding(value, item) -> int:
    """How many JSON lists inside `value` hold `item`."""
    if isinstance(value, dict):
        return sum(_lists_holding(child, item) for child in value.values())
    if isinstance(value, list):
        return (item in value) + sum(_lists_holding(child, item) for child in value)
    return 0


def test_the_shipped_manifest_writes_each_class_list_once():
    """The manifest used to spell the VOC list out in 20 records; each class list is written once."""
    document = json.loads(SHIPPED_TEXT)
    for name in ("aeroplane", "sidewalk", "triangle", "toothbrush"):  # VOC, Cityscapes, synthetic scenes, COCO-Stuff
        assert _lists_holding(document, name) == 1, name
    assert all("categories" not in entry and isinstance(entry.get("classes"), str)
               for entry in document["checkpoints"])
    assert all(isinstance(entry["preprocessing"], str) or entry["layout"] == "pytorch-deeplab-resnet"
               for entry in document["checkpoints"])
    assert set(document["class_sets"]) >= {"voc", "cityscapes"}


def test_a_second_lookup_does_not_read_the_files_again(home, manifest_reads):
    first = load_manifest()
    assert len(manifest_reads) == 1  # the shipped file; the user has none yet
    assert find_record("lraspp-coco") == first["lraspp-coco"]
    load_manifest()
    manifest.records_for_model("lraspp")
    assert len(manifest_reads) == 1


def test_weights_add_then_lookup_sees_the_new_record(home, manifest_reads):
    load_manifest()
    manifest.add_user_record(_record("mine"))
    assert find_record("mine").categories == ("a", "b")
    assert "mine" in {record.name for record in manifest.records_for_model("lraspp")}
    reads = len(manifest_reads)
    find_record("mine")
    assert len(manifest_reads) == reads


def test_a_user_manifest_another_process_rewrote_is_read_again(home):
    manifest.add_user_record(_record("first"))
    assert "first" in load_manifest()
    path = manifest.user_manifest_path()
    document = json.loads(path.read_text(encoding="utf-8"))
    document["checkpoints"].append(_record("second", ("x", "y", "z")).to_dict())
    path.write_text(json.dumps(document), encoding="utf-8")  # as `weights add` in another process would
    assert find_record("second").num_classes == 3
    path.unlink()
    with pytest.raises(UnknownNameError, match="unknown checkpoint 'second'"):
        find_record("second")


def test_the_cached_table_cannot_be_changed_by_a_caller(home):
    table = load_manifest()
    table.pop("lraspp-coco")
    assert "lraspp-coco" in load_manifest()


def test_records_name_shared_class_sets_and_presets(home):
    """A user's record may name the shipped class sets and presets, or carry its own list."""
    path = manifest.user_manifest_path()
    path.parent.mkdir(parents=True)
    entries = [dict(_record("named").to_dict(), classes="cityscapes", preprocessing="caffe-bgr"),
               _record("own", ("road", "sky")).to_dict()]
    del entries[0]["categories"], entries[0]["palette"]
    path.write_text(json.dumps({"format": "segcli-manifest", "version": 1, "checkpoints": entries}))
    named, own = find_record("named"), find_record("own")
    city = find_record("deeplabv3plus-mobilenet-cityscapes-os16")
    assert (named.categories, named.palette) == (city.categories, "cityscapes")
    assert named.preprocessing == find_record("fcn8s-voc-caffe").preprocessing
    assert own.categories == ("road", "sky")


@pytest.mark.parametrize("change, message", [
    (lambda entry: entry.update(classes="no-such-set"), "unknown class set 'no-such-set'; known: voc"),
    (lambda entry: entry.update(preprocessing="no-such"), "unknown preprocessing preset 'no-such'; known: "),
    (lambda entry: entry.update(categories=["a", "b"]), 'give "classes" or "categories", not both'),
])
def test_a_bad_reference_is_one_error_naming_the_record(home, change, message):
    path = manifest.shipped_manifest_path()
    document = json.loads(path.read_text(encoding="utf-8"))
    change(document["checkpoints"][0])
    path.write_text(json.dumps(document), encoding="utf-8")
    with pytest.raises(CheckpointError, match=message) as caught:
        load_manifest()
    assert "checkpoint entry 0" in str(caught.value) and "\n" not in str(caught.value)


def test_writing_with_the_shared_definitions_keeps_the_file_compact(home, tmp_path):
    """register_shipped.py rewrites the shipped manifest: records stay references, nothing changes."""
    shipped = manifest.shipped_manifest_path()
    records = read_manifest_file(shipped)
    target = tmp_path / "rewritten" / "manifest.json"
    manifest.write_manifest_file(target, records, manifest.read_shared_definitions(shipped))
    assert read_manifest_file(target) == records
    assert _lists_holding(json.loads(target.read_text(encoding="utf-8")), "aeroplane") == 1
    expanded = tmp_path / "expanded" / "manifest.json"
    manifest.write_manifest_file(expanded, records)  # the user's file: every record self-contained
    assert read_manifest_file(expanded) == records
    assert _lists_holding(json.loads(expanded.read_text(encoding="utf-8")), "aeroplane") == 20
    assert os.path.getsize(target) < 0.8 * os.path.getsize(expanded)


def _expected_classes(record: CheckpointRecord):
    """A record's class names and palette from a source other than the manifest (by its dataset)."""
    from segcli.data.synth import SYNTH_CLASSES
    from segcli.datasets.cocostuff import COCOSTUFF_CLASSES, COCOSTUFF_COLORS
    from segcli.palettes import CITYSCAPES_CLASSES

    if record.layout == "torchvision":  # torchvision's own weights meta for the file the record downloads
        import torchvision.models.segmentation as segmentation

        weights = [member for name in dir(segmentation) if name.endswith("_Weights")
                   for member in getattr(segmentation, name) if member.url == record.url]
        return tuple(weights[0].meta["categories"]), "voc"
    # the 20 PASCAL VOC classes and background, in VOC's label order
    # (http://host.robots.ox.ac.uk/pascal/VOC/voc2012/htmldoc/devkit_doc.html, section 2.1)
    voc = ("__background__", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
           "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor")
    return {"VOC2012-aug": (voc, "voc"), "VOC-SBD": (voc, "voc"), "Cityscapes": (CITYSCAPES_CLASSES, "cityscapes"),
            "COCO-Stuff-164k": (COCOSTUFF_CLASSES, COCOSTUFF_COLORS),
            "COCO-Stuff-10k": (COCOSTUFF_CLASSES, COCOSTUFF_COLORS),
            "segcli-synth": (SYNTH_CLASSES, "voc")}[record.dataset]


def test_every_shipped_record_expands_to_its_datasets_classes_and_palette():
    records = read_manifest_file(manifest.shipped_manifest_path())
    assert len(records) == 31
    for record in records:
        categories, palette = _expected_classes(record)
        assert record.categories == tuple(categories), record.name
        assert record.palette == (palette if isinstance(palette, str) else tuple(map(tuple, palette))), record.name
