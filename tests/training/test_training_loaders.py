"""Training loaders: their processes fork from the job, even where a fork server started it."""

from __future__ import annotations

import multiprocessing
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from torch.utils.data import Dataset

from kai.training.data import create_loader, start_loader_processes

# Set after import: only a forked loader process sees the changed value.
MARK = {"value": 0}


class MarkedImages(Dataset[tuple[torch.Tensor, int]]):
    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return torch.tensor([MARK["value"]]), index


@pytest.fixture
def fork_server_default() -> Iterator[None]:
    """The default start method a job process has: the fork server's."""
    previous = multiprocessing.get_start_method(allow_none=True)
    multiprocessing.set_start_method("forkserver", force=True)
    try:
        yield
    finally:
        multiprocessing.set_start_method(previous, force=True)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork is Linux's")
@pytest.mark.usefixtures("fork_server_default")
def test_loader_processes_fork_from_the_job_under_a_fork_server() -> None:
    MARK["value"] = 7
    dataset: Any = MarkedImages()
    loader = create_loader(dataset, batch_size=2, shuffle=False, seed=0, num_workers=1)

    values = [int(v) for images, _ in loader for v in images.flatten()]

    assert values == [7, 7, 7, 7]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork is Linux's")
def test_loader_processes_start_before_the_first_pass_which_still_reads_everything() -> None:
    dataset: Any = MarkedImages()
    loader = create_loader(dataset, batch_size=2, shuffle=False, seed=0, num_workers=1)

    MARK["value"] = 1
    start_loader_processes([loader])
    MARK["value"] = 2
    first = [(int(images[i, 0]), int(indexes[i])) for images, indexes in loader for i in range(2)]
    second = [int(indexes[i]) for _, indexes in loader for i in range(2)]

    # Forked when started, so they saw the mark as it was then; no batch was lost.
    assert first == [(1, 0), (1, 1), (1, 2), (1, 3)]
    assert second == [0, 1, 2, 3]
