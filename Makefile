PYTHON ?= python3
PIP ?= $(PYTHON) -m pip

.PHONY: install install-crf test test-fast demo lint clean

install:  ## install segcli with its runtime and test dependencies (editable)
	$(PIP) install -q -e ".[dev]"

install-crf:  ## the dense CRF (pydensecrf2 builds the `pydensecrf` module from source, ~35 s)
	$(PYTHON) -c "import pydensecrf.densecrf" 2>/dev/null || $(PIP) install -q pydensecrf2

test:  ## the whole test suite, offline, a few minutes on 2 cores
	$(PYTHON) -m pytest -q

test-fast:  ## skip the slow tests
	$(PYTHON) -m pytest -q -m "not slow"

demo:  ## segment the samples with the shipped DeepLab v3+ and the dense CRF, offline
	$(PYTHON) -m segcli predict samples/ --model deeplabv3p --crf --out demo-out --overwrite
	@echo "Wrote demo-out/: label PNGs, overlays and JSON summaries"

clean:
	rm -rf demo-out .pytest_cache build *.egg-info
