"""``kai train --watch`` and ``kai jobs watch``: a real run followed live on a stopped server."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from kai.cli.main import app
from kai.config import Settings
from kai.db.engine import Database
from kai.db.tables import Job, ModelEvaluation
from kai.storage.blobs import LocalBlobStore
from training.training_factories import dataset_zip, import_dataset, import_model, tiny_weights

pytestmark = [pytest.mark.db, pytest.mark.slow]


def kai(settings: Settings, *args: str) -> tuple[int, str, str]:
    env = {"KAI_DATA_DIR": str(settings.data_dir), "KAI_POLL_SECONDS": "0.1"}
    if settings.database_url:
        env["KAI_DATABASE_URL"] = settings.database_url
    result = CliRunner().invoke(app, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


def test_train_watch_follows_a_quick_trial_and_jobs_watch_replays_it(
    tmp_path: Path, settings: Settings, database: Database, blobs: LocalBlobStore
) -> None:
    classes = {"ceramic": 4, "stone": 4}
    dataset_id = import_dataset(settings, database, blobs, dataset_zip(tmp_path / "d.zip", classes))
    model_id = import_model(settings, database, blobs, tiny_weights(tmp_path / "w.safetensors"))

    code, out, err = kai(
        settings,
        "train",
        "--model", str(model_id),
        "--dataset", str(dataset_id),
        "--epochs", "5",
        "--batch-size", "2",
        "--quick-trial",
        "--no-augmentation",
        "--watch",
    )  # fmt: skip

    assert code == 0, err
    job_id = out.strip().splitlines()[-1]
    assert "epoch 1: trainLoss" in err and "epoch 2: trainLoss" in err
    assert "epoch 3:" not in err, "a quick trial runs at most two epochs"
    assert "Quick trial" in err
    assert "version id" in err

    code, _, err = kai(settings, "jobs", "watch", job_id)
    assert code == 0, err
    assert "epoch 2: trainLoss" in err

    code, _, err = kai(settings, "jobs", "watch", "9999")
    assert code == 1
    assert "9999" in err

    # The run's evaluation in full, its plots written as PNG files.
    with database.session() as session:
        [evaluation] = session.scalars(select(ModelEvaluation)).all()
    plots = tmp_path / "plots"
    code, out, err = kai(settings, "model", "evaluation", str(evaluation.id), "--plots", str(plots))
    assert code == 0, err
    assert "ceramic" in out and "stone" in out and "support" in out
    assert "fitted on the validation split" in out
    written = sorted(path.name for path in plots.iterdir())
    assert written == [
        f"evaluation-{evaluation.id}-confusion-matrix.png",
        f"evaluation-{evaluation.id}-reliability-diagram.png",
    ]
    assert all(path.read_bytes().startswith(b"\x89PNG") for path in plots.iterdir())


def test_train_refuses_options_that_do_not_go_together(settings: Settings) -> None:
    code, _, err = kai(
        settings, "train", "--model", "1", "--dataset", "1", "--folds", "3", "--search-trials", "4"
    )
    assert code == 1
    assert "search or cross-validation for one job, not both" in err

    code, _, err = kai(
        settings, "train", "--model", "1", "--dataset", "1", "--search-trials", "4",
        "--search-parallel", "0",
    )  # fmt: skip
    assert code == 2
    assert "--search-parallel" in err

    code, _, err = kai(settings, "train", "--model", "1", "--dataset", "1", "--augment", "spin")
    assert code == 1
    assert "Unknown augmentation step(s) spin" in err


def test_train_stores_every_hyperparameter_it_is_given(
    tmp_path: Path, settings: Settings, database: Database, blobs: LocalBlobStore
) -> None:
    classes = {"ceramic": 4, "stone": 4}
    dataset_id = import_dataset(settings, database, blobs, dataset_zip(tmp_path / "d.zip", classes))
    model_id = import_model(settings, database, blobs, tiny_weights(tmp_path / "w.safetensors"))

    code, out, err = kai(
        settings,
        "train",
        "--model", str(model_id),
        "--dataset", str(dataset_id),
        "--batch-size", "2",
        "--from-scratch",
        "--optimizer", "sgd",
        "--weight-decay", "0.05",
        "--schedule", "step",
        "--warmup-epochs", "0",
        "--label-smoothing", "0.1",
        "--patience", "5",
        "--image-size", "48",
        "--seed", "7",
        "--time-budget", "600",
        "--freeze-batch-norm",
    )  # fmt: skip

    assert code == 0, err
    with database.session() as session:
        job = session.get(Job, int(out.strip().splitlines()[-1]))
        assert job is not None
        training = job.config["training"]
    assert training["use_transfer_learning"] is False
    assert training["optimizer"] == "sgd" and training["schedule"] == "step"
    assert training["weight_decay"] == 0.05 and training["warmup_epochs"] == 0
    assert training["label_smoothing"] == 0.1 and training["early_stopping_patience"] == 5
    assert training["image_size_px"] == 48 and training["seed"] == 7
    assert training["time_budget_seconds"] == 600 and training["freeze_batch_norm"] is True
