"""Models: upload, URL and repository import, read, versions, cards and predictions.

The upload route commits the request's transaction before the body streams
in, so a long upload holds no database lock. The file's format is detected
and its cheap checks run (magic bytes, structure, the pickle scan) as soon
as it is on disk, so a garbage or code-carrying file is answered with a 4xx
at once and nothing is stored; the inspection, conversion and trial run
happen in the import job. Predictions load a version once and keep it in a
small per-process cache.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session

from kai.api.dependencies import (
    READ_ONLY_MARK,
    EditorUser,
    IdempotencyKey,
    PageQuery,
    RuntimeDep,
    SessionDep,
    ViewerUser,
)
from kai.api.schemas import Page
from kai.api.schemas.models import (
    CardRead,
    CardUpdate,
    ImagePredictionRead,
    ModelImportStarted,
    ModelRead,
    ModelUpdate,
    ModelVersionRead,
    PredictionsRead,
    UrlImportCreate,
    VersionComparisonRead,
)
from kai.api.uploads import ReceivedFile, ReceivedForm, receive_multipart
from kai.db.tables import ModelVersion, Role
from kai.errors import InvalidInput, TooLarge
from kai.models import (
    ModelSource,
    PredictorCache,
    SourceKind,
    check_source_url,
    compare_versions,
    find_by_idempotency_key,
    get_model,
    list_artifacts,
    list_evaluations,
    list_lineage,
    list_models,
    list_versions,
    load_request_for,
    parse_version_numbers,
    predict_images,
    read_card,
    read_model,
    resolve_format,
    resolve_version,
    start_model_import,
    update_card,
    update_model,
)
from kai.models.formats import FormatRegistry, ImportOptions, create_format_registry
from kai.models.formats.tensorflow_graphs import CONVERT_ADVICE
from kai.models.repositories import Repository, check_repository_request, parse_repository
from kai.runtime import Runtime
from kai.security.images import ImageLimits

router = APIRouter(prefix="/models", tags=["models"])

UPLOAD_FIELDS = frozenset({"file", "classNamesFile"})
MAX_PREDICT_IMAGES = 64
MAX_PREDICT_IMAGE_BYTES = 64 * 1024 * 1024
MAX_CLASS_NAMES_BYTES = 8 * 1024 * 1024
# The frameworks and formats a repository import may name; a plugin's are not offered here.
REPOSITORY_FRAMEWORKS = frozenset(
    {"pytorch", "onnx", "pytorch_state_dict", "torchscript", "transformers", "keras", "tflite"}
)
_SERVICES_LOCK = threading.Lock()


@dataclass
class ModelServices:
    """What model routes keep for the life of the API process."""

    formats: FormatRegistry
    predictors: PredictorCache


def model_services(request: Request, runtime: Runtime) -> ModelServices:
    """The process's format registry and predictor cache, made on first use."""
    with _SERVICES_LOCK:
        services: ModelServices | None = getattr(request.app.state, "model_services", None)
        if services is None:
            cache_dir = runtime.settings.resolved_data_dir / "model-cache"
            services = ModelServices(
                create_format_registry(), PredictorCache(runtime.blobs, cache_dir)
            )
            request.app.state.model_services = services
        return services


@router.post("/upload", status_code=202)
async def create_model_upload(
    request: Request,
    runtime: RuntimeDep,
    user: EditorUser,
    session: SessionDep,
    idempotency_key: IdempotencyKey,
) -> ModelImportStarted:
    """Upload a model file (multipart ``file``) and queue its import.

    Form fields: ``name``, ``description``, ``framework`` (overrides detection),
    ``architecture`` (for a state dict), ``modelId`` (add a version to that model),
    and the advanced ``inputSize``, ``mean``, ``std``, ``classNames`` (JSON list or
    one per line; or a ``classNamesFile``), ``headLayer``, ``graphInput``, ``graphOutput``.
    """
    if idempotency_key:
        earlier = find_by_idempotency_key(session, idempotency_key)
        if earlier is not None:
            return ModelImportStarted(id=earlier[0].id, job_id=earlier[1].id)
    user_id = user.id
    session.commit()  # No database lock may be held while the body streams in.
    form = await receive_multipart(
        request,
        uploads_dir=runtime.settings.uploads_dir,
        max_bytes=runtime.settings.max_upload_bytes,
        file_fields=UPLOAD_FIELDS,
    )
    services = model_services(request, runtime)
    try:
        started = await run_in_threadpool(
            _start_upload_import, runtime, services, form, user_id, idempotency_key
        )
    except BaseException:
        form.discard()
        raise
    runtime.dispatcher.dispatch(started.job_id)
    return started


