PYTHON ?= python3
PIP ?= $(PYTHON) -m pip
DEMO_OUT ?= demo-out

.PHONY: install install-crf test test-fast demo clean

install:  ## segcli, torch/torchvision (from PyPI if missing) and the test dependencies, editable
	@$(PYTHON) -c "import torch, torchvision" 2>/dev/null || $(PIP) install -q torch torchvision
	$(PIP) install -q -e ".[dev,export]"

install-crf:  ## the dense CRF: pydensecrf2 builds the `pydensecrf` module from source (~35 s)
	@$(PYTHON) -c "import pydensecrf.densecrf" 2>/dev/null || $(PIP) install -q pydensecrf2

test: install install-crf  ## the whole test suite, offline
	$(PYTHON) -m pytest -q

test-fast: install install-crf  ## without the tests marked slow
	$(PYTHON) -m pytest -q -m "not slow"

demo: install install-crf  ## segment the samples with the shipped DeepLab v3+ and the dense CRF, offline, then score them
	$(PYTHON) -m segcli predict samples/synth/JPEGImages --model deeplabv3p --crf --out $(DEMO_OUT) --overwrite
	$(PYTHON) -m segcli evaluate --model deeplabv3p --crf --data samples/synth --split val
	@echo "Masks, overlays and JSON summaries are in $(DEMO_OUT)/"

clean:
	rm -rf $(DEMO_OUT) .pytest_cache build *.egg-info
