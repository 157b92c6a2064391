"""The committed OpenAPI document, from which the panel's client is generated, matches the app."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
EXPORT_SCRIPT = ROOT / "scripts" / "export_openapi.py"
COMMITTED = ROOT / "web" / "openapi.json"
GENERATED_TYPES = ROOT / "web" / "src" / "api" / "schema.d.ts"

HOW_TO_FIX = (
    "web/openapi.json is out of date with the API. Run "
    "`.venv/bin/python scripts/export_openapi.py && (cd web && npm run generate)` "
    "and commit web/openapi.json and web/src/api/schema.d.ts."
)


def _load_export_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("export_openapi", EXPORT_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_openapi_matches_the_app() -> None:
    export = _load_export_script()
    current = export.render_schema(export.build_schema())
    committed = COMMITTED.read_text(encoding="utf-8")
    assert json.loads(committed) == json.loads(current), HOW_TO_FIX
    assert committed == current, HOW_TO_FIX


def test_generated_client_types_cover_every_route() -> None:
    schema = json.loads(COMMITTED.read_text(encoding="utf-8"))
    types = GENERATED_TYPES.read_text(encoding="utf-8")
    missing = [path for path in schema["paths"] if f'"{path}": {{' not in types]
    assert not missing, f"schema.d.ts lacks {missing}; run `npm run generate` in web/."