@router.post("/import/url", status_code=202)
def create_url_import(
    body: UrlImportCreate,
    runtime: RuntimeDep,
    user: EditorUser,
    session: SessionDep,
    idempotency_key: IdempotencyKey,
) -> ModelImportStarted:
    """Queue the download of a model file from a public URL and its import."""
    if idempotency_key:
        earlier = find_by_idempotency_key(session, idempotency_key)
        if earlier is not None:
            return ModelImportStarted(id=earlier[0].id, job_id=earlier[1].id)
    check_source_url(body.url, runtime.settings)
    if body.model_id is not None:
        get_model(session, body.model_id)
    options = ImportOptions(
        framework=body.framework or None,
        architecture=body.architecture or None,
        input_size_px=(body.input_size, body.input_size) if body.input_size else None,
        mean=body.mean,
        std=body.std,
        class_names=body.class_names,
        head_layer=body.head_layer,
        graph_input=body.graph_input,
        graph_output=body.graph_output,
    )
    name = body.name.strip() or Path(body.url.split("?", 1)[0]).stem or "model"
    source = ModelSource(kind=SourceKind.URL, url=body.url, original_name=Path(body.url).name)
    model, job = start_model_import(
        session,
        name=name,
        description=body.description,
        source=source,
        options=options,
        model_id=body.model_id,
        created_by=user.id,
        idempotency_key=idempotency_key,
        max_attempts=runtime.settings.max_attempts,
    )
    started = ModelImportStarted(id=model.id, job_id=job.id)
    session.commit()
    runtime.dispatcher.dispatch(started.job_id)
    return started


@router.post("/import/repository", status_code=202)
def create_repository_import(
    runtime: RuntimeDep,
    user: EditorUser,
    session: SessionDep,
    idempotency_key: IdempotencyKey,
    repository: Annotated[str, Form(max_length=64)],
    model_id: Annotated[str, Form(alias="modelId", max_length=1000)],
    name: Annotated[str, Form(max_length=200)] = "",
    description: Annotated[str, Form(max_length=10_000)] = "",
    framework: Annotated[str, Form(max_length=64)] = "",
    architecture: Annotated[str, Form(max_length=200)] = "",
    revision: Annotated[str, Form(max_length=200)] = "",
    trust_repository_code: Annotated[bool, Form(alias="trustRepositoryCode")] = False,
    input_size: Annotated[str, Form(alias="inputSize", max_length=8)] = "",
    mean: Annotated[str, Form(max_length=200)] = "",
    std: Annotated[str, Form(max_length=200)] = "",
    class_names: Annotated[str, Form(alias="classNames", max_length=MAX_CLASS_NAMES_BYTES)] = "",
    class_names_file: Annotated[UploadFile | None, File(alias="classNamesFile")] = None,
    head_layer: Annotated[str, Form(alias="headLayer", max_length=200)] = "",
    graph_input: Annotated[str, Form(alias="graphInput", max_length=200)] = "",
    graph_output: Annotated[str, Form(alias="graphOutput", max_length=200)] = "",
) -> ModelImportStarted:
    """Queue the import of a pretrained model from a public repository.

    ``repository`` is one of ``huggingface``, ``pytorch-hub``, ``onnx-model-zoo``,
    ``tensorflow-hub``, ``kaggle``, ``url``, ``bundled`` or ``architecture``; ``modelId`` is
    the model's id there (``timm/resnet18.a1_in1k``, ``torchvision:resnet18``,
    ``resnet18-v1-7``, a Kaggle handle, a URL, ``efficientnet_lite0``). ``architecture``
    builds a timm or torchvision architecture by name (``resnet18``, ``timm:NAME``,
    ``torchvision:NAME``) with fresh weights, a model that trains from scratch. The job
    reads the repository client's cache when the network is missing.
    ``trustRepositoryCode`` (admins only) allows building a PyTorch Hub model with its
    repository's own ``hubconf.py`` (``OWNER/REPO:ENTRY``), inside the sandbox.
    The advanced fields are the upload's (``inputSize``, ``mean``, ``std``, ``classNames``
    or ``classNamesFile``, ``headLayer``, ``graphInput``, ``graphOutput``); what they give
    wins over what the repository says.
    """
    if idempotency_key:
        earlier = find_by_idempotency_key(session, idempotency_key)
        if earlier is not None:
            return ModelImportStarted(id=earlier[0].id, job_id=earlier[1].id)
    chosen = parse_repository(repository)
    reference = model_id.strip()
    check_repository_request(
        chosen,
        reference,
        trust_repository_code=trust_repository_code,
        is_admin=user.role is Role.ADMIN,
    )
    _check_framework(framework)
    if chosen is Repository.URL:
        check_source_url(reference, runtime.settings)
        source = ModelSource(kind=SourceKind.URL, url=reference, original_name=Path(reference).name)
    else:
        source = ModelSource(
            kind=SourceKind.REPOSITORY,
            repository=chosen.value,
            reference=reference,
            revision=revision.strip() or None,
            original_name=reference,
            trust_repository_code=trust_repository_code,
        )
    names_text = _read_names_file(class_names_file) if class_names_file else class_names
    options = ImportOptions(
        framework=framework.strip() or None,
        architecture=architecture.strip() or None,
        input_size_px=_input_size(input_size),
        mean=_triple(mean, "mean"),
        std=_triple(std, "std"),
        class_names=_parse_class_names(names_text),
        head_layer=head_layer.strip() or None,
        graph_input=graph_input.strip() or None,
        graph_output=graph_output.strip() or None,
    )
    model, job = start_model_import(
        session,
        name=name.strip() or reference.rstrip("/").rsplit("/", 1)[-1] or "model",
        description=description,
        source=source,
        options=options,
        created_by=user.id,
        idempotency_key=idempotency_key,
        max_attempts=runtime.settings.max_attempts,
    )
    started = ModelImportStarted(id=model.id, job_id=job.id)
    session.commit()
    runtime.dispatcher.dispatch(started.job_id)
    return started


