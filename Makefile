# The README's two commands: `make run` and `make test`.
# Both prepare .venv and the admin panel's build when they are missing or stale.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
WEB_STAMP := src/kai/web/dist/index.html
WEB_SOURCES := $(shell find web/src web/index.html web/package.json web/vite.config.ts web/tsconfig.json web/tsconfig.node.json -type f 2>/dev/null)

.PHONY: run test lint typecheck pytest pytest-postgres browser-deps web clean

run: $(STAMP) $(WEB_STAMP)
	$(BIN)/kai serve

test: $(STAMP) $(WEB_STAMP) browser-deps lint typecheck pytest pytest-postgres

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,ml,tfds,tensorflow,bench]'
	touch $(STAMP)

$(WEB_STAMP): $(WEB_SOURCES) web/package-lock.json
	cd web && npm ci --no-audit --no-fund --loglevel=error
	cd web && npm run build

web: $(WEB_STAMP)

browser-deps:
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)

lint: $(STAMP)
	$(BIN)/ruff format --check src tests benchmarks scripts
	$(BIN)/ruff check src tests benchmarks scripts

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest -q -p no:cacheprovider

# The database-facing tests again, against the machine's PostgreSQL.
pytest-postgres: $(STAMP)
	KAI_TEST_POSTGRES=postgresql://127.0.0.1:5432/test $(BIN)/pytest -q -p no:cacheprovider -m db

clean:
	rm -rf $(VENV) web/node_modules src/kai/web/dist
