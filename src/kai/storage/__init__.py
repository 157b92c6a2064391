"""Content-addressed blob storage: a local folder or any fsspec store."""

from kai.storage.blobs import (
    BlobStore,
    BlobWriter,
    LocalBlobStore,
    RemoteBlobStore,
    open_blob_store,
)

__all__ = ["BlobStore", "BlobWriter", "LocalBlobStore", "RemoteBlobStore", "open_blob_store"]