@router.get("")
def list_models_route(
    _user: ViewerUser,
    session: SessionDep,
    paging: PageQuery,
    search: Annotated[str | None, Query(max_length=200)] = None,
) -> Page[ModelRead]:
    """Models, newest first, optionally matching ``search`` in name or description."""
    rows, total = list_models(session, page=paging.page, page_size=paging.page_size, search=search)
    items = [ModelRead.from_rows(model, version) for model, version in rows]
    return Page(items=items, total=total, page=paging.page, page_size=paging.page_size)


@router.get("/{model_id}")
def read_model_route(model_id: int, _user: ViewerUser, session: SessionDep) -> ModelRead:
    """One model with a summary of its latest version."""
    return ModelRead.from_rows(*read_model(session, model_id))


@router.patch("/{model_id}")
def update_model_route(
    model_id: int, body: ModelUpdate, _user: EditorUser, session: SessionDep
) -> ModelRead:
    """Change the name or description; versions are untouched."""
    update_model(session, model_id, name=body.name, description=body.description)
    return ModelRead.from_rows(*read_model(session, model_id))


@router.get("/{model_id}/versions")
def list_versions_route(
    model_id: int, _user: ViewerUser, session: SessionDep
) -> list[ModelVersionRead]:
    """Every version, oldest first, with its artifacts and evaluations."""
    return [_version_read(session, version) for version in list_versions(session, model_id)]


@router.get("/{model_id}/versions/compare")
def read_version_comparison_route(
    model_id: int,
    _user: ViewerUser,
    session: SessionDep,
    versions: Annotated[str, Query(max_length=200, description="Version numbers, as 1,2")],
) -> VersionComparisonRead:
    """Two to ten versions side by side: facts, class changes and metrics per dataset version."""
    comparison = compare_versions(session, model_id, parse_version_numbers(versions))
    return VersionComparisonRead.from_comparison(comparison)


@router.get("/{model_id}/versions/{number}")
def read_version_route(
    model_id: int, number: int, _user: ViewerUser, session: SessionDep
) -> ModelVersionRead:
    """One version in full."""
    return _version_read(session, resolve_version(session, model_id, number))


