"""Fixtures of the `--engine ray` tests: a tiny checkpoint, and the comparison of two output folders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from robustness_support import save_tiny_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny-lraspp.safetensors")


def _assert_same_outputs(local: Path, distributed: Path, ignore: tuple[str, ...] = ()) -> None:
    """The same files under both folders, byte for byte; JSON summaries the same document but for the timings
    (and the keys in `ignore`: an actor built by a test has no CLI options to record under "settings")."""
    files = sorted(path.relative_to(local) for path in local.rglob("*") if path.is_file())
    assert files == sorted(path.relative_to(distributed) for path in distributed.rglob("*") if path.is_file())
    assert any(path.suffix == ".json" for path in files)
    for relative in files:
        if relative.suffix == ".json":
            ours, theirs = (json.loads((root / relative).read_text()) for root in (local, distributed))
            for key in ("timings_ms", *ignore):
                ours.pop(key), theirs.pop(key)
            assert ours == theirs, relative
        else:
            assert (local / relative).read_bytes() == (distributed / relative).read_bytes(), relative


@pytest.fixture
def assert_same_outputs():
    return _assert_same_outputs
