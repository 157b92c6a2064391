"""Checkpoints of a running training job, so a retried attempt resumes where it stopped.

One file per job, ``<data dir>/checkpoints/<job id>/last.pt``, replaced
atomically after every epoch. It holds the weights, the optimizer and
scheduler states, the epoch history, the best weights so far and the early
stopping state. Kai writes it itself and reads it back with
``torch.load(weights_only=True)``, so it is never a way in for code.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

logger = logging.getLogger(__name__)

CHECKPOINT_NAME = "last.pt"


@dataclass
class Checkpoint:
    """A training run's state after a finished epoch.

    Attributes:
        epoch: The last finished epoch, counting from 1.
        network: The network's state dict.
        optimizer: The optimizer's state dict.
        scheduler: The scheduler's state dict.
        history: Metrics of every finished epoch, oldest first.
        best_epoch: The epoch with the lowest validation loss.
        best_network: The network's state dict at ``best_epoch``.
        stopper: The early stopping state.
        schedule: The learning-rate schedule's own state (the plateau scale).
        elapsed_seconds: Training time spent over all attempts.
    """

    epoch: int
    network: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0
    best_network: dict[str, torch.Tensor] = field(default_factory=dict)
    stopper: dict[str, Any] = field(default_factory=dict)
    schedule: dict[str, Any] = field(default_factory=dict)
    elapsed_seconds: float = 0.0


def checkpoint_dir(data_dir: Path, job_id: int) -> Path:
    """The folder a job keeps its checkpoint in; it outlives the attempt's work dir."""
    return data_dir / "checkpoints" / str(job_id)


def save_checkpoint(folder: Path, checkpoint: Checkpoint) -> Path:
    """Write the checkpoint next to the old one, then swap it in."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / CHECKPOINT_NAME
    partial = folder / (CHECKPOINT_NAME + ".partial")
    torch.save(checkpoint.__dict__, partial)
    os.replace(partial, target)
    logger.debug("Checkpoint saved", extra={"epoch": checkpoint.epoch, "path": str(target)})
    return target


def load_checkpoint(folder: Path) -> Checkpoint | None:
    """The job's last checkpoint, or None when it has none."""
    target = folder / CHECKPOINT_NAME
    if not target.exists():
        return None
    state = torch.load(target, map_location="cpu", weights_only=True)
    return Checkpoint(**state)


def remove_checkpoints(folder: Path) -> None:
    """Delete a job's checkpoints once nothing will resume from them."""
    shutil.rmtree(folder, ignore_errors=True)
