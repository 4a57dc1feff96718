"""`segcli benchmark`: report structure, FLOP and parameter counts against hand counts, CSV/plot output, bad options."""

from __future__ import annotations

import csv
import dataclasses
import io
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from torch import nn

from segcli.benchmarking.measure import LatencyStats, PeakMemory, count_flops
from segcli.benchmarking.runner import BenchmarkSettings, run_benchmark
from segcli.benchmarking.subjects import BenchmarkSubject, random_record
from segcli.benchmarking.report import CSV_COLUMNS, csv_text, plot_report
from segcli.cli.options import parse_sizes
from segcli.cli.main import cli

REQUIRED_ROW_KEYS = {
    "model", "weights", "variant", "size", "height", "width", "batch", "device", "precision", "parameters",
    "gflops", "mean_ms", "p50_ms", "p95_ms", "min_ms", "images_per_s", "achieved_gflops_per_s",
    "peak_memory_mb", "memory_method", "time_vs_baseline", "e2e_mean_ms", "crf_ms", "miou", "pixel_accuracy",
}


class TinyConvNet(nn.Module):
    """Two convolutions (no bias) and a bilinear upsample back to the input size."""

    def __init__(self, num_classes: int = 21) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(8, num_classes, 3, stride=2, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.conv2(torch.relu(self.conv1(x)))
        return nn.functional.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)


