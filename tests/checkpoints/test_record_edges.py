"""Edges of checkpoint record parsing: defaults, bounds, and the words of each refusal.

A record's JSON comes from files segcli does not control (a manifest, safetensors metadata), so every
field is checked; these tests pin the limits (each side of each bound) and what a missing field means.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from robustness_support import tiny_record
from segcli.checkpoints.record import (IMAGENET_MEAN, IMAGENET_STD, MAX_CLASSES, MAX_RESIZE, MAX_TEXT_FIELD,
                                       CheckpointRecord, Preprocessing, ResolvedCheckpoint, finite_numbers,
                                       parse_record)
from segcli.crf import CRFParams
from segcli.errors import CheckpointError


def _with(**change) -> dict:
    return dict(tiny_record().to_dict(), **change)


def _without(*keys) -> dict:
    data = tiny_record().to_dict()
    for key in keys:
        del data[key]
    return data


# --- Preprocessing.from_dict -------------------------------------------------------------------------

def test_empty_preprocessing_is_imagenet_rgb_at_scale_one_without_resize():
    read = Preprocessing.from_dict({})
    assert read.mean == IMAGENET_MEAN and read.std == IMAGENET_STD
    assert read.input_scale == 1.0 and read.channel_order == "RGB" and read.resize_shorter is None


def test_every_preprocessing_field_given_is_the_one_kept():
    data = {"mean": [1, 2, 3], "std": [0.5, 2, 3], "input_scale": 0.5, "channel_order": "BGR", "resize_shorter": 7}
    read = Preprocessing.from_dict(data)
    assert read == Preprocessing(mean=(1.0, 2.0, 3.0), std=(0.5, 2.0, 3.0), input_scale=0.5, channel_order="BGR",
                                 resize_shorter=7)
    assert all(type(value) is float for value in (*read.mean, *read.std, read.input_scale))


@pytest.mark.parametrize(("changes", "message"), [
    ({"input_scale": 0}, r"preprocessing\.input_scale must be positive, got 0\.0"),
    ({"input_scale": -1.0}, r"preprocessing\.input_scale must be positive"),
    ({"input_scale": "1"}, r"preprocessing\.input_scale must be 1 finite number, got \['1'\]"),
    ({"input_scale": True}, r"preprocessing\.input_scale must be 1 finite number"),
    ({"std": [0.5, 0.0, 1.0]}, r"preprocessing\.std must be positive \(it divides the pixels\), got \[0\.5, 0\.0, 1\.0\]"),
    ({"std": [1.0, 1.0, -0.1]}, r"preprocessing\.std must be positive"),
    ({"std": [1.0, 1.0]}, r"preprocessing\.std must be 3 finite numbers, got \[1\.0, 1\.0\]"),
    ({"mean": [0.1, 0.2, 0.3, 0.4]}, r"preprocessing\.mean must be 3 finite numbers"),
    ({"mean": [True, 0.2, 0.3]}, r"preprocessing\.mean must be 3 finite numbers"),
    ({"mean": [float("inf"), 0.2, 0.3]}, r"preprocessing\.mean must be 3 finite numbers"),
    ({"channel_order": "rgb"}, r"preprocessing\.channel_order must be RGB or BGR, got 'rgb'"),
    ({"resize_shorter": 0}, r"preprocessing\.resize_shorter must be empty or a whole number of pixels in "
                            rf"1\.\.{MAX_RESIZE}, got 0"),
    ({"resize_shorter": MAX_RESIZE + 1}, r"preprocessing\.resize_shorter"),
    ({"resize_shorter": 520.0}, r"preprocessing\.resize_shorter"),
    ({"resize_shorter": True}, r"preprocessing\.resize_shorter"),
])
def test_bad_preprocessing_is_refused_naming_the_field_and_the_value(changes, message):
    with pytest.raises(ValueError, match=f"^{message}"):
        Preprocessing.from_dict(changes)


def test_an_input_scale_of_zero_never_reaches_a_record():
    """A scale of 0 makes every input pixel 0 (the model sees a constant image): refused with the record."""
    with pytest.raises(CheckpointError, match="manifest.json: preprocessing.input_scale must be positive"):
        parse_record(_with(preprocessing={"input_scale": 0.0}), "manifest.json")


@pytest.mark.parametrize("resize", [1, MAX_RESIZE])
def test_resize_bounds_are_accepted(resize):
    assert Preprocessing.from_dict({"resize_shorter": resize}).resize_shorter == resize


def test_small_positive_std_and_scale_are_accepted():
    read = Preprocessing.from_dict({"std": [0.01, 0.5, 1.0], "input_scale": 0.001})
    assert read.std == (0.01, 0.5, 1.0) and read.input_scale == 0.001


def test_preprocessing_must_be_an_object_with_text_keys():
    with pytest.raises(ValueError, match="^preprocessing must be a JSON object, got list$"):
        Preprocessing.from_dict([1, 2])
    with pytest.raises(ValueError, match="^preprocessing must be a JSON object, got dict$"):
        Preprocessing.from_dict({1: 2})


# --- _numbers (also exported as finite_numbers) ------------------------------------------------------

def test_finite_numbers_any_count_and_its_message():
    assert finite_numbers([1, 2.5], "x", None) == (1.0, 2.5)
    assert finite_numbers([], "x", None) == ()
    with pytest.raises(ValueError, match=r"^x must be a list of finite numbers, got \[1, nan\]$"):
        finite_numbers([1, float("nan")], "x", None)
    with pytest.raises(ValueError, match=r"^x must be 1 finite number, got \[False\]$"):
        finite_numbers([False], "x", 1)


def test_the_refused_value_is_shown_cut_at_80_characters():
    value = list(range(100))
    with pytest.raises(ValueError) as caught:
        finite_numbers(value, "x", 3)
    assert str(caught.value) == f"x must be 3 finite numbers, got {str(value)[:80]}"


# --- CheckpointRecord.from_dict: defaults of missing fields --------------------------------------------

def test_missing_optional_fields_take_their_defaults():
    data = _without("layout", "palette", "preprocessing", "url", "sha256", "model_kwargs", "metrics", "license",
                    "notes", "dataset", "input_scales", "crf_defaults")
    read = CheckpointRecord.from_dict(data)
    assert (read.layout, read.palette, read.preprocessing, read.url, read.sha256) == (
        "segcli", "voc", Preprocessing(), None, None)
    assert (read.model_kwargs, read.metrics, read.license, read.notes, read.dataset) == ((), (), "unknown", "",
                                                                                         "unknown")
    assert read.input_scales == (1.0,) and read.crf_defaults == ()


def test_null_mappings_read_as_empty():
    read = CheckpointRecord.from_dict(_with(model_kwargs=None, metrics=None, crf_defaults=None, url=None))
    assert read.model_kwargs == () and read.metrics == () and read.crf_defaults == () and read.url is None


def test_every_given_field_is_kept():
    data = _with(layout="torchvision", palette="cityscapes", url="https://example.org/w.pth", sha256="0123abcd",
                 model_kwargs={"b": [1, "x", None, True], "a": 2}, metrics={"miou": 0.5, "a": 1}, license="MIT",
                 notes="n", dataset="VOC2012-aug", input_scales=[0.5, 1.0], crf_defaults={"iterations": 3},
                 preprocessing={"input_scale": 255.0})
    read = CheckpointRecord.from_dict(data)
    assert (read.layout, read.palette, read.url, read.sha256) == ("torchvision", "cityscapes",
                                                                 "https://example.org/w.pth", "0123abcd")
    assert read.model_kwargs == (("a", 2), ("b", (1, "x", None, True)))
    assert read.metrics == (("a", 1), ("miou", 0.5)) and read.license == "MIT" and read.notes == "n"
    assert read.dataset == "VOC2012-aug" and read.input_scales == (0.5, 1.0)
    assert read.crf_defaults == (("iterations", 3),) and read.preprocessing.input_scale == 255.0


def test_to_dict_is_the_json_form_field_by_field():
    record = CheckpointRecord(name="n", model="m", dataset="d", categories=("a", "b"), filename="f.pth",
                              layout="torchvision", palette=((1, 2, 3), (4, 5, 6)), url="u", sha256="abcdef01",
                              model_kwargs=(("k", 1),), metrics=(("miou", 0.5),), license="L", notes="N",
                              input_scales=(1.0, 1.5), crf_defaults=(("iterations", 2),))
    assert record.to_dict() == {
        "name": "n", "model": "m", "dataset": "d", "categories": ["a", "b"], "filename": "f.pth",
        "layout": "torchvision", "palette": [[1, 2, 3], [4, 5, 6]], "preprocessing": Preprocessing().to_dict(),
        "url": "u", "sha256": "abcdef01", "model_kwargs": {"k": 1}, "metrics": {"miou": 0.5}, "license": "L",
        "notes": "N", "input_scales": [1.0, 1.5], "crf_defaults": {"iterations": 2},
    }
    assert Preprocessing(resize_shorter=9).to_dict() == {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
                                                         "input_scale": 1.0, "channel_order": "RGB",
                                                         "resize_shorter": 9}


# --- CheckpointRecord.from_dict: refusals ----------------------------------------------------------------

@pytest.mark.parametrize(("changes", "message"), [
    ({"layout": "Segcli"}, r"^layout must be one of .*segcli.*, got 'Segcli'$"),
    ({"sha256": "0123abc"}, r"^sha256 must be 8 to 64 lowercase hex digits, got '0123abc'$"),
    ({"sha256": "0123ABCD"}, r"^sha256 must be 8 to 64 lowercase hex digits"),
    ({"sha256": "a" * 65}, r"^sha256 must be"),
    ({"sha256": "0123abcd\n"}, r"^sha256 must be"),
    ({"filename": "dir/f.pth"}, r"^filename must be a bare file name, got 'dir/f.pth'$"),
    ({"filename": "dir\\f.pth"}, r"^filename must be a bare file name"),
    ({"filename": "."}, r"^filename must be a bare file name"),
    ({"filename": ".."}, r"^filename must be a bare file name"),
    ({"filename": ""}, r"^filename must be a non-empty string, got $"),
    ({"name": ""}, r"^name must be a non-empty string, got $"),
    ({"name": 5}, r"^name must be a non-empty string, got 5$"),
    ({"license": 5}, r"^license must be a string, got 5$"),
    ({"notes": ["x"]}, r"^notes must be a string, got \['x'\]$"),
    ({"url": 1}, r"^url must be a non-empty string"),
    ({"metrics": {1: 2}}, r"^metrics must be a JSON object, got dict$"),
    ({"model_kwargs": {"a": [[1]]}}, r"^model_kwargs\.a must be a number, a string, true/false or a list of them, "
                                     r"got \[\[1\]\]$"),
    ({"crf_defaults": {"a": {}}}, r"^crf_defaults\.a must be a number"),
    ({"input_scales": "1"}, r"^input_scales must be a list of finite numbers, got 1$"),
])
def test_bad_record_fields_are_refused_with_their_message(changes, message):
    with pytest.raises(ValueError, match=message):
        CheckpointRecord.from_dict(_with(**changes))


@pytest.mark.parametrize("sha256", ["0123abcd", "f" * 64])
def test_sha256_of_8_and_64_digits_are_accepted(sha256):
    assert CheckpointRecord.from_dict(_with(sha256=sha256)).sha256 == sha256


@pytest.mark.parametrize("filename", ["...", "a.b", "odd\x1bname.pth", "x" * MAX_TEXT_FIELD])
def test_odd_but_bare_file_names_are_accepted(filename):
    assert CheckpointRecord.from_dict(_with(filename=filename)).filename == filename


def test_empty_text_is_fine_where_a_default_exists_and_text_has_a_length_limit():
    assert CheckpointRecord.from_dict(_with(notes="", license="")).notes == ""
    assert CheckpointRecord.from_dict(_with(notes="n" * MAX_TEXT_FIELD)).notes == "n" * MAX_TEXT_FIELD
    with pytest.raises(ValueError, match=f"^notes must be one line of at most {MAX_TEXT_FIELD} printable"):
        CheckpointRecord.from_dict(_with(notes="n" * (MAX_TEXT_FIELD + 1)))
    with pytest.raises(ValueError, match=f"^filename must be one line of at most {MAX_TEXT_FIELD}"):
        CheckpointRecord.from_dict(_with(filename="f" * (MAX_TEXT_FIELD + 1)))


def test_a_long_bad_text_is_shown_cut_at_40_characters():
    with pytest.raises(ValueError) as caught:
        CheckpointRecord.from_dict(_with(name="x" * 45 + "\x1b"))
    assert str(caught.value).endswith(f"got '{'x' * 40}...'")
    with pytest.raises(ValueError) as caught:
        CheckpointRecord.from_dict(_with(name="x" * 39 + "\x1b"))
    assert str(caught.value).endswith(f"got '{'x' * 39}\\x1b'")


def test_the_record_must_be_an_object():
    with pytest.raises(ValueError, match="^the record must be a JSON object, got str$"):
        CheckpointRecord.from_dict("{}")


# --- categories and palette -------------------------------------------------------------------------------

def test_class_count_bounds():
    names = [f"c{index}" for index in range(MAX_CLASSES)]
    assert CheckpointRecord.from_dict(_with(categories=names, palette="voc")).num_classes == MAX_CLASSES
    assert CheckpointRecord.from_dict(_with(categories=["only"])).num_classes == 1
    for count in (0, MAX_CLASSES + 1):
        with pytest.raises(ValueError, match=f"^categories lists {count} classes; segcli handles 1 to {MAX_CLASSES}"):
            CheckpointRecord.from_dict(_with(categories=[f"c{index}" for index in range(count)]))


def test_category_refusals_name_the_problem():
    with pytest.raises(ValueError, match=r"^categories must be a list of class names, got \['a', ''\]$"):
        CheckpointRecord.from_dict(_with(categories=["a", ""]))
    with pytest.raises(ValueError, match=r"^categories repeats a class name: \['a', 'b'\]$"):
        CheckpointRecord.from_dict(_with(categories=["b", "a", "c", "a", "b"]))
    with pytest.raises(ValueError, match=r"^categories\[2\] has 65 characters \(at most 64\): 'x{40}\.\.\.'; class "
                                         r"names are at most 64 printable characters$"):
        CheckpointRecord.from_dict(_with(categories=["a", "b", "x" * 65]))
    with pytest.raises(ValueError, match=r"^categories\[0\] holds control, bidi or line-break characters"):
        CheckpointRecord.from_dict(_with(categories=["a\tb", "c"]))


def test_explicit_palette_bounds():
    three = [[0, 0, 0], [255, 255, 255], [1, 2, 3]]
    assert CheckpointRecord.from_dict(_with(palette=three)).palette == tuple(map(tuple, three))
    assert len(CheckpointRecord.from_dict(_with(palette=[[5, 5, 5]] * 256)).palette) == 256
    for bad in ([[5, 5, 5]] * 257, [[0, 0, 256]] * 3, [[0, -1, 0]] * 3, [[0, 0]] * 3, [[0, 0, 0, 0]] * 3,
                [[True, 0, 0]] * 3, [[0.0, 0, 0]] * 3, [(0, 0, 0)] * 3, 7):
        with pytest.raises(ValueError, match=r"^palette must be a palette name or one \[r, g, b\] \(0\.\.255 each\) "
                                             r"per class \(3\), got "):
            CheckpointRecord.from_dict(_with(palette=bad))


def test_unknown_palette_name_is_refused_with_the_palette_message():
    with pytest.raises(ValueError, match="^palette: .*nonsense"):
        CheckpointRecord.from_dict(_with(palette="nonsense"))


# --- the rest of the record -------------------------------------------------------------------------------

def test_crf_params_ignore_settings_given_as_none_and_refuse_unknown_ones():
    record = CheckpointRecord.from_dict(_with(crf_defaults={"iterations": 3}))
    assert record.crf_params(iterations=None, bilateral_xy=None) == CRFParams(iterations=3)
    with pytest.raises(ValueError, match="^crf_defaults: unknown CRF setting alpha, beta$"):
        record.crf_params(beta=1, alpha=2)
    with pytest.raises(ValueError, match="^crf_defaults: unknown CRF setting zeta$"):
        CheckpointRecord(name="n", model="m", dataset="d", categories=("a",), filename="f",
                         crf_defaults=(("zeta", 1),))


def test_miou_measured_on_follows_the_metric_then_the_dataset():
    assert CheckpointRecord.from_dict(_with(dataset="VOC2012-aug")).miou_measured_on == "VOC 2012 val"
    assert CheckpointRecord.from_dict(_with(dataset="mine")).miou_measured_on == "mine"
    record = CheckpointRecord.from_dict(_with(dataset="VOC2012-aug", metrics={"miou_on": "VOC 2007 test"}))
    assert record.miou_measured_on == "VOC 2007 test" and record.metric_dict == {"miou_on": "VOC 2007 test"}


def test_parse_record_names_the_origin_in_one_checkpoint_error():
    with pytest.raises(CheckpointError) as caught:
        parse_record(_with(layout="x"), "weights.safetensors")
    assert str(caught.value).startswith("weights.safetensors: layout must be one of ")
    assert parse_record(json.loads(json.dumps(tiny_record().to_dict())), "x") == tiny_record()


def test_resolved_checkpoint_describes_its_source():
    resolved = ResolvedCheckpoint(tiny_record(), Path("/w/tiny.safetensors"), "torch-hub-cache")
    assert resolved.describe() == "weights: tiny-lraspp (torch hub cache: /w/tiny.safetensors)"


@pytest.mark.parametrize("text", ["VOC\x1b]0;pwned\x07", "VOC\nError: forged", "", 7])
def test_the_miou_on_text_must_be_one_printable_line(text):
    """`segcli weights list` prints a record's "miou_on" metric: an escape sequence there retitled the terminal."""
    with pytest.raises(ValueError, match="^metrics.miou_on must be"):
        CheckpointRecord.from_dict(_with(metrics={"miou": 0.5, "miou_on": text}))


