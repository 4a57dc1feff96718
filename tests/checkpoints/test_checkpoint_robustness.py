"""Bad checkpoints and broken downloads, end to end through `segcli predict` (tiny model, CPU).

The unit-level behaviour is in test_checkpoints_loading.py and test_download.py; here the CLI
must turn each case into one `Error:` line, exit 1, and leave the caches clean.
"""

from __future__ import annotations

import builtins
import dataclasses
import hashlib
import os
from pathlib import Path

import pytest
import torch
from PIL import Image

from robustness_support import (
    FileServer, ServedFile, assert_no_traceback, files_under, output_set, random_rgb, run_predict, save_image,
    save_tiny_checkpoint, segcli_subprocess, tiny_record,
)
from segcli.checkpoints.manifest import user_manifest_path, write_manifest_file


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory) -> Path:
    return save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny-lraspp.safetensors")


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """An empty segcli home (cache + user manifest) and torch hub cache for this test."""
    monkeypatch.setenv("SEGCLI_HOME", str(tmp_path / "segcli-home"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    (tmp_path / "segcli-home" / "checkpoints").mkdir(parents=True)
    return tmp_path / "segcli-home"


@pytest.fixture
def image(tmp_path) -> Path:
    return save_image(Image.fromarray(random_rgb(24, 32, 1)), tmp_path / "in" / "photo.png")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _error_line(result) -> str:
    """The CLI's one `Error:` line (and there is exactly one, and no traceback)."""
    assert_no_traceback(result)
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, result.stderr
    return errors[0]


def _record_in_user_manifest(**changes):
    record = dataclasses.replace(tiny_record("tiny-net"), **changes)
    write_manifest_file(user_manifest_path(), [record])
    return record


def test_cached_file_whose_sha256_differs_from_the_user_record_is_refused(home, image, tiny_file, tmp_path):
    data = tiny_file.read_bytes()
    recorded = _sha256(data + b"the file that was added")
    _record_in_user_manifest(sha256=recorded)
    (home / "checkpoints" / "tiny-net.safetensors").write_bytes(data)
    result = run_predict([image], tmp_path / "out", "tiny-net")
    assert result.exit_code == 1
    line = _error_line(result)
    assert recorded in line and _sha256(data) in line
    assert files_under(tmp_path / "out") == set()


def test_download_whose_sha256_differs_is_refused_and_discarded(home, image, tiny_file, tmp_path):
    data = tiny_file.read_bytes()
    with FileServer() as server:
        server.files["/tiny.safetensors"] = ServedFile(data)
        recorded = _sha256(b"what the record promised")
        _record_in_user_manifest(url=f"{server.url}/tiny.safetensors", sha256=recorded)
        result = run_predict([image], tmp_path / "out", "tiny-net", "--download")
    assert result.exit_code == 1
    line = _error_line(result)
    assert f"has SHA-256 {_sha256(data)}, expected {recorded}" in line
    assert files_under(home / "checkpoints") == set()
    assert files_under(tmp_path / "out") == set()


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_truncated_checkpoint_is_refused(image, tiny_file, tmp_path, suffix):
    if suffix == ".pth":
        full = tmp_path / "full.pth"
        torch.save(torch.nn.Module.state_dict(_tiny_module()), full)
        data = full.read_bytes()
    else:
        data = tiny_file.read_bytes()
    truncated = tmp_path / f"truncated{suffix}"
    truncated.write_bytes(data[: len(data) // 2])
    result = run_predict([image], tmp_path / "out", truncated)
    assert result.exit_code == 1
    line = _error_line(result)
    assert "truncated" in line and str(truncated) in line
    assert files_under(tmp_path / "out") == set()


def _tiny_module():
    from robustness_support import tiny_model

    return tiny_model()


class _WritesMarker:
    """Unpickling this would create a file."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (builtins.open, (self.marker, "w"))


def test_pickle_that_would_run_code_is_refused_and_runs_nothing(image, tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pth"
    state = dict(_tiny_module().state_dict())
    state["payload"] = _WritesMarker(str(marker))
    torch.save(state, evil)
    result = run_predict([image], tmp_path / "out", evil)
    assert result.exit_code == 1
    assert "could run code" in _error_line(result)
    assert not marker.exists()


def test_state_dict_of_another_model_gets_a_key_report(image, tmp_path):
    from segcli.models import build_model

    other = tmp_path / "deeplabv3_mobilenet.pth"
    torch.save(build_model("deeplabv3-mobilenet", 3, width_mult=0.25).state_dict(), other)
    result = run_predict([image], tmp_path / "out", other)
    assert result.exit_code == 1
    line = _error_line(result)
    assert "deeplabv3_mobilenet.pth does not fit lraspp" in line
    assert "missing key" in line and "unexpected" in line and "is it for another model" in line


def test_class_count_that_differs_from_the_record_is_refused(home, image, tiny_file, tmp_path):
    _record_in_user_manifest(categories=("a", "b", "c", "d", "e"))
    (home / "checkpoints" / "tiny-net.safetensors").write_bytes(tiny_file.read_bytes())
    result = run_predict([image], tmp_path / "out", "tiny-net")
    assert result.exit_code == 1
    line = _error_line(result)
    assert "shape mismatch" in line and "checkpoint [3," in line and "model [5," in line


def test_interrupted_download_leaves_nothing_and_a_retry_works(home, image, tiny_file, tmp_path):
    data = tiny_file.read_bytes()
    with FileServer() as server:
        server.files["/tiny.safetensors"] = ServedFile(data, cut_after=len(data) // 3)
        _record_in_user_manifest(url=f"{server.url}/tiny.safetensors", sha256=_sha256(data))
        cut = run_predict([image], tmp_path / "out", "tiny-net", "--download")
        assert cut.exit_code == 1
        assert "run the command again" in _error_line(cut)
        assert files_under(home / "checkpoints") == set()  # no partial file, no .part left
        server.files["/tiny.safetensors"] = ServedFile(data)
        retry = run_predict([image], tmp_path / "out", "tiny-net", "--download")
    assert retry.exit_code == 0, retry.stderr
    assert (home / "checkpoints" / "tiny-net.safetensors").read_bytes() == data
    assert files_under(home / "checkpoints") == {"tiny-net.safetensors"}
    assert files_under(tmp_path / "out") == output_set("photo")


@pytest.mark.slow
def test_two_processes_pulling_the_same_checkpoint_both_end_with_a_good_file(home, tiny_file, tmp_path):
    data = tiny_file.read_bytes()
    with FileServer() as server:
        # ~20 chunks, 50 ms apart: both downloads are in flight at the same time
        server.files["/tiny.safetensors"] = ServedFile(data, chunk_delay_s=0.05)
        _record_in_user_manifest(url=f"{server.url}/tiny.safetensors", sha256=_sha256(data))
        children = []
        for index in range(2):
            picture = save_image(Image.fromarray(random_rgb(16, 16, index)), tmp_path / f"in{index}" / "p.png")
            children.append(segcli_subprocess(
                ["predict", str(picture), "--model", "lraspp", "--weights", "tiny-net", "--download",
                 "--out", str(tmp_path / f"out{index}"), "--device", "cpu", "--precision", "fp32"],
                env={"SEGCLI_HOME": os.environ["SEGCLI_HOME"], "TORCH_HOME": os.environ["TORCH_HOME"]}))
        results = [child.communicate(timeout=300) for child in children]
        requests = list(server.requests)
    for child, (_, stderr) in zip(children, results):
        assert child.returncode == 0, stderr
    assert requests == ["/tiny.safetensors"] * 2  # both really downloaded
    assert (home / "checkpoints" / "tiny-net.safetensors").read_bytes() == data
    assert files_under(home / "checkpoints") == {"tiny-net.safetensors"}
    for index in range(2):
        assert files_under(tmp_path / f"out{index}") == output_set("p")
