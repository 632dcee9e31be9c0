# tenantvisor: two entry points, `make demo` and `make test`. Both install what is missing
# (Debian packages with apt-get, Python packages into .venv) and need root, because the
# testbed creates network namespaces and its own private Open vSwitch instances.

PY        ?= /usr/bin/python3
VENV      ?= .venv
VPY       := $(VENV)/bin/python
APT_PKGS  := openvswitch-switch openvswitch-common openvswitch-testcontroller mininet iperf3 \
             ethtool iproute2 iputils-ping python3-venv python3-pip procps gcc python3-dev
# One binary per package above, to tell whether apt-get has anything to do.
APT_BINS  := ovs-vswitchd ovsdb-server ovs-testcontroller mn iperf3 ethtool ip ping pgrep gcc

.PHONY: demo test deps venv faucet-venv lint typecheck unit check-root clean bench bench-dnb \
        bench-failover bench-reconnect bench-restart fuzz bench-conformance

demo: deps venv
	$(VENV)/bin/tenantvisor demo

test: deps venv faucet-venv lint typecheck
	$(VPY) -m pytest -q -ra tests

lint: venv
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/ruff format --check src tests

typecheck: venv
	$(VENV)/bin/mypy

unit: venv
	$(VPY) -m pytest -q tests/unit tests/api tests/dnb/test_planner.py

bench: deps venv
	$(VENV)/bin/tenantvisor bench overhead

bench-dnb: deps venv
	$(VENV)/bin/tenantvisor bench dnb

# Link cuts on a vlink with a backup path (local and remote to the head-end), then control
# connection flaps of a head-end and a transit pswitch; each writes bench-<name>.png.
bench-failover: deps venv
	$(VENV)/bin/tenantvisor bench failover --remote

bench-reconnect: deps venv
	$(VENV)/bin/tenantvisor bench reconnect

# kill -9 of the daemon under ping, then the same hypervisor restarted on its state directory,
# for four intents up to 8 networks x 8 vswitches x 500 rules; writes bench-restart.png
bench-restart: deps venv
	$(VENV)/bin/tenantvisor bench restart

# The tenant-facing decoder and vswitch handling, fuzzed in process (not part of `make test`;
# tests/unit/test_fuzz.py runs a bounded version there).  Coverage-guided with atheris
# (libFuzzer) when it installs, else the built-in mutation loop; RSS tracked throughout,
# tracemalloc over the second half; corpus and finding-*.bin under .fuzz/.
FUZZ_INPUTS ?= 1000000
FUZZ_ENGINE ?= auto
fuzz: venv
	@$(VPY) -c 'import atheris' 2>/dev/null || $(VPY) -m pip install -q -e '.[fuzz]' || \
	  echo "tenantvisor: atheris did not install: the built-in mutation loop runs instead"
	$(VPY) -m tenantvisor.bench.fuzz --inputs $(FUZZ_INPUTS) --engine $(FUZZ_ENGINE) \
	  --tracemalloc --workdir .fuzz --json .fuzz/report.json

# OpenFlow 1.3 conformance: the whole catalogue against a bare OVS bridge and a vswitch;
# writes bench-conformance.png, exits 1 on a difference that is not an isolation refusal
bench-conformance: deps venv
	$(VENV)/bin/tenantvisor bench conformance

check-root:
	@[ "$$(id -u)" = 0 ] || { echo "tenantvisor: run as root (network namespaces, Open vSwitch)"; exit 1; }

deps: check-root
	@missing=""; for b in $(APT_BINS); do command -v $$b >/dev/null 2>&1 || missing=1; done; \
	[ -x $(PY) ] && $(PY) -c 'import venv, ensurepip' 2>/dev/null || missing=1; \
	[ -f "$$($(PY) -c 'import sysconfig; print(sysconfig.get_path("include"))')/Python.h" ] || missing=1; \
	if [ -n "$$missing" ]; then \
	  echo "tenantvisor: installing Debian packages: $(APT_PKGS)"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends $(APT_PKGS); \
	fi

$(VENV)/.installed: pyproject.toml
	@[ -x $(VPY) ] || $(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

# Faucet (a tenant controller for tests) pins os_ken 3.1: its own venv, .venv-faucet (it builds
# a C extension, hence gcc and python3-dev).  Idempotent and locked; a no-op once installed.
faucet-venv: deps venv
	$(VPY) -c 'from tenantvisor.testbed.faucet import ensure_faucet_venv; ensure_faucet_venv()'

clean:
	rm -rf $(VENV) .venv-faucet .mypy_cache .ruff_cache .pytest_cache