def test_weights_list_with_a_hostile_miou_on_in_the_users_manifest_is_one_error(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from segcli.checkpoints.manifest import MANIFEST_FORMAT, MANIFEST_VERSION
    from segcli.cli.main import cli

    home = tmp_path / "home"
    home.mkdir()
    entry = _with(name="evil", metrics={"miou": 0.5, "miou_on": "VOC\x1b]0;pwned\x07"})
    (home / "manifest.json").write_text(json.dumps({"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION,
                                                    "checkpoints": [entry]}))
    monkeypatch.setenv("SEGCLI_HOME", str(home))
    result = CliRunner().invoke(cli, ["weights", "list"])
    assert result.exit_code == 1 and "\x1b" not in result.output, result.output
    assert "metrics.miou_on" in result.output


def test_every_allowed_class_name_is_checked_and_a_longer_list_is_refused_by_its_length():
    """The names are checked up to one past the limit: the last allowed one too; past it the count decides."""
    names = [f"c{index}" for index in range(MAX_CLASSES)]
    with pytest.raises(ValueError, match=rf"^categories\[{MAX_CLASSES - 1}\] holds control"):
        CheckpointRecord.from_dict(_with(categories=[*names[:-1], "bad\x1b"]))
    with pytest.raises(ValueError, match=rf"^categories\[{MAX_CLASSES}\] holds control"):
        CheckpointRecord.from_dict(_with(categories=[*names, "bad\x1b"]))
    with pytest.raises(ValueError, match=rf"^categories lists {MAX_CLASSES + 2} classes"):
        CheckpointRecord.from_dict(_with(categories=[*names, "ok", "bad\x1b"]))


def test_long_refused_values_are_shown_cut_at_80_characters():
    long_text = "y" * 100
    with pytest.raises(ValueError) as caught:
        CheckpointRecord.from_dict(_with(categories=long_text))
    assert str(caught.value) == f"categories must be a list of class names, got {'y' * 80}"
    palette = [[1, 2, 3]] * 40
    with pytest.raises(ValueError) as caught:
        CheckpointRecord.from_dict(_with(palette=[[1, 2, 300]] + palette))
    assert str(caught.value).endswith(f"(3), got {str([[1, 2, 300]] + palette)[:80]}")
    with pytest.raises(ValueError) as caught:
        CheckpointRecord.from_dict(_with(name=list(range(50))))
    assert str(caught.value) == f"name must be a non-empty string, got {repr(list(range(50)))[:80]}"


def test_the_layout_refusal_lists_the_layouts():
    from segcli.checkpoints.record import LAYOUTS

    with pytest.raises(ValueError) as caught:
        CheckpointRecord.from_dict(_with(layout="caffe"))
    assert str(caught.value) == f"layout must be one of {', '.join(LAYOUTS)}, got 'caffe'"


def test_two_numbers_are_plural():
    with pytest.raises(ValueError, match=r"^x must be 2 finite numbers, got \[1\]$"):
        finite_numbers([1], "x", 2)


def test_a_record_built_in_python_keeps_its_input_scales_as_a_tuple_of_floats():
    record = CheckpointRecord(name="n", model="m", dataset="d", categories=("a",), filename="f",
                              input_scales=[0.5, 1])
    assert record.input_scales == (0.5, 1.0) and type(record.input_scales) is tuple
    assert all(type(scale) is float for scale in record.input_scales)