@router.get("/{model_id}/versions/{number}/lineage")
def list_lineage_route(
    model_id: int, number: int, _user: ViewerUser, session: SessionDep
) -> list[ModelVersionRead]:
    """The version and the versions it was made from, newest first."""
    version = resolve_version(session, model_id, number)
    return [_version_read(session, v) for v in list_lineage(session, version)]


@router.get("/{model_id}/versions/{number}/card")
def read_card_route(model_id: int, number: int, _user: ViewerUser, session: SessionDep) -> CardRead:
    """The version's Markdown model card."""
    version, markdown = read_card(session, model_id, number)
    return _card_read(version, markdown)


@router.put("/{model_id}/versions/{number}/card")
def update_card_route(
    model_id: int, number: int, body: CardUpdate, _user: EditorUser, session: SessionDep
) -> CardRead:
    """Replace the card's text; ``markdown: null`` regenerates it from what Kai knows."""
    version = update_card(session, model_id, number, body.markdown)
    return _card_read(version, version.card)


@router.post("/{model_id}/predict", openapi_extra={READ_ONLY_MARK: True})
async def create_prediction(
    model_id: int,
    request: Request,
    runtime: RuntimeDep,
    _user: ViewerUser,
    session: SessionDep,
    file: Annotated[list[UploadFile], File(description="One or more images")],
    version: Annotated[int | None, Query(ge=1)] = None,
    top_k: Annotated[int, Query(alias="topK", ge=1, le=100)] = 5,
) -> PredictionsRead:
    """Classify one or more images with the latest version (or ``version``).

    A POST, so the router-wide guard keeps it to editors and admins.
    """
    chosen = resolve_version(session, model_id, version)
    load_request = load_request_for(session, chosen)
    number = chosen.number
    session.commit()
    images = await _read_images(file)
    services = model_services(request, runtime)
    limits = ImageLimits.from_settings(runtime.settings)

    def predict() -> list[ImagePredictionRead]:
        predictor = services.predictors.get(load_request)
        predictions = predict_images(predictor, images, limits=limits, top_k=top_k)
        return [ImagePredictionRead.from_prediction(p) for p in predictions]

    results = await run_in_threadpool(predict)
    return PredictionsRead(model_id=model_id, version=number, results=results)


def _start_upload_import(
    runtime: Runtime,
    services: ModelServices,
    form: ReceivedForm,
    user_id: int,
    idempotency_key: str | None,
) -> ModelImportStarted:
    main = _required_file(form, "file")
    options = _options_from_form(form)
    model_id = _optional_int(form.text("modelId"), "modelId")
    if model_id is not None:
        with runtime.db.session() as session:
            get_model(session, model_id)
    resolve_format(services.formats, main.path, options)
    source = ModelSource(kind=SourceKind.UPLOAD, path=str(main.path), original_name=main.filename)
    name = form.text("name").strip() or Path(main.filename).stem
    with runtime.db.session() as session:
        model, job = start_model_import(
            session,
            name=name,
            description=form.text("description"),
            source=source,
            options=options,
            model_id=model_id,
            upload_dir=form.directory,
            created_by=user_id,
            idempotency_key=idempotency_key,
            max_attempts=runtime.settings.max_attempts,
        )
        started = ModelImportStarted(id=model.id, job_id=job.id)
        repeated = job.config.get("upload_dir") != str(form.directory)
    if repeated:
        form.discard()
    return started


def _check_framework(framework: str) -> None:
    """Refuse a framework no built-in format has, without building the format registry."""
    wanted = framework.strip().lower()
    if not wanted or wanted in REPOSITORY_FRAMEWORKS:
        return
    if wanted in ("tensorflow", "tfjs", "savedmodel"):
        raise InvalidInput(CONVERT_ADVICE, details={"field": "framework"})
    raise InvalidInput(
        f"Unknown framework {framework!r}; use one of: {', '.join(sorted(REPOSITORY_FRAMEWORKS))}"
        " or leave it empty",
        details={"field": "framework"},
    )


def _options_from_form(form: ReceivedForm) -> ImportOptions:
    return ImportOptions(
        framework=form.text("framework").strip() or None,
        architecture=form.text("architecture").strip() or None,
        input_size_px=_input_size(form.text("inputSize")),
        mean=_triple(form.text("mean"), "mean"),
        std=_triple(form.text("std"), "std"),
        class_names=_class_names(form),
        head_layer=form.text("headLayer").strip() or None,
        graph_input=form.text("graphInput").strip() or None,
        graph_output=form.text("graphOutput").strip() or None,
    )


