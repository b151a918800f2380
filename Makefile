# alprd: `make install` then `make test` on a fresh machine.
#
# The serving path runs on ONNX Runtime / OpenVINO / TensorRT and never imports
# torch. Exporting a .pt model (the default plate detector is one) needs torch
# and ultralytics in the build child: we install the CPU build of torch
# (TORCH_SPEC, torch 2.13.0+cpu; where the package index lacks that build,
# pass PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu) and ultralytics
# and torchvision with --no-deps, so no multi-GB CUDA build is ever pulled.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python

PREFIX        ?= /opt/alprd
SYSTEM_PYTHON ?= /usr/bin/python3

.PHONY: install install-systemd run test test-core test-faults models engines bench bench-gpu soak bench-engines bench-accuracy bench-ocr-gpu bench-pipeline bench-swap bench-outputs bench-memory bench-web bench-gate lint clean distclean

install: $(VENV)/.installed models

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=24"
	$(PY) -m pip install --quiet -e '.[test,openvino,export,web,gpio]'
	$(PY) -m pip install --quiet --no-deps ultralytics==8.4.190 torchvision==0.28.0
	$(BIN)/opt_in_out --opt_out >/dev/null 2>&1 || true  # OpenVINO telemetry off
	touch $@

models: $(VENV)/.installed
	$(BIN)/alprd models fetch

# The daemon in the foreground with the checkout's config (etc/alprd.toml).
run: $(VENV)/.installed
	$(BIN)/alprd run

# Build every stale engine with the default config (alprd build --help for options).
engines: $(VENV)/.installed
	$(BIN)/alprd build

bench-engines: $(VENV)/.installed
	$(PY) -m benchmarks.engines

# Plate reading and detection on the real data (plates-br, ocr-train, plate-boxes-ro).
ALPRD_TEST_DATA ?= $(abspath ../shared/data)
export ALPRD_TEST_DATA
bench-accuracy: $(VENV)/.installed
	$(PY) -m benchmarks.accuracy

# The recogniser on an NVIDIA GPU (torch backend, fp16, crops sampled on the GPU)
# against ONNX Runtime on the CPU, on the real validation crops: needs CUDA torch.
bench-ocr-gpu: $(VENV)/.installed
	$(PY) -m benchmarks.ocr_gpu

# alprd against the naive Ultralytics loop on every video in $ALPRD_TEST_DATA/videos,
# same run, same work and as configured, decoded inside and outside the timed loop,
# then STREAMS replayed cameras against the naive loop batched and as processes.
# The naive loop runs on the serving venv's CPU torch. BENCH_ARGS adds e.g.
# --frames 100. `make bench-gpu` on an NVIDIA host.
STREAMS ?= 4
bench: $(VENV)/.installed
	$(PY) -m benchmarks.pipeline --streams $(STREAMS) $(BENCH_ARGS)

# The same on the rear-view video only.
bench-pipeline: $(VENV)/.installed
	$(PY) -m benchmarks.pipeline --video $(ALPRD_TEST_DATA)/videos/rear-nl-L417VS.mp4 $(BENCH_ARGS)

# GPU mode (torch backend, fp16, CUDA graphs) against the naive loop on the same
# card, and 16 cameras batched: needs CUDA torch and ultralytics.
bench-gpu: $(VENV)/.installed
	$(PY) -m benchmarks.gpu

# A running daemon while a retrained plate model is dropped in: frame gaps and drops.
bench-swap: $(VENV)/.installed
	$(PY) -m benchmarks.swap

# How soon a gate opens: first read of a plate -> the relay's request (rear-view video as a live camera)
bench-gate: $(VENV)/.installed
	$(PY) -m benchmarks.gate

# The daemon for MINUTES (default 60) against CAMERAS live HTTP cameras with faults
# along the way (camera lost, broker down, reload, disk full, model drops): memory,
# fds, threads over time, CSV and PNG in soak/, events produced = stored = delivered.
MINUTES ?= 60
CAMERAS ?= 4
# Where the daemon's memory goes: RSS after each start-up step, per frame size, per swap.
bench-memory: $(VENV)/.installed
	$(PY) -m benchmarks.memory

