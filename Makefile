# Every target installs what it needs into .venv first, from this repo's own files.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
LOWEST := .venv-lowest
UV_VERSION := 0.13.9

.PHONY: demo test test-lowest soak bench bench-instructions fuzz clean softhsm

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

# SoftHSM2 (Debian's softhsm2) for the PKCS#11 signer tests: installed when missing and this
# runs as root (CI); elsewhere those tests are skipped with the reason unless SFAUTH_REQUIRE_HSM=1.
softhsm:
	@command -v softhsm2-util >/dev/null || [ "$$(id -u)" != 0 ] || \
		{ apt-get install -y -q softhsm2 || { apt-get update -q && apt-get install -y -q softhsm2; }; }

test: $(VENV)/.installed-dev softhsm
	$(BIN)/pytest
	$(BIN)/mypy --strict sfauth
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The test suite against the lowest versions pyproject.toml declares, in its own venv: the runtime
# dependencies and the redis, testing, otel, prometheus and pkcs11 extras at their floors (uv's
# lowest-direct resolution, with the declared ranges as overrides so that no pinned test tool
# lifts a floor), the test tools and benchmark peers at their pins (OpenTelemetry's aiohttp
# instrumentation at the release paired with the API floor). .ci/lowest.py fails the run unless every floor is installed.
$(LOWEST)/.installed: pyproject.toml .ci/lowest.py
	rm -rf $(LOWEST)
	$(PYTHON) -m venv $(LOWEST)
	echo '*' > $(LOWEST)/.gitignore
	$(LOWEST)/bin/python -m pip install --quiet uv==$(UV_VERSION)
	$(LOWEST)/bin/python .ci/lowest.py overrides > $(LOWEST)/overrides.txt
	$(LOWEST)/bin/uv pip install --quiet --python $(LOWEST)/bin/python \
		--resolution lowest-direct --override $(LOWEST)/overrides.txt \
		-e '.[dev,redis,testing,bench,otel,prometheus,pkcs11]'
	touch $@

test-lowest: $(LOWEST)/.installed softhsm
	$(LOWEST)/bin/python .ci/lowest.py check
	$(LOWEST)/bin/pytest

# N requests (default 1,000,000, about 5 minutes on 2 cores; `make soak N=100000` for a shorter
# run), 1,000 in flight, 12 % injected transient faults, 10 expiries (one of them an instance
# move) and 3 revocations, the emulator in its own process; writes the summary to
# benchmarks/SOAK.md (embedded in benchmarks/RESULTS.md) and fails unless every criterion passed.
soak: $(VENV)/.installed-dev
	$(BIN)/python -m benchmarks.soak --requests $(or $(N),1000000) --write benchmarks/SOAK.md \
		--plot benchmarks/soak_telemetry.png

# The fleet features' cost per request (benchmarks/LEASES.md); the data plane, Bulk API 2.0 and
# Collections against the peers (benchmarks/BULK.md, bulk.png); throughput/CPU against raw
# aiohttp and the other clients, the herd, assertion cost, memory (benchmarks/RESULTS.md, which
# embeds the two before, and throughput.png); then logins per expiry for a fleet of processes
# with and without Redis. About 7 minutes on 2 cores.
bench: $(VENV)/.installed-dev
	$(BIN)/python -m benchmarks.leases --write benchmarks/LEASES.md
	$(BIN)/python -m benchmarks.bulk --write benchmarks/BULK.md --plot benchmarks/bulk.png
	$(BIN)/python -m benchmarks.bench
	$(BIN)/python -m benchmarks.fleet

# Instructions per request under valgrind's callgrind, sfauth against raw aiohttp: the
# per-request overhead without a shared VM's noise (benchmarks/INSTRUCTIONS.md, embedded in
# benchmarks/RESULTS.md by the next `make bench`). Debian's valgrind is installed when missing
# and this runs as root. About 15 minutes on 2 cores (concurrency 16, 64, 256 and 1024).
bench-instructions: $(VENV)/.installed-dev
	@command -v valgrind >/dev/null || [ "$$(id -u)" != 0 ] || \
		{ apt-get install -y -q valgrind || { apt-get update -q && apt-get install -y -q valgrind; }; }
	$(BIN)/python -m benchmarks.instructions --write benchmarks/INSTRUCTIONS.md

# The property tests with 10,000 examples per parser.
fuzz: $(VENV)/.installed-dev
	HYPOTHESIS_PROFILE=thorough $(BIN)/pytest tests/test_fuzz.py -q

clean:
	rm -rf $(VENV) $(LOWEST) .mypy_cache .ruff_cache .pytest_cache
