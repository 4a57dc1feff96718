"""compare-upsampling tests run torch on one thread, as the training tests do (tests/training/conftest.py): on a
shared 2-core machine OpenMP's two threads wait on each other, and these tests run a MobileNetV2 encoder on
small images, where a second thread saves little even on an idle machine."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def one_torch_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
