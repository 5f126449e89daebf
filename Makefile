# Everything a fresh machine needs, from this repo's own files.
#   make app   - install (runtime + dashboard) and open the dashboard on a bundled sample model
#   make test  - install (everything + Chromium for the browser test) and run the whole test suite
#   make bench - run the side-by-side benchmark (writes bench/results/latest.md)
#   make typecheck - mypy over inspector/ ([tool.mypy] in pyproject.toml; tests/test_typecheck.py runs it too)
#   make test-no-onednn - the whole suite as on a CPU whose TensorFlow has oneDNN off (see docs/architecture.md)
#   make test-core - the core install without TensorFlow/Keras in a fresh venv (tests/test_core_only.py)
#   make fuzz-long - 200,000 fuzz cases with a fresh seed (FUZZ_SEED=... FUZZ_CASES=... to choose; docs/limits.md)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP_ALL := $(VENV)/.installed-all
STAMP_TEST := $(VENV)/.installed-test

.PHONY: app test test-no-onednn test-core bench lint typecheck system-deps clean fuzz-long

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP_ALL): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[all]'
	touch $@

$(STAMP_TEST): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@ $(STAMP_ALL)

# Debian's Chromium for the end-to-end dashboard test (Playwright drives it; no browser downloads).
system-deps:
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium chromium-driver; \
	fi

app: $(STAMP_ALL)
	$(VENV)/bin/inspector app

test: $(STAMP_TEST) system-deps
	$(PY) -m pytest

test-no-onednn: $(STAMP_TEST) system-deps
	TF_ENABLE_ONEDNN_OPTS=0 $(PY) -m pytest

bench: $(STAMP_TEST)
	$(PY) bench/run.py

lint: $(STAMP_TEST)
	$(VENV)/bin/ruff check .

typecheck: $(STAMP_TEST)
	$(PY) -m mypy

test-core: $(STAMP_TEST)
	$(PY) -m pytest tests/test_core_only.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache .mypy_cache test-artifacts

FUZZ_CASES ?= 200000
fuzz-long: $(STAMP_TEST)
	$(PY) tests/fuzz_runner.py --cases $(FUZZ_CASES) $(if $(FUZZ_SEED),--seed $(FUZZ_SEED),)
