"""The ``training.run`` job's work for a Keras model: its own network fine-tuned on PyTorch.

load the checked file  ->  replace its Dense head  ->  try one training step  ->
train epoch by epoch in Kai's loop  ->  save the result as a ``.keras`` file.

The epochs, checkpoints, early stopping, freezing by layer groups and the
``metrics`` events are those of :mod:`kai.training.runs`; only the network is
a :class:`~kai.training.keras_networks.KerasNetwork`. The new version is in the
``keras`` format, read back through the same checked loader as an upload
before it is written. A model whose head cannot be replaced, or whose layers
cannot train on the PyTorch backend, trains by feature extraction instead,
and the job's log and results say why. Only the job handler imports this
module: it pulls in PyTorch and Keras.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from kai import models
from kai.errors import InvalidInput
from kai.jobs.context import JobContext
from kai.models.formats import LayerGroup
from kai.models.formats.keras_models import (
    KERAS_ARCHIVE_NAME,
    KERAS_H5_NAME,
    import_keras,
    load_checked,
    takes_channels_last,
)
from kai.training import checkpoints, runs
from kai.training.config import TrainingConfig, TrainingJobConfig
from kai.training.devices import DevicePlan, choose_device, out_of_memory_as
from kai.training.features import run_feature_extraction_instead
from kai.training.keras_networks import (
    KerasNetwork,
    find_backend_problem,
    find_head_problem,
    keras_layer_groups,
    parameter_groups,
    replace_head,
)
from kai.training.runs import EPOCHS_END, OUT_OF_MEMORY, Plan, RunState

logger = logging.getLogger(__name__)


def run_keras_training(ctx: JobContext) -> dict[str, Any]:
    """Fine-tune the job's Keras model on its dataset and write it as a new keras version."""
    job_config, config, folder = runs.prepare(ctx)
    # The graph's own input size is the one its layers were built for.
    config = config.model_copy(update={"image_size_px": None})
    plan = runs.resolve_plan(ctx, job_config, folder)
    import_keras().utils.set_random_seed(config.seed)
    with out_of_memory_as(OUT_OF_MEMORY):
        network = resolve_network(ctx, plan, config)
    if isinstance(network, str):
        return fall_back(ctx, job_config, network)

    groups = keras_layer_groups(network.model, network.head_name)
    state = create_keras_state(ctx, plan, config, network, parameter_groups(network, groups))
    runs.resume(ctx, state, folder)
    stopped_early = runs.train_epochs(ctx, config, state, runs.checkpoint_sink(ctx, folder), plan)
    runs.restore_best(ctx, state, config)

    ctx.progress(EPOCHS_END, stage="evaluate", force=True)
    with out_of_memory_as(OUT_OF_MEMORY):
        evaluation = runs.evaluate_final(ctx, plan, state)
    stored = store_keras_model(ctx, network)
    extra = {"fineTuning": {"mode": "kerasNetwork"}}
    results = runs.write_results(
        ctx, plan, config, state, evaluation, extra, network_file=stored, layer_groups=groups
    )
    checkpoints.remove_checkpoints(folder)
    ctx.progress(1.0, stage="done", force=True)
    return results | {"stoppedEarly": stopped_early}


def fetch_keras_file(ctx: JobContext, plan: Plan) -> Path:
    """The version's kept ``.keras`` or ``.h5`` file, copied into the work dir by its name.

    Raises:
        InvalidInput: The version keeps no Keras file.
    """
    with ctx.db.session() as session:
        rows = models.list_artifacts(session, plan.model_version_id)
        found = [(row.name, row.blob_sha256) for row in rows]
    kept = [(name, sha256) for name, sha256 in found if name in (KERAS_ARCHIVE_NAME, KERAS_H5_NAME)]
    if not kept:
        raise InvalidInput(
            f"Model version {plan.model_version_id} keeps no {KERAS_ARCHIVE_NAME} or "
            f"{KERAS_H5_NAME} to train; import the Keras file again"
        )
    name, sha256 = kept[0]
    # Keras picks the reader by the file's suffix, so the copy keeps the kept name.
    target = ctx.work_dir / "parent" / name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(ctx.blobs.read_bytes(sha256))
    return target


def resolve_network(ctx: JobContext, plan: Plan, config: TrainingConfig) -> KerasNetwork | str:
    """The version's network with a Dense head for the dataset's classes, wrapped for the loop.

    Returns:
        The network, or why it cannot be fine-tuned.
    """
    model = load_checked(fetch_keras_file(ctx, plan))
    reason = find_head_problem(model, plan.spec.graph_output)
    if reason is not None:
        return reason
    classes = plan.samples.classes
    keep = list(classes) == list(plan.spec.class_names)
    model = replace_head(model, plan.spec.graph_output, classes, keep)
    network = KerasNetwork(
        model, channels_last=takes_channels_last(model), freeze_batch_norm=config.freeze_batch_norm
    )
    reason = find_backend_problem(network, plan.spec.input.size_px)
    if reason is not None:
        return reason
    if not keep:
        ctx.log(f"New Dense head for {len(classes)} classes: {classes}")
    return network


def create_keras_state(
    ctx: JobContext,
    plan: Plan,
    config: TrainingConfig,
    network: KerasNetwork,
    groups: list[LayerGroup],
) -> RunState:
    """The run state of the wrapped Keras network: loaders, optimizer, schedule, stopper.

    ``groups`` are the layer groups in the wrapper's parameter names.
    """
    device = keras_device_plan()
    state = runs.assemble_run_state(plan, config, network, groups, device, ctx)
    ctx.log(f"Fine-tuning the Keras network on PyTorch, computing on {device.label}")
    return state


def keras_device_plan() -> DevicePlan:
    """The device Keras placed its variables on, in fp32.

    Keras chooses the first CUDA device when there is one, as :func:`choose_device`
    does; its layers pick their own precision, so the loop adds no autocast.
    """
    return DevicePlan(choose_device().device, torch.channels_last, None)


def store_keras_model(ctx: JobContext, network: KerasNetwork) -> runs.StoredNetwork:
    """The trained model saved as ``.keras``, read back through the checked loader, stored."""
    network.restore_trainable()
    target = ctx.work_dir / "trained" / KERAS_ARCHIVE_NAME
    target.parent.mkdir(parents=True, exist_ok=True)
    network.model.save(str(target))
    # A version Kai itself could not load again is never written.
    load_checked(target)
    sha256 = ctx.blobs.put_file(target)
    file = models.StoredFile("weights", KERAS_ARCHIVE_NAME, sha256, target.stat().st_size)
    return runs.StoredNetwork(file, safety_checks=(models.KERAS_CHECK,))


def fall_back(ctx: JobContext, job_config: TrainingJobConfig, reason: str) -> dict[str, Any]:
    """Train a head over the model's features instead, saying why the network itself cannot."""
    why = f"The Keras network cannot be fine-tuned: {reason}"
    results = run_feature_extraction_instead(ctx, job_config, why)
    return results | {"fineTuning": {"mode": "featureExtraction", "reason": reason}}
