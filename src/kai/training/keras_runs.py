"""The ``training.run`` job's work for a Keras model: its own network fine-tuned on PyTorch.

load the checked file  ->  replace its Dense head  ->  try one training step  ->
train epoch by epoch in Kai's loop  ->  save the result as a ``.keras`` file.

The epochs, checkpoints, early stopping, freezing by layer groups and the
``metrics`` events are those of :mod:`kai.training.runs`; only the network is
a :class:`~kai.training.keras_networks.KerasNetwork`. The new version is in the
``keras`` format, read back through the same checked loader as an upload
before it is written. A model whose head cannot be replaced, or whose layers
cannot train on the PyTorch backend, trains by feature extraction instead,
and the job's log and results say why. :data:`KERAS_NETWORKS` lets a
hyperparameter search and cross-validation build each trial's or fold's run
the same way, and training from scratch rebuilds the layers with new
weights. Only the job handler imports this module: it pulls in PyTorch and
Keras.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from kai import models
from kai.errors import InvalidInput
from kai.jobs.context import JobContext
from kai.models.formats.keras_models import (
    KERAS_ARCHIVE_NAME,
    KERAS_H5_NAME,
    import_keras,
    load_checked,
    takes_channels_last,
)
from kai.training import runs
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
from kai.training.runs import OUT_OF_MEMORY, Plan, RunState

logger = logging.getLogger(__name__)


def run_keras_training(ctx: JobContext) -> dict[str, Any]:
    """Fine-tune the job's Keras model on its dataset and write it as a new keras version."""
    job_config, config, folder = runs.prepare(ctx)
    config = KERAS_NETWORKS.adapt(config)
    plan = runs.resolve_plan(ctx, job_config, folder)
    torch.manual_seed(config.seed)
    with out_of_memory_as(OUT_OF_MEMORY):
        network = resolve_network(ctx, plan, config)
    if isinstance(network, str):
        return fall_back(ctx, job_config, network)

    state = create_keras_state(ctx, plan, config, network)
    runs.resume(ctx, state, folder)
    stopped_early = runs.train_epochs(
        ctx, config, state, runs.checkpoint_sink(ctx, folder, config), plan
    )
    runs.restore_best(ctx, state, config)
    results = KERAS_NETWORKS.finish(ctx, plan, config, state, folder, {})
    return results | {"stoppedEarly": stopped_early}


class KerasNetworks(runs.NetworkKind):
    """Keras models, fine-tuned as their own network on the PyTorch backend.

    Search trials and cross-validation folds each load the kept file afresh, so
    every run starts from the parent's weights (or, from scratch, new ones).
    """

    def adapt(self, config: TrainingConfig) -> TrainingConfig:
        # The graph's own input size is the one its layers were built for.
        return config.model_copy(update={"image_size_px": None})

    def create_state(self, ctx: JobContext, plan: Plan, config: TrainingConfig) -> RunState:
        """The run of a freshly loaded network, seeded from PyTorch's seed.

        Raises:
            InvalidInput: The network cannot be fine-tuned; the message says why.
        """
        with out_of_memory_as(OUT_OF_MEMORY):
            network = resolve_network(ctx, plan, config)
        if isinstance(network, str):
            raise InvalidInput(
                f"The Keras network cannot be fine-tuned: {network}; train it without a "
                "search or cross-validation, which then trains a head over its features"
            )
        return create_keras_state(ctx, plan, config, network)

    def finish(
        self,
        ctx: JobContext,
        plan: Plan,
        config: TrainingConfig,
        state: RunState,
        folder: Path,
        extra: dict[str, Any],
    ) -> dict[str, Any]:
        """Store the network as a ``.keras`` file, then evaluate and write it as a version."""
        network = state.network
        assert isinstance(network, KerasNetwork), "a Keras run trains a KerasNetwork"
        stored = store_keras_model(ctx, network)
        groups = keras_layer_groups(network.model, network.head_name)
        extra = {"fineTuning": {"mode": "kerasNetwork"}} | extra
        return runs.finish(
            ctx, plan, config, state, folder, extra, network_file=stored, layer_groups=groups
        )


KERAS_NETWORKS = KerasNetworks()


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
    # Keras draws its initial weights from its own seed; runs vary it through PyTorch's.
    import_keras().utils.set_random_seed(torch.initial_seed() % 2**32)
    model = load_checked(fetch_keras_file(ctx, plan))
    if not config.use_transfer_learning:
        model = reinitialise(model)
        ctx.log("From scratch: the Keras network's layers start from new initial weights")
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


def reinitialise(model: Any) -> Any:
    """The same layers with new initial weights, for training from scratch.

    Raises:
        InvalidInput: The model cannot be rebuilt from its config (a subclassed model).
    """
    keras = import_keras()
    try:
        return keras.models.clone_model(model)
    except (ValueError, TypeError, NotImplementedError) as exc:
        raise InvalidInput(
            f"The Keras model cannot be rebuilt with new weights to train from scratch: {exc}; "
            "train it from its own weights (useTransferLearning true)"
        ) from exc


def create_keras_state(
    ctx: JobContext, plan: Plan, config: TrainingConfig, network: KerasNetwork
) -> RunState:
    """The run state of the wrapped Keras network: loaders, optimizer, schedule, stopper."""
    groups = parameter_groups(network, keras_layer_groups(network.model, network.head_name))
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
