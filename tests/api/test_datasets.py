"""Dataset routes: uploads, imports, reads, edits and samples over HTTP.

Every bad upload is answered with a 4xx in Kai's error shape that names the
problem; nothing is written outside the data dir and the datasets already
stored keep their versions. Cheap checks (the archive's central directory,
the CSV, the layout) answer at once; problems found only while streaming
entries or decoding images fail the import job with the reason.
"""

from __future__ import annotations

import io
import stat
import struct
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from api.support import Account
from kai.db.tables import Job
from kai.errors import KaiError
from kai.jobs.context import JobContext
from kai.runtime import Runtime

pytestmark = pytest.mark.db

UPLOAD = "/api/admin/datasets/upload"


def image_bytes(seed: int, *, size_px: int = 32, fmt: str = "JPEG") -> bytes:
    image = Image.new("RGB", (size_px, size_px), ((seed * 37) % 256, (seed * 91) % 256, 90))
    image.putpixel((seed % size_px, 0), (255, 255, 255))
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def good_members(per_class: int = 5, start: int = 0) -> dict[str, bytes]:
    members = {}
    for offset, label in enumerate(("stone", "wood")):
        for index in range(per_class):
            members[f"{label}/{index}.jpg"] = image_bytes(start + offset * 100 + index)
    return members


def zip_bytes(
    members: dict[str, bytes], *, infos: Sequence[tuple[zipfile.ZipInfo, bytes]] = ()
) -> bytes:  # type: ignore[assignment]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
        for info, data in infos:
            archive.writestr(info, data)
    return buffer.getvalue()


def run_job(runtime: Runtime, job_id: int) -> tuple[dict[str, Any] | None, str | None]:
    """Run a queued job's handler here as a worker would; returns (result, error)."""
    with runtime.db.session() as session:
        job = session.get(Job, job_id)
        assert job is not None
        job_type, config = job.type, dict(job.config)
    ctx = JobContext(
        job_id=job_id,
        job_type=job_type,
        config=config,
        attempt=1,
        settings=runtime.settings,
        db=runtime.db,
        blobs=runtime.blobs,
        work_dir=runtime.settings.work_dir / str(job_id),
    )
    kind = runtime.registry.resolve(job_type)
    try:
        return kind.handler(ctx), None
    except KaiError as exc:
        if kind.on_failure is not None:
            kind.on_failure(ctx, exc.message)
        return None, exc.message


def upload(
    client: TestClient,
    account: Account,
    data: bytes,
    *,
    filename: str = "tiles.zip",
    extra_files: dict[str, tuple[str, bytes]] | None = None,
    headers: dict[str, str] | None = None,
    name: str = "tiles",
) -> Any:
    files = {"file": (filename, data, "application/octet-stream")}
    files |= {
        key: (fn, body, "application/octet-stream")
        for key, (fn, body) in (extra_files or {}).items()
    }
    return client.post(
        UPLOAD,
        files=files,
        data={"name": name, "description": "test"},
        headers=account.headers | (headers or {}),
    )


@pytest.fixture
def imported(client: TestClient, editor: Account, runtime: Runtime) -> int:
    """A dataset imported through the route, the one every bad upload must leave alone."""
    response = upload(client, editor, zip_bytes(good_members()))
    assert response.status_code == 202, response.text
    result, error = run_job(runtime, response.json()["jobId"])
    assert error is None and result is not None
    return int(response.json()["id"])


@pytest.fixture
def unchanged(
    client: TestClient, editor: Account, imported: int, tmp_path: Path, runtime: Runtime
) -> Callable[[], None]:
    """Checks that the stored dataset and everything outside the data dir stayed as they were."""
    before = client.get(f"/api/admin/datasets/{imported}", headers=editor.headers).json()
    data_dir = runtime.settings.resolved_data_dir
    outside = {p for p in tmp_path.rglob("*") if data_dir not in p.parents and p != data_dir}

    def check() -> None:
        after = client.get(f"/api/admin/datasets/{imported}", headers=editor.headers).json()
        assert {k: after[k] for k in ("version", "sampleCount", "classCounts")} == {
            k: before[k] for k in ("version", "sampleCount", "classCounts")
        }
        now = {p for p in tmp_path.rglob("*") if data_dir not in p.parents and p != data_dir}
        assert now == outside
        uploads = runtime.settings.uploads_dir
        assert not uploads.exists() or not any(uploads.iterdir())

    return check


