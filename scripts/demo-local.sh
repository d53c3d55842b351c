#!/usr/bin/env bash
# A short tour of the token system on local processes: start a 5-server,
# 6-client cluster, run client verbs, stop two servers (still a majority),
# stop a third (operations answer within the deadline, never falsely ok),
# bring them back, and show progress resumes. Every process is stopped on
# exit, error or Ctrl-C.
set -euo pipefail
BIN=${1:-target/release/faultline-node}
CLUSTER=clusters/tokens.yaml
LOGS=target/faultline/logs
declare -A PIDS=()

cleanup() {
  for id in "${!PIDS[@]}"; do kill "${PIDS[$id]}" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
client() { echo "\$ faultline-node client --id $1 ${*:2}"; "$BIN" client --cluster "$CLUSTER" --id "$@" || true; }
start() { "$BIN" run --cluster "$CLUSTER" --id "$1" >>"$LOGS/$1.log" 2>&1 & PIDS[$1]=$!; }
stop() { kill -9 "${PIDS[$1]}" 2>/dev/null || true; wait "${PIDS[$1]}" 2>/dev/null || true; unset "PIDS[$1]"; }

mkdir -p "$LOGS"
rm -rf target/faultline/data
"$BIN" certs --cluster "$CLUSTER" >/dev/null
"$BIN" check --cluster "$CLUSTER"
say "starting 5 servers and 6 clients (logs in $LOGS)"
for id in s1 s2 s3 s4 s5 c1 c2 c3 c4 c5 c6; do start "$id"; done
sleep 1.5
client c1 status
client c1 gettokens
client c1 pay 0 c2
client c1 pay 0 c3
client c2 gettokens
say "stopping s4 and s5: 3 of 5 servers remain, a majority"
stop s4; stop s5
client c1 pay 6 c3
client c3 gettokens
say "stopping s3: no majority; operations answer within the deadline and never claim success"
stop s3
client c1 pay 12 c4
say "bringing s3, s4, s5 back: a retried pay first completes an unknown one, so it may find the token already paid"
start s3; start s4; start s5
sleep 1.5
client c1 pay 12 c4
client c4 gettokens
say "transform: c6 becomes a server"
client c6 transform
client c1 status
client c1 load 3 16
say "done"
