"""A real install: the sdist and the wheel carry the manifest and the shipped checkpoints, and an
installed wheel runs from an unrelated folder."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from segcli.checkpoints import manifest
from segcli.cli.main import cli

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "samples" / "synth" / "JPEGImages" / "synth_3_00000.jpg"


def test_missing_shipped_manifest_says_the_install_is_broken(tmp_path, monkeypatch):
    monkeypatch.setattr(manifest, "shipped_weights_dir", lambda: tmp_path / "no-weights")
    monkeypatch.setenv("SEGCLI_HOME", str(tmp_path / "home"))
    for args in (["weights", "list"], ["weights", "pull", "deeplabv3-resnet50-coco"],
                 ["predict", str(SAMPLE), "--model", "deeplabv3p", "--out", str(tmp_path / "out")]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 1, (args, result.output)
        errors = [line for line in result.output.splitlines() if line.startswith("Error: ")]
        assert len(errors) == 1 and "installation is broken" in errors[0], result.output
        assert str(tmp_path / "no-weights" / "manifest.json") in errors[0]
    assert not (tmp_path / "out").exists()


def test_licence_is_an_spdx_expression_with_its_file():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert project["project"]["license"] == "MIT"  # a string, not the deprecated {text = ...} table
    assert project["project"]["license-files"] == ["LICENSE"]
    assert (REPO / "LICENSE").read_text().startswith("MIT License")
    assert "setuptools>=77" in project["build-system"]["requires"][0]  # the first to read license-files


def _shipped_files() -> set[str]:
    """Every file the package ships under segcli/weights/, as package-relative paths."""
    folder = REPO / "segcli" / "weights"
    return {f"segcli/weights/{path.relative_to(folder).as_posix()}" for path in folder.rglob("*") if path.is_file()}


def _build(hook: str, source: Path, out: Path) -> Path:
    """Call setuptools' PEP 517 hook in `source` (no network, no build isolation)."""
    code = f"from setuptools import build_meta; print(build_meta.{hook}({str(out)!r}))"
    done = subprocess.run([sys.executable, "-c", code], cwd=source, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    licence_warnings = [line for line in done.stderr.splitlines() if "deprecat" in line.lower() and "licen" in line.lower()]
    assert licence_warnings == []
    return out / done.stdout.strip().splitlines()[-1]


def _tracked_copy(destination: Path) -> Path:
    """The files git tracks (what a clone holds), copied without build leftovers."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    for name in filter(None, listed.decode().split("\0")):
        source, target = REPO / name, destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            target.symlink_to(os.readlink(source))
        elif source.is_file():
            shutil.copy2(source, target)
    return destination


def _see_this_environments_packages(venv: Path) -> None:
    """Make the scratch venv see the packages of the environment running the tests (torch, Pillow, ...), which
    may be a virtual environment itself (then --system-site-packages alone reaches only the base Python's). A
    directory named in a .pth file is added after the venv's own site-packages and its own .pth files are not
    run, so the wheel's segcli comes first and the checkout's editable install stays invisible."""
    import sysconfig

    site = subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    here = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    (Path(site) / "segcli_test_parent_environment.pth").write_text("".join(f"{path}\n" for path in here))


def _run(command: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, (command, done.stdout[-2000:], done.stderr[-3000:])
    assert "Traceback" not in done.stderr
    return done


@pytest.mark.slow
def test_wheel_built_from_the_sdist_installs_and_runs_from_an_empty_folder(tmp_path):
    source = _tracked_copy(tmp_path / "clone")
    sdist = _build("build_sdist", source, tmp_path / "dist")
    with tarfile.open(sdist) as archive:
        members = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
        archive.extractall(tmp_path / "unpacked", filter="data")
    assert _shipped_files() <= members, sorted(_shipped_files() - members)
    assert {"LICENSE", "README.md", "pyproject.toml"} <= members
    wheel = _build("build_wheel", tmp_path / "unpacked" / sdist.name.removesuffix(".tar.gz"), tmp_path / "wheel")
    with zipfile.ZipFile(wheel) as archive:
        assert _shipped_files() <= set(archive.namelist())
        license_files = [name for name in archive.namelist() if name.endswith("LICENSE")]
    assert license_files, "the wheel carries no LICENSE"

    venv = tmp_path / "venv"  # sees torch etc. from the environment running the tests, segcli only from the wheel
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], check=True)
    _see_this_environments_packages(venv)
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(HOME=str(tmp_path / "home"), SEGCLI_HOME=str(tmp_path / "segcli-home"),
               TORCH_HOME=str(tmp_path / "torch-home"), COLUMNS="80", OMP_NUM_THREADS="1")
    python, segcli = venv / "bin" / "python", venv / "bin" / "segcli"
    _run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--ignore-installed", str(wheel)],
         tmp_path, env)
    empty = tmp_path / "empty"
    empty.mkdir()
    where = _run([str(python), "-c", "import segcli; print(segcli.__file__)"], empty, env).stdout.strip()
    assert Path(where).is_relative_to(venv), where  # the wheel's segcli, not the editable checkout

    listed = json.loads(_run([str(segcli), "weights", "list", "--json"], empty, env).stdout)
    shipped = {entry["name"]: entry for entry in listed if entry["on_disk"]}
    assert {"deeplabv3p-mobilenet-synth", "lraspp-mobilenet-synth", "fcn8s-synth"} <= set(shipped)
    assert all(Path(entry["on_disk"]).is_relative_to(venv) for entry in shipped.values())
    assert "deeplabv3-resnet50-coco" in {entry["name"] for entry in listed}

    shutil.copy(SAMPLE, empty / "img.jpg")
    cpu = ["--device", "cpu", "--precision", "fp32"]
    _run([str(segcli), "predict", "img.jpg", "--model", "deeplabv3p", "--crf", *cpu], empty, env)
    summary = json.loads((empty / "segcli-out" / "img.json").read_text())
    assert summary["checkpoint"] == "deeplabv3p-mobilenet-synth" and summary["crf"] is not None
    title = _run([str(python), "-c", "from segcli.outputs.schema import load_schema; print(load_schema('summary')['title'])"],
                 empty, env).stdout.strip()  # the JSON Schemas travel in the wheel as package data
    assert title == "segcli image summary (NAME.json)"
    assert (empty / "segcli-out" / "img_overlay.png").is_file()
    _run([str(segcli), "predict", "img.jpg", "--model", "deeplabv3p", "--out", "plain", *cpu], empty, env)
    labels = np.asarray(Image.open(empty / "plain" / "img.png"))

    from segcli.engine import SegmentationEngine
    from segcli.errors import SyntheticScenesWarning
    from segcli.imageio import load_image
    from segcli.inference_options import InferenceOptions

    with pytest.warns(SyntheticScenesWarning):
        engine = SegmentationEngine.load("deeplabv3p", "deeplabv3p-mobilenet-synth", device="cpu",
                                         options=InferenceOptions(precision="fp32"))
    expected = engine.predict(load_image(SAMPLE).rgb).labels
    assert labels.shape == expected.shape == (128, 128)
    assert np.array_equal(labels, expected)
