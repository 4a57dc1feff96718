"""Odd option values and environment give one clear line, never a traceback.

Flag values out of range are click usage errors (exit 2) raised before anything is written or
loaded; problems found later (an unwritable folder, a bad SEGCLI_HOME) are `Error: ...`, exit 1.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from mixed_classes import save_balanced_checkpoint
from robustness_support import assert_no_traceback, random_rgb, run_predict, save_image
from segcli.cli.main import cli


def invoke(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(cli, list(args), env=env)


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return save_balanced_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny-lraspp.safetensors")


@pytest.mark.parametrize("flag, value, said", [
    ("--size", "100000x100000", "too large"), ("--size", "²", "not a size"), ("--size", "٣٢", "not a size"),
    ("--n", "10000000000", "10000000000"),
])
def test_synth_refuses_huge_or_odd_values_before_writing_anything(tmp_path, flag, value, said):
    out = tmp_path / "scenes"
    result = invoke("data", "synth", "--out", str(out), flag, value)
    assert result.exit_code == 2, result.output
    assert said in result.output
    assert_no_traceback(result)
    assert not out.exists()  # no folder skeleton left behind


def test_synth_into_a_folder_it_cannot_create_is_one_error_line(tmp_path):
    (tmp_path / "a-file").write_text("mine")
    result = invoke("data", "synth", "--out", str(tmp_path / "a-file" / "scenes"), "--n", "2", "--size", "16")
    assert result.exit_code == 1, result.output
    assert_no_traceback(result)
    assert re.search(r"^Error: cannot write .*a-file/scenes.*\n\Z", result.output), result.output
    assert (tmp_path / "a-file").read_text() == "mine"


def test_a_synth_run_that_fails_leaves_no_skeleton_and_the_rerun_works(tmp_path, monkeypatch):
    import segcli.data.synth as synth

    out = tmp_path / "scenes"

    def disk_full(*_args, **_kwargs):
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(synth, "encode_jpeg", disk_full)
        failed = invoke("data", "synth", "--out", str(out), "--n", "2", "--size", "16")
    assert failed.exit_code == 1 and "No space left on device" in failed.output, failed.output
    assert_no_traceback(failed)
    assert not out.exists()
    rerun = invoke("data", "synth", "--out", str(out), "--n", "2", "--size", "16")
    assert rerun.exit_code == 0, rerun.output
    assert (out / "dataset.json").is_file()


def test_a_failed_synth_run_keeps_what_the_user_had_in_the_folder(tmp_path, monkeypatch):
    import segcli.data.synth as synth

    out = tmp_path / "scenes"
    (out / "JPEGImages").mkdir(parents=True)
    (out / "notes.txt").write_text("mine")
    monkeypatch.setattr(synth, "encode_jpeg", lambda *_: (_ for _ in ()).throw(OSError(28, "No space left")))
    assert invoke("data", "synth", "--out", str(out), "--n", "2", "--size", "16").exit_code == 1
    assert (out / "notes.txt").read_text() == "mine" and (out / "JPEGImages").is_dir()


@pytest.mark.parametrize("command, option", [
    (["data", "synth"], "--size"), (["data", "synth"], "--n"), (["train"], "--crop"), (["benchmark"], "--sizes"),
])
def test_help_states_the_limits(command, option):
    result = invoke(*command, "--help")
    text = re.sub(r"\s+", " ", result.output)
    entry = text[text.index(option):][:400]
    assert re.search(r"<=\d+\]|to \d+ pixels", entry), entry


@pytest.mark.parametrize("args, said", [
    (["--scale-range", "inf,inf"], "finite"), (["--scale-range", "0.5,nan"], "finite"),
    (["--crop", "60000x60000"], "too large"),
])
def test_train_refuses_odd_values_before_loading_anything(tmp_path, args, said):
    result = invoke("train", "--model", "deeplabv1", "--data", str(tmp_path), "--out", str(tmp_path / "m.safetensors"),
                    "--iters", "1", *args)
    assert result.exit_code == 2, result.output
    assert said in result.output
    assert_no_traceback(result)


def test_benchmark_refuses_a_huge_size():
    result = invoke("benchmark", "--sizes", "30000", "--models", "fcn8s")
    assert result.exit_code == 2, result.output
    assert "too large" in result.output
    assert_no_traceback(result)


def test_segcli_home_with_an_unknown_users_tilde_is_one_error_line():
    result = invoke("weights", "list", env={"SEGCLI_HOME": "~nosuchuser-segcli/x"})
    assert result.exit_code == 1, result.output
    assert_no_traceback(result)
    assert result.output.startswith("Error: SEGCLI_HOME") and "~nosuchuser-segcli" in result.output, result.output


def test_a_quoted_glob_through_dot_dot_is_segmented(tmp_path, weights, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a1").mkdir()
    save_image(Image.fromarray(random_rgb(20, 24, 1)), tmp_path / "b" / "x.jpg")
    result = run_predict(["a*/../b/*.jpg"], tmp_path / "out", weights)
    assert_no_traceback(result)
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "out" / "b" / "x.png").is_file()


def test_report_over_a_summary_with_wrong_typed_values(tmp_path, weights):
    folder = tmp_path / "photos"
    for index in range(2):
        save_image(Image.fromarray(random_rgb(20, 24, index)), folder / f"p{index}.jpg")
    out = tmp_path / "out"
    assert run_predict([folder], out, weights).exit_code == 0
    document = json.loads((out / "p0.json").read_text())
    document.update(size="big", timings_ms={"model": "slow"}, classes_present=[{"name": 3, "pixel_fraction": "x"}])
    (out / "p0.json").write_text(json.dumps(document))
    document = json.loads((out / "p1.json").read_text())
    document["classes_present"] = "all"
    (out / "p1.json").write_text(json.dumps(document))
    result = run_predict([folder], out, weights, "--skip-existing", "--report")
    assert_no_traceback(result)
    assert result.exit_code == 0, result.stderr
    page = (out / "index.html").read_text()
    assert "p0.jpg" in page and "p1.jpg" in page
