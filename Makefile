# The two commands of the README: `make serve` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Debian packages that interop tests drive (installed only when running as root, as CI does).
APT_PACKAGES := swaks libnet-ssleay-perl libio-socket-ssl-perl fetchmail mutt isync postfix

.PHONY: serve test venv dev-deps apt-deps lint typecheck pytest bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e . 2>&1 | grep -v '^WARNING: Location' || true
	$(BIN)/python -c 'import merpati'
	touch $@

$(VENV)/.dev-installed: $(VENV)/.installed pyproject.toml
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]' 2>&1 | grep -v '^WARNING: Location' || true
	$(BIN)/python -c 'import pytest, mypy, hypothesis, imapclient'
	touch $@

venv: $(VENV)/.installed

serve: $(VENV)/.installed
	$(BIN)/merpati serve

apt-deps:
	@if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
	  missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	  if [ -n "$$missing" ]; then \
	    echo "installing Debian packages:$$missing"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null) \
	      || echo "warning: could not install$$missing; the interop tests that need them will be skipped"; \
	  fi; \
	else echo "not root: interop tests that need Debian packages ($(APT_PACKAGES)) are skipped if those are missing"; fi

dev-deps: $(VENV)/.dev-installed apt-deps

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(VENV)/.dev-installed
	$(BIN)/mypy src

pytest: $(VENV)/.dev-installed
	$(BIN)/pytest -n 2 -q tests

test: dev-deps lint typecheck pytest

bench: $(VENV)/.dev-installed
	for f in bench/bench_*.py; do $(BIN)/python $$f || exit 1; done

clean:
	rm -rf $(VENV) build dist src/*.egg-info
