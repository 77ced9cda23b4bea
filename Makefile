# The README's two commands: `make run` and `make test`. Each works on a fresh machine:
# it creates (or updates) the virtual environment in .venv, installs tenmon, then runs.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test test-deps install clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/tenmon daemon --simulate --speed 10

# Debian's astrometry.net and its Tycho-2 index (~90 MB) for the solve-field tests: installed when
# this runs as root with apt (CI); elsewhere those tests skip and say why.
test-deps:
	@if ! command -v solve-field >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing astrometry.net and astrometry-data-tycho2-07 (apt)"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    astrometry.net astrometry-data-tycho2-07 >/dev/null) || echo "apt install failed: solve-field tests will skip"; \
	fi

test: $(STAMP) test-deps
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) build src/*.egg-info
