"""`predict --precision auto` on CUDA says what the execution policy chose and writes what ran into each image's
JSON (the policy forced on the CPU here, tests/policy_support.py: channels_last timed faster)."""

from __future__ import annotations

import json
import re

from PIL import Image

from policy_support import force_policy
from robustness_support import random_rgb, run_predict, save_image, save_tiny_checkpoint


def _summary(out_dir, name: str = "a") -> dict:
    return json.loads((out_dir / f"{name}.json").read_text())


def test_predict_names_the_configuration_the_policy_chose(tmp_path, monkeypatch):
    trials = force_policy(monkeypatch, tmp_path / "home")
    weights = save_tiny_checkpoint(tmp_path / "tiny-lraspp.safetensors")
    image = save_image(Image.fromarray(random_rgb(40, 40)), tmp_path / "in" / "a.png")
    first = run_predict([image], tmp_path / "out", weights, "--precision", "auto")
    assert first.exit_code == 0, first.output
    assert re.search(r"on cpu \(auto: measured on the first batch\)", first.stderr), first.stderr
    assert re.search(r"execution policy: fp32 CL \(measured: fp32 contiguous [\d.]+ ms, "
                     r"fp32 CL [\d.]+ ms per batch of 1 at 40x40\)", first.stderr), first.stderr
    summary = _summary(tmp_path / "out")
    assert (summary["precision"], summary["memory_format"]) == ("fp32", "channels_last")  # what ran, not "bf16"
    again = run_predict([image], tmp_path / "out2", weights, "--precision", "auto")
    assert again.exit_code == 0 and re.search(r"execution policy: fp32 CL \(cached", again.stderr)
    explicit = run_predict([image], tmp_path / "out3", weights, "--precision", "fp32")
    assert "execution policy" not in explicit.stderr and "on cpu (fp32 CL)" in explicit.stderr
    assert _summary(tmp_path / "out3")["precision"] == "fp32"
    assert len(trials.shapes) == 1


def test_a_folder_run_consults_the_policy_per_batch_shape(tmp_path, monkeypatch):
    trials = force_policy(monkeypatch, tmp_path / "home")
    weights = save_tiny_checkpoint(tmp_path / "tiny-lraspp.safetensors")
    for name in "abc":
        save_image(Image.fromarray(random_rgb(36, 36)), tmp_path / "in" / f"{name}.png")
    done = run_predict([tmp_path / "in"], tmp_path / "out", weights, "--precision", "auto", "--batch-size", "2")
    assert done.exit_code == 0, done.output
    assert sorted(trials.shapes) == [(1, 3, 36, 36), (2, 3, 36, 36)]  # a batch of two, then the last one alone
    for name in "abc":
        summary = _summary(tmp_path / "out", name)
        assert (summary["precision"], summary["memory_format"]) == ("fp32", "channels_last")
