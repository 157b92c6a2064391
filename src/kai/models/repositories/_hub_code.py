"""PyTorch Hub models built by their repository's own ``hubconf.py``, on an admin's opt-in.

A model id ``OWNER/REPO:ENTRY`` (or ``github:OWNER/REPO:ENTRY``) names an
entry point of a GitHub repository's ``hubconf.py``; the revision is its
branch or tag (``main`` by default). Building such a model runs that
repository's code, so the import is refused unless an admin opted in for
it (``trustRepositoryCode``), and even then the code runs only in the
sandbox: a child process with memory and time limits and no secrets in its
environment. The child calls the entry point, traces the module it returns
to TorchScript at the import's input size, and Kai imports that TorchScript
file: no hub code runs again when the version is loaded.

The repository is read where ``torch.hub`` leaves it,
``torch.hub.get_dir()/OWNER_REPO_REF``; Kai never downloads code itself.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from kai.errors import InvalidInput, NotFound
from kai.models.formats.base import DEFAULT_INPUT_SIZE_PX, ImportOptions
from kai.models.repositories._base import FetchedModel, Repository, fill_options
from kai.security.sandbox import run_isolated

logger = logging.getLogger(__name__)

TRACED_NAME = "hub-model.torchscript.pt"
MEMORY_BYTES = 6 * 1024**3
TIMEOUT_SECONDS = 600.0
_REFERENCE = re.compile(
    r"^(?:github:)?(?P<owner>[A-Za-z0-9_.\-]{1,100})/(?P<repo>[A-Za-z0-9_.\-]{1,100})"
    r":(?P<entry>[A-Za-z_][A-Za-z0-9_]{0,100})$"
)
_REF = re.compile(r"^[A-Za-z0-9_.\-/]{1,200}$")


def parse_hub_reference(reference: str) -> tuple[str, str, str]:
    """``(owner, repo, entry)`` of ``OWNER/REPO:ENTRY``; InvalidInput when malformed."""
    match = _REFERENCE.match(reference)
    if match is None:
        raise InvalidInput(
            f"{reference!r} is not a hub repository entry OWNER/REPO:ENTRY, such as "
            "pytorch/vision:resnet18",
            details={"field": "modelId"},
        )
    return match["owner"], match["repo"], match["entry"]


def fetch_hub_code(
    reference: str, revision: str | None, options: ImportOptions, *, work_dir: Path
) -> FetchedModel:
    """The entry point's model, built and traced to TorchScript in the sandbox.

    Only call this when an admin opted in to running the repository's code.

    Raises:
        InvalidInput: The id or revision is malformed, or the entry fails or returns no module.
        NotFound: The repository is not in the torch hub cache.
        IsolatedTaskFailed: The repository's code crashed or ran out of memory or time.
    """
    owner, repo, entry = parse_hub_reference(reference)
    ref = revision or "main"
    if not _REF.match(ref) or ".." in ref:
        raise InvalidInput(f"{ref!r} is not a branch or tag name", details={"field": "revision"})
    repo_dir = _cached_repo(owner, repo, ref)
    size = options.input_size_px or (DEFAULT_INPUT_SIZE_PX, DEFAULT_INPUT_SIZE_PX)
    work_dir.mkdir(parents=True, exist_ok=True)
    target = work_dir / TRACED_NAME
    facts = run_isolated(
        trace_hub_entry,
        str(repo_dir),
        entry,
        size,
        str(target),
        memory_bytes=MEMORY_BYTES,
        timeout_seconds=TIMEOUT_SECONDS,
        preload_modules=("torch",),
        subject=f"the hub repository code of {reference!r}",
    )
    provenance = {
        "kind": "repository",
        "repository": Repository.PYTORCH_HUB.value,
        "reference": reference,
        "revision": ref,
        "trustedRepositoryCode": True,
        "moduleClass": facts["moduleClass"],
    }
    return FetchedModel(
        path=target,
        options=fill_options(options, framework="torchscript", input_size_px=size),
        provenance=provenance,
        original_name=f"{owner}_{repo}_{entry}.torchscript.pt",
        notes=[
            f"Ran {entry!r} of the hub repository {owner}/{repo}@{ref} in the sandbox, as an "
            f"admin allowed; traced its {facts['moduleClass']} to TorchScript at {size} px",
        ],
    )


def trace_hub_entry(
    repo_dir: str, entry: str, size_px: tuple[int, int], target: str
) -> dict[str, Any]:
    """Call the entry point and trace its module; runs inside the sandbox.

    Returns:
        Plain data: the module's class name.
    """
    import warnings

    import torch

    try:
        module = torch.hub.load(  # type: ignore[no-untyped-call]
            repo_dir, entry, source="local", trust_repo=True
        )
    except (AttributeError, RuntimeError, TypeError, ValueError, ImportError) as exc:
        raise InvalidInput(f"The hub entry {entry!r} failed: {str(exc)[:300]}") from exc
    if not isinstance(module, torch.nn.Module):
        raise InvalidInput(f"The hub entry {entry!r} returned {type(module).__name__}, no module")
    module.eval()
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")  # TorchScript's deprecation notice
        example = torch.randn(1, 3, *size_px)
        traced = torch.jit.trace(module, example)  # type: ignore[no-untyped-call]
    traced.save(target)
    return {"moduleClass": type(module).__name__}


def _cached_repo(owner: str, repo: str, ref: str) -> Path:
    import torch.hub

    hub_dir = Path(torch.hub.get_dir())
    folder = hub_dir / f"{owner}_{repo}_{ref.replace('/', '_')}"
    if not (folder / "hubconf.py").is_file():
        raise NotFound(
            f"The hub repository {owner}/{repo} at {ref!r} is not in the torch hub cache at "
            f"{hub_dir}. On a machine with network, run \"python -c 'import torch.hub; "
            f'torch.hub.list("{owner}/{repo}:{ref}", trust_repo=True)\'" and copy '
            f"{folder.name} from its TORCH_HOME/hub into {hub_dir} here",
            details={"cache": str(hub_dir), "folder": folder.name},
        )
    return folder
