"""Checkpoint records: a record read from a file or a manifest is checked field by field.

A crafted `segcli.record` in a safetensors file's metadata must give one clear error, never a
traceback or NaN outputs.
"""

from __future__ import annotations

import json
import math

import pytest

from robustness_support import assert_no_traceback, random_rgb, run_predict, save_image, tiny_model, tiny_record
from segcli.checkpoints.record import MAX_CLASSES, CheckpointRecord, Preprocessing
from segcli.errors import CheckpointError

# field changes that make a record unusable, and a word the error must contain
CRAFTED = {
    "palette out of range": ({"palette": [[300, -1, 5]] * 3}, "palette"),
    "palette unknown name": ({"palette": "nonsense"}, "palette"),
    "palette too short": ({"palette": [[1, 2, 3]]}, "palette"),
    "std zero": ({"preprocessing": {"mean": [0.5, 0.5, 0.5], "std": [0, 1, 1]}}, "std"),
    "mean not numbers": ({"preprocessing": {"mean": "abc"}}, "mean"),
    "mean NaN": ({"preprocessing": {"mean": [math.nan, 0, 0]}}, "mean"),
    "channel order": ({"preprocessing": {"channel_order": "XYZ"}}, "channel_order"),
    "resize negative": ({"preprocessing": {"resize_shorter": -5}}, "resize_shorter"),
    "input scale NaN": ({"preprocessing": {"input_scale": math.nan}}, "input_scale"),
    "categories a string": ({"categories": "abc"}, "categories"),
    "categories numbers": ({"categories": [1, 2, 3]}, "categories"),
    "categories repeated": ({"categories": ["a", "a", "b"]}, "categories"),
    "absurd class count": ({"categories": [f"c{index}" for index in range(200_000)]}, "classes"),
    "model kwargs a list": ({"model_kwargs": [1, 2]}, "model_kwargs"),
    "model kwargs nested": ({"model_kwargs": {"width_mult": {"a": 1}}}, "model_kwargs"),
    "model a number": ({"model": 5}, "model"),
    "name missing": ({"name": None}, "name"),
    "metrics a list": ({"metrics": [1, 2]}, "metrics"),
    "unknown layout": ({"layout": "caffe"}, "layout"),
}
# fields the record format accepts but the zoo model refuses when it is built or looked up
REFUSED_AT_USE = {
    "model kwarg a list": ({"model_kwargs": {"width_mult": [1]}}, "width_mult"),
    "unknown model": ({"model": "segnet"}, "segnet"),
}


@pytest.mark.parametrize("case", CRAFTED)
def test_crafted_record_field_is_refused_by_name(case):
    change, word = CRAFTED[case]
    data = dict(tiny_record().to_dict(), **change)
    with pytest.raises(ValueError, match=word):
        CheckpointRecord.from_dict(data)


def test_valid_records_round_trip():
    record = tiny_record()
    assert CheckpointRecord.from_dict(json.loads(json.dumps(record.to_dict()))) == record
    caffe = Preprocessing(mean=(104.0, 116.7, 122.7), std=(1.0, 1.0, 1.0), input_scale=255.0, channel_order="BGR")
    assert Preprocessing.from_dict(caffe.to_dict()) == caffe
    explicit = dict(record.to_dict(), palette=[[0, 0, 0], [255, 0, 0], [0, 255, 0]])
    assert CheckpointRecord.from_dict(explicit).palette == ((0, 0, 0), (255, 0, 0), (0, 255, 0))
    assert MAX_CLASSES == 255  # label PNGs hold 0..254; 255 is the ignore label


def _crafted_file(path, metadata_record: str):
    from safetensors.torch import save_file

    state = {key: value.contiguous() for key, value in tiny_model().state_dict().items()}
    save_file(state, str(path), metadata={"format": "pt", "segcli.record": metadata_record})
    return path


@pytest.mark.parametrize("case", ["palette out of range", "std zero", "mean not numbers", "resize negative",
                                  "input scale NaN", "categories numbers", "model kwargs a list", "name missing",
                                  "metrics a list", "absurd class count", *REFUSED_AT_USE])
def test_predict_with_a_crafted_record_says_what_is_wrong_and_writes_nothing(case, tmp_path):
    change, word = {**CRAFTED, **REFUSED_AT_USE}[case]
    weights = _crafted_file(tmp_path / "crafted.safetensors", json.dumps(dict(tiny_record().to_dict(), **change)))
    image = save_image(__import__("PIL.Image").Image.fromarray(random_rgb(24, 32, 1)), tmp_path / "in.png")
    result = run_predict([image], tmp_path / "out", weights)
    assert_no_traceback(result)
    assert result.exit_code == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and "crafted.safetensors" in errors[0] and word in errors[0], result.stderr
    assert not (tmp_path / "out").exists()


def test_record_that_is_not_an_object_is_refused(tmp_path):
    from segcli.checkpoints.loading import read_segcli_metadata

    with pytest.raises(CheckpointError, match=r"crafted\.safetensors.*record"):
        read_segcli_metadata(_crafted_file(tmp_path / "crafted.safetensors", "[1, 2]"))