def hand_flops(height: int, width: int, num_classes: int = 21) -> int:
    """2 * Cin * Cout * k * k * Hout * Wout per convolution."""
    conv1 = 2 * 3 * 8 * 3 * 3 * height * width
    conv2 = 2 * 8 * num_classes * 3 * 3 * ((height + 1) // 2) * ((width + 1) // 2)
    return conv1 + conv2


def tiny_subject() -> BenchmarkSubject:
    torch.manual_seed(0)
    return BenchmarkSubject("tiny", TinyConvNet(), random_record("tiny"), "random")


TINY_SETTINGS = BenchmarkSettings(sizes=((32, 32), (48, 64)), device="cpu", precisions=("fp32", "bf16"),
                                  warmup=1, iters=2, e2e_iters=2)


@pytest.fixture(scope="module")
def tiny_report():
    return run_benchmark([tiny_subject()], TINY_SETTINGS)


def test_flops_equal_hand_count():
    model = TinyConvNet()
    assert count_flops(model, torch.zeros(1, 3, 48, 64)) == hand_flops(48, 64)
    assert count_flops(model, torch.zeros(1, 3, 33, 35)) == hand_flops(33, 35)


def test_rows_have_the_documented_keys_and_sane_statistics(tiny_report):
    rows = tiny_report.to_dict()["rows"]
    assert len(rows) == 2 * (1 + 2)  # sizes x (baseline + precisions)
    expected_parameters = sum(p.numel() for p in TinyConvNet().parameters())
    for row in rows:
        assert REQUIRED_ROW_KEYS <= set(row)
        assert row["min_ms"] <= row["p50_ms"] <= row["p95_ms"] <= row["max_ms"]
        assert row["min_ms"] <= row["mean_ms"] <= row["max_ms"]
        assert row["parameters"] == expected_parameters
        assert row["gflops"] * 1e9 == pytest.approx(hand_flops(row["height"], row["width"]), rel=1e-12)
        assert row["images_per_s"] == pytest.approx(1000.0 / row["mean_ms"])
        assert row["achieved_gflops_per_s"] == pytest.approx(row["gflops"] * 1000.0 / row["mean_ms"])
        assert row["weights"] == "random" and row["device"] == "cpu"


def test_baseline_rows_and_ratios(tiny_report):
    rows = tiny_report.rows
    for size in ("32x32", "48x64"):
        of_size = [row for row in rows if row.size == size]
        baseline = [row for row in of_size if row.variant == "baseline"]
        engine = [row for row in of_size if row.variant == "engine"]
        assert len(baseline) == 1 and [row.precision for row in engine] == ["fp32", "bf16"]
        assert baseline[0].precision == "fp32" and not baseline[0].channels_last
        assert baseline[0].e2e_mean_ms is None and baseline[0].time_vs_baseline is None
        for row in engine:
            assert row.time_vs_baseline == pytest.approx(row.mean_ms / baseline[0].mean_ms)
            assert row.e2e_iters == 2 and row.e2e_mean_ms > 0
            assert row.crf_ms is None and not row.crf
            stages = [row.decode_ms, row.preprocess_ms, row.forward_ms, row.upsample_ms, row.encode_ms]
            assert all(stage is not None and stage >= 0 for stage in stages)


def test_end_to_end_is_what_predict_does_and_its_stages_add_up(tiny_report):
    """Every default output is written (label, overlay, JSON), and the per-image stages sum to the e2e mean."""
    for row in (row for row in tiny_report.rows if row.variant == "engine"):
        stages = row.e2e_stages_ms
        assert set(stages) == {"decode", "preprocess", "forward", "upsample", "crf", "label", "overlay", "json",
                               "rename", "other"}
        assert min(stages["label"], stages["overlay"], stages["json"], stages["decode"], stages["forward"]) > 0
        assert sum(stages.values()) == pytest.approx(row.e2e_mean_ms / row.batch, rel=1e-3, abs=0.01)
        assert row.encode_ms == pytest.approx(stages["label"] + stages["overlay"] + stages["json"] + stages["rename"],
                                              abs=0.01)


def test_report_carries_machine_and_settings(tiny_report):
    data = json.loads(json.dumps(tiny_report.to_dict()))
    assert data["environment"]["torch"] == torch.__version__
    assert data["environment"]["torch_threads"] == torch.get_num_threads()
    assert data["environment"]["cpu"]
    assert data["settings"]["sizes"] == ["32x32", "48x64"]
    assert (data["settings"]["warmup"], data["settings"]["iters"]) == (1, 2)
    assert "2 FLOPs per multiply-add" in data["conventions"]["flops"]


def test_csv_has_the_same_rows(tiny_report):
    parsed = list(csv.DictReader(io.StringIO(csv_text(tiny_report))))
    assert [tuple(row) for row in parsed][0] == CSV_COLUMNS
    assert len(parsed) == len(tiny_report.rows)
    for csv_row, row in zip(parsed, tiny_report.rows):
        assert csv_row["model"] == row.model and csv_row["size"] == row.size
        assert csv_row["precision"] == row.precision and csv_row["variant"] == row.variant
        assert float(csv_row["p50_ms"]) == pytest.approx(row.p50_ms)
        assert int(csv_row["parameters"]) == row.parameters


def test_crf_time_is_reported_on_its_own():
    pytest.importorskip("pydensecrf.densecrf")
    from segcli.crf import CRFParams

    settings = BenchmarkSettings(sizes=((32, 32),), device="cpu", precisions=("fp32",), crf=CRFParams(iterations=2),
                                 warmup=0, iters=1, e2e_iters=2, baseline=False)
    (row,) = run_benchmark([tiny_subject()], settings).rows
    assert row.crf and row.crf_ms is not None and 0 < row.crf_ms < row.e2e_mean_ms


@pytest.mark.slow
def test_accuracy_columns_equal_evaluate_folder(tmp_path):
    from segcli.data.synth import SYNTH_CLASSES, write_synth_dataset
    from engine_support import engine_of
    from segcli.evaluation import evaluate_folder

    write_synth_dataset(tmp_path / "synth", n=3, seed=0, size=(40, 48), val_fraction=0.67)
    torch.manual_seed(0)
    model = TinyConvNet(num_classes=len(SYNTH_CLASSES))
    record = dataclasses.replace(random_record("tiny"), categories=SYNTH_CLASSES)
    settings = BenchmarkSettings(sizes=((32, 32),), device="cpu", precisions=("fp32",), warmup=0, iters=1,
                                 end_to_end=False, data_dir=tmp_path / "synth", split="val")
    report = run_benchmark([BenchmarkSubject("tiny", model, record, "random")], settings)
    baseline, row = report.rows
    expected = evaluate_folder(engine_of(model, record, channels_last=None),
                               tmp_path / "synth", "val")
    assert baseline.miou is None
    assert row.miou == pytest.approx(expected["miou"]) and row.pixel_accuracy == pytest.approx(expected["pixel_acc"])
    plot_report(report, tmp_path / "accuracy.png")  # accuracy-vs-speed mode
    with Image.open(tmp_path / "accuracy.png") as plot:
        assert plot.format == "PNG"


def test_latency_stats_against_numpy():
    stats = LatencyStats.from_samples([4.0, 1.0, 3.0, 2.0])
    assert (stats.mean_ms, stats.p50_ms, stats.min_ms, stats.max_ms) == (2.5, 2.5, 1.0, 4.0)
    assert stats.p95_ms == pytest.approx(3.85)  # linear interpolation between 3 and 4


def test_cpu_peak_memory_sees_a_large_allocation():
    with PeakMemory(torch.device("cpu")) as memory:
        block = np.ones(8 * 2**20)  # 64 MiB, touched
        block.sum()
        del block
    if not memory.method.startswith("peak RSS"):
        pytest.skip("no /proc/self/clear_refs here (not Linux)")
    assert 48 <= memory.peak_mb < 1024


def test_parse_sizes():
    assert parse_sizes("256, 480x640,256") == ((256, 256), (480, 640))


# --- the command line --------------------------------------------------------------------------

@pytest.mark.slow
def test_cli_writes_json_csv_and_plot(tmp_path):
    import segcli.benchmarking.subjects as subjects

    runner = CliRunner()
    with pytest.MonkeyPatch.context() as patch:
        from segcli.benchmarking.subjects import PlannedSubject

        class TinyPlan(PlannedSubject):
            def load(self) -> BenchmarkSubject:
                return tiny_subject()

        patch.setattr(subjects, "plan_subjects", lambda names: [TinyPlan("lraspp", None)])
        result = runner.invoke(cli, [
            "benchmark", "--models", "lraspp", "--sizes", "32,48x64", "--device", "cpu", "--precision", "fp32",
            "--warmup", "1", "--iters", "2", "--json", str(tmp_path / "b.json"), "--csv", str(tmp_path / "b.csv"),
            "--plot", str(tmp_path / "b.png"), "--markdown", str(tmp_path / "b.md"),
        ])
    assert result.exit_code == 0, result.output
    assert "tiny" in result.output and "48x64" in result.output
    report = json.loads((tmp_path / "b.json").read_text())
    assert [row["size"] for row in report["rows"]] == ["32x32", "32x32", "48x64", "48x64"]
    with open(tmp_path / "b.csv", newline="") as handle:
        csv_rows = list(csv.DictReader(handle))
    assert [(r["size"], r["variant"]) for r in csv_rows] == [(r["size"], r["variant"]) for r in report["rows"]]
    table_lines = [line for line in (tmp_path / "b.md").read_text().splitlines() if line.startswith("| tiny ")]
    assert [line.split(" | ")[2] for line in table_lines] == [row["size"] for row in report["rows"]]
    with Image.open(tmp_path / "b.png") as plot:
        plot.load()
        assert plot.format == "PNG" and plot.size[0] > 100


@pytest.mark.slow
def test_cli_random_weights_for_a_named_zoo_model(tmp_path, monkeypatch):
    import segcli.models.lraspp  # noqa: F401  (segcli's own module: a broken import fails, never skips)
    from segcli.models import build_model

    import segcli.benchmarking.subjects as subjects

    monkeypatch.setattr(subjects, "_resolve_on_disk", lambda name: None)  # as if no checkpoint were on disk
    result = CliRunner().invoke(cli, [
        "benchmark", "--models", "lraspp", "--sizes", "64", "--device", "cpu", "--precision", "fp32",
        "--warmup", "0", "--iters", "1", "--no-e2e", "--json", str(tmp_path / "b.json"),
    ])
    assert result.exit_code == 0, result.output
    rows = json.loads((tmp_path / "b.json").read_text())["rows"]
    assert {row["weights"] for row in rows} == {"random"}
    assert rows[0]["parameters"] == sum(p.numel() for p in build_model("lraspp", 21).parameters())
    assert rows[1]["e2e_mean_ms"] is None


@pytest.mark.parametrize("arguments, message", [
    (["--sizes", "abc"], "is not a size"),
    (["--sizes", "16"], "too small"),
    (["--models", "nope"], "unknown model 'nope'"),
    (["--iters", "0"], "0 is not in the range"),
    (["--precision", "fp32,fp64"], "fp64"),
    (["--batch-size", "0"], "0 is not in the range"),
])
def test_bad_options_exit_2_with_a_clear_message(arguments, message):
    result = CliRunner().invoke(cli, ["benchmark", *arguments])
    assert result.exit_code == 2
    assert message in result.output


def test_no_weights_and_no_models_is_an_error(tmp_path, monkeypatch):
    import segcli.benchmarking.subjects as subjects

    monkeypatch.setattr(subjects, "_resolve_on_disk", lambda name: None)
    result = CliRunner().invoke(cli, ["benchmark", "--device", "cpu"])
    assert result.exit_code == 1
    assert "no zoo model has a checkpoint on disk" in result.output and "--models" in result.output


def test_peak_memory_leaves_out_what_the_warm_up_allocated():
    """cuDNN's autotuner allocates its trial workspaces in the first (warm-up) calls; a row's peak is the
    timed calls' own. Here the first call holds 256 MB (as the autotuner would), the timed ones 8 MB."""
    from segcli.benchmarking.measure import measure_calls

    calls = []

    def call():
        size = 256 if not calls else 8
        block = np.ones(size * 2**20, dtype=np.uint8)  # touched: counted in the RSS
        calls.append(int(block[-1]))

    samples, memory = measure_calls(call, warmup=1, iters=3, synchronize=lambda: None, device=torch.device("cpu"))
    assert len(samples) == 3 and len(calls) == 4
    if memory.method.startswith("peak RSS"):
        assert memory.peak_mb is not None and memory.peak_mb < 128


def test_several_batch_sizes_give_rows_for_each_and_count_flops_once(monkeypatch):
    import segcli.benchmarking.runner as runner

    counted = []
    real = runner.count_flops
    monkeypatch.setattr(runner, "count_flops", lambda model, example: counted.append(example.shape) or real(model, example))
    settings = BenchmarkSettings(sizes=((32, 32),), batches=(1, 2), device="cpu", precisions=("fp32",),
                                 warmup=0, iters=2, end_to_end=False)
    rows = run_benchmark([tiny_subject()], settings).rows
    assert [(row.variant, row.batch) for row in rows] == [("baseline", 1), ("engine", 1), ("baseline", 2), ("engine", 2)]
    assert counted == [torch.Size([1, 3, 32, 32])]
    assert all(row.gflops * 1e9 == hand_flops(32, 32) for row in rows)
    for row in rows:
        assert row.images_per_s == pytest.approx(row.batch * 1000.0 / row.mean_ms)
        assert row.achieved_tflops_per_s == pytest.approx(row.gflops * row.batch / row.mean_ms)
        assert row.peak_share is None  # the CPU is not in the peak table


def test_share_of_the_gpu_peak(monkeypatch):
    import segcli.benchmarking.runner as runner
    from segcli.benchmarking.gpu_peaks import peak_tflops
    from segcli.benchmarking.report import table_notes

    assert peak_tflops("NVIDIA H100 80GB HBM3", "bf16") == 989.5
    assert peak_tflops("NVIDIA H200", "fp16") == 989.5 and peak_tflops("NVIDIA H200", "fp32") == 67.0
    assert peak_tflops("NVIDIA H100 PCIe", "bf16") == 756.5
    assert peak_tflops("NVIDIA GeForce GTX 1080", "fp32") is None and peak_tflops(None, "fp32") is None
    monkeypatch.setattr(runner, "peak_tflops", lambda name, precision: 0.002)
    settings = BenchmarkSettings(sizes=((32, 32),), device="cpu", precisions=("fp32",), warmup=0, iters=2,
                                 end_to_end=False)
    report = run_benchmark([tiny_subject()], settings)
    for row in report.rows:
        assert row.peak_share == pytest.approx(hand_flops(32, 32) * 1000 / row.mean_ms / 1e12 / 0.002)
    report.environment["gpu"] = "Some Unknown GPU"
    report.rows = [dataclasses.replace(row, peak_share=None) for row in report.rows]
    assert any("% peak omitted" in note and "Some Unknown GPU" in note for note in table_notes(report))


def test_cli_batches_option(tmp_path, monkeypatch):
    monkeypatch.setenv("SEGCLI_HOME", str(tmp_path / "home"))
    result = CliRunner().invoke(cli, ["benchmark", "--models", "lraspp", "--sizes", "32", "--batches", "1,2",
                                      "--device", "cpu", "--precision", "fp32", "--warmup", "0", "--iters", "1",
                                      "--no-e2e", "--json", str(tmp_path / "b.json")])
    assert result.exit_code == 0, result.output
    rows = json.loads((tmp_path / "b.json").read_text())["rows"]
    assert sorted({row["batch"] for row in rows}) == [1, 2]
    bad = CliRunner().invoke(cli, ["benchmark", "--models", "lraspp", "--batches", "1,x"])
    assert bad.exit_code == 2 and "--batches" in bad.output
