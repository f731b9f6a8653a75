# edgetenant — every target does its own set-up; `make demo` and `make test` work on a fresh machine.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PY := .venv/bin/python
# uv through its Python module: found wherever pip put it (site-packages or the user site).
UV := python3 -m uv
PYTEST := $(PY) -m pytest
EDGETENANT_CACHE ?= $(HOME)/.cache/edgetenant
# The tests run in a lab of their own (its own directory and ports), never in the one `make demo` or
# you left running: they neither adopt its devices nor take it down. Set EDGETENANT_LAB_DIR (and
# EDGETENANT_LAB_PORT_OFFSET) to run them in a lab of your choice.
TEST_LAB_DIR ?= $(if $(EDGETENANT_LAB_DIR),$(EDGETENANT_LAB_DIR),$(EDGETENANT_CACHE)/lab-test)
TEST_LAB_PORT_OFFSET ?= $(if $(EDGETENANT_LAB_DIR),$(or $(EDGETENANT_LAB_PORT_OFFSET),0),1000)
# ONNX Runtime (1.2x+) sends usage telemetry unless this is set before it is first imported, and
# OpenVINO asks Google Analytics; nothing here may leave this machine (tests/conftest.py sets both too).
export ORT_DISABLE_TELEMETRY := 1
TEST_LAB := EDGETENANT_LAB_DIR=$(TEST_LAB_DIR) EDGETENANT_LAB_PORT_OFFSET=$(TEST_LAB_PORT_OFFSET)

.PHONY: help venv lint fmt crds chart tools lab-build dataplane-env images test test-unit test-ops test-cluster test-dataplane test-e2e test-node test-images demo clean

help: ## Show this help
	@grep -hE '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | awk -F':.*?## ' '{printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}'

.venv/.synced: pyproject.toml uv.lock
	@$(UV) --version >/dev/null 2>&1 || python3 -m pip install --quiet 'uv==0.13.9' \
		|| python3 -m pip install --quiet --user 'uv==0.13.9'
	$(UV) sync --frozen --quiet
	@touch $@

venv: .venv/.synced ## Create the operator's virtualenv from uv.lock

lint: venv ## ruff + strict mypy
	.venv/bin/ruff check operator tests hack
	.venv/bin/ruff format --check operator tests hack
	.venv/bin/mypy

fmt: venv ## Format and auto-fix
	.venv/bin/ruff format operator tests hack
	.venv/bin/ruff check --fix operator tests hack

crds: venv ## Regenerate crds/ from the pydantic models (and the Helm chart's copy)
	$(PY) -m edgetenant.api.crdgen crds
	$(PY) hack/tools/sync_chart.py

chart: crds ## Rebuild the Grafana dashboard and copy CRDs, classes, rules and dashboard into charts/edgetenant
	$(PY) hack/tools/dashboard.py
	$(PY) hack/tools/sync_chart.py

tools: ## Build helm, promtool and kstatus from their Go modules into the cache (cold: about 5 min)
	hack/tools/build.sh

lab-build: ## Build the lab's Kubernetes binaries into the cache (cold: about 25 min)
	hack/lab/build.sh

dataplane-env: ## Prepare the data-plane virtualenv (tritonserver, ONNX Runtime, numpy<2)
	hack/dataplane/setup.sh

images: venv ## Build the container images as OCI archives into dist/images/ (no engine; cold: about 4 min)
	$(PY) hack/images/build.py build

test: venv tools lab-build dataplane-env images ## Run every test tier (sets everything up first)
	$(TEST_LAB) $(PYTEST) tests/unit tests/ops tests/cluster tests/dataplane tests/e2e tests/node tests/images

test-unit: venv ## Pure unit tests (seconds)
	$(PYTEST) tests/unit

test-ops: venv tools ## Helm chart, alert rules (promtool), Argo CD and kstatus health, dashboard build
	$(PYTEST) tests/ops

test-cluster: venv tools lab-build dataplane-env images ## Tests against the real control plane (and a serving tenant)
	$(TEST_LAB) $(PYTEST) tests/cluster

test-dataplane: venv dataplane-env ## Tests against real Triton + Prometheus
	$(TEST_LAB) $(PYTEST) tests/dataplane

test-e2e: venv lab-build dataplane-env images ## The whole loop on the lab's real node, the operator from its image
	$(TEST_LAB) $(PYTEST) tests/e2e

test-node: venv lab-build images ## The real node itself: the kernel's OOM kill, kubelet/device-plugin/operator restarts
	$(TEST_LAB) $(PYTEST) tests/node

test-images: venv lab-build images ## The built images, run with podman + runc as the manifests say
	$(TEST_LAB) $(PYTEST) tests/images

demo: venv lab-build dataplane-env images ## The local edge lab, the operator, sample tenants, real inferences
	$(PY) hack/demo.py

clean: ## Remove the virtualenv (caches outside the repo stay)
	rm -rf .venv