def patched_sizes(data: bytes, name: str, file_size: int) -> bytes:
    """Rewrite an entry's declared uncompressed size in both of its headers."""
    buffer = bytearray(data)
    offset = 0
    while (offset := data.find(b"PK\x01\x02", offset)) >= 0:
        name_length = struct.unpack_from("<H", data, offset + 28)[0]
        if data[offset + 46 : offset + 46 + name_length].decode() == name:
            local = struct.unpack_from("<L", data, offset + 42)[0]
            struct.pack_into("<L", buffer, offset + 24, file_size)
            struct.pack_into("<L", buffer, local + 22, file_size)
        offset += 4
    return bytes(buffer)


def overlapping(data: bytes) -> bytes:
    """Point the second central record at the first entry's local header."""
    buffer = bytearray(data)
    first = data.index(b"PK\x01\x02")
    second = data.index(b"PK\x01\x02", first + 4)
    struct.pack_into("<L", buffer, second + 42, struct.unpack_from("<L", data, first + 42)[0])
    return bytes(buffer)


def claims_a_million_entries(data: bytes) -> bytes:
    buffer = bytearray(data)
    end = data.rindex(b"PK\x05\x06")
    struct.pack_into("<HH", buffer, end + 8, 0xFFFF - 1, 0xFFFF - 1)
    return bytes(buffer)


def symlink_entry() -> tuple[zipfile.ZipInfo, bytes]:
    info = zipfile.ZipInfo("wood/passwd.jpg")
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info, b"/etc/passwd"


BAD_ARCHIVES: dict[str, tuple[Callable[[], bytes], str]] = {
    "dot-dot": (lambda: zip_bytes(good_members() | {"../evil.jpg": b"x"}), "'..'"),
    "absolute": (lambda: zip_bytes(good_members() | {"/tmp/evil.jpg": b"x"}), "absolute"),
    "backslash": (lambda: zip_bytes(good_members() | {"wood\\..\\evil.jpg": b"x"}), "backslash"),
    "drive-letter": (lambda: zip_bytes(good_members() | {"C:/evil.jpg": b"x"}), "drive letter"),
    "symlink": (lambda: zip_bytes(good_members(), infos=[symlink_entry()]), "symbolic link"),
    "ratio-bomb": (lambda: zip_bytes(good_members() | {"wood/z.jpg": bytes(8 << 20)}), "zip bomb"),
    "overlap-bomb": (lambda: overlapping(zip_bytes(good_members())), "overlap"),
    "many-entries": (lambda: claims_a_million_entries(zip_bytes(good_members())), "entries"),
    "nested": (
        lambda: zip_bytes(good_members() | {"wood/more.zip": zip_bytes({"a": b"1"})}),
        "archive inside",
    ),
    "empty": (lambda: zip_bytes({}), "no usable files"),
    "one-class": (
        lambda: zip_bytes({f"stone/{i}.jpg": image_bytes(i) for i in range(4)}),
        "two classes",
    ),
    "not-a-zip-or-csv": (lambda: b"%PDF-1.4 not an archive", "neither a ZIP"),
}


def test_bad_archives_are_refused_at_once(
    client: TestClient, editor: Account, runtime: Runtime, unchanged: Callable[[], None]
) -> None:
    # The archive claims 65534 entries in its end record; a lower limit keeps the test cheap.
    runtime.settings.max_archive_entries = 1000
    for case, (build, words) in BAD_ARCHIVES.items():
        filename = "tiles.pdf" if case == "not-a-zip-or-csv" else "tiles.zip"
        response = upload(client, editor, build(), filename=filename)
        assert 400 <= response.status_code < 500, (case, response.text)
        error = response.json()["error"]
        assert words in error["message"] and error["code"], (case, error)
        unchanged()


def test_lying_size_header_fails_the_job_with_the_reason(
    client: TestClient, editor: Account, runtime: Runtime, unchanged: Callable[[], None]
) -> None:
    members = good_members(start=500) | {"wood/liar.jpg": image_bytes(9, size_px=200)}
    response = upload(client, editor, patched_sizes(zip_bytes(members), "wood/liar.jpg", 100))
    assert response.status_code == 202, response.text
    _, error = run_job(runtime, response.json()["jobId"])
    assert error is not None and "wood/liar.jpg" in error
    failed = client.get(f"/api/admin/datasets/{response.json()['id']}", headers=editor.headers)
    assert failed.json()["status"] == "failed" and "liar" in failed.json()["error"]
    unchanged()


