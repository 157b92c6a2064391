"""transformers image classifiers from the Hugging Face Hub cache, through the real import job."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from kai.config import Settings
from kai.db.engine import Database
from kai.errors import UnsafeModelFile
from kai.models import (
    ModelSource,
    SourceKind,
    get_version,
    load_request_for,
    start_model_import,
)
from kai.models.formats import ImportOptions, create_format_registry
from kai.models.repositories import Repository, fetch_repository_model
from kai.storage.blobs import LocalBlobStore
from models.model_factories import (
    VIT_LABELS,
    run_model_job,
    sample_batch,
    save_transformers_folder,
    tiny_vit,
    vit_logits,
)
from models.repositories.model_caches import COMMIT, make_transformers_repo

REPO_ID = "kai-test/tiles-vit"


@pytest.mark.db
@pytest.mark.slow
def test_transformers_classifier_imports_offline_pinned_to_its_commit(
    hf_cache: Path,
    settings: Settings,
    database: Database,
    blobs: LocalBlobStore,
    tmp_path: Path,
) -> None:
    model = tiny_vit()
    make_transformers_repo(hf_cache, REPO_ID, save_transformers_folder(model, tmp_path / "vit"))
    source = ModelSource(kind=SourceKind.REPOSITORY, repository="huggingface", reference=REPO_ID)
    with database.session() as session:
        _, job = start_model_import(
            session, name="vit", description="", source=source, options=ImportOptions()
        )
        job_id, config = job.id, dict(job.config)

    result, error = run_model_job(settings, database, blobs, job_id, config)

    assert error is None and result is not None
    assert (result["format"], result["numClasses"]) == ("transformers", 3)
    with database.session() as session:
        version = get_version(session, result["versionId"])
        request, provenance = load_request_for(session, version), version.provenance
    assert provenance["revision"] == COMMIT and provenance["repository"] == "huggingface"
    assert request.spec.class_names == list(VIT_LABELS)
    assert request.spec.input.size_px == (32, 32) and request.spec.input.mean == (0.5, 0.5, 0.5)
    assert {name for name, _ in request.artifacts} == {
        "model.safetensors",
        "config.json",
        "preprocessor_config.json",
    }


def test_a_config_that_maps_to_the_models_own_code_is_refused(
    hf_cache: Path, settings: Settings, tmp_path: Path
) -> None:
    canary = tmp_path / "canary"
    folder = save_transformers_folder(tiny_vit(), tmp_path / "vit")
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModelForImageClassification": "modeling_tiles.TilesModel"}
    (folder / "config.json").write_text(json.dumps(config))
    code = f"open({str(canary)!r}, 'w').close()\nclass TilesModel: pass\n".encode()
    make_transformers_repo(hf_cache, REPO_ID, folder, extra_files={"modeling_tiles.py": code})

    with pytest.raises(UnsafeModelFile, match="trust_remote_code"):
        fetch_repository_model(
            Repository.HUGGINGFACE, REPO_ID, None, ImportOptions(), settings=settings
        )
    assert not canary.exists()


def test_the_bundle_predicts_like_the_original(
    hf_cache: Path, settings: Settings, tmp_path: Path
) -> None:
    model = tiny_vit()
    make_transformers_repo(hf_cache, REPO_ID, save_transformers_folder(model, tmp_path / "vit"))
    fetched = fetch_repository_model(
        Repository.HUGGINGFACE, REPO_ID, None, ImportOptions(), settings=settings
    )
    fmt = create_format_registry(plugins=False).resolve(fetched.path)
    assert fmt.name == "transformers" and fetched.options.framework == "transformers"
    inspection = fmt.inspect(fetched.path, fetched.options)
    out_dir = tmp_path / "artifact"
    out_dir.mkdir()
    fmt.prepare(fetched.path, inspection, out_dir)
    predictor = fmt.load(out_dir, inspection.spec)

    batch = sample_batch()
    logits = vit_logits(model, batch)
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(predictor.predict(batch), expected, rtol=1e-4, atol=1e-5)
