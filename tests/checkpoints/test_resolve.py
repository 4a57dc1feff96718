"""The manifest and the checkpoint lookup order (caches under tmp_path, no network)."""

from __future__ import annotations

import json
import re

import pytest
import torch

from segcli.checkpoints import manifest
from segcli.checkpoints.saving import save_segcli_checkpoint
from segcli.checkpoints.manifest import find_record, load_manifest, records_for_model
from segcli.checkpoints.record import TORCHVISION_PREPROCESSING, CheckpointRecord
from segcli.checkpoints.record import SOURCE_PATH, SOURCE_SEGCLI_CACHE, SOURCE_SHIPPED, SOURCE_TORCH_HUB
from segcli.checkpoints.resolve import resolve_checkpoint
from segcli.errors import CheckpointError, UnknownNameError, with_hint
from segcli.palettes import CITYSCAPES_CLASSES, VOC_CLASSES

LRASPP_FILE = "lraspp_mobilenet_v3_large-d234d4ea.pth"


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    """Empty torch hub cache, segcli cache and shipped folder (with the real shipped manifest)."""
    real_manifest = manifest.shipped_manifest_path().read_text()
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    (shipped / "manifest.json").write_text(real_manifest)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("SEGCLI_HOME", str(tmp_path / "segcli"))
    monkeypatch.setattr(manifest, "shipped_weights_dir", lambda: shipped)
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    cache = tmp_path / "segcli" / "checkpoints"
    for folder in (hub, cache):
        folder.mkdir(parents=True)
    return {"hub": hub, "cache": cache, "shipped": shipped}


@pytest.fixture
def unverified_published_files(monkeypatch):
    """Stand-in files under published names cannot match the published SHA-256: skip that check here.

    These tests are about lookup order; the hash check itself is tested in test_robustness_checkpoints.py.
    """
    from segcli.checkpoints import resolve

    monkeypatch.setattr(resolve, "_verified", lambda record, path, source: resolve.ResolvedCheckpoint(record, path, source))


def _state(num_classes: int = 21) -> dict[str, torch.Tensor]:
    return {"backbone.0.weight": torch.zeros(4, 3, 3, 3),
            "classifier.high_classifier.weight": torch.zeros(num_classes, 4, 1, 1),
            "classifier.high_classifier.bias": torch.zeros(num_classes)}


def _add_shipped_record(dirs, record: CheckpointRecord) -> None:
    path = dirs["shipped"] / "manifest.json"
    document = json.loads(path.read_text())
    document["checkpoints"].append(record.to_dict())
    path.write_text(json.dumps(document))


def test_shipped_manifest_holds_the_published_checkpoints(dirs):
    table = load_manifest()
    torchvision = [record for record in table.values() if record.layout == "torchvision"]
    assert len(torchvision) == 6
    for record in torchvision:
        assert record.url == f"https://download.pytorch.org/models/{record.filename}"
        assert record.filename.endswith(f"-{record.sha256}.pth") and len(record.sha256) == 8
        assert record.categories == VOC_CLASSES and record.preprocessing == TORCHVISION_PREPROCESSING
    assert table["deeplabv3-resnet50-coco"].metric_dict["miou"] == pytest.approx(0.664)
    dropbox = [record for record in table.values() if record.layout == "deeplabv3plus-pytorch"]
    assert len(dropbox) == 7 and all(record.url.endswith("?dl=1") and record.sha256 is None for record in dropbox)
    assert all(record.kwargs["output_stride"] == 16 for record in dropbox)
    city = table["deeplabv3plus-mobilenet-cityscapes-os16"]
    assert city.categories == CITYSCAPES_CLASSES and city.palette == "cityscapes"
    caffe = [record for record in table.values() if record.layout == "pytorch-fcn"]
    assert sorted(record.model for record in caffe) == ["fcn16s", "fcn32s", "fcn8s"]
    assert all(record.url is None and record.preprocessing.channel_order == "BGR" for record in caffe)


def test_find_record_lists_choices_and_records_follow_aliases(dirs):
    with pytest.raises(UnknownNameError, match="lraspp-coco"):
        find_record("no-such-checkpoint")
    records = records_for_model("deeplabv3p")
    assert {record.model for record in records} == {"deeplabv3p-mobilenet"}
    assert {"deeplabv3plus-mobilenet-voc-os16", "deeplabv3plus-mobilenet-cityscapes-os16"} <= {r.name for r in records}