def _input_size(text: str) -> tuple[int, int] | None:
    size = _optional_int(text, "inputSize")
    if size is not None and not 8 <= size <= 4096:
        raise InvalidInput(
            f"inputSize must be 8 to 4096 pixels, not {size}", details={"field": "inputSize"}
        )
    return (size, size) if size else None


def _class_names(form: ReceivedForm) -> list[str] | None:
    text = form.text("classNames")
    names_file = form.files.get("classNamesFile")
    if names_file is not None:
        if names_file.size > MAX_CLASS_NAMES_BYTES:
            raise TooLarge(f"classNamesFile is over {MAX_CLASS_NAMES_BYTES} bytes")
        text = names_file.path.read_text(encoding="utf-8", errors="replace")
    return _parse_class_names(text)


def _read_names_file(upload: UploadFile) -> str:
    data = upload.file.read(MAX_CLASS_NAMES_BYTES + 1)
    if len(data) > MAX_CLASS_NAMES_BYTES:
        raise TooLarge(f"classNamesFile is over {MAX_CLASS_NAMES_BYTES} bytes")
    return data.decode("utf-8", errors="replace")


def _parse_class_names(text: str) -> list[str] | None:
    """Class names from a JSON list or one name per line; None when the text is empty."""
    text = text.strip()
    if not text:
        return None
    if text.startswith("["):
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidInput(
                f"classNames is not a valid JSON list: {exc}", details={"field": "classNames"}
            ) from exc
        if not isinstance(parsed, list) or not all(isinstance(n, str) for n in parsed):
            raise InvalidInput(
                "classNames must be a JSON list of strings", details={"field": "classNames"}
            )
        names = [n.strip() for n in parsed]
    else:
        names = [line.strip() for line in text.splitlines()]
    names = [n for n in names if n]
    if len(set(names)) != len(names):
        raise InvalidInput("classNames has duplicates", details={"field": "classNames"})
    return names


def _triple(text: str, field: str) -> tuple[float, float, float] | None:
    text = text.strip().strip("[]()")
    if not text:
        return None
    try:
        values = [float(part) for part in text.replace(";", ",").split(",")]
    except ValueError as exc:
        raise InvalidInput(
            f"{field} must be three numbers such as 0.5,0.5,0.5", details={"field": field}
        ) from exc
    if len(values) != 3 or (field == "std" and min(values) <= 0):
        raise InvalidInput(
            f"{field} must be three numbers (std above 0), not {text!r}", details={"field": field}
        )
    return (values[0], values[1], values[2])


def _optional_int(text: str, field: str) -> int | None:
    text = text.strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError as exc:
        raise InvalidInput(
            f"{field} must be a whole number, not {text!r}", details={"field": field}
        ) from exc


def _required_file(form: ReceivedForm, field: str) -> ReceivedFile:
    received = form.files.get(field)
    if received is None:
        raise InvalidInput(f"The upload has no {field!r} file field", details={"field": field})
    return received


async def _read_images(files: list[UploadFile]) -> list[tuple[str, bytes]]:
    if len(files) > MAX_PREDICT_IMAGES:
        raise InvalidInput(f"Send at most {MAX_PREDICT_IMAGES} images at once, not {len(files)}")
    images = []
    for upload in files:
        data = await upload.read(MAX_PREDICT_IMAGE_BYTES + 1)
        name = Path(upload.filename or "image").name
        if len(data) > MAX_PREDICT_IMAGE_BYTES:
            raise TooLarge(f"Image {name!r} is over {MAX_PREDICT_IMAGE_BYTES} bytes")
        images.append((name, data))
    return images


def _version_read(session: Session, version: ModelVersion) -> ModelVersionRead:
    return ModelVersionRead.from_rows(
        version, list_artifacts(session, version.id), list_evaluations(session, version.id)
    )


def _card_read(version: ModelVersion, markdown: str) -> CardRead:
    return CardRead(
        model_id=version.model_id,
        version=version.number,
        markdown=markdown,
        edited=version.card_edited_at is not None,
        edited_at=version.card_edited_at,
    )
