#!/usr/bin/env bash
# Runs a shipped scenario (SCENARIO, default the token one) with each planted
# bug of its system (and without one) on
# several seeds and prints, per bug, how many seeds came out invalid and the
# median time from the start of the run to the first violation the judge
# named. Without a bug, every invalid seed is a false alarm.
#
#   scripts/bug-table.sh [SEEDS] [DURATION]     (default 20 seeds of 30s)
#   SCENARIO=scenarios/standby.yaml scripts/bug-table.sh 20 20s
#   ONLY=read_without_write_back scripts/bug-table.sh 10
#
# Part of `make bench`, never of CI: 5 x 20 runs of 30 s take about an hour.
set -euo pipefail
SEEDS=${1:-20}
DURATION=${2:-30s}
BIN=${BIN:-target/release}
SCENARIO=${SCENARIO:-scenarios/tokens.yaml}
OUT=$(mktemp -d "${TMPDIR:-/tmp}/faultline-bugs.XXXXXX")
trap 'rm -rf "$OUT"' EXIT
CLUSTER=$(cd "$(dirname "$SCENARIO")" && realpath "$(sed -n 's/^cluster: *//p' "$(basename "$SCENARIO")")")
SYSTEM=$(sed -n 's/^system: *//p' "$CLUSTER" | head -1)
case "$SYSTEM" in
  tokens) BUGS=(none errors_as_acks read_without_write_back skip_owner_check stale_tag_cache) ;;
  standby) BUGS=(none no_dedup_on_failover takeover_on_missed_heartbeat ack_before_standby) ;;
  smr) BUGS=(none execute_before_stable join_out_of_order ignore_nulls) ;;
  snapshot) BUGS=(none red_sender_mints record_after_handling stale_differential) ;;
  replication)
    if grep -q '^ *mode: *active' "$CLUSTER"; then BUGS=(none arrival_order)
    else BUGS=(none forget_outcomes_on_promotion unfenced_promotion); fi ;;
  *) echo "no planted bugs known for system $SYSTEM" >&2; exit 2 ;;
esac
# ONLY=bug1,bug2 measures those alone (`none` for false alarms).
if [ -n "${ONLY:-}" ]; then IFS=, read -ra BUGS <<< "$ONLY"; fi

printf '%s, %s seeds of %s each (%s cores, load %s)\n' "$SCENARIO" "$SEEDS" "$DURATION" \
  "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-24s %8s %8s %10s  %s\n' bug invalid unknown median_s "checks that failed"
for bug in "${BUGS[@]}"; do
  for seed in $(seq 1 "$SEEDS"); do
    scn="$OUT/$bug-$seed.yaml"
    sed -e "s|^cluster:.*|cluster: $CLUSTER|" -e "s|^seed:.*|seed: $seed|" \
        -e "s|^duration:.*|duration: $DURATION|" "$SCENARIO" > "$scn"
    [ "$bug" = none ] || echo "bugs: [$bug]" >> "$scn"
    "$BIN/faultline-chaos" run "$scn" --out "$OUT/$bug-$seed" --quiet \
      --node-bin "$BIN/faultline-node" >/dev/null 2>&1 || true
  done
  python3 - "$OUT" "$bug" "$SEEDS" <<'PY'
import json, sys, statistics, pathlib
out, bug, seeds = pathlib.Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
invalid = unknown = 0
times, names = [], {}
for s in range(1, seeds + 1):
    try:
        r = json.loads((out / f"{bug}-{s}" / "results.json").read_text())
    except Exception:
        unknown += 1
        continue
    if r["valid"] is False:
        invalid += 1
        first = None
        for c in r["checks"]:
            if c["valid"] is False:
                names[c["name"]] = names.get(c["name"], 0) + 1
                e = c.get("evidence") or {}
                t = None
                if c["name"] == "no-double-pay":
                    t = e["first"]["pays"][1]["complete_ms"]
                elif c["name"] == "linearizable":
                    # The operation the search could not get past: it returned then.
                    cx = e.get("counterexample") or {}
                    un = cx.get("could_not_place", [])
                    ts = [u.get("return_ms") for u in un if u.get("blocking") and u.get("return_ms") is not None]
                    ts = ts or [u.get("call_ms") for u in un if u.get("call_ms") is not None]
                    t = min(ts) if ts else None
                if t is not None:
                    first = t if first is None else min(first, t)
        if first is not None:
            times.append(first / 1000.0)
    elif r["valid"] != True:
        unknown += 1
median = f"{statistics.median(times):.1f}" if times else "-"
label = "(no bug: false alarms)" if bug == "none" else bug
print(f"{label:<24} {invalid:>4}/{seeds:<3} {unknown:>8} {median:>10}  " +
      ", ".join(f"{k} {v}" for k, v in sorted(names.items())))
PY
done
