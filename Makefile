# The two commands of the README. Both bootstrap .venv from nothing but Python.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The torch the set-up installs first: a CPU build (plain `pip install torch` brings CUDA wheels). The package
# supports torch from the floor pyproject.toml states (the GPU machines' 2.11) up.
TORCH := 2.13.0

.PHONY: demo test test-fast setup assets browser bench lint

$(BIN)/i3d: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check torch==$(TORCH)
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev]'
	touch $(BIN)/i3d

setup: $(BIN)/i3d

# The default weights, the sample videos and TV-L1's fused kernels for this CPU (built once per machine, about
# a minute, then loaded in milliseconds by every process): what first use would otherwise fetch or build.
assets: setup
	$(BIN)/i3d setup

demo: assets
	$(BIN)/i3d predict

# The page test drives Debian's chromium: Playwright's own browser download needs a host outside PyPI and Debian.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
		echo "note: could not install Debian's chromium; the browser test will say so"

test: assets browser
	$(BIN)/python -m pytest --durations=25

test-fast: setup  # unit tests only: no pretrained weights, no real-video runs (about 75 s)
	$(BIN)/python -m pytest -q -m "not slow and not needs_weights"

lint: setup
	$(BIN)/ruff check .

bench: assets
	$(BIN)/python benchmarks/bench_model.py
