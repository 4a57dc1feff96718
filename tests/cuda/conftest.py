"""CUDA tests (`pytest -m cuda`): each skips cleanly where no CUDA GPU is visible.

Every test in this folder carries the `cuda` marker (declared in pyproject.toml); the hook below
skips any test with that marker, here or elsewhere, when torch sees no GPU.
"""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config, items) -> None:
    marked = [item for item in items if item.get_closest_marker("cuda") is not None]
    if not marked:
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
    for item in marked:
        item.add_marker(skip)


@pytest.fixture(autouse=True)
def release_gpu_memory():
    """Each test starts from an empty cache; one test's blocks never crowd out the next."""
    yield
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
