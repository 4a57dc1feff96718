"""Text fields of a record (class names above all) are short and printable, wherever the record comes from.

A record's class names reach the terminal (tables, errors), overlays (the legend) and JSON; a
100,000-character name made 126-megapixel overlays, and an escape sequence or a newline in one
retitled the terminal or forged an `Error:` line.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from PIL import Image

from robustness_support import (WIDE_TERMINAL, assert_no_traceback, random_rgb, run_predict, save_image,
                                save_tiny_checkpoint, tiny_model, tiny_record)
from segcli.checkpoints.record import MAX_CLASS_NAME, CheckpointRecord

HOSTILE_NAMES = {
    "terminal title": "cat\x1b]0;pwned\x07",
    "forged error line": "cat\nError: forged",
    "bidi override": "cat\u202etac",
    "nul": "cat\x00",
    "carriage return": "cat\rdog",
    "too long": "c" * (MAX_CLASS_NAME + 1),
    "100,000 characters": "x" * 100_000,
}


def _with(**change) -> dict:
    return dict(tiny_record().to_dict(), **change)


@pytest.mark.parametrize("case", HOSTILE_NAMES)
def test_hostile_class_name_is_refused_and_the_message_is_printable(case):
    name = HOSTILE_NAMES[case]
    with pytest.raises(ValueError, match=r"categories\[1\]") as caught:
        CheckpointRecord.from_dict(_with(categories=["background", name, "square"]))
    message = str(caught.value)
    assert message.isprintable() and len(message) < 300


def test_class_names_up_to_the_cap_with_spaces_and_letters_are_kept():
    names = ["background", "é" * MAX_CLASS_NAME, "traffic light", "人"]
    assert CheckpointRecord.from_dict(_with(categories=names)).categories == tuple(names)
    assert MAX_CLASS_NAME == 64


@pytest.mark.parametrize("field", ["name", "model", "dataset", "license", "notes"])
def test_control_characters_in_other_text_fields_are_refused(field):
    with pytest.raises(ValueError, match=field) as caught:
        CheckpointRecord.from_dict(_with(**{field: "tiny\x1b[2Jcleared"}))
    assert str(caught.value).isprintable()


def _record_in_safetensors(path, categories):
    from safetensors.torch import save_file

    state = {key: value.contiguous() for key, value in tiny_model().state_dict().items()}
    record = json.dumps(_with(categories=categories))
    save_file(state, str(path), metadata={"format": "pt", "segcli.record": record})
    return path


@pytest.mark.parametrize("case", ["forged error line", "terminal title", "100,000 characters"])
def test_predict_with_hostile_class_names_in_the_metadata_is_one_printable_error(case, tmp_path):
    weights = _record_in_safetensors(tmp_path / "names.safetensors", ["background", HOSTILE_NAMES[case], "square"])
    image = save_image(Image.fromarray(random_rgb(24, 32)), tmp_path / "in.png")
    result = run_predict([image], tmp_path / "out", weights)
    assert_no_traceback(result)
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    errors = [line for line in lines if line.startswith("Error: ")]
    assert len(errors) == 1 and "names.safetensors" in errors[0] and "categories[1]" in errors[0], result.stderr
    assert "\x1b" not in result.stderr and "\x07" not in result.stderr and len(result.stderr) < 1000
    assert not (tmp_path / "out").exists()


def test_weights_add_refuses_a_class_name_with_an_escape_sequence(tmp_path, monkeypatch):
    from segcli.cli.main import cli

    monkeypatch.setenv("SEGCLI_HOME", str(tmp_path / "home"))
    checkpoint = save_tiny_checkpoint(tmp_path / "mine.safetensors")
    result = CliRunner().invoke(cli, ["weights", "add", str(checkpoint), "--name", "mine", "--model", "lraspp",
                                      "--classes", "background,\x1b]0;pwned\x07,square"], env=WIDE_TERMINAL)
    assert_no_traceback(result)
    assert result.exit_code == 1 and "categories[1]" in result.output, result.output
    assert "\x1b" not in result.output and not (tmp_path / "home" / "checkpoints" / "mine.safetensors").exists()


def test_a_file_name_with_a_control_character_is_still_a_valid_record_filename(tmp_path):
    """segcli's own writer stores the file's name; an odd one must not make the file unloadable."""
    from segcli.checkpoints.loading import read_segcli_metadata

    from segcli.checkpoints.saving import save_segcli_checkpoint

    path = save_segcli_checkpoint(tmp_path / "odd\x1bname.safetensors", tiny_model(), tiny_record("plain"))
    assert read_segcli_metadata(path).record.filename == "odd\x1bname.safetensors"


def test_training_to_an_odd_file_name_records_a_printable_name(tmp_path):
    from segcli.training.config import TrainConfig
    from segcli.training.starting import build_record

    config = TrainConfig(model="lraspp", data_dir=str(tmp_path),
                         out=str(tmp_path / "run\x1b]0;t\x07.safetensors"))
    record = build_record(config, ("background", "disc"), "segcli-test")
    assert record.name == "run\\x1b]0;t\\x07" and CheckpointRecord.from_dict(record.to_dict()) == record


def test_weights_add_from_a_file_whose_name_has_a_control_character(tmp_path, monkeypatch):
    from segcli.checkpoints.store import add_checkpoint_file

    monkeypatch.setenv("SEGCLI_HOME", str(tmp_path / "home"))
    odd = save_tiny_checkpoint(tmp_path / "odd.safetensors").rename(tmp_path / "odd\x1bname.safetensors")
    record = add_checkpoint_file(odd, "mine", "lraspp").record
    assert "odd\\x1bname.safetensors" in record.notes and record.notes.isprintable()
