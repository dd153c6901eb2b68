# Every target installs what it needs into .venv first, from this repo's own files.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test soak bench fuzz clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Runtime install for the demo; the dev install (tests, linters) is a superset.
$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

# Tests also exercise the Redis store and the benchmark peers (simple-salesforce, aiosalesforce).
$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev,redis,bench]'
	touch $@ $(VENV)/.installed-run

demo: $(VENV)/.installed-run
	$(BIN)/sfauth demo

test: $(VENV)/.installed-dev
	$(BIN)/pytest
	$(BIN)/mypy --strict sfauth
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# 20,000 requests, 1,000 in flight, >= 10 % injected faults, 3 expiries and 1 revocation.
soak: $(VENV)/.installed-run
	$(BIN)/python -m benchmarks.soak

# Throughput/CPU against raw aiohttp and the other clients, the herd, assertion cost, memory
# (writes benchmarks/RESULTS.md and benchmarks/throughput.png), then logins per expiry for a
# fleet of processes with and without Redis. About 6 minutes on 2 cores.
bench: $(VENV)/.installed-dev
	$(BIN)/python -m benchmarks.bench
	$(BIN)/python -m benchmarks.fleet

# The property tests with 10,000 examples per parser.
fuzz: $(VENV)/.installed-dev
	HYPOTHESIS_PROFILE=thorough $(BIN)/pytest tests/test_fuzz.py -q

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
