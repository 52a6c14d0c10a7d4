# The two set-up commands: both create .venv and install what is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATA_DIR ?= /usr/share/datasets/fashion-mnist
OUT ?= runs/fashion-mnist
EPOCHS ?= 10

.PHONY: test test-slow train data lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

data:
	@bash scripts/install_data.sh "$(DATA_DIR)"

test: $(STAMP)
	$(BIN)/ruff check funcnn tests examples benchmarks
	$(BIN)/python -m pytest -n 2 -m "not slow" -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -n 2 -m slow -q

# --resume: a second `make train` continues an interrupted run, or reports the finished one.
train: $(STAMP) data
	$(BIN)/funcnn train --model fashion_mnist_cnn --epochs $(EPOCHS) --data "$(DATA_DIR)" --out "$(OUT)" --resume

lint: $(STAMP)
	$(BIN)/ruff check funcnn tests examples benchmarks

clean:
	rm -rf $(VENV) runs .pytest_cache
