# pidone — two commands on a fresh Debian machine, as root: `make demo`, `make test`.
SHELL := /bin/bash
PYTHON ?= /usr/bin/python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Debian packages: libcap-dev and python3-dev build python-prctl; tini and
# dumb-init are the peers of the benchmark; util-linux gives unshare;
# prometheus is the real server the metrics tests scrape pidone with. A
# policy-rc.d (when none is there) keeps packages from starting their daemons.
APT_PACKAGES := libcap-dev python3-dev python3-venv gcc util-linux procps tini dumb-init prometheus strace

.PHONY: install system-deps test test-unit test-pid1 lint typecheck format bench bench-deps demo clean
.PHONY: webapp-install test-e2e demo-single test-container container-images test-private-clone

install: $(STAMP)

system-deps:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  policy=/usr/sbin/policy-rc.d; made=""; \
	  if [ ! -e $$policy ]; then printf '#!/bin/sh\nexit 101\n' > $$policy; chmod 755 $$policy; made=1; fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  status=$$?; [ -z "$$made" ] || rm -f $$policy; exit $$status; \
	fi

# The venv is made from Debian's interpreter, not one under /root, so that
# children running as other users can execute it (see ../shared/DESIGN.md).
$(STAMP): pyproject.toml | system-deps
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -U pip
	$(BIN)/pip install -q --disable-pip-version-check -e '.[dev]'
	$(BIN)/python -m compileall -q src >/dev/null  # see the bench target
	touch $@

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

format: $(STAMP)
	$(BIN)/ruff check --fix src tests bench
	$(BIN)/ruff format src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

test: lint typecheck webapp-install
	$(BIN)/pytest -q tests

# `make test` in a copy of this work tree (committed or not) inside a 0700
# folder, as CI may clone: the session opens the way for the tests' users in a
# mount namespace of its own (tests/helpers/checkout.py). The copy gets its own
# .venv; the folder is removed afterwards, unless a test failed.
test-private-clone:
	@dir=$$(mktemp -d /tmp/pidone-private-clone-XXXXXX) && mkdir -m 755 $$dir/pidone && \
	git ls-files -z --cached --others --exclude-standard \
	  | tar --null --ignore-failed-read -T - -cf - | tar -xf - -C $$dir/pidone && \
	echo "make test in $$dir/pidone ($$dir: mode 0700)" && \
	(cd $$dir/pidone && CI=true $(MAKE) test) && rm -rf $$dir || \
	{ status=$$?; echo "kept $$dir for a look"; exit $$status; }

test-unit: $(STAMP)
	$(BIN)/pytest -q tests/unit

test-pid1: $(STAMP)
	$(BIN)/pytest -q tests/pid1

# pidone against every peer (bench/README.md). The peers: tini and dumb-init
# (above), s6 and runit from Debian (without recommends: runit-init would
# replace the init system), strace for the profile of a miss; supervisor,
# circus, honcho and py-spy from PyPI in the bench's own venv. bench/run.py
# compiles pidone's bytecode first, as an installed package has it.
BENCH_APT_PACKAGES := s6 runit strace
PEERS_VENV := bench/.venv-peers
PEERS_STAMP := $(PEERS_VENV)/.installed

bench-deps: $(STAMP) $(PEERS_STAMP)
	@missing=""; for p in $(BENCH_APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages for the benchmark:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

$(PEERS_STAMP): bench/peers-requirements.txt
	$(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/pip install -q --disable-pip-version-check -r bench/peers-requirements.txt
	touch $@

bench: bench-deps
	$(BIN)/python bench/run.py

# --- the webapp example: uwsgi + celery + redis under pidone, nginx beside it ---
WEBAPP := examples/webapp

# Debian's redis-server and nginx (no daemon of theirs left running), users
# app and celery, and /opt/pidone-webapp-venv (flask, celery[redis], uwsgi, gunicorn,
# pidone from this checkout) that those users can read. Idempotent: about a
# second when nothing changed; pidone is reinstalled when its sources change.
webapp-install:
	$(WEBAPP)/install.sh

# The real stack in the foreground, until Ctrl-C: pidone as PID 1 of its own
# PID namespace, nginx as www-data in namespaces of its own that share only
# the socket directory (examples/webapp/run.py says how).
demo: webapp-install
	/usr/bin/python3 $(WEBAPP)/run.py

# End-to-end tests against that stack (each test runs its own, in a network
# namespace of its own); `make test` runs them too.
test-e2e: $(STAMP) webapp-install
	$(BIN)/pytest -q tests/e2e

# --- the container image and the example's Kubernetes pod, in real containers ---
# podman from Debian (no Docker engine here), runc, no network but loopback
# (docker/podman/containers.conf). The images: pidone's (docker/Dockerfile)
# and the example's, built offline on Debian bases made by debootstrap, each
# cached under a hash of its inputs (tests/container/images.py): a first run
# takes a few minutes, a rerun seconds. `make test` runs these tests too.
test-container: $(STAMP)
	$(BIN)/pytest -q tests/container

# Only build (or find) the images, and print their names and build times.
container-images: $(STAMP)
	$(BIN)/python -m tests.container.images

# Single-command mode: pidone as PID 1 of a fresh PID namespace reaps an
# orphan storm and passes the child's exit status (3) on.
demo-single: $(STAMP)
	@status=0; unshare --pid --fork --mount-proc $(BIN)/pidone -v -- sh examples/single/demo.sh || status=$$?; \
	echo "pidone exited with status $$status: the demo's own exit status"; test $$status -eq 3

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache src/*.egg-info
