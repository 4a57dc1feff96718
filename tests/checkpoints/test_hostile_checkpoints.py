"""Hostile checkpoint files: zip bombs, legacy pickles that lie, TorchScript archives, huge model options.

Each case must end in one `Error:` line (CheckpointError), fast, without reading the bomb.
"""

from __future__ import annotations

import io
import re
import struct
import time
import zipfile
from pathlib import Path

import pytest
import torch

from robustness_support import random_rgb, run_predict, save_image, tiny_model
from segcli.checkpoints.archive import EXPANSION_FLOOR, uncompressed_bound
from segcli.checkpoints.loading import read_checkpoint_file
from segcli.errors import CheckpointError

BOMB_MEMBER = EXPANSION_FLOOR + 16 * 1024 ** 2  # just over what a tiny file may declare


def _deflated_bomb(path: Path, source: Path) -> Path:
    """`source` (a torch.save zip) re-zipped with one storage replaced by BOMB_MEMBER deflated zeros."""
    chunk = bytes(1024 ** 2)
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as bomb:
        victim = next(info.filename for info in original.infolist() if "/data/" in info.filename)
        for info in original.infolist():
            if info.filename == victim:
                with bomb.open(victim, "w", force_zip64=True) as member:
                    for _ in range(BOMB_MEMBER // len(chunk)):
                        member.write(chunk)
            else:
                bomb.writestr(info.filename, original.read(info.filename))
    return path


@pytest.fixture(scope="module")
def small_pth(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("pth") / "small.pth"
    torch.save({"weight": torch.arange(16.0)}, path)
    return path


@pytest.fixture(scope="module")
def bomb(small_pth, tmp_path_factory) -> Path:
    return _deflated_bomb(tmp_path_factory.mktemp("bomb") / "bomb.pth", small_pth)


def _refusing_torch_load(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("torch.load was called on a zip bomb")
    monkeypatch.setattr(torch, "load", refuse)


def test_zip_bomb_pth_is_refused_before_torch_reads_it(bomb, monkeypatch):
    assert bomb.stat().st_size < 2 * 1024 ** 2  # a small file ...
    declared = sum(info.file_size for info in zipfile.ZipFile(bomb).infolist())
    assert declared > uncompressed_bound(bomb.stat().st_size)  # ... that declares more than the rule allows
    _refusing_torch_load(monkeypatch)
    started = time.perf_counter()
    with pytest.raises(CheckpointError, match=r"refusing to load .*bomb\.pth: its zip entries declare 80\.0 MB "
                                              r"uncompressed"):
        read_checkpoint_file(bomb)
    assert time.perf_counter() - started < 1.0


def test_zip_bomb_state_file_is_refused_by_resume(bomb, tmp_path, monkeypatch):
    from segcli.training.state import read_state

    state = tmp_path / "run.state.pt"
    state.write_bytes(bomb.read_bytes())
    _refusing_torch_load(monkeypatch)
    with pytest.raises(CheckpointError, match=r"refusing to load training state .*run\.state\.pt: its zip entries declare"):
        read_state(state)


def test_a_real_torch_file_passes_the_size_rule(small_pth, tmp_path):
    state = tiny_model().state_dict()
    path = tmp_path / "tiny.pth"
    torch.save(state, path)
    loaded = read_checkpoint_file(path)
    assert set(loaded) == set(state) and all(torch.equal(loaded[key], state[key]) for key in state)
    assert read_checkpoint_file(small_pth)["weight"].tolist() == list(range(16))


def test_zip_bomb_pth_through_predict_is_one_error_line(bomb, tmp_path):
    image = save_image(__import__("PIL.Image").Image.fromarray(random_rgb(24, 32)), tmp_path / "in.png")
    result = run_predict([image], tmp_path / "out", bomb)
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and "declare 80.0 MB uncompressed" in errors[0], result.stderr
    assert "Traceback" not in result.stderr


def _legacy_file_claiming(numel: int) -> bytes:
    """A legacy (non-zip) torch file whose pickle declares a storage of `numel` floats; 10 are stored."""
    buffer = io.BytesIO()
    torch.save({"weight": torch.zeros(10)}, buffer, _use_new_zipfile_serialization=False)
    data = buffer.getvalue()
    found = re.search(rb"cpu(q.)K\n", data)  # the storage's element count, pickled as BININT1 10
    return data[:found.start()] + b"cpu" + found.group(1) + b"J" + struct.pack("<i", numel) + data[found.end():]


def test_legacy_file_that_declares_more_than_it_holds_fails_fast(tmp_path):
    path = tmp_path / "legacy.pth"
    path.write_bytes(_legacy_file_claiming(10))
    assert read_checkpoint_file(path)["weight"].tolist() == [0.0] * 10  # the patch keeps a valid file valid
    path.write_bytes(_legacy_file_claiming(2_000_000_000))
    started = time.perf_counter()
    with pytest.raises(CheckpointError, match=r"cannot read .*legacy\.pth.*wrong byte size") as caught:
        read_checkpoint_file(path)
    assert time.perf_counter() - started < 1.0 and "\n" not in str(caught.value)


# --- TorchScript files --------------------------------------------------------------------------

def _torchscript_file(path: Path, with_segcli_metadata: bool) -> Path:
    module = torch.jit.trace(torch.nn.Conv2d(3, 2, 1).eval(), torch.zeros(1, 3, 8, 8))
    extra = {"segcli.json": "{}"} if with_segcli_metadata else {}
    torch.jit.save(module, str(path), _extra_files=extra)
    return path


@pytest.mark.parametrize("from_segcli", [True, False])
def test_torchscript_file_is_named_as_such_and_never_quotes_torchs_hint(tmp_path, from_segcli):
    path = _torchscript_file(tmp_path / "graph.pt", from_segcli)
    with pytest.raises(CheckpointError) as caught:
        read_checkpoint_file(path)
    message = str(caught.value)
    assert message.startswith(f"{path} is a TorchScript module")
    assert ("written by segcli export" in message) == from_segcli
    assert "use the checkpoint it was exported from, or the ONNX export" in message
    assert "weights_only" not in message and "truncated" not in message


def test_torchscript_state_file_is_refused_by_resume_without_torchs_hint(tmp_path):
    from segcli.training.state import read_state

    path = _torchscript_file(tmp_path / "run.state.pt", True)
    with pytest.raises(CheckpointError) as caught:
        read_state(path)
    message = str(caught.value).replace(str(path), "FILE")
    assert message.startswith("training state FILE is a TorchScript module") and "weights_only" not in message


def test_no_torch_weights_only_hint_for_a_pickle_of_other_objects(tmp_path):
    """torch's UnpicklingError advises weights_only=False; neither reader repeats that advice."""
    from segcli.training.state import read_state

    path = tmp_path / "objects.state.pt"
    torch.save({"iteration": 1, "segcli_record": {}, "optimizer_state": {}, "odd": torch.nn.ReLU()}, path)
    for read in (read_checkpoint_file, read_state):
        with pytest.raises(CheckpointError) as caught:
            read(path)
        message = str(caught.value).replace(str(path), "FILE")  # the test's folder name says weights_only
        assert "weights_only" not in message and "\n" not in message


# --- model options in a crafted record ----------------------------------------------------------

def _crafted_record_file(path: Path, **model_kwargs) -> Path:
    """The tiny model's weights under a record whose model_kwargs say something else."""
    import dataclasses

    from robustness_support import tiny_record
    from segcli.checkpoints.saving import save_segcli_checkpoint

    record = dataclasses.replace(tiny_record(path.stem), model_kwargs=tuple(sorted(model_kwargs.items())))
    return save_segcli_checkpoint(path, tiny_model(), record)


def _watch_builds(monkeypatch) -> list[str]:
    """The device type each zoo model is built on (meta: shapes only, no memory)."""
    import segcli.models

    devices: list[str] = []
    real_build = segcli.models.build_model

    def build(*args, **kwargs):
        devices.append(torch.empty(0).device.type)
        return real_build(*args, **kwargs)
    monkeypatch.setattr(segcli.models, "build_model", build)
    return devices


def _load(path: Path):
    from segcli.checkpoints.loading import load_checkpoint_model
    from segcli.checkpoints.resolve import resolve_checkpoint

    return load_checkpoint_model(resolve_checkpoint("lraspp", str(path)))


def test_record_options_that_do_not_fit_the_weights_are_refused_before_a_real_build(tmp_path, monkeypatch):
    path = _crafted_record_file(tmp_path / "wide.safetensors", width_mult=4.0)  # the weights are width 0.25
    devices = _watch_builds(monkeypatch)
    with pytest.raises(CheckpointError, match=r"checkpoint wide\.safetensors does not fit lraspp: .*shape mismatch"):
        _load(path)
    assert devices and set(devices) == {"meta"}


def test_record_options_for_a_huge_model_are_refused_by_parameter_count(tmp_path, monkeypatch):
    path = _crafted_record_file(tmp_path / "huge.safetensors", width_mult=1000.0)
    devices = _watch_builds(monkeypatch)
    started = time.perf_counter()
    with pytest.raises(CheckpointError, match=r"huge\.safetensors cannot be loaded: lraspp with \{'width_mult': "
                                              r"1000\.0\} would have [\d,]+ parameters \(more than 1,000,000,000\)"):
        _load(path)
    assert set(devices) == {"meta"} and time.perf_counter() - started < 10


def test_record_options_that_break_the_builder_are_one_checkpoint_error(tmp_path):
    path = _crafted_record_file(tmp_path / "negative.safetensors", width_mult=-1.0)
    with pytest.raises(CheckpointError, match=r"negative\.safetensors cannot be loaded: .*width_mult"):
        _load(path)


def test_a_fitting_record_still_loads_the_file_weights(tmp_path, monkeypatch):
    from robustness_support import save_tiny_checkpoint

    path = save_tiny_checkpoint(tmp_path / "tiny.safetensors")
    devices = _watch_builds(monkeypatch)
    model = _load(path)
    expected = tiny_model().state_dict()
    assert all(torch.equal(value, expected[key]) for key, value in model.state_dict().items())
    assert devices[-1] == "cpu" and "meta" in devices and not model.training


@pytest.mark.slow
def test_predict_with_segclis_own_torchscript_export_says_what_it_is(tiny_checkpoint, tmp_path):
    from click.testing import CliRunner

    from robustness_support import WIDE_TERMINAL
    from segcli.cli.main import cli

    exported = tmp_path / "tiny.pt"
    made = CliRunner().invoke(cli, ["export", "--model", "lraspp", "--weights", str(tiny_checkpoint), "--out",
                                    str(exported), "--size", "32", "--no-verify"], env=WIDE_TERMINAL)
    assert made.exit_code == 0, made.output
    image = save_image(__import__("PIL.Image").Image.fromarray(random_rgb(24, 32)), tmp_path / "in.png")
    result = run_predict([image], tmp_path / "out", exported)
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert errors == [f"Error: {exported} is a TorchScript module (written by segcli export); TorchScript files are "
                      f"not loaded as checkpoints because they carry code: use the checkpoint it was exported "
                      f"from, or the ONNX export"], result.stderr
    assert "weights_only" not in result.stderr.replace(str(tmp_path), "") and "Traceback" not in result.stderr
