"""Write the API's OpenAPI document to web/openapi.json, from which the panel's client is generated.

Usage: .venv/bin/python scripts/export_openapi.py [--output PATH]

The app is built on a throwaway data dir without starting workers, so the
export touches no real data. After exporting, run ``npm run generate`` in
``web/`` to regenerate ``web/src/api/schema.d.ts``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from kai.api.app import create_app
from kai.config import Settings
from kai.runtime import create_runtime

REPOSITORY_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = REPOSITORY_ROOT / "web" / "openapi.json"


def build_schema() -> dict[str, Any]:
    """The OpenAPI document of the app as ``kai serve`` would build it."""
    with tempfile.TemporaryDirectory(prefix="kai-openapi-") as tmp:
        runtime = create_runtime(Settings(data_dir=Path(tmp)))
        try:
            return create_app(runtime, start_workers=False).openapi()
        finally:
            runtime.db.dispose()


def render_schema(schema: dict[str, Any]) -> str:
    """The document as it is committed: stable indentation and a final newline."""
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()
    args.output.write_text(render_schema(build_schema()), encoding="utf-8")


if __name__ == "__main__":
    main()
