"""An S3-compatible server on loopback for the remote blob store's tests."""

from __future__ import annotations

import secrets
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import s3fs
from moto.server import ThreadedMotoServer

from kai.storage.blobs import RemoteBlobStore


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """The URL of a moto S3 server running in a thread for this test session."""
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_options(s3_endpoint: str) -> dict[str, Any]:
    """fsspec storage options for the test server (dummy credentials)."""
    return {
        "key": "kai-test",
        "secret": "kai-test-secret",
        "client_kwargs": {"endpoint_url": s3_endpoint, "region_name": "eu-west-1"},
        "skip_instance_cache": True,
    }


@pytest.fixture
def s3_bucket(s3_options: dict[str, Any]) -> Iterator[str]:
    """A fresh bucket, emptied and removed after the test."""
    fs = s3fs.S3FileSystem(**s3_options)
    name = f"kai-test-{secrets.token_hex(4)}"
    fs.mkdir(name)
    try:
        yield name
    finally:
        fs.rm(name, recursive=True)


@pytest.fixture
def remote(s3_bucket: str, s3_options: dict[str, Any], tmp_path: Path) -> RemoteBlobStore:
    """A blob store under ``blobs/`` in the test's bucket."""
    return RemoteBlobStore(
        f"s3://{s3_bucket}/blobs",
        storage_options=s3_options,
        staging_dir=tmp_path / "staging",
    )