def test_duplicate_name_in_user_manifest_is_an_error(dirs):
    record = find_record("lraspp-coco")
    manifest.write_manifest_file(manifest.user_manifest_path(), [record])
    with pytest.raises(CheckpointError, match="appears twice"):
        load_manifest()


def test_lookup_order_hub_then_segcli_cache_then_shipped(dirs, unverified_published_files):
    for folder in ("hub", "cache", "shipped"):
        torch.save(_state(), dirs[folder] / LRASPP_FILE)
    expected = [("hub", SOURCE_TORCH_HUB), ("cache", SOURCE_SEGCLI_CACHE), ("shipped", SOURCE_SHIPPED)]
    for folder, source in expected:
        resolved = resolve_checkpoint("lraspp", "lraspp-coco")
        assert (resolved.path, resolved.source) == (dirs[folder] / LRASPP_FILE, source)
        assert resolved.record.name == "lraspp-coco"
        (dirs[folder] / LRASPP_FILE).unlink()
    with pytest.raises(CheckpointError, match="segcli weights pull lraspp-coco"):
        resolve_checkpoint("lraspp", "lraspp-coco")


def test_missing_file_without_url_says_where_to_put_it(dirs):
    with pytest.raises(CheckpointError, match=rf"put fcn8s_from_caffe\.pth in {dirs['cache']}"):
        resolve_checkpoint("fcn8s", "fcn8s-voc-caffe")


def test_named_checkpoint_for_another_model_is_refused(dirs, unverified_published_files):
    with pytest.raises(CheckpointError, match="is for model lraspp, not fcn8s$") as caught:
        resolve_checkpoint("fcn8s", "lraspp-coco")
    assert caught.value.hint == "pass --model lraspp"
    torch.save(_state(), dirs["hub"] / LRASPP_FILE)
    assert resolve_checkpoint(None, "lraspp-coco").record.model == "lraspp"  # the model comes from the record


def test_default_prefers_published_on_disk_then_shipped_segcli(dirs, unverified_published_files):
    shipped_record = CheckpointRecord(name="lraspp-synth", model="lraspp", dataset="segcli-synth",
                                      categories=("background", "disc", "square"), filename="lraspp-synth.safetensors")
    _add_shipped_record(dirs, shipped_record)
    with pytest.raises(CheckpointError, match="no checkpoint for lraspp on disk: run `segcli weights pull lraspp-coco"):
        resolve_checkpoint("lraspp", None)
    save_segcli_checkpoint(dirs["shipped"] / "lraspp-synth.safetensors", _state(3), shipped_record)
    resolved = resolve_checkpoint("lraspp", None)
    assert (resolved.record.name, resolved.source) == ("lraspp-synth", SOURCE_SHIPPED)
    assert "shipped with segcli" in resolved.describe()
    torch.save(_state(), dirs["hub"] / LRASPP_FILE)
    resolved = resolve_checkpoint("lraspp", None)
    assert (resolved.record.name, resolved.source) == ("lraspp-coco", SOURCE_TORCH_HUB)


def test_model_without_any_record_says_so(dirs):
    path = dirs["shipped"] / "manifest.json"  # every zoo model has a record: take deeplabv1's away
    document = json.loads(path.read_text())
    document["checkpoints"] = [entry for entry in document["checkpoints"] if entry["model"] != "deeplabv1"]
    path.write_text(json.dumps(document))
    with pytest.raises(CheckpointError, match="segcli knows no checkpoint for deeplabv1"):
        resolve_checkpoint("deeplabv1", None)


def test_path_given_builds_a_record_from_the_file(dirs, tmp_path):
    path = tmp_path / "mine.pth"
    torch.save({"model_state": _state(5)}, path)
    resolved = resolve_checkpoint("lraspp", str(path))
    assert resolved.source == SOURCE_PATH and resolved.path == path
    record = resolved.record
    assert record.layout == "deeplabv3plus-pytorch" and record.num_classes == 5
    assert record.categories == tuple(f"class_{index}" for index in range(5))
    assert record.preprocessing == TORCHVISION_PREPROCESSING  # borrowed from lraspp-coco
    voc_path = tmp_path / "voc.pth"
    torch.save(_state(21), voc_path)
    assert resolve_checkpoint("lraspp", str(voc_path)).record.categories == VOC_CLASSES
    with pytest.raises(CheckpointError, match="does not exist"):
        resolve_checkpoint("lraspp", str(tmp_path / "absent.pth"))


