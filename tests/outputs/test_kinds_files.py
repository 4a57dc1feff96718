"""The bytes each output kind writes, read back with the peers' readers (Pillow, numpy, json): the provenance
text, the overlay's palette and opacity, the probabilities' dtype, the JSON summary's run fields, and which
files a kind recognises as its own."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segcli.outputs.results import ImageResult, RunInfo
from segcli.outputs.kinds import KINDS, summary_document

CATEGORIES = ("background", "thing", "other")


def _run(**changes) -> RunInfo:
    fields = dict(model="m", checkpoint="c", checkpoint_source="s", device="cpu", precision="fp32",
                  categories=CATEGORIES, palette="voc")
    fields.update(changes)
    return RunInfo(**fields)


def _result(labels: np.ndarray, **changes) -> ImageResult:
    return ImageResult(Path("a.jpg"), np.zeros((*labels.shape, 3), np.uint8), labels, **changes)


def _written(kind: str, result: ImageResult, run: RunInfo) -> bytes:
    handle = io.BytesIO()
    KINDS[kind].write(result, run, handle)
    return handle.getvalue()


def test_label_and_overlay_pngs_name_their_kind_in_their_text_chunk():
    result = _result(np.array([[0, 1], [1, 2]], np.uint8))
    for kind in ("label", "overlay"):
        with Image.open(io.BytesIO(_written(kind, result, _run()))) as image:
            assert image.text == {"segcli": kind}


def test_the_overlay_uses_the_runs_palette_and_opacity():
    labels = np.ones((6, 6), np.uint8)  # one class everywhere: no background, every pixel painted
    run = _run(palette=[(0, 0, 0), (10, 20, 30), (40, 50, 60)], alpha=1.0)
    with Image.open(io.BytesIO(_written("overlay", _result(labels), run))) as image:
        pixels = np.asarray(image.convert("RGB"))
    assert (pixels[:6, :6] == (10, 20, 30)).all()  # alpha 1: the class colour itself, over a black photo


def test_probabilities_are_float16_with_their_categories_and_refused_when_absent():
    probabilities = np.random.default_rng(0).random((3, 2, 2)).astype(np.float32)
    result = _result(np.zeros((2, 2), np.uint8), probabilities=probabilities)
    with np.load(io.BytesIO(_written("probs", result, _run()))) as archive:
        assert archive["probs"].dtype == np.float16
        np.testing.assert_array_equal(archive["probs"], probabilities.astype(np.float16))
        assert archive["categories"].tolist() == list(CATEGORIES)
    with pytest.raises(ValueError) as raised:
        _written("probs", _result(np.zeros((2, 2), np.uint8)), _run())
    assert str(raised.value) == "no probabilities to write: predict with return_probabilities=True"


def test_the_summary_records_the_images_crf_else_the_runs_and_the_run_settings():
    labels = np.array([[0, 1, 1]], np.uint8)
    run = _run(crf={"iterations": 5}, tta={"scales": [1.0], "flip": True}, tile={"mode": "off"},
               input_scales=(0.5, 1))
    summary = summary_document(_result(labels), run)
    assert summary["crf"] == {"iterations": 5}
    assert summary["tta"] == {"scales": [1.0], "flip": True} and summary["tile"] == {"mode": "off"}
    assert summary["input_scales"] == [0.5, 1.0] and all(type(s) is float for s in summary["input_scales"])
    assert summary_document(_result(labels, crf={"iterations": 2}), run)["crf"] == {"iterations": 2}
    assert summary_document(_result(labels), _run())["crf"] is None
    # fractions rounded to 6 places: 1/3 and 2/3 of the pixels
    assert [(c["index"], c["pixel_fraction"]) for c in summary["classes_present"]] == [(0, 0.333333), (1, 0.666667)]


def test_kinds_recognise_only_their_own_files(tmp_path):
    summary, probabilities = tmp_path / "a.json", tmp_path / "a_probs.npz"
    summary.write_text("{not json")
    probabilities.write_bytes(b"not a zip archive")
    assert not KINDS["json"].is_ours(summary) and not KINDS["probs"].is_ours(probabilities)
    summary.write_text(json.dumps({"checkpoint": "c", "classes_present": []}))  # the two keys, nothing else
    assert KINDS["json"].is_ours(summary)
    summary.write_text(json.dumps({"checkpoint": "c"}))
    assert not KINDS["json"].is_ours(summary)
