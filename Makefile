# alprd: `make install` then `make test` on a fresh machine.
#
# The install never pulls PyTorch: the serving path runs on ONNX Runtime /
# OpenVINO / TensorRT and does not import torch. (Exporting a .pt model needs
# torch; that path and how to install a CPU-only torch come with `alprd build`.)

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python

.PHONY: install test models lint clean distclean

install: $(VENV)/.installed models

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=24"
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

models: $(VENV)/.installed
	$(BIN)/alprd models fetch

test: $(VENV)/.installed
	$(PY) -m pytest

lint: $(VENV)/.installed
	$(BIN)/ruff check alprd tests
	$(BIN)/ruff format --check alprd tests
	$(BIN)/mypy alprd

clean:
	rm -rf build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

# Also removes the virtual environment, fetched models and the wheel cache.
distclean: clean
	rm -rf $(VENV) cache
	find models -mindepth 1 -maxdepth 1 ! -name SOURCES.md ! -name trained -exec rm -rf {} +
