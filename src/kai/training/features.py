"""Feature extraction: the frozen backbone embeds every image once, only the head trains.

The model version's network without its head is the backbone. Its identity
is drawn from its weights (:mod:`kai.embeddings`), so quality analysis and
training read and fill one embedding cache on disk whenever they embed with
the same weights: an imported EfficientNet-Lite0 shares the rows the
import's analysis already computed with the bundled one, and a version named
as the analysis backbone (``KAI_EMBEDDING_BACKBONE=model:<id>``) shares its
own. The head, a linear layer
sized to the dataset's classes, then trains on the cached rows: an epoch is
milliseconds, and a second run on the same images computes nothing. The
epochs go through the same loop, metrics, checkpoints and early stopping as
full training; at the end the trained head is put back on the backbone, so
the new model version is a whole network that predicts from images.

A graph model that cannot be fine-tuned whole (Keras, TFLite, an ONNX graph
that does not convert to PyTorch, or one asked to train this way) embeds
through its predictor's ``extract_features``, loaded as predictions load
it; its graph takes no new head, so the new version is a ``kai_head``: the
trained head beside the parent's unchanged files, predicting through the
parent's features. A transformers classifier embeds through its predictor
too (the input of its head, under the identity quality analysis gives that
version), and its trained head goes back into the classifier rebuilt from
its folder, so the new version is a ``transformers`` one.

Augmentation does not apply (each image is embedded once, fitted whole to
the backbone's square input).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from kai import models
from kai.embeddings import (
    Backbone,
    EmbeddingCache,
    compute_embeddings,
    load_version_backbone,
    load_weights_backbone,
)
from kai.evaluation import Evaluation
from kai.jobs.context import JobContext
from kai.models.formats import architectures
from kai.models.formats.frozen_heads import HEAD_NAME, write_head
from kai.training import checkpoints, runs
from kai.training.config import ClassBalance, TrainingConfig, TrainingJobConfig
from kai.training.data import balanced_target_sampler
from kai.training.devices import CPU_PLAN, DevicePlan
from kai.training.hf_networks import attach_head as attach_transformers_head
from kai.training.hf_networks import create_transformers_network
from kai.training.loop import EarlyStopper
from kai.training.runs import EPOCHS_END, Plan, RunState
from kai.training.samples import TrainingSample
from kai.training.schedules import PlateauScale, create_schedule
from kai.training.starts import FOLDER_FORMATS
from kai.training.transfer import BaseWeights, create_network, create_optimizer

logger = logging.getLogger(__name__)

# Share of the progress bar that embedding the images fills.
EMBED_END = 0.5
# Rows, not images: no channels to lay out.
ROWS_PLAN = DevicePlan(CPU_PLAN.device, torch.contiguous_format)


def run_feature_extraction_instead(
    ctx: JobContext, job_config: TrainingJobConfig, why: str
) -> dict[str, Any]:
    """Train a head over the model's features after its network proved untrainable here.

    ``why`` opens the warning the job logs, and the stored config says so from now on.
    """
    ctx.log(f"{why}; a new head trains over its frozen features instead", level="warning")
    training = job_config.training.model_copy(update={"feature_extraction": True})
    ctx.config = job_config.model_copy(update={"training": training}).model_dump(mode="json")
    return run_feature_extraction(ctx)


def run_feature_extraction(ctx: JobContext) -> dict[str, Any]:
    """Embed the images with the frozen backbone, train the head, write the whole network."""
    job_config, config, folder = runs.prepare(ctx)
    config = config.model_copy(update={"freeze_base_model": False, "unfreeze_every_epochs": None})
    plan = runs.resolve_plan(ctx, job_config, folder)
    if plan.weights_sha256 is None:
        # The model's own input size and preprocessing are the only ones its predictor takes.
        config = config.model_copy(update={"image_size_px": None})
        backbone = create_graph_backbone(ctx, plan)
    else:
        weights = runs.base_weights(ctx, plan)
        backbone = create_feature_backbone(plan, weights.path, weights.sha256)
    rows = embed_splits(ctx, plan, backbone)

    torch.manual_seed(config.seed)
    state = create_head_state(ctx, plan, config, rows)
    runs.resume(ctx, state, folder)
    stopped_early = runs.train_epochs(
        ctx, config, state, runs.checkpoint_sink(ctx, folder, config), plan
    )
    runs.restore_best(ctx, state, config)

    ctx.progress(EPOCHS_END, stage="evaluate", force=True)
    evaluation = runs.evaluate_final(ctx, plan, state)
    extra = {"featureExtraction": {"backbone": backbone.identity, "embeddingWidth": rows.width}}
    results = write_trained_head(ctx, plan, config, state, evaluation, extra)
    checkpoints.remove_checkpoints(folder)
    ctx.progress(1.0, stage="done", force=True)
    return results | {"stoppedEarly": stopped_early}


def write_trained_head(
    ctx: JobContext,
    plan: Plan,
    config: TrainingConfig,
    state: RunState,
    evaluation: Evaluation,
    extra: dict[str, Any],
) -> dict[str, Any]:
    """Write the trained head as a version; the job's results.

    A state dict or a transformers classifier takes the head into its own
    network, whole again in its own format; a graph's head is a ``kai_head``
    over the parent's files.
    """
    if plan.spec.format in FOLDER_FORMATS:
        state.network = attach_classifier_head(ctx, plan, state.network)
    elif plan.weights_sha256 is None:
        head = store_head(ctx, plan, state.network)
        return runs.write_results(ctx, plan, config, state, evaluation, extra, head=head)
    else:
        state.network = attach_head(plan, runs.base_weights(ctx, plan), state.network)
    return runs.write_results(ctx, plan, config, state, evaluation, extra)


def create_feature_backbone(plan: Plan, weights: Path, sha256: str) -> Backbone:
    """The version's network without its head, keyed as quality analysis keys it."""
    return load_weights_backbone(
        plan.spec.architecture or "",
        weights,
        name=f"model version {plan.model_version_id}",
        spec=plan.spec.input,
        num_classes=plan.spec.num_classes,
        weights_sha256=sha256,
    )


