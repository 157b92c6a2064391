"""One training job over several processes with DistributedDataParallel.

With more than one CUDA device (or ``distributed_processes`` set) the job's
own process is rank 0 and starts one follower process per further rank.
All ranks build the same network and wrap it in DDP, which hands them rank
0's weights and averages their gradients; each trains on its share of the
training split. Rank 0 alone validates, checkpoints, emits events and
decides: before every epoch it broadcasts the epoch, whether to go on and
the plateau schedule's scale, so early stopping, time budgets and cancels
stop every rank together. A follower resumes from the same checkpoint file
as rank 0, so optimizer states agree too. At the end the ranks compare a
checksum of their weights: DDP keeps them equal, and a difference fails
the job rather than writing a model nobody can trust.

The process group uses NCCL on CUDA and gloo on the CPU (which the tests
use, with two processes), meeting through a file in the job's checkpoint
folder.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler

from kai.config import Settings
from kai.db.engine import Database
from kai.errors import IsolatedTaskFailed
from kai.jobs.allocator import retain_freed_memory
from kai.jobs.context import JobContext
from kai.storage.blobs import open_blob_store
from kai.training import checkpoints, runs
from kai.training.config import TrainingConfig
from kai.training.loop import train_epoch
from kai.training.runs import Plan, RunState
from kai.training.transfer import set_train_mode

logger = logging.getLogger(__name__)

RENDEZVOUS_NAME = "ddp-rendezvous"
COLLECTIVE_TIMEOUT = timedelta(minutes=10)
# Relative difference of the ranks' weight checksums that counts as disagreement.
AGREEMENT_TOLERANCE = 1e-5


def world_size_for(config: TrainingConfig) -> int:
    """How many processes train the job: the config's count, else one per CUDA device.

    Progressive unfreezing trains in one process: DDP fixes the parameters it
    averages when it wraps the network, so a group unfrozen later would drift.
    """
    if config.freeze_base_model and config.unfreeze_every_epochs is not None:
        return 1
    if config.distributed_processes is not None:
        return config.distributed_processes
    return max(1, torch.cuda.device_count())


def backend_name() -> str:
    """NCCL where CUDA is, gloo on the CPU."""
    return "nccl" if torch.cuda.is_available() else "gloo"


def run_distributed_training(ctx: JobContext, world_size: int) -> dict[str, Any]:
    """The plain run of :func:`kai.training.runs.run_training`, with this process as rank 0."""
    job_config, config, folder = runs.prepare(ctx)
    plan = runs.resolve_plan(ctx, job_config, folder)
    torch.manual_seed(config.seed)
    state = runs.create_run_state(ctx, plan, config, shard=(0, world_size))
    runs.resume(ctx, state, folder)
    ctx.log(
        f"DistributedDataParallel over {world_size} processes ({backend_name()}); "
        f"each trains on {len(state.loaders['train'].sampler)} of "  # type: ignore[arg-type]
        f"{len(plan.samples.train)} images per epoch"
    )
    with process_group(ctx, plan, config, folder, world_size):
        wrap(state)
        state.before_epoch = lambda epoch: _lead_epoch(state, epoch, go_on=True)
        stopped = runs.train_epochs(
            ctx, config, state, runs.checkpoint_sink(ctx, folder, config), plan
        )
        _lead_epoch(state, 0, go_on=False)
        check_agreement(state)
    ctx.log(f"The {world_size} processes ended with the same weights")
    state.trainer = None
    runs.restore_best(ctx, state, config)
    return runs.finish(ctx, plan, config, state, folder) | {"stoppedEarly": stopped}


@contextlib.contextmanager
def process_group(
    ctx: JobContext, plan: Plan, config: TrainingConfig, folder: Path, world_size: int
) -> Iterator[None]:
    """Start the followers, join the group as rank 0, and end both however the run ends."""
    rendezvous = folder / RENDEZVOUS_NAME
    rendezvous.unlink(missing_ok=True)
    spawn = multiprocessing.get_context("spawn")
    task = FollowerTask(ctx.job_id, ctx.job_type, ctx.config, ctx.settings, plan, config, folder)
    followers: list[BaseProcess] = []
    for rank in range(1, world_size):
        process = spawn.Process(
            target=follower_main, args=(task, rank, world_size), name=f"kai-ddp-{rank}"
        )
        process.start()
        followers.append(process)
    try:
        _join(0, world_size, rendezvous)
        yield
    except (RuntimeError, dist.DistBackendError) as exc:
        _kill(followers)
        raise IsolatedTaskFailed(f"A distributed training process failed: {exc}") from exc
    except BaseException:
        # The followers wait in a collective rank 0 will never reach.
        _kill(followers)
        raise
    finally:
        _leave()
        _end(followers)


def wrap(state: RunState) -> None:
    """Put the network in DDP for the training pass; rank 0's weights reach every rank."""
    device = state.device.device
    ids = [device.index] if device.type == "cuda" else None
    state.trainer = DistributedDataParallel(state.network, device_ids=ids)


