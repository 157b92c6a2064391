"""Fixtures for repository imports: private client caches with the networks unreachable."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Hugging Face hub cache used by the client, with the hub unreachable."""
    import huggingface_hub.constants

    cache = tmp_path / "hf-hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    # Nothing listens on port 9: the client meets a refused connection, as with no network.
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "http://127.0.0.1:9")
    return cache


@pytest.fixture
def torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty ``TORCH_HOME``, so ``torch.hub.get_dir()`` points into the test's folder."""
    home = tmp_path / "torch-home"
    home.mkdir()
    monkeypatch.setenv("TORCH_HOME", str(home))
    return home


@pytest.fixture
def kaggle_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty kagglehub cache, with Kaggle's API pointed at a closed local port."""
    cache = tmp_path / "kagglehub"
    cache.mkdir()
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(cache))
    monkeypatch.setenv("KAGGLE_API_ENVIRONMENT", "LOCALHOST")
    return cache
