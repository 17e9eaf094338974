# The two commands: `make devnet` runs the platform, `make test` runs every test.
# Both install what is missing first (a .venv and deploy/devnet/node_modules); nothing else is needed.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
NODE_MODULES := deploy/devnet/node_modules/.package-lock.json
# Debian's RabbitMQ, for the scale-out tests only: each test session runs a private node of it.
RABBITMQ := /usr/lib/rabbitmq/bin/rabbitmq-server
PYTEST_ARGS ?= -n auto

.PHONY: devnet test test-cluster lint bench install clean-devnet

install: $(INSTALLED) $(NODE_MODULES)

$(INSTALLED): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,devnet]'
	touch $@

$(NODE_MODULES): deploy/devnet/package.json deploy/devnet/package-lock.json
	cd deploy/devnet && npm ci --no-audit --no-fund --loglevel=error

# VIRTUOZ_ENV unset means production (fail closed): each recipe names its environment.
devnet: install
	VIRTUOZ_ENV=devnet $(BIN)/virtuoz devnet

lint: $(INSTALLED)
	$(BIN)/lint-imports
	$(BIN)/hadolint --failure-threshold warning deploy/Dockerfile

test: install lint
	VIRTUOZ_ENV=test $(BIN)/pytest $(PYTEST_ARGS) --ignore=tests/cluster

# The platform scaled out on RabbitMQ (tests/cluster); one cluster at a time, so no -n; -s shows
# the table of what it did and saw.
test-cluster: install $(RABBITMQ)
	VIRTUOZ_ENV=test $(BIN)/pytest tests/cluster -s

$(RABBITMQ):
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends rabbitmq-server

bench: install
	@for bench in bench/*.py; do [ -e "$$bench" ] || continue; echo "== $$bench"; VIRTUOZ_ENV=test $(BIN)/python $$bench || exit 1; done

clean-devnet:
	rm -rf .devnet
