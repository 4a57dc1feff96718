"""Library errors in library terms, with the command line's flag as a hint the CLI edge adds."""

from __future__ import annotations

import pickle

import pytest
from click.testing import CliRunner

from segcli.cli.main import cli
from segcli.errors import CheckpointError, InputImageError, SegcliError, with_hint


def test_the_hint_follows_the_message_and_survives_pickling():
    error = InputImageError("a.png is 9x9 = 81 pixels, above the 10 pixels limit (max_pixels)",
                            hint="raise it with --max-pixels")
    assert str(error) == "a.png is 9x9 = 81 pixels, above the 10 pixels limit (max_pixels)"
    assert with_hint(error) == f"{error}; raise it with --max-pixels"
    assert with_hint(SegcliError("no hint")) == "no hint"
    back = pickle.loads(pickle.dumps(error))  # Ray hands errors between processes
    assert type(back) is InputImageError and with_hint(back) == with_hint(error)


def test_a_python_caller_reads_no_flag_and_the_cli_prints_it(tmp_path):
    from segcli.checkpoints.resolve import resolve_checkpoint

    weights = tmp_path / "m.pth"
    weights.write_bytes(b"not read")
    with pytest.raises(CheckpointError) as caught:
        resolve_checkpoint(None, str(weights))
    assert str(caught.value) == "no model given: say which model m.pth is for (model)"
    result = CliRunner().invoke(cli, ["export", "--weights", str(weights), "--out", str(tmp_path / "m.onnx")])
    assert result.exit_code == 1, result.output
    assert result.output.strip().splitlines()[-1] == "Error: no model given: say which model m.pth is for (model); " \
                                                     "pass --model"
