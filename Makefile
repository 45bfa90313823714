# CodeAct Web. `make run` serves http://127.0.0.1:8000; `make test` runs everything.
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: bootstrap run test test-fast test-chaos test-helm test-k8s lint format bench \
	bench-sandbox bench-turn bench-evaluate images compose-secrets compose-test

bootstrap:
	@bash scripts/bootstrap

run: bootstrap
	@$(PY) scripts/serve.py

test: bootstrap
	$(PY) -m pytest $(PYTEST_ARGS)

# Unit tests only: no Docker, browser or model server.
test-fast:
	$(PY) -m pytest -m "not integration and not browser" $(PYTEST_ARGS)

# The chaos tier (README, "Tests"; `make test` skips it): PostgreSQL (a private
# cluster), Daphne and dockerd restarted under running turns -- dockerd is the
# machine's own, so every container on it stops -- a cell flooding its logs, and
# a soak of CODEACT_SOAK_USERS (50) users for CODEACT_SOAK_SECONDS (600). -s
# prints the soak's RSS table.
test-chaos: bootstrap
	CODEACT_CHAOS=1 $(PY) -m pytest -m chaos -s tests/chaos $(PYTEST_ARGS)

# The Helm chart (deploy/helm/codeact-web): helm lint, helm template with default and
# production values, every manifest validated against Kubernetes' schemas (strict),
# and the promises checked on the rendered objects. `make test` runs these too.
test-helm: bootstrap
	$(PY) -m pytest -p no:cacheprovider tests/deploy $(PYTEST_ARGS)

# The sandbox suites against a real cluster: the one KUBECONFIG points at (kind or
# k3s with the sandbox image loaded; README "Tests"). Skipped, with the reason, when
# no cluster answers. `make test` runs the same suites against the emulated API server.
test-k8s: bootstrap
	CODEACT_TEST_K8S=real $(PY) -m pytest -p no:cacheprovider tests/sandbox $(PYTEST_ARGS)

# ruff, mypy, and the architecture's dependency rules (import-linter contracts in
# pyproject.toml): a broken contract fails the build.
lint: bootstrap
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

format:
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: bench-sandbox bench-turn bench-evaluate

# Sandbox latencies and memory against docker run / docker exec / attach baselines.
bench-sandbox: bootstrap
	$(PY) bench/sandbox.py

bench-turn: bootstrap
	$(PY) bench/turn.py

bench-evaluate: bootstrap
	$(PY) bench/evaluate.py

# The Compose deployment (README, "Deploy"): every image built offline, cached by
# a hash of its inputs; their tags (and the Docker socket's group) go to .env.
images: bootstrap
	@bash scripts/build-images

compose-secrets:
	@bash scripts/compose-secrets

# The deployment tested as a whole (tests/compose/): images built, the stack
# brought up under its own project name and ports, driven over HTTPS through
# the reverse proxy, a worker killed mid-turn, down and up again.
compose-test: images
	CODEACT_COMPOSE=1 $(PY) -m pytest -m compose -p no:cacheprovider tests/compose $(PYTEST_ARGS)
