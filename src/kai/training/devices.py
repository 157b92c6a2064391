"""Where a run computes, and in which memory layout and precision.

Measured on the CPUs Kai first ran on: channels-last memory format runs
EfficientNet-Lite0 about 3.6 times faster than the default layout, while
bf16 autocast is 7 to 30 times slower than fp32 on CPUs without native bf16
units. So the CPU gets channels-last in fp32; a CUDA device gets
channels-last with bf16 autocast where it supports bf16, fp32 elsewhere.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from kai.errors import MemoryLimitExceeded

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DevicePlan:
    """How tensors are placed for one run.

    Attributes:
        device: Where the network and batches live.
        memory_format: The layout of image batches and convolution weights.
        autocast_dtype: The reduced precision of the forward pass; None keeps fp32.
    """

    device: torch.device
    memory_format: torch.memory_format = torch.channels_last
    autocast_dtype: torch.dtype | None = None

    @property
    def label(self) -> str:
        """A short description for logs, such as ``cpu, channels-last, fp32``."""
        precision = "fp32" if self.autocast_dtype is None else str(self.autocast_dtype)[6:]
        layout = "channels-last" if self.memory_format is torch.channels_last else "contiguous"
        return f"{self.device}, {layout}, {precision}"

    def images(self, batch: torch.Tensor) -> torch.Tensor:
        """An image batch ``(N, 3, H, W)`` on the device in the plan's layout."""
        moved = batch.to(self.device, non_blocking=True)
        return moved.contiguous(memory_format=self.memory_format)

    def autocast(self) -> contextlib.AbstractContextManager[None]:
        """The forward pass's precision context."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)


CPU_PLAN = DevicePlan(torch.device("cpu"))


def choose_device(rank: int = 0) -> DevicePlan:
    """The plan for this machine: the ``rank``-th CUDA device when there is one, else the CPU."""
    if not torch.cuda.is_available():
        return CPU_PLAN
    device = torch.device("cuda", rank % torch.cuda.device_count())
    bf16 = torch.cuda.is_bf16_supported()
    return DevicePlan(device, torch.channels_last, torch.bfloat16 if bf16 else None)


@contextlib.contextmanager
def out_of_memory_as(message: str) -> Iterator[None]:
    """Turn the device running out of memory into a MemoryLimitExceeded with ``message``."""
    try:
        yield
    except (torch.OutOfMemoryError, MemoryError) as exc:
        raise MemoryLimitExceeded(message) from exc
