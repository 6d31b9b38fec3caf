# The two commands of the README's Quick start. Everything they need is installed here.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: demo test install lint bench-deps clean lock image-deps image-test

$(PY):
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) (set PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -U pip setuptools wheel

# Every version comes from constraints.txt, the one lock file (CI and both images install from it too;
# `make lock` rewrites it from this venv). torch is pinned to the CPU build this project's machines carry.
$(STAMP): pyproject.toml constraints.txt | $(PY)
	$(PY) -m pip install -q -c constraints.txt -e '.[ml,test]'
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

# Rewrite constraints.txt from this venv (after changing a dependency in pyproject.toml), then check it.
lock: $(STAMP)
	$(PY) deploy/lock.py --write
	$(PY) deploy/lock.py --check

# The container test's tools from Debian's package registry (like chromium above): podman with runc
# (Debian's crun refuses this machine's cgroup setup), mmdebstrap for a base image without a public registry.
image-deps:
	@if ! command -v podman >/dev/null 2>&1 || ! command -v mmdebstrap >/dev/null 2>&1 || ! command -v runc >/dev/null 2>&1; then \
		if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
			echo "installing podman, runc and mmdebstrap from Debian's registry for make image-test"; \
			(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
				podman runc mmdebstrap uidmap slirp4netns fuse-overlayfs >/dev/null) \
			|| echo "podman/mmdebstrap could not be installed; make image-test will say SKIPPED"; \
		fi; \
	fi

# Build the CPU image with podman and run the chart's pods from it on the real LiCSAR crop
# (deploy/image_test.py says what runs where). Exit 77 from the script = SKIPPED, said out loud.
image-test: $(STAMP) image-deps
	@CONTAINERS_CONF=$(CURDIR)/deploy/podman/containers.conf $(PY) deploy/image_test.py $(IMAGE_TEST_ARGS); rc=$$?; \
	if [ $$rc = 77 ]; then echo "make image-test: SKIPPED (podman cannot run containers here: reason above)"; \
	elif [ $$rc != 0 ]; then echo "make image-test: FAILED"; exit $$rc; \
	else echo "make image-test: PASSED"; fi

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
