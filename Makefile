# depthd: `make replay` sets up and replays the shipped sample; `make test` sets up and runs the checks.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
REPORT ?= out/sample

.PHONY: setup replay test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

replay: $(STAMP)
	$(BIN)/depthd replay replay_data/sample.rec.zst --config config.toml --report $(REPORT)

lint: $(STAMP)
	$(BIN)/ruff check .

test: lint
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python bench/bench_book.py
	$(BIN)/python bench/bench_replay.py
	$(BIN)/python bench/bench_features.py
	$(BIN)/python bench/bench_binance.py
	$(BIN)/python bench/bench_checksum.py
	$(BIN)/python bench/bench_live_feed.py
	$(BIN)/python bench/bench_score.py
	$(BIN)/python bench/bench_risk.py

clean:
	rm -rf $(VENV) out .pytest_cache .ruff_cache
