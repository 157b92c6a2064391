"""Settings shared by the server, the workers and the CLI.

Every setting comes from a ``KAI_*`` environment variable (or the matching
CLI flag, which sets the variable). Nothing secret has a default: secrets are
generated at first start and kept in the metadata database.
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

GIB = 1024**3
MIB = 1024**2


class Settings(BaseSettings):
    """Kai's configuration, read from ``KAI_*`` variables."""

    model_config = SettingsConfigDict(env_prefix="KAI_", extra="ignore")

    data_dir: Path = Path("./kai-data")
    database_url: str | None = None
    storage_url: str | None = None
    broker_url: str | None = None

    host: str = "127.0.0.1"
    port: int = 8000
    allowed_origins: list[str] = Field(default_factory=list)
    admin_password: SecretStr | None = None
    session_hours: int = 12

    import_roots: list[Path] = Field(default_factory=list)
    max_upload_bytes: int = 20 * GIB
    max_archive_entries: int = 200_000
    max_uncompressed_bytes: int = 100 * GIB
    max_entry_bytes: int = 256 * MIB
    max_compression_ratio: float = 200.0
    max_name_length: int = 255
    max_image_pixels: int = 100_000_000
    max_bad_files: int = 1000
    max_bad_fraction: float = 0.2
    min_free_bytes: int = 512 * MIB

    max_download_bytes: int = 20 * GIB
    max_download_redirects: int = 5
    download_connect_timeout_seconds: float = 10.0
    download_read_timeout_seconds: float = 60.0
    download_total_timeout_seconds: float = 6 * 3600.0
    allow_http_downloads: bool = False  # plain HTTP lets anyone on the path swap the file

    reduced_size_px: int = 512
    thumbnail_size_px: int = 160
    split_seed: int = 42
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    # The quality analysis's backbone: "efficientnet_lite0" (the bundled ImageNet weights),
    # "model:<model version id>", "random:<timm architecture>" (tests only) or "none".
    embedding_backbone: str = "efficientnet_lite0"
    embedding_image_size_px: int = 224

    local_workers: int = 1
    lease_seconds: float = 30.0
    heartbeat_seconds: float = 5.0
    max_attempts: int = 3
    poll_seconds: float = 0.5
    blob_grace_seconds: float = 24 * 3600.0
    gc_interval_seconds: float = 6 * 3600.0  # 0 turns the workers' periodic collection off

    @cached_property
    def resolved_data_dir(self) -> Path:
        """The data directory as an absolute path."""
        return self.data_dir.expanduser().resolve()

    @property
    def resolved_database_url(self) -> str:
        """The database URL, defaulting to a SQLite file in the data dir."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.resolved_data_dir / 'kai.db'}"

    @property
    def resolved_storage_url(self) -> str:
        """The blob store URL, defaulting to a folder in the data dir."""
        return self.storage_url or str(self.resolved_data_dir / "blobs")

    @property
    def uploads_dir(self) -> Path:
        """Where uploads stream to before their import job reads them."""
        return self.resolved_data_dir / "uploads"

    @property
    def work_dir(self) -> Path:
        """Scratch space for running jobs."""
        return self.resolved_data_dir / "work"


def load_settings() -> Settings:
    """Read the settings from the environment."""
    return Settings()


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the system tells), at least 1."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, cores or 1)
