"""The benchmark's timing warnings (report lines of the runner, shown by the CLI and kept in the JSON report)."""

from __future__ import annotations

from segcli.benchmarking.environment import SPREAD_WARNING, timing_warnings


def test_a_scattered_row_is_named_in_words_both_a_python_caller_and_the_cli_can_act_on():
    quiet = {"cores": 4, "start": [0.5, 0.4, 0.3], "end": [0.6, 0.5, 0.4]}
    lines = timing_warnings(quiet, [("lraspp", "64x64", SPREAD_WARNING * 2), ("fcn8s", "64x64", SPREAD_WARNING / 2)])
    assert len(lines) == 1 and "1 row(s) (lraspp 64x64)" in lines[0]
    assert "use more iterations" in lines[0] and "--" not in lines[0]  # `iters` in Python, --iters on the CLI
    assert timing_warnings(quiet, [("fcn8s", "64x64", SPREAD_WARNING / 2)]) == []