soak: $(VENV)/.installed
	$(PY) -c "import matplotlib" 2>/dev/null || $(PY) -m pip install --quiet "matplotlib==3.11.2"
	$(PY) -m benchmarks.soak --minutes $(MINUTES) --cameras $(CAMERAS) $(BENCH_ARGS)

# Events per second into SQLite + JSONL + MQTT through the outbox (needs mosquitto).
# alprd web's searches on a store of 10 million events (made once, kept in
# /var/tmp), and the daemon's write rate while they run.
bench-web: $(VENV)/.installed
	$(PY) -m benchmarks.web $(BENCH_ARGS)
	$(PY) -m benchmarks.web_pages

bench-outputs: $(VENV)/.installed
	$(PY) -m benchmarks.outputs

test: $(VENV)/.installed
	$(PY) -m pytest

# The pure core alone (no models, engines, servers or daemons): seconds.
test-core: $(VENV)/.installed
	$(PY) -m pytest -q tests/core

# The fault-injection suite alone (README "Faults and hardening"); `make test` runs it too.
test-faults: $(VENV)/.installed
	$(PY) -m pytest -m faults -v

lint: $(VENV)/.installed
	$(BIN)/ruff check alprd tests benchmarks
	$(BIN)/ruff format --check alprd tests benchmarks
	$(BIN)/mypy alprd
	$(PY) -m pytest -q tests/core/test_repository.py  # layers and wording

# As root: alprd in $(PREFIX)/venv (from the system Python, readable by the
# service's dynamic user), the units, /etc/alprd/alprd.toml (an existing one is
# kept) with its paths under /var/lib/alprd, and the default models there.
install-systemd:
	@test "$$(id -u)" = 0 || { echo "make install-systemd: run as root (sudo)"; exit 1; }
	$(SYSTEM_PYTHON) -m venv $(PREFIX)/venv
	$(PREFIX)/venv/bin/pip install --quiet --upgrade "pip>=24"
	$(PREFIX)/venv/bin/pip install --quiet '.[openvino,export,web,gpio]'
	$(PREFIX)/venv/bin/pip install --quiet --no-deps ultralytics==8.4.190 torchvision==0.28.0
	install -m 0644 README.md $(PREFIX)/README.md
	install -d -m 0755 /etc/alprd
	test -e /etc/alprd/alprd.toml || sed 's#^root = "\.\."#root = "/var/lib/alprd"#' etc/alprd.toml > /etc/alprd/alprd.toml
	$(PREFIX)/venv/bin/alprd models fetch --config /etc/alprd/alprd.toml
	install -d -m 0755 /var/lib/alprd/models/trained
	install -m 0644 models/trained/ocr-alprd-plate.onnx models/trained/ocr-alprd-plate-dict.txt \
	  models/trained/MODEL_CARD.md /var/lib/alprd/models/trained/
	$(PREFIX)/venv/bin/alprd check-config /etc/alprd/alprd.toml
	ln -sf $(PREFIX)/venv/bin/alprd /usr/local/bin/alprd
	install -m 0644 systemd/alprd.service systemd/alprd-warmup.service systemd/alprd-web.service \
	  /etc/systemd/system/
	for unit in alprd alprd-warmup; do \
	  if getent group render >/dev/null; then \
	    install -d /etc/systemd/system/$$unit.service.d; \
	    printf '[Service]\nSupplementaryGroups=render\n' > /etc/systemd/system/$$unit.service.d/render.conf; \
	  fi; \
	done
	systemctl daemon-reload
	@echo "installed. Next:"
	@echo "  sudoedit /etc/alprd/alprd.toml        # add [[cameras]]"
	@echo "  systemctl enable --now alprd          # the warm-up unit builds the engines first"
	@echo "  journalctl -u alprd-warmup -u alprd -f"
	@echo "  cp best.pt /var/lib/alprd/models/    # a retrained model: routed to its role, swapped in"
	@echo "  systemctl enable --now alprd-web      # search pages and REST API: http://127.0.0.1:8080/"

clean:
	rm -rf build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

# Also removes the virtual environment, fetched models and the wheel cache.
distclean: clean
	rm -rf $(VENV) cache
	find models -mindepth 1 -maxdepth 1 ! -name SOURCES.md ! -name trained -exec rm -rf {} +
