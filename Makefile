# syncd: two commands set everything up on a fresh Debian machine (as root):
#   make demo   one real sync cycle of the bundled HR export against the bundled emulator
#   make test   the whole test suite (installs what it needs: venv, packages, slapd, systemd)

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# The lock: every package with its exact version and hashes. runtime.txt is what the Debian
# package carries (`make deb`); dev.txt is runtime.txt plus the `dev` and `emulator` extras, what
# `make venv` (and so `make test`) installs. `make lock` writes both; see its comment.
LOCK_RUNTIME := requirements/runtime.txt
LOCK_DEV     := requirements/dev.txt

.PHONY: all demo test lint format bench bench-smoke system-deps venv lock deb clean

all: test

# --- setup --------------------------------------------------------------------------------

# Exactly the locked versions, each file checked against its hash (the lock pins pip too, so pip
# is replaced by the locked one on the way); then syncd itself from this checkout, editable and
# without dependencies, which are all in the lock already (pip check says so, or that a
# dependency added to pyproject.toml still needs `make lock`).
$(STAMP): pyproject.toml $(LOCK_DEV)
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "syncd needs Python 3.11 or newer"'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || { \
	  echo "python3 -m venv failed: on Debian, run: apt-get install -y python3-venv"; exit 1; }
	$(BIN)/python -m pip install --quiet --require-hashes -r $(LOCK_DEV)
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@$(BIN)/python -m pip check >/dev/null || { $(BIN)/python -m pip check; \
	  echo "the lock lacks what pyproject.toml asks for: run make lock"; exit 1; }
	@touch $(STAMP)

venv: $(STAMP)

# Writes the lock from pyproject.toml's ranges with uv (`uv pip compile`): a well-kept resolver
# that writes pip's own requirements format, so pip installs the lock and neither `make venv` nor
# the package needs uv. `--universal` makes one lock for every platform and Python >= 3.11 (the
# markers stay in it), and its hashes cover every file of each pinned version on PyPI, so a
# machine picks whichever wheel fits it. dev.txt is constrained by runtime.txt: both pin the
# same versions. uv asks PyPI, as pip does here (uv reads no pip.conf). A pin already in a lock
# file is kept while it still fits; to move everything to the newest versions allowed:
#   make lock LOCK_FLAGS=--upgrade      (or --upgrade-package NAME)
# uv is installed into the venv (made if missing) on demand; nothing else needs it.
UV_VERSION := 0.13.9
UV_COMPILE := --quiet --universal --python-version 3.11 --generate-hashes \
	--custom-compile-command 'make lock' $(LOCK_FLAGS)
lock:
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@test -x $(BIN)/uv && $(BIN)/uv --version | grep -qx 'uv $(UV_VERSION)' \
	  || $(BIN)/python -m pip install --quiet 'uv==$(UV_VERSION)'
	$(BIN)/uv pip compile $(UV_COMPILE) pyproject.toml -o $(LOCK_RUNTIME)
	$(BIN)/uv pip compile $(UV_COMPILE) pyproject.toml --extra dev --extra emulator \
	  -c $(LOCK_RUNTIME) -o $(LOCK_DEV)

# dist/syncd_<version>_<arch>.deb from this checkout, with the runtime lock's wheels inside, for
# Debian's python3 on this machine (packaging/README.md). Needs no venv and no root.
deb:
	/usr/bin/python3 packaging/build_deb.py

# Debian packages the tests use: a real OpenLDAP (slapd, ldapsearch), a real Samba AD domain
# controller, systemd-analyze for the unit checks, logrotate for its config check, and for the
# Debian package (`make deb` and its test): Debian's python3 with venv, and lintian.
SAMBA_PACKAGES := samba samba-ad-dc python3-samba samba-dsdb-modules winbind krb5-user samba-ad-provision
system-deps:
	@missing=""; \
	command -v slapd >/dev/null 2>&1 || test -x /usr/sbin/slapd || missing="$$missing slapd"; \
	command -v ldapsearch >/dev/null 2>&1 || missing="$$missing ldap-utils"; \
	command -v systemd-analyze >/dev/null 2>&1 || missing="$$missing systemd"; \
	command -v logrotate >/dev/null 2>&1 || test -x /usr/sbin/logrotate || missing="$$missing logrotate"; \
	/usr/bin/python3 -c 'import ensurepip' >/dev/null 2>&1 || missing="$$missing python3-venv"; \
	command -v lintian >/dev/null 2>&1 || missing="$$missing lintian"; \
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

# packaging/build_deb.py is checked on its own: it is a script for Debian's python3, not a module.
lint: $(STAMP)
	$(BIN)/ruff check syncd tests bench packaging
	$(BIN)/ruff format --check syncd tests bench packaging
	$(BIN)/mypy
	$(BIN)/mypy packaging/build_deb.py
	$(BIN)/lint-imports --no-cache

format: $(STAMP)
	$(BIN)/ruff format syncd tests bench packaging
	$(BIN)/ruff check --fix syncd tests bench packaging

test: system-deps $(STAMP) lint
	$(BIN)/python -m pytest -q

bench: system-deps $(STAMP)
	$(BIN)/python bench/run.py

bench-smoke: system-deps $(STAMP)
	$(BIN)/python bench/run.py --people 2000 --no-results

clean:
	rm -rf $(VENV) demo-run bench/work .pytest_cache .mypy_cache .ruff_cache build/deb dist
