#!/usr/bin/env bash
# Figures of the compose platform, printed (never asserted): image sizes,
# the time of a rebuild with nothing changed, `make up` to every node ready
# (3 times), memory per container, and scenarios/tokens-compose.yaml on local
# processes next to the same run on compose (ok operations per second, p50,
# p99). Needs a Docker daemon and the images (`make images`).
#
#   scripts/compose-bench.sh [CHAOS_BIN]
set -euo pipefail
cd "$(dirname "$0")/.."
chaos=${1:-target/static/x86_64-unknown-linux-gnu/image/faultline-chaos}
if ! docker info >/dev/null 2>&1; then
  echo "compose figures: skipped (no Docker daemon answers)"
  exit 0
fi
out=target/bench-compose
rm -rf "$out"
mkdir -p "$out"
now() { date +%s.%N; }
since() { python3 -c 'import sys; print(f"{float(sys.argv[2]) - float(sys.argv[1]):.1f} s")' "$1" "$(now)"; }

echo "== images"
for what in node chaos prometheus; do
  docker image inspect --format '{{index .RepoTags 0}} {{.Size}}' "faultline-$what:$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)" |
    awk '{printf "  %-28s %.1f MB\n", $1, $2/1e6}'
done
t0=$(now)
make --no-print-directory images >/dev/null 2>&1
echo "  rebuild with nothing changed: $(since "$t0")"

echo "== make up (token system: 11 nodes, proxy, Prometheus) to every node ready"
for i in 1 2 3; do
  "$chaos" down --platform compose >/dev/null
  t0=$(now)
  "$chaos" up --platform compose --cluster clusters/tokens.yaml >/dev/null
  echo "  run $i: $(since "$t0")"
done

echo "== memory per container (idle, after up)"
sleep 2
docker stats --no-stream --format '{{.Name}} {{.MemUsage}}' |
  grep '^faultline-' | sort | awk '{printf "  %-22s %s\n", $1, $2}'

echo "== scenarios/tokens-compose.yaml, same seed, local processes vs compose"
for platform in local compose; do
  "$chaos" run scenarios/tokens-compose.yaml --platform "$platform" --quiet \
    --out "$out/$platform" >/dev/null 2>&1 || true
  python3 - "$out/$platform/results.json" "$platform" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
s = r["stats"]
ok = s["ops"]["ok"]
lat = s["latency_ms"]
print(f"  {sys.argv[2]:<8} verdict {str(r['valid']).lower():<5} ok ops/s {ok / r['duration_s']:7.1f}"
      f"  p50 {lat['p50']:.2f} ms  p99 {lat['p99']:.2f} ms")
PY
done
"$chaos" down --platform compose >/dev/null
