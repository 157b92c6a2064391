"""Content-addressed blob storage: a local folder or any fsspec store."""

from kai.storage.blobs import (
    BlobBatch,
    BlobStore,
    BlobWriter,
    LocalBlobStore,
    RemoteBlobStore,
    open_blob_store,
)

__all__ = [
    "BlobBatch",
    "BlobStore",
    "BlobWriter",
    "LocalBlobStore",
    "RemoteBlobStore",
    "open_blob_store",
]
