"""Datasets: upload and import, read, edit into new versions, diff, samples and their images.

Routes that queue a job commit their transaction before dispatching it, so a
worker told about the job can always read it. The upload route commits the
request's transaction before the body streams in, so a long upload holds no
database lock; the archive's central directory, the CSV and the layout are
checked as soon as the files are on disk, and a bad upload is answered with
a 4xx at once, its files deleted.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session

from kai.api.dependencies import (
    EditorUser,
    IdempotencyKey,
    PageQuery,
    RuntimeDep,
    SessionDep,
    ViewerUser,
)
from kai.api.schemas import Page
from kai.api.schemas.datasets import (
    DatasetRead,
    DatasetUpdate,
    DiffRead,
    FolderImportCreate,
    ImportStarted,
    JobStarted,
    SampleRead,
    VersionCreate,
    VersionRead,
)
from kai.api.uploads import ReceivedFile, ReceivedForm, receive_multipart
from kai.datasets import (
    DatasetChanges,
    ImportSource,
    SourceKind,
    apply_edits,
    check_source,
    compute_diff,
    delete_dataset,
    find_by_idempotency_key,
    get_dataset,
    get_sample,
    list_datasets,
    list_samples,
    list_versions,
    media_type,
    read_dataset,
    read_thumbnail,
    resolve_version,
    start_add_files,
    start_import,
    update_dataset,
)
from kai.datasets.filesets import resolve_import_path
from kai.datasets.thumbnails import MEDIA_TYPES
from kai.db.tables import DatasetStatus, Split
from kai.errors import Conflict, InvalidInput
from kai.runtime import Runtime
from kai.security.images import ImageFormat

router = APIRouter(prefix="/datasets", tags=["datasets"])

UPLOAD_FIELDS = frozenset({"file", "images"})
CSV_SUFFIXES = frozenset({".csv", ".tsv", ".txt"})


@router.post("/upload", status_code=202)
async def create_dataset_upload(
    request: Request,
    runtime: RuntimeDep,
    user: EditorUser,
    session: SessionDep,
    idempotency_key: IdempotencyKey,
) -> ImportStarted:
    """Upload a ZIP (or a CSV with an ``images`` ZIP or ``folder``) and queue its import."""
    if idempotency_key:
        earlier = find_by_idempotency_key(session, idempotency_key)
        if earlier is not None:
            return ImportStarted(id=earlier[0].id, job_id=earlier[1].id)
    user_id = user.id
    session.commit()  # No database lock may be held while the body streams in.
    form = await receive_multipart(
        request,
        uploads_dir=runtime.settings.uploads_dir,
        max_bytes=runtime.settings.max_upload_bytes,
        file_fields=UPLOAD_FIELDS,
    )
    try:
        source = _upload_source(form)
        await run_in_threadpool(check_source, source, runtime.settings)
        started = await run_in_threadpool(
            _start_upload_import, runtime, form, source, user_id, idempotency_key
        )
    except BaseException:
        form.discard()
        raise
    runtime.dispatcher.dispatch(started.job_id)
    return started


@router.post("/import/folder", status_code=202)
def create_folder_import(
    body: FolderImportCreate,
    runtime: RuntimeDep,
    user: EditorUser,
    session: SessionDep,
    idempotency_key: IdempotencyKey,
) -> ImportStarted:
    """Queue the import of a folder on the server, under a configured import root."""
    settings = runtime.settings
    folder = resolve_import_path(body.path, settings)
    source = ImportSource(
        kind=SourceKind.FOLDER, folder_path=str(folder), original_name=folder.name
    )
    if body.csv_path:
        csv_path = resolve_import_path(body.csv_path, settings)
        source = source.model_copy(update={"kind": SourceKind.CSV, "csv_path": str(csv_path)})
    check_source(source, settings)
    dataset, job = start_import(
        session,
        name=body.name,
        description=body.description,
        source=source,
        created_by=user.id,
        idempotency_key=idempotency_key,
        max_attempts=settings.max_attempts,
    )
    started = ImportStarted(id=dataset.id, job_id=job.id)
    session.commit()
    runtime.dispatcher.dispatch(started.job_id)
    return started


@router.get("")
def list_datasets_route(
    _user: ViewerUser,
    session: SessionDep,
    paging: PageQuery,
    search: Annotated[str | None, Query(max_length=200)] = None,
) -> Page[DatasetRead]:
    """Datasets, newest first, optionally matching ``search`` in name or description."""
    rows, total = list_datasets(
        session, page=paging.page, page_size=paging.page_size, search=search
    )
    items = [DatasetRead.from_rows(dataset, version) for dataset, version in rows]
    return Page(items=items, total=total, page=paging.page, page_size=paging.page_size)


@router.get("/{dataset_id}")
def read_dataset_route(dataset_id: int, _user: ViewerUser, session: SessionDep) -> DatasetRead:
    """One dataset with its latest version's sample count and classes per split."""
    return DatasetRead.from_rows(*read_dataset(session, dataset_id))