def test_path_named_like_a_record_uses_that_record(dirs, tmp_path):
    path = tmp_path / LRASPP_FILE
    torch.save(_state(), path)
    resolved = resolve_checkpoint("lraspp", str(path))
    assert resolved.record.name == "lraspp-coco" and resolved.path == path


def test_segcli_file_carries_its_record_and_refuses_another_model(dirs, tmp_path):
    record = CheckpointRecord(name="tiny", model="lraspp", dataset="segcli-synth",
                              categories=("bg", "fg"), filename="x", palette="cityscapes")
    path = save_segcli_checkpoint(tmp_path / "tiny.safetensors", _state(2), record)
    resolved = resolve_checkpoint("lraspp", str(path))
    assert resolved.record.categories == ("bg", "fg") and resolved.record.palette == "cityscapes"
    with pytest.raises(CheckpointError, match="trained for model lraspp, not fcn8s"):
        resolve_checkpoint("fcn8s", str(path))


@pytest.mark.slow
def test_resolved_segcli_file_loads_into_a_tiny_zoo_model(dirs, tmp_path):
    from segcli.checkpoints.loading import load_checkpoint_model
    from segcli.models import build_model

    torch.manual_seed(0)
    trained = build_model("lraspp", 3, width_mult=0.25).eval()
    record = CheckpointRecord(name="tiny-lraspp", model="lraspp", dataset="segcli-synth",
                              categories=("bg", "disc", "square"), filename="x",
                              model_kwargs=(("width_mult", 0.25),))
    path = save_segcli_checkpoint(tmp_path / "tiny-lraspp.safetensors", trained, record)
    resolved = resolve_checkpoint("lraspp", str(path))
    loaded = load_checkpoint_model(resolved)
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(loaded(x), trained(x))
    other = CheckpointRecord(name="other", model="lraspp", dataset="x", categories=("a", "b"), filename="x",
                             model_kwargs=(("width_mult", 0.25),))
    wrong = save_segcli_checkpoint(tmp_path / "wrong.safetensors", build_model("lraspp", 5, width_mult=0.25), other)
    with pytest.raises(CheckpointError, match=r"wrong\.safetensors does not fit lraspp: .*shape mismatch"):
        load_checkpoint_model(resolve_checkpoint("lraspp", str(wrong)))


@pytest.mark.slow
def test_plain_safetensors_with_sorted_keys_gets_the_class_count_of_the_classifier(tmp_path):
    """safetensors sorts keys, so the last 4-D tensor is `classifier.scale.1.weight`
    (128 channels); the class count must come from the classifier's own key."""
    from safetensors.torch import load_file, save_file

    from segcli.checkpoints.loading import load_checkpoint_model

    shipped = manifest.shipped_weights_dir() / "lraspp-mobilenet-synth.safetensors"
    tensors = load_file(str(shipped))
    assert list(tensors)[-1] == "classifier.scale.1.weight"  # what made the old rule fail
    plain = tmp_path / "resaved.safetensors"
    save_file(tensors, str(plain))  # no segcli record in the metadata
    resolved = resolve_checkpoint("lraspp", str(plain))
    assert resolved.record.num_classes == 9
    assert resolved.record.categories == find_record("lraspp-mobilenet-synth").categories
    model = load_checkpoint_model(resolved)
    original = load_checkpoint_model(resolve_checkpoint("lraspp", str(shipped)))
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(model(x), original(x))


@pytest.mark.parametrize("call", ["default", "named", "pull"])
def test_no_public_download_message_reads_as_one_sentence(dirs, call):
    """A checkpoint without a public download is one sentence (the fcn16s error once ended
    "...`segcli weights add`.), or pass --weights FILE")."""
    from segcli.checkpoints.store import pull_checkpoint

    run = {"default": lambda: resolve_checkpoint("fcn16s", None),
           "named": lambda: resolve_checkpoint("fcn16s", "fcn16s-voc-caffe"),
           "pull": lambda: pull_checkpoint("fcn16s-voc-caffe")}[call]
    with pytest.raises(CheckpointError) as caught:
        run()
    assert "--weights" not in str(caught.value)  # library terms; the command line adds the flag
    message = with_hint(caught.value)
    assert f"put fcn16s_from_caffe.pth in {dirs['cache']}" in message and "--weights FILE" in message
    assert not re.search(r"[.;:,]\s*[.;:,)]", message), message  # no ".)", ".,", "; ." ...
    assert message.count("(") == message.count(")") and not message.endswith(".")
    assert message.count("--weights FILE") == 1
