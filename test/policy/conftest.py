"""Fixtures shared by the policy tests."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def single_thread():
    """Run torch on one thread for the duration of a test.

    On this shared 2-core machine, two OpenMP threads stall at every barrier when a neighbour
    takes a core (measured: a small training step went from 0.12 s to 0.57 s); one thread
    keeps the wall time of the training tests predictable. Results do not depend on it.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
