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


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread_for_the_session():
    """torch on one intra-op thread from the start, so module and session fixtures run as the tests do: on a
    2-core machine shared with other jobs OpenMP's threads wait on each other (the quick tests/upsampling took
    42.8 s with torch's default, 14.6 s with one thread, back to back), and the tiny models here gain little
    from a second thread. segcli's own thread settings (`Schedule.torch_threads`) still apply inside a run."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(autouse=True)
def one_torch_thread(one_torch_thread_for_the_session):
    """Each test starts on one thread, whatever the test before it left."""
    import torch

    torch.set_num_threads(1)
    yield
    torch.set_num_threads(1)


@pytest.fixture
def tiny_engine():
    """A fp32 CPU engine over the tiny model (a new one per test: tests may change its attributes)."""
    from engine_support import engine_of

    return engine_of(tiny_model(), tiny_record())


@pytest.fixture
def tiny_categories() -> tuple[str, ...]:
    return TINY_CATEGORIES


@pytest.fixture(autouse=True)
def every_json_output_matches_its_schema(monkeypatch):
    """Every NAME.json and NAME.rle.json a test makes segcli write is checked against the published
    JSON Schemas (segcli/outputs/schemas/); a mismatch fails the test that wrote it."""
    jsonschema = _import_jsonschema()
    if jsonschema is None:
        yield
        return
    import segcli.outputs.classwise as classwise
    import segcli.outputs.kinds as kinds
    from schema_support import assert_valid_rle, assert_valid_summary

    mismatches: list[str] = []

    def checked(build, check):
        def wrapper(*args, **kwargs):
            document = build(*args, **kwargs)
            try:
                check(document)
            except jsonschema.ValidationError as exc:
                mismatches.append(f"{build.__name__}: {exc.message} at {list(exc.absolute_path)}")
            return document
        return wrapper

    monkeypatch.setattr(kinds, "summary_document", checked(kinds.summary_document, assert_valid_summary))
    monkeypatch.setattr(classwise, "rle_document", checked(classwise.rle_document, assert_valid_rle))
    yield
    assert not mismatches, mismatches


def _import_jsonschema():
    try:
        import jsonschema
    except ImportError:  # the dev extra installs it; without it the outputs are not checked
        return None
    return jsonschema


@pytest.fixture(scope="module")
def ray_instance():
    """A local 2-CPU Ray instance for one test module (ray imported here: only modules that use it need Ray)."""
    import logging

    import ray

    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    yield ray
    ray.shutdown()
