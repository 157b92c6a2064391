"""The ``training.run`` job's work, as a short sequence of named steps.

resolve the versions  ->  build the network  ->  make the loaders  ->
resume from a checkpoint  ->  train epoch by epoch  ->  restore the best
weights  ->  evaluate  ->  write the new model version.

Every epoch ends with a checkpoint and then its ``metrics`` event, so a
retried attempt resumes after the last finished epoch and repeats none of
its events. Hyperparameter search (``search.py``) and cross-validation
(``folds.py``) reuse these steps with their own epoch sinks. Only the job
handler imports this module: it pulls in PyTorch.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from sqlalchemy import select
from sqlalchemy.orm import Session
from torch import nn
from torch.utils.data import DataLoader

from kai import datasets, models
from kai.db.tables import DatasetVersion, ModelArtifact, ModelVersion
from kai.errors import InvalidImage, InvalidInput, NotFound
from kai.evaluation import Evaluation, fit_temperature, headline, record_model_evaluation
from kai.evaluation import evaluate as evaluate_predictions
from kai.jobs.context import JobContext
from kai.jobs.events import list_events
from kai.models.formats import InputSpec, LayerGroup, ModelSpec, architectures
from kai.models.formats.hf_configs import PREPROCESSOR_NAME
from kai.models.formats.onnx_graphs import MODEL_NAME as GRAPH_FILE_NAME
from kai.models.formats.onnx_networks import GraphClassifier, export_network
from kai.training import checkpoints
from kai.training.config import ClassBalance, MonitoredMetric, TrainingConfig, TrainingJobConfig
from kai.training.data import (
    BlobImageDataset,
    create_loader,
    create_transform,
    start_loader_processes,
)
from kai.training.devices import DevicePlan, choose_device, out_of_memory_as
from kai.training.hf_networks import (
    TransformersNetwork,
    create_transformers_network,
    save_transformers_network,
)
from kai.training.loop import EarlyStopper, evaluate, train_epoch
from kai.training.metrics import (
    EpochTiming,
    advice_for,
    compute_epoch_metrics,
    diagnose,
    freezing_of,
)
from kai.training.samples import (
    SplitSamples,
    TrainingSample,
    load_split_samples,
    stratified_subset,
)
from kai.training.schedules import PlateauScale, create_schedule
from kai.training.starts import (
    CONVERTIBLE_FORMATS,
    FOLDER_FORMATS,
    TRAINABLE_FORMATS,
    check_dataset_version,
    check_model_version,
)
from kai.training.transfer import (
    BaseWeights,
    create_graph_network,
    create_network,
    create_optimizer,
    freeze_base,
    resolve_layer_groups,
    set_train_mode,
    trainable_count_at,
)

logger = logging.getLogger(__name__)

WEIGHTS_NAME = "weights.safetensors"
PLAN_NAME = "plan.json"
# Share of the progress bar the epochs fill; evaluation and writing the version take the rest.
EPOCHS_END = 0.95

Loader = DataLoader[tuple[torch.Tensor, int]]
OUT_OF_MEMORY = (
    "training ran out of memory: lower batchSize (halve it) or the image size, "
    "or freeze more of the base model"
)


@dataclass(frozen=True)
class Plan:
    """What one run trains, resolved once and pinned for retried attempts.

    Attributes:
        model_version_id: The version training starts from.
        dataset_version_id: The dataset version it trains on.
        spec: The model version's spec.
        weights_sha256: The blob of its state dict's weights; None for other formats.
        layer_groups: Its stored layer groups.
        samples: The samples by split.
        files: ``(name, blob address)`` of the version's files the network is rebuilt
            from: an ONNX graph converted to a network, a transformers folder; empty
            for other formats.
    """

    model_version_id: int
    dataset_version_id: int
    spec: ModelSpec
    weights_sha256: str | None
    layer_groups: list[LayerGroup]
    samples: SplitSamples
    files: tuple[tuple[str, str], ...] = ()


@dataclass
class RunState:
    """The live objects and the progress of one run."""

    network: nn.Module
    groups: list[LayerGroup]
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    stopper: EarlyStopper
    loaders: dict[str, Loader]
    loss_fn: nn.Module
    device: DevicePlan
    plateau: PlateauScale = field(default_factory=PlateauScale)
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0
    best_network: dict[str, torch.Tensor] = field(default_factory=dict)
    elapsed_seconds: float = 0.0
    trainable_groups: int = 0
    # The share of the job's progress bar this run fills.
    progress_span: tuple[float, float] = (0.0, EPOCHS_END)
    # Under DistributedDataParallel: the wrapper the training pass runs through, and
    # what rank 0 tells the other processes before each epoch.
    trainer: nn.Module | None = None
    before_epoch: Callable[[int], None] | None = None


EpochSink = Callable[["RunState", dict[str, Any]], None]


class NetworkKind:
    """How one kind of network becomes a run and, trained, a model version.

    Plain runs, search trials and cross-validation folds build their runs through
    it, so each of them trains a PyTorch network or a Keras one alike. This base
    trains PyTorch networks (a state dict's architecture, a converted graph);
    :class:`~kai.training.keras_runs.KerasNetworks` overrides what differs.
    """

    def adapt(self, config: TrainingConfig) -> TrainingConfig:
        """The config as this kind of network trains with it."""
        return config

    def create_state(self, ctx: JobContext, plan: Plan, config: TrainingConfig) -> RunState:
        """A fresh network with its head, loaders, optimizer and schedule."""
        return create_run_state(ctx, plan, config)

    def finish(
        self,
        ctx: JobContext,
        plan: Plan,
        config: TrainingConfig,
        state: RunState,
        folder: Path,
        extra: dict[str, Any],
    ) -> dict[str, Any]:
        """Evaluate the kept network, write the new version, drop the checkpoints."""
        return finish(ctx, plan, config, state, folder, extra)


TORCH_NETWORKS = NetworkKind()


def run_training(ctx: JobContext) -> dict[str, Any]:
    """Train the job's model on its dataset and write the result as a new model version."""
    job_config, config, folder = prepare(ctx)
    plan = resolve_plan(ctx, job_config, folder)

    torch.manual_seed(config.seed)
    state = create_run_state(ctx, plan, config)
    resume(ctx, state, folder)
    stopped_early = train_epochs(ctx, config, state, checkpoint_sink(ctx, folder, config), plan)
    restore_best(ctx, state, config)
    return finish(ctx, plan, config, state, folder) | {"stoppedEarly": stopped_early}


def prepare(ctx: JobContext) -> tuple[TrainingJobConfig, TrainingConfig, Path]:
    """The job's config (a quick trial caps the epochs) and its checkpoint folder."""
    job_config = TrainingJobConfig.model_validate(ctx.config)
    config = job_config.training
    if config.quick_trial:
        config = config.model_copy(update={"epochs": config.planned_epochs})
    ctx.progress(0.0, stage="prepare", force=True)
    folder = checkpoints.checkpoint_dir(ctx.settings.resolved_data_dir, ctx.job_id)
    return job_config, config, folder


def finish(
    ctx: JobContext,
    plan: Plan,
    config: TrainingConfig,
    state: RunState,
    folder: Path,
    extra: dict[str, Any] | None = None,
    *,
    network_file: StoredNetwork | None = None,
    layer_groups: Sequence[LayerGroup] | None = None,
) -> dict[str, Any]:
    """Evaluate the kept network, write the new version, drop the checkpoints; the results.

    ``network_file`` and ``layer_groups`` go to :func:`write_results`.
    """
    ctx.progress(EPOCHS_END, stage="evaluate", force=True)
    with out_of_memory_as(OUT_OF_MEMORY):
        evaluation = evaluate_final(ctx, plan, state)
    results = write_results(
        ctx,
        plan,
        config,
        state,
        evaluation,
        extra or {},
        network_file=network_file,
        layer_groups=layer_groups,
    )
    checkpoints.remove_checkpoints(folder)
    ctx.progress(1.0, stage="done", force=True)
    return results


def resolve_plan(ctx: JobContext, job_config: TrainingJobConfig, folder: Path) -> Plan:
    """The versions to train, judged again now that any import they waited for has ended."""
    pinned = _read_pinned(folder)
    config = job_config.training
    with ctx.db.session() as session:
        model_version = _model_version(session, job_config, pinned)
        check_model_version(model_version)
        dataset_version = _dataset_version(session, job_config, pinned)
        check_dataset_version(session, dataset_version, config)
        samples = load_split_samples(
            session, dataset_version, validation_split=config.validation_split, seed=config.seed
        )
        if config.quick_trial:
            samples = _quick_trial_samples(samples, config)
        plan = Plan(
            model_version_id=model_version.id,
            dataset_version_id=dataset_version.id,
            spec=ModelSpec.model_validate(model_version.inspection["spec"]),
            weights_sha256=_weights_blob(session, model_version)
            if model_version.format in TRAINABLE_FORMATS
            else None,
            layer_groups=[LayerGroup.model_validate(g) for g in model_version.layer_groups],
            samples=samples,
            files=models.load_request_for(session, model_version).artifacts
            if model_version.format in CONVERTIBLE_FORMATS | FOLDER_FORMATS
            else (),
        )
    _pin(folder, plan)
    _log_plan(ctx, plan)
    return plan


def _quick_trial_samples(samples: SplitSamples, config: TrainingConfig) -> SplitSamples:
    per_class = config.quick_trial_images_per_class
    # Validation keeps a quarter as many per class, at least one, so the check stays fast.
    val_per_class = max(1, per_class // 4)
    return replace(
        samples,
        train=stratified_subset(samples.train, per_class, config.seed),
        val=stratified_subset(samples.val, val_per_class, config.seed),
        test=stratified_subset(samples.test, val_per_class, config.seed),
    )


def _read_pinned(folder: Path) -> dict[str, int]:
    path = folder / PLAN_NAME
    return dict(json.loads(path.read_text())) if path.exists() else {}


def _pin(folder: Path, plan: Plan) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    pinned = {"modelVersionId": plan.model_version_id, "datasetVersionId": plan.dataset_version_id}
    (folder / PLAN_NAME).write_text(json.dumps(pinned))


def _model_version(
    session: Session, job_config: TrainingJobConfig, pinned: dict[str, int]
) -> ModelVersion:
    if "modelVersionId" in pinned:
        return models.get_version(session, pinned["modelVersionId"])
    return models.resolve_version(session, job_config.model_id, job_config.model_version)


def _dataset_version(
    session: Session, job_config: TrainingJobConfig, pinned: dict[str, int]
) -> DatasetVersion:
    if "datasetVersionId" not in pinned:
        return datasets.resolve_version(session, job_config.dataset_id, job_config.dataset_version)
    version = session.get(DatasetVersion, pinned["datasetVersionId"])
    if version is None:
        raise NotFound(f"Dataset version {pinned['datasetVersionId']} was deleted during training")
    return version


def _weights_blob(session: Session, version: ModelVersion) -> str:
    sha256 = session.scalar(
        select(ModelArtifact.blob_sha256).where(
            ModelArtifact.version_id == version.id, ModelArtifact.name == WEIGHTS_NAME
        )
    )
    if sha256 is None:
        raise InvalidInput(f"Model version {version.number} has no {WEIGHTS_NAME} to train")
    return str(sha256)


def _log_plan(ctx: JobContext, plan: Plan) -> None:
    samples = plan.samples
    made = " (validation split made here, stratified)" if samples.val_made else ""
    subject = plan.spec.architecture or f"the {plan.spec.format} graph"
    ctx.log(
        f"Training {subject} on {len(samples.classes)} classes: "
        f"{len(samples.train)} training and {len(samples.val)} validation images{made}"
    )
    if TrainingJobConfig.model_validate(ctx.config).training.quick_trial:
        ctx.log("Quick trial: a small stratified subset, to check the setup before a full run")


def create_run_state(
    ctx: JobContext,
    plan: Plan,
    config: TrainingConfig,
    *,
    shard: tuple[int, int] | None = None,
) -> RunState:
    """The network with its head and frozen groups, the loaders, optimizer and schedule.

    Args:
        ctx: The job's context.
        plan: What the run trains.
        config: How.
        shard: ``(rank, world size)`` when this process trains one share of the
            training split under DistributedDataParallel.
    """
    network, head_replaced = create_base_network(ctx, plan, config, rank=shard[0] if shard else 0)
    if head_replaced:
        ctx.log(f"New head for {len(plan.samples.classes)} classes: {plan.samples.classes}")
    if not config.use_transfer_learning:
        ctx.log(f"From scratch: every layer starts from new random weights (seed {config.seed})")
    groups = resolve_layer_groups(network, plan.layer_groups)
    device = choose_device(shard[0] if shard else 0)
    network = network.to(device.device).to(memory_format=device.memory_format)
    state = assemble_run_state(plan, config, network, groups, device, ctx, shard=shard)
    # Logged once the network, loaders and optimizer are ready: training starts here.
    ctx.log(f"Computing on {device.label}")
    return state


def assemble_run_state(
    plan: Plan,
    config: TrainingConfig,
    network: nn.Module,
    groups: list[LayerGroup],
    device: DevicePlan,
    ctx: JobContext,
    *,
    shard: tuple[int, int] | None = None,
) -> RunState:
    """A ready network's run state: its loaders, optimizer, schedule, stopper and loss."""
    loaders = create_loaders(ctx, plan, config, shard)
    start_loader_processes(list(loaders.values()))
    optimizer = create_optimizer(network, config, groups)
    plateau = PlateauScale()
    return RunState(
        network=network,
        groups=groups,
        optimizer=optimizer,
        scheduler=create_schedule(optimizer, config, len(loaders["train"]), plateau),
        stopper=EarlyStopper(config.early_stopping_patience, config.early_stopping_min_delta),
        loaders=loaders,
        loss_fn=create_loss(plan, config, device),
        device=device,
        plateau=plateau,
    )


def create_base_network(
    ctx: JobContext, plan: Plan, config: TrainingConfig, *, rank: int = 0
) -> tuple[nn.Module, bool]:
    """The version's network with a head for the dataset, and whether the head is new.

    An ONNX version's graph is converted to a network here, in the job's process;
    a transformers version's classifier is rebuilt from its folder.

    Raises:
        GraphNotConvertible: The ONNX graph does not convert.
    """
    classes = plan.samples.classes
    pretrained = config.use_transfer_learning
    if not plan.files:
        weights = base_weights(ctx, plan) if pretrained else None
        return create_network(plan.spec, weights, class_names=classes)
    folder = lay_out_files(ctx, plan, rank=rank)
    if plan.spec.format in FOLDER_FORMATS:
        return create_transformers_network(
            plan.spec, folder, class_names=classes, pretrained=pretrained
        )
    ctx.log(f"Converting the {plan.spec.format} graph to a PyTorch network to fine-tune it whole")
    return create_graph_network(
        plan.spec, folder / GRAPH_FILE_NAME, class_names=classes, pretrained=pretrained
    )


def lay_out_files(ctx: JobContext, plan: Plan, *, rank: int = 0) -> Path:
    """The folder holding the version's files, each checked against its blob address.

    Raises:
        UnsafeModelFile: A stored file no longer matches its address.
    """
    cache = models.PredictorCache(ctx.blobs, ctx.work_dir / "parent" / str(rank), max_entries=1)
    request = models.LoadRequest(plan.model_version_id, plan.spec.format, plan.spec, plan.files)
    return cache.lay_out(request)


def create_loss(plan: Plan, config: TrainingConfig, device: DevicePlan) -> nn.Module:
    """Cross-entropy with label smoothing, weighted by inverse class frequency on request."""
    weight = None
    if config.class_balance is ClassBalance.LOSS:
        counts = class_counts(plan.samples.train, len(plan.samples.classes))
        weight = (counts.sum() / (len(counts) * counts.clamp(min=1))).to(device.device)
    return nn.CrossEntropyLoss(weight=weight, label_smoothing=config.label_smoothing)


def class_counts(samples: list[TrainingSample], num_classes: int) -> torch.Tensor:
    """Images per class index, as floats."""
    targets = torch.tensor([sample.target for sample in samples], dtype=torch.long)
    return torch.bincount(targets, minlength=num_classes).float()


def base_weights(ctx: JobContext, plan: Plan) -> BaseWeights:
    """The path of the version's weights file, copied out of a remote store when needed."""
    sha256 = plan.weights_sha256
    if sha256 is None:
        raise InvalidInput(
            f"Model version {plan.model_version_id} is a {plan.spec.format} graph: it has no "
            "weights to fine-tune and trains only by feature extraction"
        )
    local = ctx.blobs.local_path(sha256)
    if local is not None:
        return BaseWeights(local, sha256)
    ctx.work_dir.mkdir(parents=True, exist_ok=True)
    target = ctx.work_dir / WEIGHTS_NAME
    target.write_bytes(ctx.blobs.read_bytes(sha256))
    return BaseWeights(target, sha256)


def create_loaders(
    ctx: JobContext, plan: Plan, config: TrainingConfig, shard: tuple[int, int] | None = None
) -> dict[str, Loader]:
    """Loaders for train (shuffled, augmented, sharded), val and test (when there is one)."""
    spec = plan.spec.input
    splits: dict[str, list[TrainingSample]] = {
        "train": plan.samples.train,
        "val": plan.samples.val,
    }
    if plan.samples.test:
        splits["test"] = plan.samples.test
    loaders = {}
    for name, samples in splits.items():
        transform = create_transform(spec, config, train=name == "train")
        balanced = name == "train" and config.class_balance is ClassBalance.SAMPLING
        loaders[name] = create_loader(
            BlobImageDataset(samples, ctx.blobs, transform),
            batch_size=config.batch_size,
            shuffle=name == "train",
            seed=config.seed,
            num_workers=config.num_workers,
            shard=shard if name == "train" else None,
            balanced=balanced and shard is None,
        )
    return loaders


def resume(ctx: JobContext, state: RunState, folder: Path) -> None:
    """Take up a checkpoint an earlier attempt left, re-sending epoch events it never sent."""
    saved = checkpoints.load_checkpoint(folder)
    if saved is None:
        return
    state.network.load_state_dict(saved.network)
    state.optimizer.load_state_dict(saved.optimizer)
    state.scheduler.load_state_dict(saved.scheduler)
    state.stopper.restore(saved.stopper)
    state.plateau.restore(saved.schedule)
    state.history = list(saved.history)
    state.best_epoch, state.best_network = saved.best_epoch, dict(saved.best_network)
    state.elapsed_seconds = saved.elapsed_seconds
    ctx.log(f"Resumed from the checkpoint after epoch {saved.epoch}")
    _emit_missing_metrics(ctx, state.history)


def _emit_missing_metrics(ctx: JobContext, history: list[dict[str, Any]]) -> None:
    with ctx.db.session() as session:
        sent = {
            event.payload.get("epoch")
            for event in list_events(session, ctx.job_id)
            if event.type == "metrics"
        }
    for entry in history:
        if entry["epoch"] not in sent:
            ctx.emit("metrics", entry)


def train_epochs(
    ctx: JobContext, config: TrainingConfig, state: RunState, sink: EpochSink, plan: Plan
) -> bool:
    """Train from the epoch after the last checkpoint; returns whether it stopped early.

    Each finished epoch goes to ``sink``: the plain run checkpoints and emits it, a
    search trial reports it to Optuna.
    """
    first = len(state.history) + 1
    for epoch in range(first, config.epochs + 1):
        started = time.monotonic()
        with out_of_memory_as(OUT_OF_MEMORY):
            metrics = run_epoch(ctx, config, state, epoch)
        state.elapsed_seconds += time.monotonic() - started
        entry = {"epoch": epoch, "metrics": metrics}
        state.history.append(entry)
        track_best(state, epoch, config)
        sink(state, entry)
        _require_dataset_version(ctx, plan)
        if _should_stop(ctx, config, state, epoch):
            return epoch < config.epochs
    return False


def checkpoint_sink(ctx: JobContext, folder: Path, config: TrainingConfig) -> EpochSink:
    """The plain run's sink: a checkpoint, then the ``metrics`` event and any advice."""
    freezing = freezing_of(config)

    def sink(state: RunState, entry: dict[str, Any]) -> None:
        _save(state, folder, int(entry["epoch"]))
        ctx.emit("metrics", entry)
        for advice in advice_for(entry["metrics"], freezing):
            ctx.log(f"Epoch {entry['epoch']}: {advice}", level="warning")

    return sink


def _require_dataset_version(ctx: JobContext, plan: Plan) -> None:
    with ctx.db.session() as session:
        exists = session.get(DatasetVersion, plan.dataset_version_id) is not None
    if not exists:
        raise NotFound(
            f"Dataset version {plan.dataset_version_id} was deleted during training; "
            "the run stopped and wrote no model version"
        )


def run_epoch(
    ctx: JobContext, config: TrainingConfig, state: RunState, epoch: int
) -> dict[str, Any]:
    """One training pass and one validation pass; the epoch's metrics."""
    started = time.monotonic()
    batches = len(state.loaders["train"])
    low, high = state.progress_span

    def after_batch(done: int) -> None:
        ctx.check_cancelled()
        fraction = (epoch - 1 + done / max(batches, 1)) / config.epochs
        ctx.progress(
            low + fraction * (high - low),
            stage="train",
            currentEpoch=epoch,
            totalEpochs=config.epochs,
        )

    if state.before_epoch is not None:
        state.before_epoch(epoch)
    # Unthrottled, so every epoch shows in the progress however quickly its batches run.
    ctx.progress(
        low + (epoch - 1) / config.epochs * (high - low),
        stage="train",
        force=True,
        currentEpoch=epoch,
        totalEpochs=config.epochs,
    )
    apply_freezing(ctx, config, state, epoch)
    set_train_mode(state.network, freeze_batch_norm=config.freeze_batch_norm)
    with _bad_data_named():
        train = train_epoch(
            state.trainer or state.network,
            state.loaders["train"],
            optimizer=state.optimizer,
            scheduler=state.scheduler,
            loss_fn=state.loss_fn,
            epoch=epoch,
            after_batch=after_batch,
            device=state.device,
        )
        val, _, _ = evaluate(
            state.network,
            state.loaders["val"],
            loss_fn=state.loss_fn,
            after_batch=lambda _: ctx.check_cancelled(),
            device=state.device,
        )
    state.plateau.update(val.loss)
    seconds = time.monotonic() - started
    timing = EpochTiming(epoch, config.epochs, seconds, _body_learning_rate(state))
    previous = state.history[-1]["metrics"] if state.history else None
    return compute_epoch_metrics(train, val, timing, _num_outputs(state.network), previous)


def apply_freezing(ctx: JobContext, config: TrainingConfig, state: RunState, epoch: int) -> None:
    """Freeze the groups that do not train in ``epoch``, logging each change."""
    if not config.freeze_base_model:
        return
    count = trainable_count_at(config, epoch, len(state.groups))
    if count == state.trainable_groups:
        return
    parameters = freeze_base(state.network, state.groups, count)
    if state.trainable_groups and count > state.trainable_groups:
        name = state.groups[-count].name
        ctx.log(f"Epoch {epoch}: unfroze {name}; {parameters} parameters train")
    else:
        ctx.log(f"Base frozen: the last {count} layer group(s) train, {parameters} parameters")
    state.trainable_groups = count


def _body_learning_rate(state: RunState) -> float:
    rates = state.scheduler.get_last_lr()
    # The top body group comes just before the head, the optimizer's last group.
    return float(rates[-2] if len(rates) > 1 else rates[0])


@contextlib.contextmanager
def _bad_data_named() -> Iterator[None]:
    """Re-raise a sample that does not decode in a loader process in its own words."""
    try:
        yield
    except InvalidImage as exc:
        if "Bad data:" not in exc.message:
            raise
        # A loader process prefixes its traceback; keep the sentence a person reads.
        line = exc.message[exc.message.rindex("Bad data:") :].splitlines()[0]
        if line == exc.message:
            raise
        raise InvalidImage(line) from exc


def _num_outputs(network: nn.Module) -> int:
    if isinstance(network, nn.Linear):
        return int(network.out_features)  # A head trained on cached embeddings.
    declared = getattr(network, "num_outputs", None)
    if isinstance(declared, int):
        return declared  # A wrapped network of another framework.
    head = architectures.head_name(network)
    module = network.get_submodule(head) if head else None
    return int(module.out_features) if isinstance(module, nn.Linear) else 0


def track_best(state: RunState, epoch: int, config: TrainingConfig) -> None:
    """Feed the epoch's monitored metric to the stopper; keep the weights when it improved."""
    metric = config.early_stopping_metric
    value = float(state.history[-1]["metrics"][metric.value])
    # The stopper looks for a falling value; accuracy rises as it improves.
    falling = value if metric is MonitoredMetric.VAL_LOSS else -value
    if state.stopper.update(falling) or not state.best_network:
        state.best_epoch = epoch
        state.best_network = architectures.state_dict_of(state.network)


def _save(state: RunState, folder: Path, epoch: int) -> None:
    checkpoint = checkpoints.Checkpoint(
        epoch=epoch,
        network=state.network.state_dict(),
        optimizer=state.optimizer.state_dict(),
        scheduler=state.scheduler.state_dict(),
        history=state.history,
        best_epoch=state.best_epoch,
        best_network=state.best_network,
        stopper=state.stopper.state(),
        schedule=state.plateau.state(),
        elapsed_seconds=state.elapsed_seconds,
    )
    checkpoints.save_checkpoint(folder, checkpoint)


def _should_stop(ctx: JobContext, config: TrainingConfig, state: RunState, epoch: int) -> bool:
    if config.enable_early_stopping and state.stopper.should_stop:
        ctx.log(
            f"Early stopping after epoch {epoch}: no improvement since epoch {state.best_epoch}"
        )
        return True
    budget = config.time_budget_seconds
    if budget is not None and state.elapsed_seconds >= budget:
        ctx.log(f"Time budget of {budget:.0f} s spent after epoch {epoch}")
        return True
    return False


def restore_best(ctx: JobContext, state: RunState, config: TrainingConfig) -> None:
    """With early stopping on, keep the weights of the epoch best on the monitored metric."""
    last = len(state.history)
    if not config.enable_early_stopping or state.best_epoch in (0, last):
        return
    state.network.load_state_dict(state.best_network)
    ctx.log(
        f"Restored the weights of epoch {state.best_epoch}, "
        f"the best on {config.early_stopping_metric.value}"
    )


def evaluate_final(ctx: JobContext, plan: Plan, state: RunState) -> Evaluation:
    """The kept network scored on the test split, or on validation when there is none.

    The temperature that calibrates its probabilities is fitted on the validation
    split, so the test split's after-scaling figures measure it honestly.
    """
    val_logits, val_target = _predict_split(ctx, state, "val")
    temperature = fit_temperature(val_logits.numpy(), val_target.numpy())
    split = "test" if "test" in state.loaders else "val"
    logits, target = (
        _predict_split(ctx, state, split) if split == "test" else (val_logits, val_target)
    )
    samples = plan.samples.test if split == "test" else plan.samples.val
    evaluation = evaluate_predictions(
        logits.softmax(dim=1).numpy(),
        target.numpy(),
        class_names=plan.samples.classes,
        sample_ids=[sample.uid for sample in samples],
        logits=logits.numpy(),
        temperature=temperature,
    )
    return replace(evaluation, details={**evaluation.details, "split": split})


def _predict_split(
    ctx: JobContext, state: RunState, split: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """The network's logits ``(N, C)`` and the targets ``(N,)`` of one split."""
    _, logits, target = evaluate(
        state.network,
        state.loaders[split],
        loss_fn=state.loss_fn,
        after_batch=lambda _: ctx.check_cancelled(),
        device=state.device,
    )
    return logits, target


def write_results(
    ctx: JobContext,
    plan: Plan,
    config: TrainingConfig,
    state: RunState,
    evaluation: Evaluation,
    extra: dict[str, Any],
    *,
    head: models.StoredFile | None = None,
    network_file: StoredNetwork | None = None,
    layer_groups: Sequence[LayerGroup] | None = None,
) -> dict[str, Any]:
    """Store the weights, write the new model version and its evaluation; the job's results.

    ``extra`` (search or cross-validation findings) joins the results and the
    version's metrics. ``head``, a stored head file of a graph model, is written
    instead of the network's weights, with the parent's files kept beside it.
    ``network_file``, the network already stored in the parent's own format (a
    Keras model), is written instead of a state dict, with its ``layer_groups``.
    A stored network that knows its own layer groups (a transformers folder's, in
    the classifier's names) records them when ``layer_groups`` is None.
    """
    final = state.history[-1]["metrics"]
    best = _best_metrics(state)
    findings = diagnose(state.history, freezing_of(config))
    input_spec = _input_spec(plan, config)
    if head is not None:
        stored = StoredNetwork(head)
    elif network_file is not None:
        stored = network_file
    else:
        stored = _store_network(ctx, plan, state.network, input_spec)
    if layer_groups is None:
        layer_groups = stored.layer_groups or resolve_layer_groups(state.network, [])
    trained = models.TrainedVersion(
        parent_id=plan.model_version_id,
        job_id=ctx.job_id,
        dataset_version_id=plan.dataset_version_id,
        weights=stored.file,
        class_names=plan.samples.classes,
        input_spec=input_spec,
        layer_groups=layer_groups,
        parameter_count=architectures.count_parameters(state.network),
        config=config.model_dump(mode="json"),
        metrics={"final": final, "best": best, "diagnosis": findings, **extra},
        head_over_parent=head is not None,
        details=stored.details,
        safety_checks=stored.safety_checks,
        temperature=evaluation.calibration.temperature,
        extra_files=stored.extra_files,
        head_layer=stored.head_layer,
    )
    with ctx.db.session() as session:
        version = models.create_trained_version(session, trained)
        ids = {"modelId": version.model_id, "modelVersionId": version.id}
        ids["modelVersion"] = version.number
        recorded = _evaluation_recorded(session, version.id, ctx.job_id)
    if not recorded:
        record_model_evaluation(
            ctx.db,
            ctx.blobs,
            ids["modelVersionId"],
            evaluation,
            dataset_version_id=plan.dataset_version_id,
            job_id=ctx.job_id,
        )
    return {
        **ids,
        "datasetVersionId": plan.dataset_version_id,
        "fromVersionId": plan.model_version_id,
        "epochs": len(state.history),
        "bestEpoch": state.best_epoch,
        "finalMetrics": final,
        "bestMetrics": best,
        "evaluation": headline(evaluation.to_json()) | {"split": evaluation.details["split"]},
        "calibration": _calibration_summary(evaluation),
        "diagnosis": findings,
        "device": state.device.label,
        **extra,
    }


def _calibration_summary(evaluation: Evaluation) -> dict[str, Any]:
    calibration = evaluation.calibration
    return {
        "temperature": calibration.temperature,
        "fittedOn": calibration.temperature_fitted_on,
        "ece": calibration.ece,
        "eceAfterTemperature": calibration.ece_after_temperature,
    }


def _evaluation_recorded(session: Session, version_id: int, job_id: int) -> bool:
    evaluations = models.list_evaluations(session, version_id)
    return any(row.created_by_job_id == job_id for row in evaluations)


def _best_metrics(state: RunState) -> dict[str, Any]:
    for entry in state.history:
        if entry["epoch"] == state.best_epoch:
            return dict(entry["metrics"])
    return dict(state.history[-1]["metrics"])


def _input_spec(plan: Plan, config: TrainingConfig) -> InputSpec:
    if config.image_size_px is None:
        return plan.spec.input
    size = (config.image_size_px, config.image_size_px)
    return plan.spec.input.model_copy(update={"size_px": size})


@dataclass(frozen=True)
class StoredNetwork:
    """A trained network's files in the blob store, with what its version records about them.

    Attributes:
        file: The weights, or the one file holding the network.
        details: Format-specific facts for the version's inspection.
        safety_checks: The checks the files passed.
        extra_files: Files its format loads beside ``file``.
        layer_groups: Its layer groups as its format names them; None when the
            trained module's own names are those.
        head_layer: The classification layer its format reads features before.
    """

    file: models.StoredFile
    details: dict[str, Any] = field(default_factory=dict)
    safety_checks: tuple[str, ...] = (models.WEIGHTS_CHECK,)
    extra_files: tuple[models.StoredFile, ...] = ()
    layer_groups: tuple[LayerGroup, ...] | None = None
    head_layer: str | None = None


def _store_network(
    ctx: JobContext, plan: Plan, network: nn.Module, input_spec: InputSpec
) -> StoredNetwork:
    if isinstance(network, GraphClassifier):
        return _store_graph(ctx, plan, network, input_spec)
    if isinstance(network, TransformersNetwork):
        return _store_transformers(ctx, plan, network)
    return StoredNetwork(_store_weights(ctx, plan, network))


def _store_transformers(ctx: JobContext, plan: Plan, network: TransformersNetwork) -> StoredNetwork:
    """The trained classifier as a transformers folder, read back as trained, then stored.

    The folder's ``config.json`` names the dataset's classes; the parent's
    ``preprocessor_config.json`` (the same blob) keeps describing its input.

    Raises:
        CorruptModelFile: The saved folder does not read back as trained.
    """
    written = save_transformers_network(network, ctx.work_dir / "trained-transformers")
    roles = ("weights", "config")
    stored = [_put(ctx, role, path) for role, path in zip(roles, written, strict=True)]
    kept = dict(plan.files).get(PREPROCESSOR_NAME)
    if kept is not None:
        stored.append(models.StoredFile("config", PREPROCESSOR_NAME, kept, ctx.blobs.size(kept)))
    details = {"modelClass": type(network.model).__name__, "modelType": plan.spec.architecture}
    return StoredNetwork(
        stored[0],
        details,
        (models.TRANSFORMERS_CHECK,),
        extra_files=tuple(stored[1:]),
        layer_groups=tuple(network.model_groups()),
        head_layer=network.head,
    )


def _put(ctx: JobContext, role: str, path: Path) -> models.StoredFile:
    return models.StoredFile(role, path.name, ctx.blobs.put_file(path), path.stat().st_size)


def _store_graph(
    ctx: JobContext, plan: Plan, network: GraphClassifier, input_spec: InputSpec
) -> StoredNetwork:
    """The fine-tuned network exported as an ONNX graph, which the ONNX format loads."""
    spec = plan.spec.model_copy(update={"input": input_spec})
    exported = export_network(
        network, ctx.work_dir / "trained-graph", spec, size_px=input_spec.size_px
    )
    sha256 = ctx.blobs.put_file(exported.path)
    size = exported.path.stat().st_size
    details = {
        "featureTensor": exported.feature_tensor,
        "torchConversion": {"convertible": True, "reason": None},
    }
    return StoredNetwork(
        models.StoredFile("weights", GRAPH_FILE_NAME, sha256, size),
        details,
        (models.GRAPH_CHECK,),
    )


def _store_weights(ctx: JobContext, plan: Plan, network: nn.Module) -> models.StoredFile:
    ctx.work_dir.mkdir(parents=True, exist_ok=True)
    target = ctx.work_dir / f"trained-{WEIGHTS_NAME}"
    metadata = {
        "architecture": plan.spec.architecture or "",
        "num_classes": str(len(plan.samples.classes)),
    }
    safetensors.torch.save_file(architectures.state_dict_of(network), target, metadata)
    sha256 = ctx.blobs.put_file(target)
    return models.StoredFile("weights", WEIGHTS_NAME, sha256, target.stat().st_size)
