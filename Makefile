# One command set for people, pre-commit and CI. Each target creates .venv when it is missing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo test lint format bench clean check-infra

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,aws]'
	touch $(STAMP)

install: $(STAMP)

# checkov conflicts with recloop's dependencies (it pins older boto3 and packaging): it gets its
# own virtualenv inside .venv, used only by tests/infra (see tests/infra/requirements-checkov.txt).
CHECKOV := $(VENV)/checkov/bin/checkov
$(CHECKOV): tests/infra/requirements-checkov.txt
	$(PYTHON) -m venv $(VENV)/checkov
	$(VENV)/checkov/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/checkov/bin/python -m pip install --quiet -r tests/infra/requirements-checkov.txt
	touch $(CHECKOV)

demo: install  ## the main job on the embedded backends
	$(BIN)/recloop demo

test: install $(CHECKOV)  ## the whole test suite
	$(BIN)/python -m pytest -n 2 --dist loadgroup

check-infra: install $(CHECKOV)  ## Terraform, Dockerfile, GitLab CI and Lambda handler checks
	$(BIN)/python -m pytest tests/infra -q -p no:xdist

LINT_PATHS := $(wildcard src tests lambdas training bench)

lint: install
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)
	$(BIN)/mypy

format: install
	$(BIN)/ruff format $(LINT_PATHS)
	$(BIN)/ruff check --fix $(LINT_PATHS)

bench: install
	for script in bench/*.py; do $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) .recloop .pytest_cache .mypy_cache .ruff_cache
