#!/usr/bin/env bash
# The run directory's size: one run of SCENARIO (default scenarios/tokens.yaml)
# with --keep-scrapes, so the compact scrapes (scrapes.gz, what the judge
# reads) and the full text (scrapes.jsonl) come from the same scrapes, then
# the directory as a run leaves it (without the full text). Prints figures;
# asserts nothing. Usage: scripts/run-dir-bench.sh CHAOS_BIN [SCENARIO]
set -euo pipefail
bin=${1:?usage: run-dir-bench.sh CHAOS_BIN [SCENARIO]}
scenario=${2:-scenarios/tokens.yaml}
out=$(mktemp -d /tmp/faultline-rundir-XXXXXX)
trap 'rm -rf "$out"' EXIT
"$bin" run "$scenario" --quiet --keep-scrapes --out "$out/run" >"$out/log" 2>&1 || true
verdict=$(grep -m1 '^verdict:' "$out/log" || echo "verdict: ? (see the run's output)")
size() { stat -c %s "$1" 2>/dev/null || echo 0; }
full=$(size "$out/run/scrapes.jsonl")
compact=$(size "$out/run/scrapes.gz")
rm -f "$out/run/scrapes.jsonl"
dir=$(du -sb "$out/run" | cut -f1)
echo "== run directory ($scenario, $(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg)) =="
printf '%-34s %12s\n' "scrapes, full text (scrapes.jsonl)" "$full B"
printf '%-34s %12s\n' "scrapes, compact (scrapes.gz)" "$compact B"
if [ "$compact" -gt 0 ]; then
  printf '%-34s %11sx\n' "ratio" "$((full / compact))"
fi
printf '%-34s %12s\n' "run directory as a run leaves it" "$dir B"
echo "$verdict"