def test_bad_images_are_skipped_and_listed(
    client: TestClient, editor: Account, runtime: Runtime
) -> None:
    bomb = io.BytesIO()
    Image.new("1", (20_000, 20_000)).save(bomb, "PNG")
    members = good_members(per_class=10, start=300) | {
        "stone/cut.jpg": image_bytes(3, size_px=64)[:300],
        "wood/paper.png": b"%PDF-1.4\n%%EOF\n",
        "wood/bomb.png": bomb.getvalue(),
    }
    response = upload(client, editor, zip_bytes(members))
    run_job(runtime, response.json()["jobId"])
    dataset_id = response.json()["id"]
    version = client.get(f"/api/admin/datasets/{dataset_id}/versions/1", headers=editor.headers)
    report = version.json()["metadata"]["importReport"]
    assert {item["name"] for item in report["skipped"]} == {
        "stone/cut.jpg",
        "wood/paper.png",
        "wood/bomb.png",
    }
    assert report["badCount"] == 3 and version.json()["sampleCount"] == 20


CSV_CASES = {
    "missing-column": (b"file,colour\nstone/0.jpg,red\n", "no label column"),
    "unknown-file": (b"file,label\nstone/0.jpg,stone\nnope.jpg,wood\n", "row 3"),
    "duplicate-rows": (
        b"file,label\nstone/0.jpg,stone\nwood/0.jpg,wood\nstone/0.jpg,stone\n",
        "repeats row 2",
    ),
    "conflicting": (b"file,label\nstone/0.jpg,stone\nwood/0.jpg,wood\nstone/0.jpg,wood\n", "row 4"),
    "not-utf8": (
        "file,label\nstone/0.jpg,m\u00e1rmol\nwood/0.jpg,wood\n".encode("latin-1"),
        "not UTF-8",
    ),
}


def test_bad_csv_mappings_are_refused_naming_the_row(
    client: TestClient, editor: Account, unchanged: Callable[[], None]
) -> None:
    images = ("images.zip", zip_bytes(good_members()))
    for case, (text, words) in CSV_CASES.items():
        response = upload(
            client, editor, text, filename="labels.csv", extra_files={"images": images}
        )
        assert response.status_code == 422, (case, response.text)
        assert words in response.json()["error"]["message"], case
        assert response.json()["error"]["code"] == "invalid_csv", case
        unchanged()


def test_csv_upload_imports(client: TestClient, editor: Account, runtime: Runtime) -> None:
    members = good_members()
    text = "\n".join(f"{name};{name.split('/')[0]}" for name in members).encode()
    images = ("images.zip", zip_bytes(members))
    response = upload(client, editor, text, filename="labels.csv", extra_files={"images": images})
    assert response.status_code == 202, response.text
    result, error = run_job(runtime, response.json()["jobId"])
    assert error is None and result is not None and result["sampleCount"] == 10


def test_upload_over_the_limit_is_413_and_leaves_nothing(
    client: TestClient, editor: Account, runtime: Runtime
) -> None:
    runtime.settings.max_upload_bytes = 2000
    response = upload(client, editor, zip_bytes(good_members()))
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too_large"
    uploads = runtime.settings.uploads_dir
    assert not uploads.exists() or not any(uploads.iterdir())


