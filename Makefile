# faultline: build, test, benchmark and demo targets.
# `make demo` runs the main job on local processes; `make test` is what CI runs.

CARGO ?= cargo
RELEASE := target/release

.PHONY: all build release test bench demo lint fmt clean

all: build

build:
	$(CARGO) build --workspace --bins

release:
	$(CARGO) build --release --workspace --bins

# Builds every binary once, then runs the unit, simulation and end-to-end
# tests against those binaries.
test:
	$(CARGO) build --workspace --bins --tests
	$(CARGO) test --workspace

# Figures are printed, never asserted.
bench: release
	$(RELEASE)/bench-tokens

# A local 5-server, 6-client token cluster: client verbs, two servers
# killed, three killed, recovery. No Docker needed.
demo: release
	scripts/demo-local.sh $(RELEASE)/faultline-node

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
