# The README's two commands: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test setup train score validate audit clean

setup: $(STAMP)

# The CPU torch wheel goes in first: a bare `torch` requirement would pull a multi-GB CUDA build.
$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m train --config configs/default.yaml --output-dir runs/default
	$(PY) -m infer --model runs/default/model --input data/sample.jsonl --output runs/default/sample_scores.jsonl
	@echo "model: runs/default/model   scores: runs/default/sample_scores.jsonl"

test: $(STAMP)
	$(PY) -m pytest -q

validate: $(STAMP)
	$(PY) -m train.corpus validate data/corpus.jsonl --targets

audit: $(STAMP)
	$(PY) -m train.corpus audit --data data/corpus.jsonl

clean:
	rm -rf runs .pytest_cache
