"""One intra-op torch thread: the tests' models are tiny, and on a busy 2-core machine two
OpenMP threads waiting on each other make a 0.2 s forward take seconds."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run the block with one intra-op thread, then restore the previous count."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
