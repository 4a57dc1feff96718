"""What `segcli benchmark` shows: plain rows when piped, readable at 80 columns, the spread of the timings
and the load average with a warning when they make ratios unreliable, footnotes that say only what ran,
rows kept on Ctrl-C, and --plot checked before anything is measured."""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest
from click.testing import CliRunner

import segcli.benchmarking.subjects as subjects
import torch
from segcli.benchmarking.measure import LatencyStats
from segcli.benchmarking.subjects import BenchmarkSubject, random_record
from segcli.benchmarking.subjects import PlannedSubject
from segcli.cli.main import cli

BOX_CHARACTERS = set("│┃━─┏┓┗┛┡┩╇└┘┌┐")
TINY = ["benchmark", "--models", "lraspp", "--sizes", "32", "--device", "cpu", "--precision", "fp32",
        "--warmup", "0", "--iters", "3", "--e2e-iters", "1"]


class TinyPlan(PlannedSubject):
    def load(self) -> BenchmarkSubject:
        torch.manual_seed(0)
        return BenchmarkSubject("tiny", torch.nn.Conv2d(3, 21, 3, padding=1), random_record("tiny"), "random")


@pytest.fixture
def tiny(monkeypatch):
    monkeypatch.setattr(subjects, "plan_subjects", lambda names: [TinyPlan("lraspp", None)])


def _invoke(*extra: str, env: dict | None = None):
    return CliRunner().invoke(cli, [*TINY, *extra], env=env)


def test_piped_output_is_plain_tab_separated_rows(tiny):
    result = _invoke("--no-e2e")
    assert result.exit_code == 0, result.output
    assert not BOX_CHARACTERS & set(result.stdout)
    lines = [line for line in result.stdout.splitlines() if "\t" in line]
    header = lines[0].split("\t")
    assert header[:4] == ["model", "weights", "size", "precision"]
    rows = [line.split("\t") for line in lines[1:]]
    assert [row[3] for row in rows] == ["fp32 bare", "fp32 CL"] and all(len(row) == len(header) for row in rows)


def test_a_terminal_of_80_columns_gets_whole_values_in_lines_that_fit(tiny, monkeypatch):
    import segcli.cli.tables as tables

    monkeypatch.setattr(tables, "stdout_is_terminal", lambda: True)
    result = _invoke("--no-e2e", env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines and max(len(line) for line in lines) <= 80, lines
    assert "fp32 bare" in result.stdout and "random" in result.stdout  # whole cells, not cut to 1-2 characters


def test_latency_stats_have_p10_p90_and_their_spread_over_the_median():
    samples = [5.0, 1.0, 2.0, 9.0, 3.0, 4.0, 7.0]
    stats = LatencyStats.from_samples(samples)
    p10, p50, p90 = np.percentile(samples, [10, 50, 90])
    assert (stats.p10_ms, stats.p90_ms) == pytest.approx((p10, p90))
    assert stats.spread == pytest.approx((p90 - p10) / p50)


def test_json_records_spread_and_load_average_and_a_quiet_machine_has_no_warning(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    monkeypatch.setattr("segcli.benchmarking.measure.time_calls", lambda call, warmup, iters, sync: [10.0] * iters)
    result = _invoke("--no-e2e", "--json", str(tmp_path / "b.json"))
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "b.json").read_text())
    for row in report["rows"]:
        assert row["p10_ms"] <= row["p50_ms"] <= row["p90_ms"]
        assert row["spread"] == pytest.approx((row["p90_ms"] - row["p10_ms"]) / row["p50_ms"])
    assert report["load_average"]["start"] == [0.0, 0.0, 0.0] and report["load_average"]["cores"] == os.cpu_count()
    assert report["warnings"] == [] and "warning" not in result.stderr


def test_a_loaded_machine_and_scattered_timings_print_warning_lines(tiny, tmp_path, monkeypatch):
    cores = os.cpu_count()
    monkeypatch.setattr(os, "getloadavg", lambda: (cores + 3.0, 1.0, 1.0))
    monkeypatch.setattr("segcli.benchmarking.measure.time_calls",
                        lambda call, warmup, iters, sync: [10.0, 30.0, 10.0][:iters] + [10.0] * (iters - 3))
    result = _invoke("--no-e2e", "--json", str(tmp_path / "b.json"))
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert any(f"load average {cores + 3.0:.1f}" in line and f"{cores} cores" in line for line in warnings), warnings
    assert any("spread" in line for line in warnings), warnings
    assert len(json.loads((tmp_path / "b.json").read_text())["warnings"]) == 2


def test_footnote_says_only_what_ran_and_that_e2e_runs_lanes_side_by_side(tiny):
    without = _invoke("--no-e2e", "--no-baseline")
    assert without.exit_code == 0, without.output
    assert "end-to-end" not in without.output and "e2e" not in without.output
    assert "time vs base" not in without.output
    with_e2e = _invoke()
    assert with_e2e.exit_code == 0, with_e2e.output
    note = " ".join(with_e2e.stderr.split())
    assert "side by side" in note and "below the model-only mean" in note


def test_ctrl_c_keeps_the_rows_measured_and_exits_130(tiny, tmp_path, monkeypatch):
    from segcli.benchmarking.runner import _SizeRun

    def interrupted(self, plan, cache):
        raise KeyboardInterrupt

    monkeypatch.setattr(_SizeRun, "engine_row", interrupted)
    result = _invoke("--no-e2e", "--json", str(tmp_path / "b.json"))
    assert result.exit_code == 130, result.output
    assert "fp32 bare" in result.stdout  # the baseline row measured before Ctrl-C
    report = json.loads((tmp_path / "b.json").read_text())
    assert [row["variant"] for row in report["rows"]] == ["baseline"] and report["interrupted"] is True
    assert "Interrupted" in result.stderr


def test_plot_without_matplotlib_fails_before_anything_is_measured(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises ImportError

    def never(names):
        raise AssertionError("a model was planned before --plot was checked")

    monkeypatch.setattr(subjects, "plan_subjects", never)
    result = _invoke("--plot", str(tmp_path / "b.png"))
    assert result.exit_code == 1, result.output
    assert "segcli[plot]" in result.output and "matplotlib" in result.output
