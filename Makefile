# faultline: build, test, benchmark and demo targets.
# `make demo` runs the main job on local processes; `make test` is what CI runs.

CARGO ?= cargo
RELEASE := target/release

.PHONY: all build release test bench bugs demo soak tour lint fmt clean

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

# Figures are printed, never asserted: token pays for 3, 5 and 7 servers
# (direct and through the packet proxy), the standby bank's operations and
# failover time over 20 kills, the proxy's added latency for
# 1,200-byte datagrams, the linearizability checker's speed, and the table
# of planted bugs caught by the shipped scenario.
bench: release
	$(RELEASE)/bench-tokens
	$(RELEASE)/bench-standby
	$(CARGO) run --release -q -p faultline-chaos --example proxy_bench
	$(CARGO) bench -q -p faultline-chaos --bench lin_bench
	scripts/bug-table.sh $(BUG_SEEDS)
	SCENARIO=scenarios/standby.yaml scripts/bug-table.sh $(BUG_SEEDS) 20s

# How often the shipped scenario catches each planted bug, and false alarms
# without one: BUG_SEEDS seeds of 30 s per bug (about an hour at 20).
BUG_SEEDS ?= 20
bugs: release
	scripts/bug-table.sh $(BUG_SEEDS)
	SCENARIO=scenarios/standby.yaml scripts/bug-table.sh $(BUG_SEEDS) 20s

# The main job: a chaos run of the token system on local processes
# (no Docker): omission, a partition, a crash; verdict and report.
demo: release
	$(RELEASE)/faultline-chaos run scenarios/tokens.yaml

# Ten minutes of repeated faults; not part of CI.
soak: release
	$(RELEASE)/faultline-chaos run scenarios/tokens-soak.yaml

# A guided tour with the client verbs on a local cluster.
tour: release
	scripts/demo-local.sh $(RELEASE)/faultline-node

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
