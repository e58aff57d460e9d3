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

# WordNet 3.0 (Debian wordnet-base) backs the semantic metrics; installed when
# we can (root + apt-get), otherwise the WordNet-dependent parts say how to get it.
system-deps:
	@if [ ! -f /usr/share/wordnet/data.noun ] && command -v apt-get >/dev/null 2>&1 \
	    && [ "$$(id -u)" = 0 ]; then \
	  echo "installing Debian wordnet-base (WordNet 3.0)"; \
	  apt-get update -qq >/dev/null && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wordnet-base >/dev/null; \
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
