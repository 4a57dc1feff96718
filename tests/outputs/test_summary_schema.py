"""NAME.json says how the image was segmented (test-time augmentation, tiling, input scales), so two runs
can be told apart, and every summary and RLE file matches the JSON Schemas segcli publishes."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from robustness_support import random_rgb, run_predict, save_image
from schema_support import assert_valid_rle, assert_valid_summary

jsonschema = pytest.importorskip("jsonschema")


@pytest.fixture
def photo(tmp_path):
    return save_image(Image.fromarray(random_rgb(40, 56, 3)), tmp_path / "photo.png")


def _summary(out):
    return json.loads((out / "photo.json").read_text())


def test_tta_tile_and_input_scales_are_recorded_and_runs_can_be_told_apart(tmp_path, photo, tiny_checkpoint):
    plain = run_predict([photo], tmp_path / "plain", tiny_checkpoint, "--outputs", "label,json")
    assert plain.exit_code == 0, plain.stderr
    varied = run_predict([photo], tmp_path / "varied", tiny_checkpoint, "--outputs", "label,json", "--tta", "--tile", "64",
                         "--tile-overlap", "0.5")
    assert varied.exit_code == 0, varied.stderr
    first, second = _summary(tmp_path / "plain"), _summary(tmp_path / "varied")
    assert first["tta"] is None
    assert first["tile"] == {"mode": "auto", "size": None, "overlap": 0.25}
    assert second["tta"] == {"scales": [0.75, 1.0, 1.25], "flip": True}
    assert second["tile"] == {"mode": "size", "size": 64, "overlap": 0.5}
    assert first["input_scales"] == second["input_scales"] == [1.0]
    assert first["size"] == [56, 40]  # [width, height]
    for document in (first, second):
        assert_valid_summary(document)


def test_the_schemas_are_package_data_and_refuse_a_wrong_document():
    from segcli.outputs.schema import load_schema

    summary = load_schema("summary")
    assert summary["properties"]["size"]["description"].startswith("[width, height]")
    bad = {"image": "x", "size": [1, 2, 3]}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, summary)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"info": {}, "images": [], "annotations": [{"id": "one"}]}, load_schema("rle"))


def test_an_rle_file_matches_its_schema(tmp_path, photo, tiny_checkpoint):
    pytest.importorskip("pycocotools")
    result = run_predict([photo], tmp_path / "out", tiny_checkpoint, "--outputs", "rle,json")
    assert result.exit_code == 0, result.stderr
    assert_valid_rle(json.loads((tmp_path / "out" / "photo.rle.json").read_text()))
