"""Under SEGCLI_REQUIRE_EXTRAS=1 (`make test` sets it) a test skipped because an optional part is missing fails.

`make test` installs every optional part segcli has: the dense CRF (pydensecrf), export (onnx, onnxruntime,
onnxscript), COCO RLE (pycocotools), Ray Data and Chromium for the report's browser test. Their tests skip
where a part is absent, so that `pytest` runs anywhere; but in `make test` (CI) such a skip would hide a
broken install - or a broken import - behind a green run. Other skips (no CUDA GPU, not Linux, running as
root) stay skips. Loaded by tests/conftest.py; tests/test_require_extras.py runs it on planted skips.
"""

from __future__ import annotations

import os
import re

import pytest

ENV = "SEGCLI_REQUIRE_EXTRAS"
EXTRAS = ("pydensecrf", "onnx", "onnxruntime", "onnxscript", "pycocotools", "ray", "chromium")
_EXTRA = re.compile(r"\b(" + "|".join(EXTRAS) + r")\b", re.IGNORECASE)


def required() -> bool:
    return os.environ.get(ENV, "") not in ("", "0")


def skip_reason(report) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


def fail_missing_extra(report) -> None:
    """Turn `report` (a test's or a module's) into a failure when it skipped for a missing optional part."""
    if not (required() and report.skipped) or hasattr(report, "wasxfail"):
        return
    reason = skip_reason(report)
    if _EXTRA.search(reason):
        report.outcome = "failed"
        report.longrepr = (f"{ENV}=1: skipped because an optional part `make test` installs is missing "
                           f"(install it, or run without {ENV}): {reason}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    fail_missing_extra(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    fail_missing_extra(outcome.get_result())
