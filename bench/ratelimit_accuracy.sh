#!/usr/bin/env bash
# bench/ratelimit_accuracy.sh: how close the admitted rate is to a rule's configured rate under
# a steady overload (issue #17). sluice (WORKERS workers, so the buckets are shared across
# threads) in front of `sluice demo-app`, one rule keyed by client IP (wrk is one client) at
# RATE/s with burst BURST; wrk offers several times the rate, ROUNDS times. Each round reads
# sluice_ratelimit_requests_total{result="allowed"} twice while wrk runs, DURATION seconds apart
# (the first read 2 s into the run, when the burst is long spent), and reports admitted/s =
# allowed requests between the reads / the time between them, its ratio to RATE, and what wrk
# offered. Under a steady overload the bucket is empty at both reads, so nothing but the
# limiter decides the count; a burst of one second's worth bridges the pauses of a busy machine
# (a stall longer than burst/rate, when no request arrives, would waste tokens and read low).
# Run after `make build`:  bench/ratelimit_accuracy.sh
set -euo pipefail
cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."

SLUICE=${SLUICE:-build/sluice}
RATE=${RATE:-2000}
BURST=${BURST:-2000}
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-32}
WORKERS=${WORKERS:-2}
for tool in wrk curl awk; do command -v $tool >/dev/null || { echo "missing $tool" >&2; exit 1; }; done
[[ -x $SLUICE ]] || { echo "$SLUICE not found: make build" >&2; exit 1; }

DIR=$(mktemp -d /tmp/sluice-rl-accuracy-XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$DIR"; }
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
UP=$(port); PROXY=$(port); ADMIN=$(port)
"$SLUICE" demo-app --listen "127.0.0.1:$UP" >"$DIR/up.log" 2>&1 & pids+=($!)
cat >"$DIR/sluice.yaml" <<CONF
admin: {address: "127.0.0.1:$ADMIN"}
workers: $WORKERS
log: {access: false}
listeners: [{name: ingress, address: "127.0.0.1:$PROXY", cluster: app}]
clusters: [{name: app, endpoints: ["127.0.0.1:$UP"]}]
rate_limits: [{name: accuracy, key: client_ip, rate: $RATE/s, burst: $BURST}]
CONF
"$SLUICE" --config "$DIR/sluice.yaml" >"$DIR/sluice.log" 2>&1 & pids+=($!)
for _ in $(seq 100); do curl -fs -o /dev/null "http://127.0.0.1:$ADMIN/healthz" && break; sleep 0.1; done

allowed() {
  curl -fs "http://127.0.0.1:$ADMIN/metrics" |
    awk '/^sluice_ratelimit_requests_total\{/ && /result="allowed"/ { print $2 }'
}

echo "load before: $(cut -d' ' -f1-3 /proc/loadavg); rate $RATE/s, burst $BURST, ${DURATION}s x $ROUNDS, wrk -c $CONNS, $WORKERS workers"
printf 'round\toffered_rps\tadmitted_rps\tratio\n'
for r in $(seq "$ROUNDS"); do
  sleep 1
  wrk -t 1 -c "$CONNS" -d "$((DURATION + 4))s" "http://127.0.0.1:$PROXY/" >"$DIR/wrk.$r" &
  wrk_pid=$!
  sleep 2
  t0=$(date +%s.%N); a0=$(allowed)
  sleep "$DURATION"
  t1=$(date +%s.%N); a1=$(allowed)
  wait "$wrk_pid"
  secs=$(awk '/requests in/ { gsub(/s,?/, "", $5); print $5 }' "$DIR/wrk.$r")
  total=$(awk '/requests in/ { print $1 }' "$DIR/wrk.$r")
  awk -v a0="$a0" -v a1="$a1" -v t0="$t0" -v t1="$t1" -v s="$secs" -v t="$total" -v rate="$RATE" -v r="$r" \
    'BEGIN { adm = (a1 - a0) / (t1 - t0); printf "%d\t%.0f\t%.1f\t%.4f\n", r, t / s, adm, adm / rate }'
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
