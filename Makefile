# The two commands of the README's Quick start. Everything they need is installed here.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: demo test install lint bench-deps clean

$(PY):
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) (set PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -U pip setuptools wheel

# torch is pinned to the CPU build this project's machines carry (pyproject.toml explains why).
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[ml,test]'
	@$(MAKE) --no-print-directory chromium
	@touch $(STAMP)

install: $(STAMP)

# Debian's Chromium drives the QC review page's browser test (never a downloaded browser).
.PHONY: chromium
chromium:
	@if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		echo "installing Debian's chromium for the review-page browser test"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
		|| echo "chromium could not be installed; the browser test will say so"; \
	fi

demo: $(STAMP)
	$(PY) -m insarcloud.pipelines.demo

test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check insarcloud tests benchmarks

bench-deps: $(STAMP)
	$(PY) -m pip install -q -e '.[bench]'
	$(PY) -m pip install -q --no-deps 'mintpy==1.6.4'

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
