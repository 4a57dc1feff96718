"""Training tests run torch on one thread: on a shared, loaded 2-core machine OpenMP's two threads
wait on each other (a tiny convolution took 47 ms instead of 0.4 ms), and timings here matter."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def one_torch_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
