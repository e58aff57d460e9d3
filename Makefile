# Two commands do all the set-up on a fresh clone:
#   make demo   -- create .venv, install, run the pipeline on the embedded demo data
#   make test   -- create .venv, install, lint (ruff), run the test suite
#
# TORCH_PIN picks the torch/torchvision pair.  The default is the pair that
# installs offline on the project's machines; elsewhere override it, e.g.
#   make demo TORCH_PIN="torch torchvision"
PYTHON     ?= python3
VENV       ?= .venv
TORCH_PIN  ?= torch==2.14.1 torchvision==0.29.1
EXTRAS     ?= test
DEMO_OUT   ?= demo-output
PYTEST_ARGS ?=

PY    := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(EXTRAS)

.PHONY: demo test test-fast lint bench system-deps clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_PIN)
	$(PY) -m pip install --quiet -e '.[$(EXTRAS)]'
	@touch $@

# Debian packages the project uses when it can (root + apt-get), each only if missing:
# wordnet-base (WordNet 3.0, for the semantic metrics), the photo packages that
# give the demo dataset 65 categories instead of 19 (darknet, opencv-doc,
# mate-backgrounds), and chromium (a headless browser: the test that opens
# `fmri2image report`'s page and checks it logs no console error).  Without apt the
# demo uses the photos of the pip wheels, the WordNet-dependent parts say how to get
# WordNet, and the browser test is skipped.
SYSTEM_DEPS := wordnet-base:/usr/share/wordnet/data.noun \
	darknet:/usr/share/darknet/data/eagle.jpg \
	opencv-doc:/usr/share/doc/opencv-doc/examples/data/baboon.jpg \
	mate-backgrounds:/usr/share/backgrounds/mate/nature/LadyBird.jpg \
	chromium:/usr/bin/chromium
system-deps:
	@missing=""; for dep in $(SYSTEM_DEPS); do \
	  [ -e "$${dep#*:}" ] || missing="$$missing $${dep%%:*}"; \
	done; \
	if [ -n "$$missing" ] && command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  echo "installing Debian packages:$$missing"; \
	  { apt-get update -qq >/dev/null && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	      $$missing >/dev/null; } || echo "could not install$$missing (continuing without)"; \
	fi

demo: $(STAMP) system-deps
	$(VENV)/bin/fmri2image demo --out $(DEMO_OUT)

test: $(STAMP) system-deps
	$(VENV)/bin/ruff check src tests bench
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench

bench: $(STAMP)
	@for b in bench/bench_*.py; do $(PY) $$b --quick || exit 1; done

clean:
	rm -rf $(DEMO_OUT) build dist src/*.egg-info .pytest_cache
