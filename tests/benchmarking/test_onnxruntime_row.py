"""`segcli benchmark --onnxruntime`: one more row per model and size, timed through the exported graph."""

from __future__ import annotations

import dataclasses
import json

import pytest
from click.testing import CliRunner

from robustness_support import tiny_model, tiny_record
from segcli.benchmarking.runner import BenchmarkSettings, run_benchmark
from segcli.benchmarking.subjects import BenchmarkSubject
from segcli.cli.main import cli

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

SETTINGS = BenchmarkSettings(sizes=((48, 48), (40, 64)), device="cpu", precisions=("fp32",), warmup=1, iters=2,
                             e2e_iters=1, onnxruntime=True)


@pytest.mark.slow
@pytest.mark.parametrize("batch", [1, pytest.param(2, marks=pytest.mark.slow)])  # batch 2: the dynamic graph
def test_each_size_gets_an_onnxruntime_row_after_the_torch_rows(batch):
    subject = BenchmarkSubject("lraspp", tiny_model(), tiny_record(), "tiny")
    report = run_benchmark([subject], dataclasses.replace(SETTINGS, batch=batch))
    assert [(row.size, row.variant) for row in report.rows] == [
        ("48x48", "baseline"), ("48x48", "engine"), ("48x48", "onnxruntime"),
        ("40x64", "baseline"), ("40x64", "engine"), ("40x64", "onnxruntime")]
    for baseline, row in ((report.rows[0], report.rows[2]), (report.rows[3], report.rows[5])):
        assert row.precision == "onnxruntime fp32" and row.batch == batch and not row.channels_last
        assert row.mean_ms > 0 and row.e2e_mean_ms > 0 and row.iters == 2
        assert row.time_vs_baseline == pytest.approx(row.mean_ms / baseline.mean_ms)
        assert row.parameters == baseline.parameters and row.gflops == baseline.gflops
    assert report.to_dict()["settings"]["onnxruntime"] is True


@pytest.mark.slow
def test_cli_flag_adds_the_row_to_the_json(tmp_path):
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(cli, ["benchmark", "--models", "lraspp", "--sizes", "48", "--device", "cpu",
                                      "--precision", "fp32", "--iters", "1", "--warmup", "0", "--no-e2e",
                                      "--onnxruntime", "--json", str(out)])
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())["rows"]
    assert [row["variant"] for row in rows] == ["baseline", "engine", "onnxruntime"]
    assert "onnxruntime fp32" in result.output