def create_graph_backbone(ctx: JobContext, plan: Plan) -> Backbone:
    """A version's features as its predictor reads them, keyed as quality analysis keys them.

    A graph's, or a transformers classifier's: the input of its head.
    """
    ctx.log(f"Embedding with the {plan.spec.format} model's own features: only a new head trains")
    with ctx.db.session() as session:
        return load_version_backbone(
            session, ctx.blobs, plan.model_version_id, cache_dir=ctx.work_dir / "backbone"
        )


def store_head(ctx: JobContext, plan: Plan, head: nn.Module) -> models.StoredFile:
    """The trained linear head as a ``kai_head`` file over the parent version, stored."""
    if not isinstance(head, nn.Linear):
        raise TypeError("feature extraction trains one linear layer as the head")
    ctx.work_dir.mkdir(parents=True, exist_ok=True)
    path = write_head(
        ctx.work_dir / f"trained-{HEAD_NAME}",
        head.weight.detach().cpu().numpy(),
        head.bias.detach().cpu().numpy(),
        base_version_id=plan.model_version_id,
        base_format=plan.spec.format,
        base_spec=plan.spec,
    )
    sha256 = ctx.blobs.put_file(path)
    return models.StoredFile("weights", HEAD_NAME, sha256, path.stat().st_size)


