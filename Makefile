# Everything runs in a virtual environment, $(VENV) (made on first use). It sees the system's
# site-packages, so a torch/torchvision already installed system-wide is reused, not downloaded
# again; segcli and its test dependencies are installed into the environment, never system-wide
# (which PEP 668 distributions refuse anyway).
SYSTEM_PYTHON ?= python3
VENV ?= .venv
PYTHON := $(VENV)/bin/python
PIP := $(PYTHON) -m pip
DEMO_OUT ?= demo-out

.PHONY: venv install install-crf install-browser test test-fast mutation demo clean

venv: $(PYTHON)

$(PYTHON):  ## the virtual environment (without ensurepip, e.g. Debian lacking python3-venv: the system's pip is used)
	$(SYSTEM_PYTHON) -m venv --system-site-packages $(VENV) || \
		$(SYSTEM_PYTHON) -m venv --system-site-packages --without-pip $(VENV)

install: venv  ## segcli (editable) and the test dependencies (Ray Data included); torch/torchvision from PyPI only if missing
	@$(PYTHON) -c "import torch, torchvision" 2>/dev/null || $(PIP) install -q torch torchvision
	$(PIP) install -q -e ".[dev,export,coco,ray,serve,geo]"

install-crf: venv  ## the dense CRF: pydensecrf2 builds the `pydensecrf` module from source (~35 s)
	@$(PYTHON) -c "import pydensecrf.densecrf" 2>/dev/null || $(PIP) install -q pydensecrf2

install-browser:  ## headless Chromium for the report's browser test (Debian's package; skipped, said so, where apt-get cannot run)
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
		{ apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; } || \
		echo "chromium could not be installed (apt-get needs root and the network): make test will fail its browser test"

test: install install-crf install-browser  ## the whole test suite (offline once installed); a skip for a missing optional part fails
	SEGCLI_REQUIRE_EXTRAS=1 $(PYTHON) -m pytest -q

test-fast: install install-crf  ## without the tests marked slow
	$(PYTHON) -m pytest -q -m "not slow"

MUTANTS ?=
mutation: install install-crf  ## mutation testing with mutmut 3 (NOT part of make test; [tool.mutmut] in pyproject.toml): MUTANTS='segcli.metrics*' narrows it
	@$(PYTHON) -c "import mutmut" 2>/dev/null || $(PIP) install -q "mutmut>=3.2"
	$(PYTHON) -m mutmut run --max-children 2 $(MUTANTS)
	$(PYTHON) -m mutmut results

demo: install install-crf  ## segment the samples with the shipped DeepLab v3+ and the dense CRF, offline, then score them
	$(PYTHON) -m segcli predict samples/synth/JPEGImages --model deeplabv3p --crf --out $(DEMO_OUT) --overwrite
	$(PYTHON) -m segcli evaluate --model deeplabv3p --crf --data samples/synth --split val
	@echo "Masks, overlays and JSON summaries are in $(DEMO_OUT)/; segcli itself: $(VENV)/bin/segcli"

clean:
	rm -rf $(DEMO_OUT) .pytest_cache build *.egg-info mutants
