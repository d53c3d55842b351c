# faultline: build, test, benchmark and demo targets.
# `make demo` runs the main job on local processes; `make test` is what CI runs.

CARGO ?= cargo
RELEASE := target/release

# The images' static binaries: glibc linked in, randomness from getrandom(2),
# built in their own target directory so the host build stays warm.
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
STATIC_TARGET := x86_64-unknown-linux-gnu
STATIC := target/static/$(STATIC_TARGET)/image
STATIC_RUSTFLAGS := -C target-feature=+crt-static --cfg getrandom_backend="linux_getrandom"
# docker compose (v2) where it exists, else docker-compose (v1.29).
COMPOSE := $(shell if docker compose version >/dev/null 2>&1; then echo "docker compose"; else echo docker-compose; fi)
SYSTEM ?= tokens
SCENARIO ?= scenarios/tokens-compose.yaml

.PHONY: all build release test bench bugs demo soak tour lint fmt clean \
	static images up down ps logs chaos

all: build

build:
	$(CARGO) build --workspace --bins

release:
	$(CARGO) build --release --workspace --bins

# Builds every binary once, then runs the unit, simulation and end-to-end
# tests against those binaries.
# The compose test needs the images; without a Docker daemon it skips.
test:
	$(CARGO) build --workspace --bins --tests
	@if docker info >/dev/null 2>&1; then $(MAKE) --no-print-directory images; \
	else echo "no Docker daemon answers: the compose test will skip"; fi
	$(CARGO) test --workspace

# Figures are printed, never asserted: token pays for 3, 5 and 7 servers
# (direct and through the packet proxy), the standby bank's operations and
# failover time over 20 kills, smr's commands for 3, 5 and 7 replicas and
# the stall of a silent client, the bitcake network's time and messages per
# snapshot (7, 50 and 200 nodes; 1, 2 and 4 initiators), replication's
# requests per second and failover over 20 kills in each mode, the proxy's added latency for
# 1,200-byte datagrams, the linearizability checker's speed, the table
# of planted bugs caught by the shipped scenario, and the compose platform's
# figures (image sizes, up to ready, memory, a run next to local processes).
bench: release
	$(RELEASE)/bench-tokens
	$(RELEASE)/bench-standby
	$(RELEASE)/bench-smr
	$(RELEASE)/bench-snapshot
	$(RELEASE)/bench-replication
	$(CARGO) run --release -q -p faultline-chaos --example proxy_bench
	$(CARGO) bench -q -p faultline-chaos --bench lin_bench
	scripts/run-dir-bench.sh $(RELEASE)/faultline-chaos
	scripts/bug-table.sh $(BUG_SEEDS)
	SCENARIO=scenarios/standby.yaml scripts/bug-table.sh $(BUG_SEEDS) 20s
	SCENARIO=scenarios/smr.yaml scripts/bug-table.sh $(BUG_SEEDS) 20s
	SCENARIO=scenarios/snapshot.yaml scripts/bug-table.sh $(BUG_SEEDS) 20s
	SCENARIO=scenarios/passive.yaml scripts/bug-table.sh $(BUG_SEEDS) 20s
	SCENARIO=scenarios/active.yaml scripts/bug-table.sh $(BUG_SEEDS) 20s
	@if docker info >/dev/null 2>&1; then $(MAKE) --no-print-directory images && \
	  scripts/compose-bench.sh $(STATIC)/faultline-chaos; \
	else echo "compose figures: skipped (no Docker daemon answers)"; fi

# How often the shipped scenario catches each planted bug, and false alarms
# without one: BUG_SEEDS seeds of 30 s per bug (about an hour at 20).
BUG_SEEDS ?= 20
bugs: release
	scripts/bug-table.sh $(BUG_SEEDS)
	SCENARIO=scenarios/standby.yaml scripts/bug-table.sh $(BUG_SEEDS) 20s
	SCENARIO=scenarios/smr.yaml scripts/bug-table.sh $(BUG_SEEDS) 20s
	SCENARIO=scenarios/snapshot.yaml scripts/bug-table.sh $(BUG_SEEDS) 20s
	SCENARIO=scenarios/passive.yaml scripts/bug-table.sh $(BUG_SEEDS) 20s
	SCENARIO=scenarios/active.yaml scripts/bug-table.sh $(BUG_SEEDS) 20s

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

static:
	RUSTFLAGS='$(STATIC_RUSTFLAGS)' $(CARGO) build --profile image \
	  --target $(STATIC_TARGET) --target-dir target/static \
	  -p faultline-node -p faultline-chaos --bins

# faultline-node, faultline-chaos (FROM scratch) and faultline-prometheus
# (from Debian's package), tagged $(VERSION); no registry is needed.
images: static
	scripts/images.sh $(VERSION) $(STATIC)

# The compose cluster of SYSTEM (default tokens): nodes, the packet proxy in
# front of every link, Prometheus on 127.0.0.1:9090; GRAFANA=1 adds Grafana
# on 127.0.0.1:3000 (the public image: compose pulls it); SCHEDULE=1 adds
# scheduled runs of scenarios/SYSTEM.yaml every EVERY (default 30m), their
# reports copied to compose/SYSTEM/schedule-results by `make down`.
up: images
	$(STATIC)/faultline-chaos up --platform compose --cluster clusters/$(SYSTEM).yaml \
	  $(if $(GRAFANA),--grafana,) $(if $(SCHEDULE),--schedule --every $(or $(EVERY),30m),)

down: static
	$(STATIC)/faultline-chaos down --platform compose

ps:
	$(COMPOSE) -p faultline -f compose/$(SYSTEM)/docker-compose.yml ps

logs:
	$(COMPOSE) -p faultline -f compose/$(SYSTEM)/docker-compose.yml logs --tail=100

# A chaos run against the compose cluster (replaces it with a fresh one of
# the scenario's cluster file; a cluster that was up stays up).
chaos: images
	$(STATIC)/faultline-chaos run $(SCENARIO) --platform compose

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
