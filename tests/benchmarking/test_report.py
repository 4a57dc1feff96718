"""Benchmark plots and tables (segcli.benchmarking.report): one font size, nothing overlapping,
one convention for speed ratios (time relative to the bare fp32 model; < 1 is faster)."""

from __future__ import annotations

import itertools

import pytest
from PIL import Image

from segcli.benchmarking.report import benchmark_figure, csv_text, markdown_text, plot_report, table_rows
from segcli.benchmarking.runner import BenchmarkReport, BenchmarkRow

MODELS = ("lraspp", "deeplabv3p-mobilenet", "deeplabv3-resnet50", "fcn8s", "deeplabv3plus-resnet101-voc")
SIZES = (256, 288, 320, 512)  # close sizes: their tick labels must still not collide


def _row(model: str, size: int, variant: str, precision: str, index: int, miou: float | None) -> BenchmarkRow:
    mean = (10 + 7 * index) * (size / 256) ** 2 * (1.0 if variant == "baseline" else 0.6 if precision == "fp32" else 0.4)
    return BenchmarkRow(
        model=model, weights=f"{model}-weights", variant=variant, height=size, width=size, batch=1, device="cpu",
        precision=precision, channels_last=variant == "engine", crf=False, parameters=1_000_000 * (index + 1),
        gflops=2.0 * (index + 1), mean_ms=mean, p50_ms=mean, p95_ms=mean * 1.1, min_ms=mean * 0.9,
        max_ms=mean * 1.2, std_ms=0.1, images_per_s=1000 / mean, achieved_gflops_per_s=10.0,
        peak_memory_mb=100.0, memory_method="test", warmup=1, iters=2,
        miou=None if variant == "baseline" or miou is None else miou + 0.001 * size / 256)


def _report(with_accuracy: bool) -> BenchmarkReport:
    rows = []
    for index, (model, size) in enumerate(itertools.product(MODELS, SIZES)):
        model_index = MODELS.index(model)
        baseline = _row(model, size, "baseline", "fp32", model_index, None)
        rows.append(baseline)
        for precision in ("fp32", "bf16"):
            row = _row(model, size, "engine", precision, model_index, 0.5 + 0.01 * model_index if with_accuracy else None)
            row.time_vs_baseline = row.mean_ms / baseline.mean_ms
            rows.append(row)
    environment = {"torch": "2.x", "cpu": "a CPU with a rather long marketing name " * 4, "torch_threads": 2}
    settings = {"batch": 1, "warmup": 1, "iters": 2, "e2e_iters": 2, "command": "segcli benchmark ..."}
    return BenchmarkReport(environment, settings, rows)


def _visible_texts(figure):
    """The texts a reader sees (tick labels of ticks beyond the axis limits exist but are not drawn)."""
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    texts = [text for text in figure.findobj(lambda artist: hasattr(artist, "get_text") and hasattr(artist, "get_fontsize"))
             if text.get_visible() and text.get_text().strip()]
    return [text for text in texts if text.get_window_extent(renderer).overlaps(figure.bbox)]


@pytest.mark.parametrize("with_accuracy", [False, True])
def test_plot_has_one_font_size_and_no_overlapping_text(with_accuracy):
    figure = benchmark_figure(_report(with_accuracy))
    texts = _visible_texts(figure)
    assert len({text.get_fontsize() for text in texts}) == 1, sorted({text.get_fontsize() for text in texts})
    renderer = figure.canvas.get_renderer()
    boxes = [(text.get_text(), text.get_window_extent(renderer)) for text in texts]
    overlapping = [(a, b) for (a, box_a), (b, box_b) in itertools.combinations(boxes, 2) if box_a.overlaps(box_b)]
    assert overlapping == []
    figure_box = figure.bbox
    assert all(figure_box.x0 <= box.x0 and box.x1 <= figure_box.x1 + 1 for _, box in boxes)  # nothing cut off
    for axes in figure.axes:  # legends sit beside the data, never on it
        for legend in figure.legends + ([axes.get_legend()] if axes.get_legend() else []):
            assert not legend.get_window_extent(renderer).overlaps(axes.get_window_extent(renderer))


def test_latency_plot_shows_the_time_ratio_panel_with_the_same_convention():
    figure = benchmark_figure(_report(False))
    labels = [axes.get_ylabel() for axes in figure.axes]
    assert any("time relative to the bare fp32 model" in label for label in labels), labels


def test_tables_json_and_csv_use_the_time_ratio(tmp_path):
    report = _report(False)
    engine = next(row for row in report.rows if row.variant == "engine" and row.precision == "bf16")
    assert engine.time_vs_baseline == pytest.approx(0.4)
    assert report.to_dict()["conventions"]["time_vs_baseline"].startswith("row mean_ms / baseline mean_ms")
    assert "time_vs_baseline" in csv_text(report).splitlines()[0].split(",")
    assert "| time vs base |" in markdown_text(report) and "| 0.40x |" in markdown_text(report)
    assert "time vs base" in [header for header, _ in table_rows(report)[0]]
    plot_report(report, tmp_path / "b.png")
    with Image.open(tmp_path / "b.png") as image:
        assert image.format == "PNG" and image.size[0] >= 1000


def test_a_rerun_replaces_its_own_reports_but_no_one_elses(tmp_path):
    """Each report file segcli writes is known as segcli's by a later run; a user's file of the same name is not."""
    from segcli.benchmarking.report import write_csv, write_json, write_markdown
    from segcli.cli.benchmark import _check_report_files
    from segcli.errors import OutputError

    report = _report(with_accuracy=False)
    paths = [tmp_path / name for name in ("b.json", "b.csv", "b.md", "b.png")]
    for write, path in zip((write_json, write_csv, write_markdown, plot_report), paths):
        write(report, path)
    _check_report_files([], None, "val", paths, overwrite=False)  # segcli's own files: replaced without --overwrite
    for index, path in enumerate(paths):
        foreign = tmp_path / f"user{path.suffix}"
        foreign.write_bytes(b"not segcli's\n")
        if path.suffix == ".png":  # a PNG without segcli's text chunk
            Image.new("RGB", (4, 4)).save(foreign)
        chosen = list(paths)
        chosen[index] = foreign
        with pytest.raises(OutputError, match="was not written by segcli"):
            _check_report_files([], None, "val", chosen, overwrite=False)


def test_latency_panel_plots_the_mean_the_ratios_are_made_of():
    report = _report(False)
    for row in report.rows:
        row.p50_ms = row.mean_ms * 0.5  # a skewed distribution: p50 and mean apart
    figure = benchmark_figure(report)
    latency = figure.axes[0]
    plotted = sorted(float(y) for line in latency.get_lines() for y in line.get_ydata())
    assert plotted == pytest.approx(sorted(row.mean_ms for row in report.rows))
    assert "mean" in latency.get_ylabel()