@router.patch("/{dataset_id}")
def update_dataset_route(
    dataset_id: int, body: DatasetUpdate, _user: EditorUser, session: SessionDep
) -> DatasetRead:
    """Change the name, description, tags or license; versions are untouched."""
    changes = DatasetChanges(
        name=body.name, description=body.description, tags=body.tags, license=body.license
    )
    update_dataset(session, dataset_id, changes)
    return DatasetRead.from_rows(*read_dataset(session, dataset_id))


@router.delete("/{dataset_id}", status_code=204)
def delete_dataset_route(dataset_id: int, _user: EditorUser, session: SessionDep) -> Response:
    """Delete a dataset and its versions; a running import is cancelled."""
    delete_dataset(session, dataset_id)
    return Response(status_code=204)


@router.get("/{dataset_id}/versions")
def list_versions_route(
    dataset_id: int, _user: ViewerUser, session: SessionDep
) -> list[VersionRead]:
    """Every version, oldest first."""
    get_dataset(session, dataset_id)
    versions = list_versions(session, dataset_id)
    numbers = {version.id: version.number for version in versions}
    return [
        VersionRead.from_version(v, numbers.get(v.parent_id) if v.parent_id else None)
        for v in versions
    ]


@router.post("/{dataset_id}/versions", status_code=201)
def create_version(
    dataset_id: int, body: VersionCreate, _user: EditorUser, session: SessionDep
) -> VersionRead:
    """Apply edits (relabel, remove, move, renameClass, mergeClasses) as a new version."""
    operations = [operation.to_operation() for operation in body.operations]
    version = apply_edits(session, dataset_id, operations, message=body.message)
    return VersionRead.from_version(version, version.number - 1)


@router.get("/{dataset_id}/versions/{number}")
def read_version(
    dataset_id: int, number: int, _user: ViewerUser, session: SessionDep
) -> VersionRead:
    """One version with its class counts, image statistics and import report."""
    version = resolve_version(session, dataset_id, number)
    parent = _parent_number(session, dataset_id, version.parent_id)
    return VersionRead.from_version(version, parent)


@router.get("/{dataset_id}/diff")
def read_diff(
    dataset_id: int,
    _user: ViewerUser,
    session: SessionDep,
    from_version: Annotated[int, Query(alias="from", ge=1)],
    to_version: Annotated[int, Query(alias="to", ge=1)],
    limit: Annotated[int, Query(ge=0, le=10_000)] = 1000,
) -> DiffRead:
    """Added, removed, relabelled and moved samples between two versions."""
    get_dataset(session, dataset_id)
    diff = compute_diff(session, dataset_id, from_version, to_version, limit=limit)
    return DiffRead.from_diff(diff)


@router.get("/{dataset_id}/samples")
def list_samples_route(
    dataset_id: int,
    _user: ViewerUser,
    session: SessionDep,
    paging: PageQuery,
    version: Annotated[int | None, Query(ge=1)] = None,
    label: Annotated[str | None, Query(max_length=200)] = None,
    split: Split | None = None,
) -> Page[SampleRead]:
    """Samples of the latest version (or ``version``), filtered by ``label`` and ``split``."""
    chosen = resolve_version(session, dataset_id, version)
    samples, total = list_samples(
        session, chosen, label=label, split=split, page=paging.page, page_size=paging.page_size
    )
    items = [SampleRead.from_sample(sample) for sample in samples]
    return Page(items=items, total=total, page=paging.page, page_size=paging.page_size)


@router.get("/{dataset_id}/samples/{sample_id}/thumbnail")
def read_sample_thumbnail(
    dataset_id: int, sample_id: str, runtime: RuntimeDep, _user: ViewerUser, session: SessionDep
) -> Response:
    """A small preview of the sample, made on first request and cached."""
    sample = get_sample(session, dataset_id, sample_id)
    data = read_thumbnail(runtime.blobs, runtime.settings, sample.reduced_sha256)
    return Response(data, media_type=media_type(data[:32]), headers=_image_headers())


@router.get("/{dataset_id}/samples/{sample_id}/image")
def read_sample_image(
    dataset_id: int, sample_id: str, runtime: RuntimeDep, _user: ViewerUser, session: SessionDep
) -> Response:
    """The sample's original file."""
    sample = get_sample(session, dataset_id, sample_id)
    data = runtime.blobs.read_bytes(sample.blob_sha256)
    kind = MEDIA_TYPES.get(ImageFormat(sample.format), "application/octet-stream")
    filename = PurePosixPath(sample.original_name).name.replace('"', "")
    headers = _image_headers() | {"Content-Disposition": f'inline; filename="{filename}"'}
    return Response(data, media_type=kind, headers=headers)


