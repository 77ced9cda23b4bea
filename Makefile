# The README's two commands: `make run` and `make test`. Each works on a fresh machine:
# it creates (or updates) the virtual environment in .venv, installs tenmon, then runs.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# The encoder's training extra lives in its own environment: torch and ultralytics stay out of
# .venv (which keeps headless OpenCV and runs the model with onnxruntime alone, as the Pi does).
TRAIN_VENV  ?= .venv-train
TRAIN_PY    := $(TRAIN_VENV)/bin/python
TRAIN_STAMP := $(TRAIN_VENV)/.installed

.PHONY: run test test-deps train-venv install clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[dev,archive]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/tenmon daemon --simulate --speed 10

# Debian's astrometry.net and its Tycho-2 index (~90 MB) for the solve-field tests, and Debian's
# chromium for the operator page's browser tests (playwright drives it; never its own browser
# download): installed when this runs as root with apt (CI); elsewhere those tests skip and say why.
test-deps:
	@if ! command -v solve-field >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing astrometry.net and astrometry-data-tycho2-07 (apt)"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    astrometry.net astrometry-data-tycho2-07 source-extractor >/dev/null) || echo "apt install failed: solve-field tests will skip"; \
	fi
	@if ! command -v source-extractor >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing source-extractor (apt): SExtractor, the reference for tenmon's sources"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq source-extractor >/dev/null) \
	    || echo "apt install failed: the SExtractor comparison tests will skip"; \
	fi
	@if ! command -v indiserver >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing indi-bin (apt): indiserver and the INDI simulators for the INDI device tests"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq indi-bin >/dev/null) \
	    || echo "apt install failed: INDI tests will skip"; \
	fi
	@if ! command -v chromium >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing chromium (apt) for the operator page's browser tests"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	    || echo "apt install failed: the operator page's browser tests will skip"; \
	fi

# torch 2.13.0 is the CPU build (a local wheel); torchvision 0.28.0 is pinned by the train extra.
# ultralytics may pull GUI OpenCV: it is replaced by the headless build. The smoke training test
# (tests/vision/test_slit_train.py) runs in this environment, offline.
$(TRAIN_STAMP): pyproject.toml
	$(PYTHON) -m venv $(TRAIN_VENV)
	$(TRAIN_PY) -m pip install --quiet --upgrade pip
	$(TRAIN_PY) -m pip install --quiet torch==2.13.0
	$(TRAIN_PY) -m pip install --quiet -e '.[train]' torch==2.13.0
	$(TRAIN_PY) -m pip uninstall --quiet -y opencv-python >/dev/null 2>&1 || true
	$(TRAIN_PY) -m pip install --quiet --force-reinstall --no-deps opencv-python-headless
	$(TRAIN_PY) -c "import torch, ultralytics, onnx; assert torch.__version__.startswith('2.13.0'), torch.__version__"
	touch $(TRAIN_STAMP)

train-venv: $(TRAIN_STAMP)

# lint-imports checks the layer contracts of .importlinter (who may import whom, no circles).
test: $(STAMP) test-deps train-venv
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) $(TRAIN_VENV) build src/*.egg-info