def check_agreement(state: RunState) -> None:
    """Compare the ranks' weight checksums; raise when DDP let them drift apart."""
    total = sum(float(p.detach().double().sum()) for p in state.network.parameters())
    local = torch.tensor([total], dtype=torch.float64, device=state.device.device)
    gathered = [torch.zeros_like(local) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, local)
    values = [float(value) for value in gathered]
    scale = max(1.0, max(abs(value) for value in values))
    if (max(values) - min(values)) / scale > AGREEMENT_TOLERANCE:
        raise IsolatedTaskFailed(
            f"The distributed processes ended with different weights: {values}"
        )


@dataclass(frozen=True)
class FollowerTask:
    """What a follower process needs to build the same run as rank 0."""

    job_id: int
    job_type: str
    job_config: dict[str, Any]
    settings: Settings
    plan: Plan
    config: TrainingConfig
    folder: Path


class _FollowerContext(JobContext):
    """A follower's context: it reads what rank 0 reads, and says nothing."""

    def emit(self, event_type: str, payload: dict[str, Any]) -> int:
        return 0

    def progress(
        self, fraction: float, *, stage: str = "", force: bool = False, **fields: Any
    ) -> None:
        return None

    def log(self, message: str, *, level: str = "info", **fields: Any) -> None:
        logger.debug(message, extra={"job_id": self.job_id})


def follower_main(task: FollowerTask, rank: int, world_size: int) -> None:
    """A follower's life: join, build the run, train each epoch rank 0 announces, compare."""
    retain_freed_memory()
    db = Database(task.settings.resolved_database_url)
    work_dir = task.settings.work_dir / f"{task.job_id}-rank{rank}"
    blobs = open_blob_store(task.settings.resolved_storage_url)
    ctx = _FollowerContext(
        task.job_id, task.job_type, task.job_config, 1, task.settings, db, blobs, work_dir
    )
    try:
        _join(rank, world_size, task.folder / RENDEZVOUS_NAME)
        torch.manual_seed(task.config.seed)
        state = runs.create_run_state(ctx, task.plan, task.config, shard=(rank, world_size))
        _resume_quietly(state, task.folder)
        wrap(state)
        _follow_epochs(ctx, task, state)
        check_agreement(state)
    finally:
        _leave()
        db.dispose()
        shutil.rmtree(work_dir, ignore_errors=True)


def _follow_epochs(ctx: JobContext, task: FollowerTask, state: RunState) -> None:
    config = task.config
    while (epoch := _receive_epoch(state)) > 0:
        runs.apply_freezing(ctx, config, state, epoch)
        set_train_mode(state.network, freeze_batch_norm=config.freeze_batch_norm)
        assert state.trainer is not None
        train_epoch(
            state.trainer,
            state.loaders["train"],
            optimizer=state.optimizer,
            scheduler=state.scheduler,
            loss_fn=state.loss_fn,
            epoch=epoch,
            after_batch=lambda _: None,
            device=state.device,
        )


def _lead_epoch(state: RunState, epoch: int, *, go_on: bool) -> None:
    """Rank 0 tells the followers the next epoch (0 to stop) and the plateau scale."""
    control = torch.tensor([float(epoch if go_on else 0), state.plateau.scale])
    dist.broadcast(control, src=0)
    if go_on:
        _set_sampler_epoch(state, epoch)


def _receive_epoch(state: RunState) -> int:
    control = torch.zeros(2)
    dist.broadcast(control, src=0)
    epoch = int(control[0])
    state.plateau.scale = float(control[1])
    if epoch > 0:
        _set_sampler_epoch(state, epoch)
    return epoch


def _set_sampler_epoch(state: RunState, epoch: int) -> None:
    sampler = state.loaders["train"].sampler
    if isinstance(sampler, DistributedSampler):
        sampler.set_epoch(epoch)


def _resume_quietly(state: RunState, folder: Path) -> None:
    saved = checkpoints.load_checkpoint(folder)
    if saved is None:
        return
    state.network.load_state_dict(saved.network)
    state.optimizer.load_state_dict(saved.optimizer)
    state.scheduler.load_state_dict(saved.scheduler)
    state.plateau.restore(saved.schedule)


def _join(rank: int, world_size: int, rendezvous: Path) -> None:
    dist.init_process_group(
        backend_name(),
        init_method=f"file://{rendezvous}",
        rank=rank,
        world_size=world_size,
        timeout=COLLECTIVE_TIMEOUT,
    )


def _leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def _kill(followers: list[BaseProcess]) -> None:
    for process in followers:
        if process.is_alive():
            process.kill()


def _end(followers: list[BaseProcess]) -> None:
    for process in followers:
        process.join(timeout=30)
        if process.is_alive():
            logger.warning("A distributed training process did not stop; killing it")
            process.kill()
            process.join()
