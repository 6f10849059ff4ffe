# Two commands do all set-up: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
ROOT   ?= $(CURDIR)/lakehouse-data
PATIENTS ?= 200
# Two pytest workers, each its own test session with its own Sail server; a module's tests stay on one worker
# (module fixtures build their lakehouse once). A Silver build keeps about one core busy: two workers on two
# cores run the engine lanes in a little over half the time of one (measured: 233 s per build side by side,
# 207 s alone).
WORKERS ?= 2
XDIST  := -n $(WORKERS) --dist loadfile --no-loadscope-reorder

.PHONY: install demo test test-slow test-fast lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip uv

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/uv pip install --python $(BIN)/python --quiet --compile-bytecode -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/lakehouse --root $(ROOT) demo --patients $(PATIENTS)

test: install
	$(BIN)/python -m pytest $(XDIST) -q -ra --durations=15 -m "not classic_spark and not slow"
	@if command -v java >/dev/null 2>&1; then \
	  echo "== portability lane: engine-neutral transforms on classic local Spark (JVM) =="; \
	  LAKEHOUSE_TEST_LANE=classic $(BIN)/python -m pytest -q -ra -m classic_spark; \
	else echo "java not found: skipping the classic Spark lane"; fi

# One Silver build per message family, and the whole pipeline over all of ../shared/fixtures (CI runs it too).
test-slow: install
	$(BIN)/python -m pytest $(XDIST) -q -ra --durations=15 -m "slow and not classic_spark"

# The pure-Python lane: no engine, no CLI process, no dbt/GX/MLflow run (under a minute).
test-fast: install
	$(BIN)/python -m pytest -q -m "fast and not classic_spark"

lint: install
	$(BIN)/ruff check .

bench: install
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) .pytest_cache
