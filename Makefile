# streamops.xiu_cluster - developer and CI entry points. `make help` lists the targets.
#
# Big artefacts live outside the checkout, in ${STREAMOPS_CACHE:-$HOME/.cache/streamops-xiu}:
#   venv-<hash>/      Python venv for requirements.txt (hash = first 12 hex digits of its sha256)
#   xiu-<version>/    xiu built from crates.io (bin/xiu)
#   cargo-target/     cargo's build directory for it
#   tools/checkov-<version>/   the manifest scanner (its own venv; `make checkov`)

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-builtin-rules --no-print-directory

CACHE := $(or $(STREAMOPS_CACHE),$(HOME)/.cache/streamops-xiu)
PYTHON ?= python3

REQ_HASH := $(shell (sha256sum requirements.txt 2>/dev/null || shasum -a 256 requirements.txt) | cut -c1-12)
VENV := $(CACHE)/venv-$(REQ_HASH)
VENV_STAMP := $(VENV)/.installed

# Versions come from the one place that pins them.
VERSIONS_FILE := roles/versions/defaults/main.yml
version_of = $(shell sed -n -E 's/^$(1):[[:space:]]*["'\'']?([^"'\''[:space:]#]+).*/\1/p' $(VERSIONS_FILE))
XIU_VERSION := $(call version_of,versions_xiu)
XIU_ROOT := $(CACHE)/xiu-$(XIU_VERSION)
# Manifest scanner (`make scan`): checkov from PyPI in a venv of its own (its dependencies would clash with
# requirements.txt). kube-linter cannot be built here: the Go module proxy does not serve its module host.
CHECKOV_VERSION := $(call version_of,versions_checkov)
CHECKOV_ROOT := $(CACHE)/tools/checkov-$(CHECKOV_VERSION)

RENDER_DIR := $(CURDIR)/build/manifests
# ansible-test needs the collection under ansible_collections/<ns>/<name> and outside this git work tree
# (inside it, git ls-files would hide the ignored copy): an installed copy in the cache.
SANITY_DIR := $(CACHE)/sanity
SANITY_VENV := $(CACHE)/sanity-venv-$(REQ_HASH)
PROD_INVENTORY := inventories/prod
VAULT_FILE := $(PROD_INVENTORY)/group_vars/all/vault.yml
# Without the real (encrypted) vault, use the plaintext example tokens so render/CI need no secret.
VAULT_ARGS := $(if $(wildcard $(VAULT_FILE)),,-e @$(VAULT_FILE).example)

# Tools from the venv first; tests find the xiu binary through XIU_BIN.
export PATH := $(VENV)/bin:$(PATH)
export STREAMOPS_CACHE := $(CACHE)
export XIU_VERSION
export XIU_BIN ?= $(XIU_ROOT)/bin/xiu
export CHECKOV_BIN ?= $(CHECKOV_ROOT)/bin/checkov

# Issue that tracks the bench target (cited in its comment).
ISSUE_BENCH := 6

# $(call need,TOOL,HINT): stop with a clear message when TOOL is not on PATH.
need = command -v $(1) >/dev/null 2>&1 || { echo "make $(or $(NEED_CTX),$@): '$(1)' not found on PATH. $(2)" >&2; exit 127; }
need_venv_hint := Run 'make venv' (or check that requirements.txt installed).

# The fast tier needs no cluster; `lab-tier` brings up the lab, checks it, runs the end-to-end scenario and
# removes the lab again (TEST_STAGES="..." selects stages, e.g. make test TEST_STAGES="lint pytest").
TEST_STAGES := lint syntax render scan pytest molecule lab-tier

.PHONY: help venv lint syntax render scan checkov pytest molecule test sanity collection xiu bundle lab lab-check lab-down lab-tier e2e bench clean

help: ## List the targets
	@echo "Fresh machine: 'make lab' (local lab) and 'make test' (all tests). Targets:"
	@grep -E '^[a-z][a-z0-9-]*:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | awk -F'\t' '{printf "  %-11s %s\n", $$1, $$2}'

# ---------------------------------------------------------------------------------------------- Python venv

venv: $(VENV_STAMP) ## Create the Python venv in the cache and link it as .venv
	@ln -sfn "$(VENV)" .venv

$(VENV_STAMP): NEED_CTX := venv
# No prerequisite on requirements.txt: the venv's directory name is the hash of its content, so a fresh
# clone (new mtimes) reuses a complete venv instead of rebuilding one that other checkouts may be using.
# The stamp is written last, and creation runs under a lock so two checkouts never build it at once.
$(VENV_STAMP):
	@$(call need,$(PYTHON),Install Python >= 3.11 or pass PYTHON=/path/to/python3.11.)
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { \
	  echo "make venv: $(PYTHON) is $$($(PYTHON) -V 2>&1); ansible-core 2.19 needs Python >= 3.11 (pass PYTHON=...)." >&2; exit 1; }
	@mkdir -p "$(CACHE)"
	@flock "$(CACHE)/venv.lock" sh -c '\
	  test -f "$@" && exit 0; \
	  echo "== creating $(VENV)"; \
	  rm -rf "$(VENV)"; \
	  $(PYTHON) -m venv "$(VENV)" || { rm -rf "$(VENV)"; \
	    echo "make venv: \"$(PYTHON) -m venv\" failed (Debian: apt-get install python3-venv)." >&2; exit 1; }; \
	  "$(VENV)/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip && \
	  "$(VENV)/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements.txt || { \
	    rm -rf "$(VENV)"; echo "make venv: installing requirements.txt failed (see above)." >&2; exit 1; }; \
	  touch "$@"'

# ---------------------------------------------------------------------------------------------- checks

lint: venv ## yamllint + ansible-lint (production profile) + changelog fragments
	@$(call need,yamllint,$(need_venv_hint))
	@$(call need,ansible-lint,$(need_venv_hint))
	yamllint --strict .
	ansible-lint
	antsibull-changelog lint

syntax: venv ## ansible-playbook --syntax-check for every playbook in playbooks/
	@$(call need,ansible-playbook,$(need_venv_hint))
	@failed=""; shopt -s nullglob; books=(playbooks/*.yml); \
	if [ $${#books[@]} -eq 0 ]; then echo "make syntax: no playbooks in playbooks/" >&2; exit 1; fi; \
	for pb in "$${books[@]}"; do \
	  echo "== syntax-check $$pb"; \
	  ansible-playbook --syntax-check -i $(PROD_INVENTORY) "$$pb" || failed="$$failed $$pb"; \
	done; \
	if [ -n "$$failed" ]; then echo "make syntax: FAILED:$$failed" >&2; exit 1; fi

render: venv ## Render every manifest for inventories/prod into build/manifests/
	@$(call need,ansible-playbook,$(need_venv_hint))
	@test -f playbooks/render.yml || { echo "make render: playbooks/render.yml is missing." >&2; exit 1; }
	rm -rf "$(RENDER_DIR)" && mkdir -p "$(RENDER_DIR)"
	ansible-playbook playbooks/render.yml -i $(PROD_INVENTORY) $(VAULT_ARGS) -e xiu_cluster_render_dir=$(RENDER_DIR)

# Offline (see .checkov.yaml); re-renders first only when build/manifests is missing or empty.
scan: venv checkov ## Scan build/manifests with checkov: any finding, or nothing scanned, fails
	@if [ -z "$$(ls -A "$(RENDER_DIR)" 2>/dev/null)" ]; then $(MAKE) render; fi
	python -m tools.manifest_scan "$(RENDER_DIR)"

checkov: ## Install checkov (versions_checkov) into the cache (skipped when there)
	@test -n "$(CHECKOV_VERSION)" || { echo "make checkov: versions_checkov not found in $(VERSIONS_FILE)" >&2; exit 1; }
	@mkdir -p "$(CACHE)/tools"
	@flock "$(CACHE)/tools/checkov.lock" sh -c '\
	  if test -x "$(CHECKOV_ROOT)/bin/checkov" && test -f "$(CHECKOV_ROOT)/.installed"; then \
	    echo "checkov $(CHECKOV_VERSION) already installed: $(CHECKOV_ROOT)/bin/checkov"; exit 0; fi; \
	  echo "== installing checkov $(CHECKOV_VERSION) into $(CHECKOV_ROOT)"; \
	  rm -rf "$(CHECKOV_ROOT)" && $(PYTHON) -m venv "$(CHECKOV_ROOT)" && \
	  nice -n 10 "$(CHECKOV_ROOT)/bin/python" -m pip install --quiet --disable-pip-version-check "checkov==$(CHECKOV_VERSION)" || { \
	    rm -rf "$(CHECKOV_ROOT)"; echo "make checkov: installing checkov $(CHECKOV_VERSION) failed (see above)." >&2; exit 1; }; \
	  touch "$(CHECKOV_ROOT)/.installed"'

pytest: venv xiu checkov ## Python tests in tests/ (no test collected = failure)
	@$(call need,pytest,$(need_venv_hint))
	@rc=0; pytest tests/ || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make pytest: pytest collected no test (exit 5); that is a failure here." >&2; fi; \
	exit $$rc

molecule: venv ## Molecule scenario 'render' (no containers)
	@$(call need,molecule,$(need_venv_hint))
	molecule test -s render

test: venv ## Everything CI runs: lint, syntax, render, scan, pytest, molecule (each timed)
	@failed=""; total_start=$$(date +%s); \
	for stage in $(TEST_STAGES); do \
	  echo; echo "======== make $$stage"; start=$$(date +%s); \
	  if $(MAKE) $$stage; then result=ok; else result=FAILED; failed="$$failed $$stage"; fi; \
	  echo "======== make $$stage: $$result in $$(( $$(date +%s) - start ))s"; \
	done; \
	echo; echo "make test: $$(( $$(date +%s) - total_start ))s in total"; \
	if [ -n "$$failed" ]; then echo "make test: FAILED stages:$$failed" >&2; exit 1; fi; \
	echo "make test: all stages passed ($(TEST_STAGES))"

sanity: venv ## ansible-test sanity on an installed copy (only when plugins/ exists)
	@if [ ! -d plugins ]; then echo "make sanity: no plugins/ directory, nothing for ansible-test sanity to check."; exit 0; fi; \
	$(call need,ansible-galaxy,$(need_venv_hint)); \
	if [ ! -x "$(SANITY_VENV)/bin/ansible-test" ]; then \
	  echo "== creating $(SANITY_VENV) (ansible-test installs its sanity requirements there, not in the main venv)"; \
	  rm -rf "$(SANITY_VENV)"; \
	  $(PYTHON) -m venv "$(SANITY_VENV)"; \
	  "$(SANITY_VENV)/bin/python" -m pip install --quiet --disable-pip-version-check \
	    "$$(grep -E '^ansible-core==' requirements.txt)" || { rm -rf "$(SANITY_VENV)"; exit 1; }; \
	fi; \
	pip_ver=$$(sed -n -E "s/^ *pip='([0-9.]+)',.*/\1/p" "$(SANITY_VENV)"/lib/python*/site-packages/ansible_test/_internal/python_requirements.py); \
	get_pip="$$HOME/.ansible/test/cache/get_pip_$${pip_ver//./_}.py"; \
	if [ -n "$$pip_ver" ]; then mkdir -p "$${get_pip%/*}" && cp .ci/ansible-test-get-pip.py "$$get_pip"; fi; \
	cert="$${PIP_CERT:-$${REQUESTS_CA_BUNDLE:-$${SSL_CERT_FILE:-}}}"; \
	if [ -n "$$cert" ]; then \
	  echo "$$cert" > "$${get_pip%/*}/streamops_pip_cert"; \
	  printf '[global]\ncert = %s\n' "$$cert" > "$(SANITY_VENV)/pip.conf"; \
	fi; \
	set -x; \
	rm -rf "$(SANITY_DIR)" && mkdir -p "$(SANITY_DIR)"; \
	ansible-galaxy collection build --force --output-path "$(SANITY_DIR)" .; \
	ANSIBLE_COLLECTIONS_PATH="$(SANITY_DIR)/collections" ansible-galaxy collection install --force --no-deps \
	  -p "$(SANITY_DIR)/collections" "$(SANITY_DIR)"/streamops-xiu_cluster-*.tar.gz; \
	cd "$(SANITY_DIR)/collections/ansible_collections/streamops/xiu_cluster"; \
	PATH="$(SANITY_VENV)/bin:$$PATH" ansible-test sanity --local --requirements \
	  --python "$$("$(SANITY_VENV)/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')" $(SANITY_ARGS)

collection: venv ## Build the collection tarball into build/
	@$(call need,ansible-galaxy,$(need_venv_hint))
	mkdir -p build
	ansible-galaxy collection build --force --output-path build .

# ---------------------------------------------------------------------------------------------- xiu binary

xiu: ## Build xiu (version from roles/versions) from crates.io into the cache
	@test -n "$(XIU_VERSION)" || { echo "make xiu: versions_xiu not found in $(VERSIONS_FILE)" >&2; exit 1; }
	@if [ -x "$(XIU_ROOT)/bin/xiu" ]; then echo "xiu $(XIU_VERSION) already built: $(XIU_ROOT)/bin/xiu"; exit 0; fi; \
	$(call need,cargo,Install Rust (rustup) or add ~/.cargo/bin to PATH.); \
	for tool in cmake perl make c++; do \
	  $(call need,$$tool,xiu's native dependencies need it (Debian: apt-get install cmake perl make g++).); \
	done; \
	echo "== building xiu $(XIU_VERSION) into $(XIU_ROOT) (slow: about half an hour or more on 2 cores)"; \
	CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 CARGO_TARGET_DIR="$(CACHE)/cargo-target" \
	  cargo install xiu --version "$(XIU_VERSION)" --locked --root "$(XIU_ROOT)"; \
	test -x "$(XIU_ROOT)/bin/xiu"

# ---------------------------------------------------------------------------------------------- lab

# Lab shape (see lab/README.md): LAB_NODES nodes, the first LAB_SERVERS of them control-plane nodes, on a
# private Docker network LAB_SUBNET. LAB_SITE_ARGS: extra ansible-playbook arguments for site.yml
# (for example LAB_SITE_ARGS='--tags nodes' to run only the node and Kubernetes plays).
LAB_NODES ?= 3
LAB_SERVERS ?= 1
LAB_SUBNET ?= 172.31.250.0/24
LAB_NAME ?= xiu-lab
LAB_SITE_ARGS ?=
# LAB_BUNDLE=<dir>: use that finished bundle instead of building/finding the one for the current pins.
LAB_BUNDLE ?=
export LAB_NODES LAB_SERVERS LAB_SUBNET LAB_NAME LAB_BUNDLE
LAB_PY = nice -n 5 "$(VENV)/bin/python" -m lab

bundle: venv ## Build (or reuse) the air-gap bundle: Kubernetes, etcd, CoreDNS, flannel, CNI, helm from source
	nice -n 10 "$(VENV)/bin/python" -m lab.bundle build $(if $(BUNDLE_OUT),--out $(BUNDLE_OUT),)

lab: venv ## Start the local lab (LAB_NODES Debian 12 node containers), provision it with site.yml
	@lab/ensure-docker
	$(LAB_PY) up -- $(LAB_SITE_ARGS)

lab-check: venv ## Check the running lab: nodes Ready, CoreDNS, pod-to-pod across nodes, site.yml idempotent
	@test -f build/lab/endpoints.json || { echo "make lab-check: no lab (build/lab/endpoints.json); run 'make lab' first." >&2; exit 1; }
	STREAMOPS_LAB_CHECK=1 LAB_SITE_ARGS="$(LAB_SITE_ARGS)" pytest -v -p no:cacheprovider $(LAB_CHECK_ARGS) tests/lab/test_cluster.py tests/lab/test_addons.py tests/lab/test_k3s_role.py

lab-down: venv ## Remove everything the lab created (labelled containers, volumes, network, image; inventory; build/lab)
	$(LAB_PY) down $(if $(LAB_KEEP_IMAGE),--keep-image,)

e2e: venv ## End-to-end scenario on the running lab (molecule -s e2e): build/e2e/report.md and .json
	@test -f build/lab/endpoints.json || { echo "make e2e: no lab (build/lab/endpoints.json); run 'make lab' first." >&2; exit 1; }
	@$(call need,ffmpeg,Install ffmpeg (Debian: apt-get install ffmpeg).)
	molecule test -s e2e

# lab-check's second add-on run is skipped here: its second site.yml run covers the add-on plays too.
LAB_TIER_CHECK := LAB_CHECK_ARGS="-k 'not test_second_addon_run_changes_nothing'"
# The lab is thrown away afterwards, so lab-tier's e2e also stops a node (step 7d, the last one). 0 skips it.
LAB_TIER_NODE_FAULT ?= 1
# The lab stages of `make test`: a fresh lab (any earlier one of the same name is removed first, the node
# image is kept), its checks, the end-to-end scenario with the node fault, and the lab removed again whatever
# happened.
lab-tier: venv ## make lab-down + lab + lab-check + e2e + lab-down (part of make test)
	@$(MAKE) lab-down LAB_KEEP_IMAGE=1
	@rc=0; start=$$(date +%s); \
	for step in lab lab-check e2e; do \
	  t=$$(date +%s); E2E_NODE_FAULT=$(LAB_TIER_NODE_FAULT) $(MAKE) $$step $(LAB_TIER_CHECK) || { rc=$$?; echo "make lab-tier: make $$step FAILED" >&2; break; }; \
	  echo "======== lab-tier: make $$step done in $$(( $$(date +%s) - t ))s"; \
	done; \
	$(MAKE) lab-down LAB_KEEP_IMAGE=1; \
	echo "make lab-tier: $$(( $$(date +%s) - start ))s"; exit $$rc

# make bench (issue $(ISSUE_BENCH)): loopback targets always, the lab ones when build/lab/endpoints.json exists
# (`make lab` first). Knobs (environment, see bench/run.py): BENCH_STEPS, BENCH_REPEATS, BENCH_STAGES
# (capacity,ttfp,scaling,hpa,ops), BENCH_LAB=0 (loopback only), BENCH_OPS=1 (also time `make lab` warm and a
# site.yml re-run: they act on the whole lab), BENCH_MAX_MINUTES. Plots need matplotlib: its own venv, keyed
# by bench/requirements.txt. The Go load client is built into the cache, keyed by its sources.
BENCH_REQ_HASH := $(shell (sha256sum bench/requirements.txt 2>/dev/null || shasum -a 256 bench/requirements.txt) | cut -c1-12)
BENCH_VENV := $(CACHE)/bench-venv-$(BENCH_REQ_HASH)
BENCH_RESULTS ?= $(CURDIR)/bench/results
GO ?= $(or $(shell command -v go 2>/dev/null),$(wildcard /usr/local/go/bin/go),go)
export BENCH_RESULTS

bench: venv xiu ## Viewer capacity, time to first play, ops timings: bench/results/<date>.{json,md,png}
	@$(call need,ffmpeg,Debian: apt-get install ffmpeg)
	@$(call need,$(GO),Install Go (https://go.dev/dl) or pass GO=/path/to/go.)
	@if [ ! -e /usr/lib/nginx/modules/ngx_rtmp_module.so ]; then \
	  if [ "$$(id -u)" -eq 0 ]; then DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx-light libnginx-mod-rtmp; \
	  else echo "make bench: nginx-rtmp missing (apt-get install nginx-light libnginx-mod-rtmp); its column is skipped." >&2; fi; \
	fi
	@flock "$(CACHE)/venv.lock" sh -c 'test -f "$(BENCH_VENV)/.installed" && exit 0; \
	  echo "== creating $(BENCH_VENV)"; rm -rf "$(BENCH_VENV)"; \
	  $(PYTHON) -m venv "$(BENCH_VENV)" && "$(BENCH_VENV)/bin/python" -m pip install --quiet \
	    --disable-pip-version-check -r bench/requirements.txt && touch "$(BENCH_VENV)/.installed" || { \
	    rm -rf "$(BENCH_VENV)"; echo "make bench: installing bench/requirements.txt failed" >&2; exit 1; }'
	cd bench/loadclient && nice $(GO) vet ./... && nice $(GO) test ./...
	@start=$$(date +%s); rc=0; PATH="$$(dirname $(GO)):$$PATH" python -m bench || rc=$$?; \
	results="$(BENCH_RESULTS)/$$(date +%F).json"; \
	if [ -f "$$results" ]; then "$(BENCH_VENV)/bin/python" -m bench.plots "$$results"; fi; \
	echo "make bench: $$(( $$(date +%s) - start ))s; results in $(BENCH_RESULTS)"; exit $$rc

clean: ## Remove build/ (the cache and the venv stay)
	rm -rf build
