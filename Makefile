# Switchyard: `make run` serves the embedded default model, `make test` runs the suite.
# Both set up everything they need on a fresh machine with Python 3.11, pip and apt.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CONFIG ?=
HOST   ?=
PORT   ?=

# llama-cpp-python builds llama.cpp from source: use every core.
export CMAKE_BUILD_PARALLEL_LEVEL ?= $(shell nproc 2>/dev/null || echo 2)
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: run test setup system-deps lint format typecheck bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip wheel
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: system-deps $(STAMP)

# Debian packages used by tests and benchmarks, installed only when missing (command:package).
# PostgreSQL's binaries live in /usr/lib/postgresql/<version>/bin, off PATH: looked for there too.
# The tests start their own throwaway PostgreSQL and Redis (tests/support/services.py), and
# their own nginx in front of two replicas (tests/support/replicas.py): the service Debian's
# package starts on port 80 is stopped and disabled right after installing it.
SYSTEM_TOOLS := wrk:wrk espeak-ng:espeak-ng ffmpeg:ffmpeg initdb:postgresql redis-server:redis-server \
                nginx:nginx
system-deps:
	@missing=""; for pair in $(SYSTEM_TOOLS); do cmd=$${pair%%:*}; pkg=$${pair#*:}; \
	  command -v $$cmd >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/$$cmd >/dev/null 2>&1 \
	    || missing="$$missing $$pkg"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  echo "installing Debian packages:$$missing"; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	  case "$$missing" in *nginx*) $$SUDO service nginx stop >/dev/null 2>&1; \
	    $$SUDO update-rc.d nginx disable >/dev/null 2>&1; true;; esac; \
	fi

run: setup
	$(BIN)/switchyard serve $(if $(CONFIG),--config $(CONFIG)) $(if $(HOST),--host $(HOST)) $(if $(PORT),--port $(PORT))

test: setup
	$(BIN)/pytest -q -ra

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

typecheck: $(STAMP)
	$(BIN)/mypy proxy adapters extensions

bench: setup
	$(BIN)/python bench/overhead.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
