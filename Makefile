# Aperture: `make run` starts the local stack, `make test` installs and tests.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TOOLS := .venv-tools
TOOLS_STAMP := $(TOOLS)/.installed
export PYTHONPATH := $(CURDIR)/functions:$(CURDIR)/scripts

.PHONY: run test lint bench load fuzz faults prereqs browser venv clean deploy

# functions/requirements.txt installs from inside functions/, where its local path
# (native/jpegrows) resolves, as in Cloud Functions and the Dockerfile.
$(STAMP): requirements-dev.txt requirements-ml.txt functions/requirements.txt pyproject.toml \
		functions/native/jpegrows/jpegrows.c functions/native/jpegrows/setup.py
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	cd functions && ../$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

$(TOOLS_STAMP): requirements-tools.txt
	test -x $(TOOLS)/bin/python || $(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet -r requirements-tools.txt
	touch $(TOOLS_STAMP)

venv: $(STAMP) $(TOOLS_STAMP)

prereqs: $(STAMP)
	@$(PY) -m devstack.prereqs

# WORKERS: processes of the transform function, which runs batch-job items.
# REPAIR_EVERY: seconds between the repair sweep's ticks (900, as Cloud Scheduler's
# */15 in the cloud; 0: no timer).
WORKERS ?= 2
REPAIR_EVERY ?= 900
run: prereqs
	$(PY) -m devstack run --workers $(WORKERS) --repair-every $(REPAIR_EVERY)

# ruff (lint, import order, format), mypy on the pure and use-case layers, and
# import-linter's layer contracts (all configured in pyproject.toml); `terraform
# fmt` on infra/ where a terraform binary is installed (it needs no providers).
lint: $(STAMP)
	$(VENV)/bin/ruff check functions scripts tests
	$(VENV)/bin/ruff format --check functions scripts tests
	$(VENV)/bin/mypy functions/aperture/domain functions/aperture/services
	$(VENV)/bin/lint-imports
	@if command -v terraform >/dev/null; then TF_CLI_CONFIG_FILE=/dev/null terraform fmt -check -recursive infra \
	  || { echo "infra/: run 'terraform fmt infra'" >&2; exit 1; }; \
	else echo "terraform not installed: terraform fmt check not run"; fi

# The browser tests (tests/integration/test_browser.py) drive Debian's chromium through Playwright
# (Playwright's own browser download cannot work offline). Installed with apt
# when missing; a machine where that is impossible is told what to install.
CHROMIUM ?= /usr/bin/chromium
browser:
	@test -x $(CHROMIUM) || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian's chromium for the browser tests"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null || exit 1; \
	  else \
	    echo "missing $(CHROMIUM): install Debian's chromium package (apt-get install chromium) for the browser tests" >&2; exit 1; \
	  fi; }

test: prereqs lint browser $(TOOLS_STAMP)
	CHECKOV=$(CURDIR)/$(TOOLS)/bin/checkov $(PY) -m pytest $(PYTEST_ARGS)

bench: prereqs
	$(PY) -m pip install --quiet -r requirements-bench.txt
	@for script in scripts/bench/[a-z]*.py; do \
	  case $$script in */benchlib.py|*/search_set.py) continue;; esac; \
	  echo "== $$script"; $(PY) $$script || exit 1; \
	done

# Mixed traffic through the local gateway at rising concurrency, on a stack of its own
# (scripts/load/run.py; LOAD_ARGS, e.g. LOAD_ARGS="--seconds 60 --stages 1,8,32"). docs/performance.md.
load: prereqs
	$(PY) scripts/load/run.py $(LOAD_ARGS)

# Longer fuzzing runs than `make test`'s bounded ones: every scripts/fuzz/*.py
# (api.py: schemathesis against the API on its own local stack; parsers.py:
# atheris over the upload validator and the operation parsers; FUZZ_ARGS,
# e.g. FUZZ_ARGS="--seconds 600", go to each script).
fuzz: prereqs
	$(PY) -m pip install --quiet -r requirements-fuzz.txt
	@for script in scripts/fuzz/[a-z]*.py; do \
	  echo "== $$script"; $(PY) $$script $(FUZZ_ARGS) || exit 1; \
	done

# Every fault test (tests/faults, docs/reliability.md), the slow ones too: a stack of
# its own whose parts are stopped, killed and restarted. `make test` runs the quick ones.
faults: prereqs
	$(PY) -m pytest tests/faults -m faults $(PYTEST_ARGS)

deploy:
	bash scripts/deploy.sh

clean:
	rm -rf $(VENV) $(TOOLS) .aperture .pytest_cache .hypothesis
