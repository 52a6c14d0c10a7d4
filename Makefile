# The two set-up commands: both create .venv and install what is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATA_DIR ?= /usr/share/datasets/fashion-mnist
OUT ?= runs/fashion-mnist
EPOCHS ?= 10

.PHONY: test test-slow train data lint clean bench bench-full docs

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# PyTorch's CPU build, where pip finds it (a local wheel or PyTorch's CPU index), for the tests that
# compare layers with PyTorch's; elsewhere those tests skip (PyPI's own torch is a multi-GB CUDA build).
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test,docs]'
	$(BIN)/python -m pip install --quiet 'torch==2.13.0+cpu' 2>/dev/null \
		|| echo "PyTorch's CPU build not found: the PyTorch agreement tests will be skipped"
	touch $(STAMP)

data:
	@bash scripts/install_data.sh "$(DATA_DIR)"

test: $(STAMP)
	$(BIN)/ruff check funcnn tests examples benchmarks
	$(BIN)/python -m pytest -n 2 -m "not slow" -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -n 2 -m slow -q

# The newest JAX on the newest Python: JAX's newest releases need Python >= 3.12, so they get their own
# venv (.venv keeps the 3.11 that pyproject.toml's floor allows, where pip's newest jax is older).
# scripts/newest_python.sh finds python3.13, else python3.12, on PATH or under ~/.pyenv/versions, and
# fails loudly when there is neither. The subset (about 7 min of one core, so ~4 min with -n 2): every
# op's hand-written VJP/JVP against autodiff (test_rules), sharded and mixed-mode gradients (test_grad),
# grad modes, the gradient-check helpers, a training step and the models. Override with NEWEST_TESTS=...
NEWEST_VENV := .venv-newest
NEWEST_N ?= 2
NEWEST_TESTS ?= tests/ops/test_rules.py tests/ops/test_grad.py tests/test_core.py tests/test_testing.py \
	tests/train/test_step.py tests/test_models.py

.PHONY: test-newest-jax
test-newest-jax:
	@python=$$(bash scripts/newest_python.sh) || { echo "test-newest-jax: FAILED, no Python >= 3.12 to run the newest JAX" >&2; exit 1; }; \
	if [ ! -x $(NEWEST_VENV)/bin/python ]; then \
		echo "test-newest-jax: creating $(NEWEST_VENV) with $$python" && $$python -m venv $(NEWEST_VENV) \
		&& $(NEWEST_VENV)/bin/python -m pip install --quiet --upgrade pip; \
	fi
	$(NEWEST_VENV)/bin/python -m pip install --quiet --upgrade -e '.[test]' jax jaxlib
	@$(NEWEST_VENV)/bin/python -c "import sys, jax, jaxlib; \
		print(f'test-newest-jax: Python {sys.version.split()[0]}, jax {jax.__version__}, jaxlib {jaxlib.__version__}')"
	$(NEWEST_VENV)/bin/python -m pytest -n $(NEWEST_N) -m "not slow" -q $(NEWEST_TESTS)

# --resume: a second `make train` continues an interrupted run, or reports the finished one.
train: $(STAMP) data
	$(BIN)/funcnn train --model fashion_mnist_cnn --epochs $(EPOCHS) --data "$(DATA_DIR)" --out "$(OUT)" --resume

# The documentation site, into site/: the pictures are drawn by docs/figures.py from the library itself.
docs: $(STAMP)
	$(BIN)/python docs/figures.py docs/images
	$(BIN)/mkdocs build --strict --site-dir site

# The peer benchmarks need the optional extra (PyTorch CPU build, Flax, Equinox); figures: benchmarks/README.md.
BENCH_STAMP := $(VENV)/.bench-installed
CIFAR_SCANS := cifar_vgg:raw\ JAX:scan cifar_vgg:Flax\ linen:scan cifar_vgg:funcnn\ autodiff:scan cifar_vgg:funcnn\ 1\ device:scan

$(BENCH_STAMP): pyproject.toml $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	touch $(BENCH_STAMP)

# Quick (about 6-15 minutes on 2 cores): both models; funcnn, raw JAX and PyTorch eager.
bench: $(BENCH_STAMP)
	$(BIN)/python benchmarks/peers/run.py --quick --steps 5 --windows 3 --repeats 1 --skip raw\ JAX:scan --out runs/bench

# Everything (hours on 2 cores): every implementation, 3 rounds, then time to accuracy on real Fashion-MNIST.
bench-full: $(BENCH_STAMP) data
	$(BIN)/python benchmarks/peers/run.py --repeats 3 --skip $(CIFAR_SCANS) --out runs/bench-full
	$(BIN)/python benchmarks/peers/time_to_accuracy.py

lint: $(STAMP)
	$(BIN)/ruff check funcnn tests examples benchmarks

clean:
	rm -rf $(VENV) runs .pytest_cache site docs/images dist
