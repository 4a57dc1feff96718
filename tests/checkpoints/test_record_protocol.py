"""A checkpoint record carries its authors' test protocol: input scales and CRF settings."""

from __future__ import annotations

import json

import pytest

from segcli.checkpoints.manifest import MANIFEST_FORMAT, MANIFEST_VERSION, read_manifest_file
from segcli.checkpoints.record import CheckpointRecord
from segcli.crf import CRFParams
from segcli.errors import CheckpointError


def _record(**changes) -> CheckpointRecord:
    fields = dict(name="peer", model="deeplabv2", dataset="VOC2012-aug", categories=("a", "b"), filename="peer.pth")
    return CheckpointRecord(**(fields | changes))


def test_protocol_fields_default_to_one_scale_and_segclis_crf() -> None:
    record = _record()
    assert record.input_scales == (1.0,) and record.crf_defaults == ()
    assert record.crf_params() == CRFParams()


def test_protocol_fields_survive_the_dict_round_trip() -> None:
    record = _record(input_scales=(0.5, 0.75, 1.0), crf_defaults=(("bilateral_xy", 140.0), ("iterations", 10)))
    data = json.loads(json.dumps(record.to_dict()))
    assert data["input_scales"] == [0.5, 0.75, 1.0]
    assert data["crf_defaults"] == {"bilateral_xy": 140.0, "iterations": 10}
    assert CheckpointRecord.from_dict(data) == record


def test_old_record_dicts_without_the_fields_still_read() -> None:
    data = _record().to_dict()
    del data["input_scales"], data["crf_defaults"]
    assert CheckpointRecord.from_dict(data) == _record()


def test_crf_defaults_fill_only_what_the_user_did_not_give() -> None:
    record = _record(crf_defaults=(("bilateral_weight", 5.0), ("bilateral_xy", 140.0), ("iterations", 10)))
    params = record.crf_params(bilateral_xy=80.0, gaussian_xy=2.0)
    assert params == CRFParams(iterations=10, bilateral_weight=5.0, bilateral_xy=80.0, gaussian_xy=2.0)


@pytest.mark.parametrize(("changes", "message"), [
    ({"input_scales": [0.5, 0.75]}, "input_scales must include 1.0"),
    ({"input_scales": []}, "input_scales must include 1.0"),
    ({"input_scales": [1.0, -0.5]}, "input_scales must be > 0"),
    ({"crf_defaults": {"bilateral_sigma": 3}}, "bilateral_sigma"),
    ({"crf_defaults": {"iterations": 0}}, "iterations"),
])
def test_manifest_with_a_bad_protocol_is_refused_with_the_entry(tmp_path, changes, message) -> None:
    path = tmp_path / "manifest.json"
    entry = _record().to_dict() | changes
    path.write_text(json.dumps({"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, "checkpoints": [entry]}))
    with pytest.raises(CheckpointError, match=f"checkpoint entry 0: .*{message}"):
        read_manifest_file(path)