class SplitRows:
    """The embeddings of each split, as ``(N, D)`` float tensors with ``(N,)`` targets."""

    def __init__(self, splits: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> None:
        self.splits = splits

    @property
    def width(self) -> int:
        """Features per image."""
        return int(self.splits["train"][0].shape[1])


def embed_splits(ctx: JobContext, plan: Plan, backbone: Backbone) -> SplitRows:
    """Every split's embeddings, computing only what the cache lacks."""
    cache = EmbeddingCache(ctx.settings.resolved_data_dir, backbone.identity)
    splits = {"train": plan.samples.train, "val": plan.samples.val, "test": plan.samples.test}
    hashes = [sample.sha256 for samples in splits.values() for sample in samples]
    missing = len(cache.missing(hashes))
    ctx.log(f"Embedding with {backbone.identity}: {missing} of {len(hashes)} images not cached")

    def progress(done: int, total: int) -> None:
        ctx.progress(EMBED_END * done / max(total, 1), stage="embed")

    vectors = compute_embeddings(
        hashes,
        blobs=ctx.blobs,
        backbone=backbone,
        cache=cache,
        progress=progress,
        check_cancelled=ctx.check_cancelled,
    )
    return SplitRows(_by_split(splits, vectors))


def _by_split(
    splits: dict[str, list[TrainingSample]], vectors: np.ndarray[Any, Any]
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    result = {}
    start = 0
    for name, samples in splits.items():
        if not samples:
            continue
        rows = torch.from_numpy(np.array(vectors[start : start + len(samples)]))
        targets = torch.tensor([sample.target for sample in samples], dtype=torch.long)
        result[name] = (rows, targets)
        start += len(samples)
    return result


def create_head_state(
    ctx: JobContext, plan: Plan, config: TrainingConfig, rows: SplitRows
) -> RunState:
    """The run state of a linear head over the cached rows."""
    head = nn.Linear(rows.width, len(plan.samples.classes))
    loaders = {
        name: rows_loader(tensors, config, train=name == "train")
        for name, tensors in rows.splits.items()
    }
    optimizer = create_optimizer(head, config, [])
    plateau = PlateauScale()
    ctx.log(f"Computing on {ROWS_PLAN.label}: a linear head over {rows.width} features")
    state = RunState(
        network=head,
        groups=[],
        optimizer=optimizer,
        scheduler=create_schedule(optimizer, config, len(loaders["train"]), plateau),
        stopper=EarlyStopper(config.early_stopping_patience, config.early_stopping_min_delta),
        loaders=loaders,  # type: ignore[arg-type]
        loss_fn=runs.create_loss(plan, config, ROWS_PLAN),
        device=ROWS_PLAN,
        plateau=plateau,
    )
    state.progress_span = (EMBED_END, EPOCHS_END)
    return state


def rows_loader(
    tensors: tuple[torch.Tensor, torch.Tensor], config: TrainingConfig, *, train: bool
) -> DataLoader[tuple[torch.Tensor, ...]]:
    """Batches of cached rows; training rows shuffled, or drawn class-balanced on request."""
    generator = torch.Generator().manual_seed(config.seed)
    dataset = TensorDataset(*tensors)
    if train and config.class_balance is ClassBalance.SAMPLING:
        sampler = balanced_target_sampler(tensors[1], generator)
        return DataLoader(dataset, batch_size=config.batch_size, sampler=sampler)
    return DataLoader(dataset, batch_size=config.batch_size, shuffle=train, generator=generator)


def attach_classifier_head(ctx: JobContext, plan: Plan, head: nn.Module) -> nn.Module:
    """The transformers classifier rebuilt from the version's folder with the trained head."""
    folder = runs.lay_out_files(ctx, plan)
    classes = plan.samples.classes
    network, _ = create_transformers_network(plan.spec, folder, class_names=classes)
    return attach_transformers_head(network, head)


def attach_head(plan: Plan, weights: BaseWeights, head: nn.Module) -> nn.Module:
    """The version's whole network with the trained head in place of its own."""
    network, _ = create_network(plan.spec, weights, class_names=plan.samples.classes)
    name = architectures.head_name(network)
    classifier = network.get_submodule(name) if name else None
    if not isinstance(classifier, nn.Linear) or not isinstance(head, nn.Linear):
        raise TypeError("feature extraction needs a network whose head is one linear layer")
    classifier.load_state_dict(head.state_dict())
    return network
