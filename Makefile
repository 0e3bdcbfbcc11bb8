# syncd: two commands set everything up on a fresh Debian machine (as root):
#   make demo   one real sync cycle of the bundled HR export against the bundled emulator
#   make test   the whole test suite (installs what it needs: venv, packages, slapd, systemd)

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: all demo test lint format bench bench-smoke system-deps venv clean

all: test

# --- setup --------------------------------------------------------------------------------

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "syncd needs Python 3.11 or newer"'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || { \
	  echo "python3 -m venv failed: on Debian, run: apt-get install -y python3-venv"; exit 1; }
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,emulator]'
	@touch $(STAMP)

venv: $(STAMP)

# Debian packages the tests use: a real OpenLDAP (slapd, ldapsearch), a real Samba AD domain
# controller, systemd-analyze for the unit checks, logrotate for its config check.
SAMBA_PACKAGES := samba samba-ad-dc python3-samba samba-dsdb-modules winbind krb5-user samba-ad-provision
system-deps:
	@missing=""; \
	command -v slapd >/dev/null 2>&1 || test -x /usr/sbin/slapd || missing="$$missing slapd"; \
	command -v ldapsearch >/dev/null 2>&1 || missing="$$missing ldap-utils"; \
	command -v systemd-analyze >/dev/null 2>&1 || missing="$$missing systemd"; \
	command -v logrotate >/dev/null 2>&1 || test -x /usr/sbin/logrotate || missing="$$missing logrotate"; \
	{ command -v samba-tool >/dev/null 2>&1 && test -x /usr/sbin/samba \
	  && test -f /usr/share/samba/setup/ad-schema/AD_DS_Attributes__Windows_Server_2012_R2.ldf; } \
	  || missing="$$missing $(SAMBA_PACKAGES)"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else \
	    echo "warning: missing$$missing (run as root on Debian to install); some tests will skip"; \
	  fi; \
	fi

# --- everyday targets ------------------------------------------------------------------------

demo: $(STAMP)
	$(BIN)/python -m syncd.demo

lint: $(STAMP)
	$(BIN)/ruff check syncd tests bench
	$(BIN)/ruff format --check syncd tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

format: $(STAMP)
	$(BIN)/ruff format syncd tests bench
	$(BIN)/ruff check --fix syncd tests bench

test: system-deps $(STAMP) lint
	$(BIN)/python -m pytest -q

bench: system-deps $(STAMP)
	$(BIN)/python bench/run.py

bench-smoke: system-deps $(STAMP)
	$(BIN)/python bench/run.py --people 2000 --no-results

clean:
	rm -rf $(VENV) demo-run bench/work .pytest_cache .mypy_cache .ruff_cache