@router.post("/{dataset_id}/files", status_code=202)
async def create_dataset_files(
    dataset_id: int,
    request: Request,
    runtime: RuntimeDep,
    user: EditorUser,
    session: SessionDep,
    idempotency_key: IdempotencyKey,
) -> JobStarted:
    """Upload a ZIP of more images (class folders) and queue a job adding them as a version."""
    dataset = get_dataset(session, dataset_id)
    if dataset.status is not DatasetStatus.READY:
        raise Conflict(f"Dataset {dataset_id} is {dataset.status.value}; wait until it is ready")
    user_id = user.id
    session.commit()  # No database lock may be held while the body streams in.
    form = await receive_multipart(
        request,
        uploads_dir=runtime.settings.uploads_dir,
        max_bytes=runtime.settings.max_upload_bytes,
        file_fields=frozenset({"file"}),
    )
    try:
        source = _zip_source(_required_file(form, "file").path, form.files["file"].filename)
        await run_in_threadpool(check_source, source, runtime.settings, min_classes=1)
        job_id = await run_in_threadpool(
            _start_add_files, runtime, dataset_id, form, source, user_id, idempotency_key
        )
    except BaseException:
        form.discard()
        raise
    runtime.dispatcher.dispatch(job_id)
    return JobStarted(job_id=job_id, dataset_id=dataset_id)


def _upload_source(form: ReceivedForm) -> ImportSource:
    main = _required_file(form, "file")
    images = form.files.get("images")
    folder = form.text("folder").strip()
    if _is_zip(main.path):
        if images is not None or folder:
            raise InvalidInput("'images' and 'folder' go with a CSV file, not with a ZIP")
        return _zip_source(main.path, main.filename)
    if PurePosixPath(main.filename).suffix.lower() not in CSV_SUFFIXES:
        raise InvalidInput(
            f"The file {main.filename!r} is neither a ZIP archive nor a CSV mapping",
            details={"field": "file"},
        )
    if images is None and not folder:
        raise InvalidInput(
            "A CSV mapping needs its images: send an 'images' ZIP or a server 'folder'",
            details={"field": "images"},
        )
    if images is not None and not _is_zip(images.path):
        raise InvalidInput(f"The images file {images.filename!r} is not a ZIP archive")
    return ImportSource(
        kind=SourceKind.CSV,
        csv_path=str(main.path),
        archive_path=str(images.path) if images else None,
        folder_path=folder or None,
        original_name=main.filename,
        images_name=images.filename if images else folder,
    )


def _zip_source(path: Path, filename: str) -> ImportSource:
    return ImportSource(kind=SourceKind.ZIP, archive_path=str(path), original_name=filename)


def _required_file(form: ReceivedForm, field: str) -> ReceivedFile:
    received = form.files.get(field)
    if received is None:
        raise InvalidInput(f"The upload has no {field!r} file field", details={"field": field})
    return received


def _is_zip(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(4) in (b"PK\x03\x04", b"PK\x05\x06")


def _start_upload_import(
    runtime: Runtime,
    form: ReceivedForm,
    source: ImportSource,
    user_id: int,
    idempotency_key: str | None,
) -> ImportStarted:
    name = form.text("name").strip() or PurePosixPath(source.original_name).stem
    with runtime.db.session() as session:
        dataset, job = start_import(
            session,
            name=name,
            description=form.text("description"),
            source=source,
            upload_dir=form.directory,
            created_by=user_id,
            idempotency_key=idempotency_key,
            max_attempts=runtime.settings.max_attempts,
        )
        started = ImportStarted(id=dataset.id, job_id=job.id)
        repeated = job.config.get("upload_dir") != str(form.directory)
    if repeated:
        form.discard()
    return started


def _start_add_files(
    runtime: Runtime,
    dataset_id: int,
    form: ReceivedForm,
    source: ImportSource,
    user_id: int,
    idempotency_key: str | None,
) -> int:
    with runtime.db.session() as session:
        job = start_add_files(
            session,
            dataset_id=dataset_id,
            source=source,
            upload_dir=form.directory,
            message=form.text("message"),
            created_by=user_id,
            idempotency_key=idempotency_key,
        )
        job_id, repeated = job.id, job.config.get("upload_dir") != str(form.directory)
    if repeated:
        form.discard()
    return job_id


def _parent_number(session: Session, dataset_id: int, parent_id: int | None) -> int | None:
    if parent_id is None:
        return None
    return next((v.number for v in list_versions(session, dataset_id) if v.id == parent_id), None)


def _image_headers() -> dict[str, str]:
    return {"Cache-Control": "private, max-age=86400", "X-Content-Type-Options": "nosniff"}
