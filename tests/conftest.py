"""Fixtures shared by the whole suite: a tiny random-weight checkpoint and an engine over it.

Helper modules (`model_testing`, `robustness_support`) sit beside this file and are importable
from every test folder (`pythonpath = ["tests"]` in pyproject.toml). Under SEGCLI_REQUIRE_EXTRAS=1
(`make test`) a skip for a missing optional part fails (`require_extras`).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from require_extras import pytest_make_collect_report, pytest_runtest_makereport  # noqa: F401 (hooks)
from robustness_support import TINY_CATEGORIES, save_tiny_checkpoint, tiny_model, tiny_record


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A quarter-width LR-ASPP (3 classes, random weights) saved as a segcli safetensors file."""
    return save_tiny_checkpoint(tmp_path_factory.mktemp("tiny-checkpoint") / "tiny-lraspp.safetensors")


@pytest.fixture
def tiny_engine():
    """A fp32 CPU engine over the tiny model (a new one per test: tests may change its attributes)."""
    from segcli.device import plan_execution
    from segcli.engine import SegmentationEngine

    return SegmentationEngine(tiny_model(), tiny_record(), plan_execution("cpu", "fp32", channels_last=False))


@pytest.fixture
def tiny_categories() -> tuple[str, ...]:
    return TINY_CATEGORIES
