"""`predict --precision auto` on CUDA says what the execution policy chose (forced on the CPU here)."""

from __future__ import annotations

import re

from PIL import Image

import segcli.pipeline.tuning
from robustness_support import random_rgb, run_predict, save_image, save_tiny_checkpoint


def test_predict_names_the_configuration_the_policy_chose(tmp_path, monkeypatch):
    monkeypatch.setenv("SEGCLI_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(segcli.pipeline.tuning, "policy_applies", lambda engine: engine.options.precision == "auto")
    monkeypatch.setattr(segcli.pipeline.tuning, "candidates_for", lambda device: [
        segcli.pipeline.tuning.Candidate("fp32", False), segcli.pipeline.tuning.Candidate("fp32", True)])
    weights = save_tiny_checkpoint(tmp_path / "tiny-lraspp.safetensors")
    image = save_image(Image.fromarray(random_rgb(40, 40)), tmp_path / "in" / "a.png")
    first = run_predict([image], tmp_path / "out", weights, "--precision", "auto")
    assert first.exit_code == 0, first.output
    assert re.search(r"execution policy: fp32 (contiguous|CL) \(measured: fp32 contiguous [\d.]+ ms, "
                     r"fp32 CL [\d.]+ ms per batch of 1 at 40x40\)", first.stderr), first.stderr
    again = run_predict([image], tmp_path / "out2", weights, "--precision", "auto")
    assert again.exit_code == 0 and re.search(r"execution policy: fp32 (contiguous|CL) \(cached", again.stderr)
    explicit = run_predict([image], tmp_path / "out3", weights, "--precision", "fp32")
    assert "execution policy" not in explicit.stderr
