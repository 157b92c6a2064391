"""Imports point down the layers of DESIGN.md: interfaces > services > jobs > infrastructure."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import kai

PACKAGE_DIR = Path(kai.__file__).parent
INTERFACES = ("kai.api", "kai.cli")
SERVICES = (
    "kai.accounts",
    "kai.datasets",
    "kai.quality",
    "kai.embeddings",
    "kai.models",
    "kai.training",
    "kai.evaluation",
    "kai.ensembles",
    "kai.inference",
)
COMPOSITION = ("kai.registrations",)
INFRASTRUCTURE = (
    "kai.config",
    "kai.errors",
    "kai.logs",
    "kai.db",
    "kai.storage",
    "kai.security",
)
FORBIDDEN: dict[tuple[str, ...], tuple[str, ...]] = {
    INFRASTRUCTURE: (*INTERFACES, *SERVICES, *COMPOSITION, "kai.jobs", "kai.runtime"),
    ("kai.jobs",): (*INTERFACES, *SERVICES, *COMPOSITION),
    SERVICES: (*INTERFACES, *COMPOSITION),
    ("kai.api",): ("kai.cli",),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, relative imports resolved, type-checking ones included."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path.parent)
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def within(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == prefix or module.startswith(prefix + ".") for prefix in prefixes)


SOURCES = sorted(PACKAGE_DIR.rglob("*.py"))


def test_the_walk_sees_the_package() -> None:
    names = {module_name(path) for path in SOURCES}
    assert {"kai.api.app", "kai.jobs.events", "kai.db.tables", "kai.accounts.users"} <= names


@pytest.mark.parametrize("path", SOURCES, ids=lambda path: module_name(path))
def test_imports_point_down(path: Path) -> None:
    name = module_name(path)
    for layer, forbidden in FORBIDDEN.items():
        if not within(name, layer):
            continue
        wrong = sorted(m for m in imported_modules(path) if within(m, forbidden))
        assert not wrong, f"{name} imports {wrong}, which sit above it"


def test_the_checker_catches_an_upward_import() -> None:
    sample = PACKAGE_DIR / "db" / "tables.py"
    imports = imported_modules(sample) | {"kai.api.app"}
    assert [m for m in imports if within(m, FORBIDDEN[INFRASTRUCTURE])] == ["kai.api.app"]
