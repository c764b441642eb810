# The two commands: `make test` and `make bench`. Both create the virtual environment
# and install the project first, and fetch the embedded Apache Kafka broker with Maven
# (Java 17+; without Java or Maven they say so and run on Tansu), so a fresh clone needs
# only Python 3, make, Java and Maven.
# The interpreter the venv is made from (PYTHON=... chooses another): the system's python3
# when it is 3.11 or newer and can make a venv, else the first python3 on PATH. A
# distribution builds its python3 with profile-guided optimisation and LTO, linked
# statically; pyenv's and a plain ./configure build are neither, and run our Python code
# several per cent slower. `make clean` before making the venv again with another one.
PYTHON ?= $(shell for p in /usr/bin/python3 python3; do \
  $$p -c 'import ensurepip, sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null && { echo $$p; exit; }; done; echo python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Sources under proto/ mirror their packages; the generated code lands beside them.
PROTOS := $(wildcard proto/alcor/schema/*.proto proto/gsmq/v1/*.proto)
PROTOC := $(PY) -m grpc_tools.protoc -Iproto
BENCH_ARGS ?=

.PHONY: help venv kafka native proto proto-check lint test test-unit bench bench-tiny bench-scale broker clean

help:
	@echo "make test         create .venv, install, check generated code, lint, run the tests"
	@echo "make test-unit    run the unit tests only (no broker)"
	@echo "make lint         mypy --strict, ruff and the import contracts (run first by make test)"
	@echo "make bench        run the default benchmark suite on the embedded broker (~5 min)"
	@echo "make bench-tiny   the smallest benchmark suite (a smoke test of the bench)"
	@echo "make bench-scale  hosts from 100 to 1,000,000 simulated, one-VPC storms to 100,000 ports; memory per host"
	@echo "make proto        regenerate proto/*_pb2*.py from proto/*.proto"
	@echo "make proto-check  fail when the committed generated code is stale"
	@echo "make broker       run the embedded Kafka broker in the foreground"
	@echo "make venv         create .venv and install the project with its dev extra"
	@echo "make kafka        fetch the embedded Apache Kafka's jars with Maven into ~/.cache/gsmq (once; run by venv)"
	@echo "make native       compile the hot modules with mypyc (gsmq/native.py; run by test and bench when a source changed)"
	@echo "make clean        remove .venv, build output (the compiled modules too) and tool caches"

venv: $(STAMP) kafka

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The embedded Apache Kafka's jars, fetched once into ~/.cache/gsmq (instant when there).
kafka: $(STAMP)
	@$(PY) -m gsmq.kafka_dist

# The hot modules compiled in place with mypyc (`gsmq.native` lists them), again when a
# source of their packages changed (it keeps their hashes); without a C compiler the
# sources run as they are.
native: $(STAMP)
	@$(PY) -m gsmq.native build

# Generated code lives beside its sources and is committed; `proto-check` fails when it is stale.
proto: $(STAMP)
	$(PROTOC) --python_out=proto --pyi_out=proto --grpc_python_out=proto $(PROTOS)

proto-check: $(STAMP)
	@rm -rf $(VENV)/proto-check && mkdir -p $(VENV)/proto-check
	@$(PROTOC) --python_out=$(VENV)/proto-check --pyi_out=$(VENV)/proto-check --grpc_python_out=$(VENV)/proto-check $(PROTOS)
	@cd $(VENV)/proto-check && for f in $$(find . -type f); do \
	  cmp -s "$$f" "$(CURDIR)/proto/$$f" || { echo "proto: generated code is stale ($$f); run 'make proto' and commit"; exit 1; }; \
	done
	@echo "proto: generated code is up to date"

# Types (mypy --strict; generated code excluded, its stubs used), style (ruff) and the
# import contracts (lint-imports), configured in pyproject.toml. All three run, so one
# pass shows every finding; any of them failing fails the target.
lint: $(STAMP)
	@status=0; \
	echo "$(PY) -m mypy"; $(PY) -m mypy || status=1; \
	echo "$(PY) -m ruff check --output-format concise"; $(PY) -m ruff check --output-format concise || status=1; \
	echo "$(VENV)/bin/lint-imports --no-logo"; $(VENV)/bin/lint-imports --no-logo || status=1; \
	exit $$status

test: proto-check lint kafka native
	$(PY) -m pytest -q --durations=15
	GSMQ_SOURCES=1 $(PY) -m pytest -q tests/unit

test-unit: $(STAMP) native
	$(PY) -m pytest -q tests/unit

bench: $(STAMP) kafka native
	$(PY) -m gs_bench $(BENCH_ARGS)

bench-tiny: $(STAMP) kafka native
	$(PY) -m gs_bench --suite tiny $(BENCH_ARGS)

bench-scale: $(STAMP) kafka native
	$(PY) -m gs_bench --suite scale $(BENCH_ARGS)

broker: $(STAMP) kafka
	$(VENV)/bin/gsctl broker

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache .import_linter_cache
	$(PYTHON) -m gsmq.native clean