def test_upload_streaming_counts_bytes_without_content_length(
    client: TestClient, editor: Account, runtime: Runtime
) -> None:
    runtime.settings.max_upload_bytes = 2000
    body = zip_bytes(good_members())
    boundary = "kai-boundary"
    payload = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="t.zip"\r\n'
            "Content-Type: application/zip\r\n\r\n"
        ).encode()
        + body
        + f"\r\n--{boundary}--\r\n".encode()
    )

    def chunks() -> Any:
        for start in range(0, len(payload), 512):
            yield payload[start : start + 512]

    response = client.post(
        UPLOAD,
        content=chunks(),
        headers=editor.headers | {"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert response.status_code == 413


def test_idempotent_upload_returns_the_first_dataset(client: TestClient, editor: Account) -> None:
    key = {"Idempotency-Key": "upload-1"}
    first = upload(client, editor, zip_bytes(good_members()), headers=key)
    second = upload(client, editor, zip_bytes(good_members()), headers=key)
    assert first.status_code == second.status_code == 202
    assert first.json() == second.json()
    listed = client.get("/api/admin/datasets", headers=editor.headers).json()
    assert listed["total"] == 1


def test_viewer_reads_but_cannot_upload(client: TestClient, viewer: Account, imported: int) -> None:
    assert client.get(f"/api/admin/datasets/{imported}", headers=viewer.headers).status_code == 200
    assert upload(client, viewer, zip_bytes(good_members())).status_code == 403


def test_read_list_edit_diff_and_samples(
    client: TestClient, editor: Account, imported: int
) -> None:
    base = f"/api/admin/datasets/{imported}"
    dataset = client.get(base, headers=editor.headers).json()
    assert dataset["status"] == "ready" and dataset["sampleCount"] == 10
    assert dataset["classCounts"]["stone"]["total"] == 5

    samples = client.get(f"{base}/samples?label=stone&pageSize=2", headers=editor.headers).json()
    assert samples["total"] == 5 and len(samples["items"]) == 2
    first = samples["items"][0]
    assert set(first) >= {"id", "originalName", "label", "split", "width", "height"}

    edit = {
        "message": "fix",
        "operations": [
            {"op": "relabel", "sampleIds": [first["id"]], "label": "wood"},
            {"op": "renameClass", "from": "wood", "to": "timber"},
        ],
    }
    created = client.post(f"{base}/versions", json=edit, headers=editor.headers)
    assert created.status_code == 201, created.text
    assert created.json()["number"] == 2 and created.json()["classes"] == ["stone", "timber"]

    diff = client.get(f"{base}/diff?from=1&to=2", headers=editor.headers).json()
    assert diff["from"] == 1 and diff["relabelled"]["count"] == 6
    assert client.get(f"{base}/versions", headers=editor.headers).json()[1]["parentNumber"] == 1

    thumb = client.get(f"{base}/samples/{first['id']}/thumbnail", headers=editor.headers)
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    image = client.get(f"{base}/samples/{first['id']}/image", headers=editor.headers)
    assert image.status_code == 200 and image.content[:3] == b"\xff\xd8\xff"


def test_bad_edits_are_4xx_and_write_nothing(
    client: TestClient, editor: Account, imported: int
) -> None:
    base = f"/api/admin/datasets/{imported}"
    cases = [
        {"operations": [{"op": "relabel", "sampleIds": ["missing"], "label": "x"}]},
        {"operations": [{"op": "mergeClasses", "classes": ["stone"], "into": "wood"}]},
        {"operations": [{"op": "explode"}]},
        {"operations": []},
    ]
    for body in cases:
        response = client.post(f"{base}/versions", json=body, headers=editor.headers)
        assert 400 <= response.status_code < 500, response.text
        assert "error" in response.json()
    assert len(client.get(f"{base}/versions", headers=editor.headers).json()) == 1


def test_patch_and_delete(client: TestClient, editor: Account, imported: int) -> None:
    base = f"/api/admin/datasets/{imported}"
    patched = client.patch(
        base, json={"name": "tiles 2", "tags": ["floor"]}, headers=editor.headers
    )
    assert patched.status_code == 200 and patched.json()["tags"] == ["floor"]
    assert client.delete(base, headers=editor.headers).status_code == 204
    assert client.get(base, headers=editor.headers).status_code == 404


def test_add_files_makes_a_new_version(
    client: TestClient, editor: Account, runtime: Runtime, imported: int
) -> None:
    extra = zip_bytes({f"ceramic/{i}.jpg": image_bytes(700 + i) for i in range(3)})
    response = client.post(
        f"/api/admin/datasets/{imported}/files",
        files={"file": ("more.zip", extra, "application/zip")},
        headers=editor.headers,
    )
    assert response.status_code == 202, response.text
    result, error = run_job(runtime, response.json()["jobId"])
    assert error is None and result is not None and result["version"] == 2
    dataset = client.get(f"/api/admin/datasets/{imported}", headers=editor.headers).json()
    assert dataset["sampleCount"] == 13 and "ceramic" in dataset["classes"]


def test_folder_import_checks_the_roots(
    client: TestClient, editor: Account, runtime: Runtime, tmp_path: Path
) -> None:
    root = tmp_path / "shares"
    for name, data in good_members().items():
        (root / "tiles" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "tiles" / name).write_bytes(data)
    runtime.settings.import_roots = [root]
    body = {"path": str(root / "tiles"), "name": "tiles"}
    response = client.post("/api/admin/datasets/import/folder", json=body, headers=editor.headers)
    assert response.status_code == 202, response.text
    _, error = run_job(runtime, response.json()["jobId"])
    assert error is None
    outside = {"path": str(tmp_path), "name": "x"}
    refused = client.post("/api/admin/datasets/import/folder", json=outside, headers=editor.headers)
    assert refused.status_code == 422 and "outside" in refused.json()["error"]["message"]
