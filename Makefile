# DroneCop: `make demo` runs the main job on the embedded stack, `make test` the whole suite.
# Each target sets up what it needs (a .venv with the package and its extras) and is quick
# when that is already done.

PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: demo test lint venv browser compose-checker bench faults fuzz fuzz-properties soak clean checkov tofu cluster-up cluster-down

$(STAMP): setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[local,dev,gcp,aws,desk,analysis,simulator,maintenance]"
	touch $(STAMP)

venv: $(STAMP)

# Debian's Chromium serves the alert desk's browser test; it is installed when missing.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium for the browser test"; \
	  (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || echo "chromium unavailable: the browser test will skip"; }

# Debian's docker-compose checks deploy/compose offline (`config -q`, no daemon); installed when missing.
compose-checker:
	@command -v docker-compose >/dev/null 2>&1 || { \
	  echo "installing Debian's docker-compose for the deploy/ checks"; \
	  (apt-get update -qq && apt-get install -y -qq docker-compose >/dev/null) || echo "docker-compose unavailable: its check will skip"; }

demo: $(STAMP)
	$(PY) -m runners.demo

test: lint $(STAMP) browser compose-checker checkov tofu
	$(PY) -m pytest $(PYTEST_ARGS)

# Ruff's checks as pyproject.toml configures them (mistakes, style errors, import order) and its formatter.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: $(STAMP)
	$(PY) bench/simulator.py
	$(PY) bench/stream_vs_raw.py
	$(PY) bench/ingest.py
	$(PY) bench/analysis.py

# Hardening: the fault suite with many rounds, the fuzzers, the 10-minute soak under load.
faults: $(STAMP)
	DRONECOP_FAULT_ROUNDS=$${DRONECOP_FAULT_ROUNDS:-12} $(PY) -m pytest tests/faults -s -p no:cacheprovider

fuzz: $(STAMP)
	$(PY) fuzz/run.py --seconds $${FUZZ_SECONDS:-120}

# The property tests with 20,000 examples each (7–11 min): what fuzz/run.py falls back to without atheris.
fuzz-properties: $(STAMP)
	HYPOTHESIS_PROFILE=fuzz $(PY) -m pytest tests/test_properties.py tests/test_size_limits.py -p no:cacheprovider

soak: $(STAMP)
	$(PY) bench/soak.py

# checkov in a venv of its own: its pins would downgrade what apache-beam[aws,gcp] needs.
CHECKOV := .dronecop/tools/checkov/bin/checkov
checkov: $(CHECKOV)
$(CHECKOV):
	$(PYTHON) -m venv .dronecop/tools/checkov
	.dronecop/tools/checkov/bin/python -m pip install --quiet "checkov==3.3.30" || echo "checkov unavailable: its test will skip"

# OpenTofu, for `tofu fmt -check` on deploy/terraform. `go install …@version` refuses its go.mod
# (it has replace directives), so the module is fetched by name through the Go module proxy
# and built inside it with the flags of OpenTofu's release builds; a killed build leaves no
# binary behind. `make test` builds it where Go is present; without Go the test skips.
TOFU_VERSION := 1.10.6
TOFU := .dronecop/cache/bin/tofu
tofu: $(TOFU)
$(TOFU):
	@command -v go >/dev/null 2>&1 || { echo "go is not on PATH: the tofu fmt test will skip"; exit 0; }; \
	  mkdir -p $(@D) && go mod download github.com/opentofu/opentofu@v$(TOFU_VERSION) && \
	  cd "$$(go list -m -f '{{.Dir}}' github.com/opentofu/opentofu@v$(TOFU_VERSION))" && \
	  CGO_ENABLED=0 go build -mod=readonly -trimpath -ldflags "-s -w -X 'github.com/opentofu/opentofu/version.dev=no'" \
	    -o $(abspath $@).partial ./cmd/tofu && mv $(abspath $@).partial $(abspath $@) \
	  || echo "building OpenTofu failed: the tofu fmt test will skip"

# deploy/compose on a machine with Docker: secrets once, the DroneCop image, every service.
COMPOSE := docker compose -f deploy/compose/docker-compose.yml
cluster-up:
	deploy/compose/make-secrets.sh
	$(COMPOSE) up -d --build

cluster-down:
	$(COMPOSE) down

clean:
	rm -rf $(VENV) .dronecop lake reports
