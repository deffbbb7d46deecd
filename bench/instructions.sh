#!/usr/bin/env bash
# bench/instructions.sh: user-space instructions per proxied keep-alive GET, counted by
# callgrind. Unlike CPU time this hardly depends on the machine's speed or load, so it shows
# what a change to sluice's request path saves (or costs) even on a noisy machine; it says
# nothing about the kernel's share (see run.sh for that).
#
#   bench/instructions.sh [SLUICE_BINARY]      (default build/sluice; needs valgrind and wrk)
#   SLUICE_CONFIG=FILE bench/instructions.sh    (also --config FILE, e.g. with a rate-limit rule;
#                                               the flags below still set listener and upstream)
#   PROTO=h2c bench/instructions.sh             (h2load over cleartext HTTP/2 with prior knowledge:
#                                               H2_CONNS connections x H2_STREAMS streams; needs h2load)
#   UPSTREAM=h2c bench/instructions.sh          (an HTTP/2 upstream: a cluster with protocol h2c in
#                                               front of the Go peer tests/peers/h2_upstream, GET
#                                               /status/200; build it with ctest -R peers.go_h2_upstream)
#   UPSTREAM=grpc bench/instructions.sh         (gRPC unary calls as run.sh's grpc scenario sends them:
#                                               h2load, client h2c, to bench/grpc_upstream over an h2c
#                                               cluster; GRPC_REQ_BYTES/GRPC_RESP_BYTES, default 32;
#                                               builds the app with go; implies PROTO=h2c)
#
# One worker with the JSON access log (as run.sh runs sluice), in front of `sluice demo-app`;
# wrk with CONNS connections for a warm-up, then callgrind's counters are zeroed, wrk runs for
# DURATION, and the counters are dumped. Prints instructions per request and the functions
# that spend the most (self cost).
set -euo pipefail

SLUICE=$(readlink -f "${1:-build/sluice}")
DURATION=${DURATION:-8s}
CONNS=${CONNS:-16}
TOP=${TOP:-25}
PROTO=${PROTO:-http1}
H2_CONNS=${H2_CONNS:-4}
H2_STREAMS=${H2_STREAMS:-4}
UPSTREAM=${UPSTREAM:-http1}
GRPC_REQ_BYTES=${GRPC_REQ_BYTES:-32}
GRPC_RESP_BYTES=${GRPC_RESP_BYTES:-32}
[[ $PROTO == http1 || $PROTO == h2c ]] || { echo "instructions: PROTO is http1 or h2c" >&2; exit 1; }
[[ $UPSTREAM == http1 || $UPSTREAM == h2c || $UPSTREAM == grpc ]] ||
  { echo "instructions: UPSTREAM is http1, h2c or grpc" >&2; exit 1; }
[[ $UPSTREAM == grpc ]] && PROTO=h2c

die() { echo "instructions: $*" >&2; exit 1; }
for tool in valgrind callgrind_control callgrind_annotate wrk curl $([[ $PROTO == h2c ]] && echo h2load); do
  command -v "$tool" >/dev/null || die "missing $tool (apt-get install valgrind wrk curl)"
done
[[ -x $SLUICE ]] || die "$SLUICE not found: run 'make build' first"
BUILD_DIR=$(dirname "$SLUICE")
H2_PEER=$BUILD_DIR/tests/peers/h2_upstream
GRPC_APP=$BUILD_DIR/bench/grpc_upstream
if [[ $UPSTREAM == h2c ]]; then
  [[ -x $H2_PEER ]] || die "$H2_PEER not found: build it with 'ctest -R peers.go_h2_upstream' in $BUILD_DIR"
fi
if [[ $UPSTREAM != http1 && -n ${SLUICE_CONFIG:-} ]]; then
  die "SLUICE_CONFIG is for UPSTREAM=http1 (the other upstreams write their own configuration)"
fi
if [[ $UPSTREAM == grpc ]]; then
  command -v go >/dev/null || die "missing go (UPSTREAM=grpc builds bench/grpc_upstream; make deps)"
  mkdir -p "$(dirname "$GRPC_APP")"
  # As run.sh builds it: GOPATH mode against Debian's packages, nothing downloaded.
  GOPATH=/usr/share/gocode GO111MODULE=off GOFLAGS='' GOCACHE="$BUILD_DIR/bench/go-cache" \
    go build -o "$GRPC_APP" ./bench/grpc_upstream || die "go build of bench/grpc_upstream failed"
fi

OUT=$(mktemp -d /tmp/sluice-instructions.XXXXXX)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

# A free port: bind to 0 and read what the kernel gave.
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
UP=$(free_port)
PORT=$(free_port)
GRPC_STATS=$(free_port)

CONFIG_ARGS=()
[[ -n ${SLUICE_CONFIG:-} ]] && CONFIG_ARGS=(--config "$(readlink -f "$SLUICE_CONFIG")")
URL_PATH=/
case $UPSTREAM in
  http1)
    "$SLUICE" demo-app --listen "127.0.0.1:$UP" >"$OUT/upstream.log" 2>&1 &
    PIDS+=($!) ;;
  h2c)
    "$H2_PEER" -port "$UP" >"$OUT/upstream.log" 2>&1 &
    PIDS+=($!)
    URL_PATH=/status/200 ;;
  grpc)
    "$GRPC_APP" -listen "127.0.0.1:$UP" -stats "127.0.0.1:$GRPC_STATS" -req-bytes "$GRPC_REQ_BYTES" \
      -resp-bytes "$GRPC_RESP_BYTES" >"$OUT/upstream.log" 2>&1 &
    PIDS+=($!)
    URL_PATH=/sluice.bench.Bench/Unary
    # One gRPC message: the uncompressed flag, a 4-byte big-endian length, the bytes.
    GRPC_BODY=$OUT/grpc-request.bin
    hdr=$(printf '\\x%02x' 0 $((GRPC_REQ_BYTES >> 24 & 255)) $((GRPC_REQ_BYTES >> 16 & 255)) \
      $((GRPC_REQ_BYTES >> 8 & 255)) $((GRPC_REQ_BYTES & 255)))
    # shellcheck disable=SC2059  # the format is the escaped prefix
    { printf "$hdr"; head -c "$GRPC_REQ_BYTES" /dev/zero | tr '\0' x; } >"$GRPC_BODY" ;;
esac
if [[ $UPSTREAM != http1 ]]; then
  # The flags below set the listener and the endpoint; the file makes the cluster HTTP/2.
  cat >"$OUT/sluice.yaml" <<CONF
clusters:
  - {name: app, endpoints: ["127.0.0.1:$UP"], protocol: h2c}
CONF
  CONFIG_ARGS=(--config "$OUT/sluice.yaml")
fi
# Up once it answers: any status for gRPC (a GET is not a call), a 2xx otherwise.
ready() {
  if [[ $UPSTREAM == grpc ]]; then
    [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:$PORT$URL_PATH") != 000 ]]
  else
    curl -fs -o /dev/null --max-time 1 "http://127.0.0.1:$PORT$URL_PATH"
  fi
}
valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.%p" "$SLUICE" "${CONFIG_ARGS[@]}" --workers 1 \
  --listen "127.0.0.1:$PORT" --upstream "127.0.0.1:$UP" --admin 127.0.0.1:0 --log-format json \
  >"$OUT/sluice.log" 2>"$OUT/valgrind.log" &
VG=$!
PIDS+=($VG)
for _ in $(seq 100); do
  ready && break
  kill -0 "$VG" 2>/dev/null || { cat "$OUT/valgrind.log" >&2; die "sluice exited under valgrind"; }
  sleep 0.2
done
ready || die "sluice not answering on :$PORT"

load() {  # load SECONDS OUTFILE
  if [[ $UPSTREAM == grpc ]]; then
    h2load -c"$H2_CONNS" -m"$H2_STREAMS" -D"$1" -d "$GRPC_BODY" -H 'content-type: application/grpc' \
      -H 'te: trailers' "http://127.0.0.1:$PORT$URL_PATH" >"$2"
  elif [[ $PROTO == h2c ]]; then
    h2load -c"$H2_CONNS" -m"$H2_STREAMS" -D"$1" "http://127.0.0.1:$PORT$URL_PATH" >"$2"
  else
    wrk -t1 -c"$CONNS" -d"${1}s" "http://127.0.0.1:$PORT$URL_PATH" >"$2"
  fi
}
load 3 /dev/null                                   # warm-up: pools, caches
callgrind_control -z "$VG" >/dev/null 2>&1
load "${DURATION%s}" "$OUT/load.txt"
callgrind_control -d "$VG" >/dev/null 2>&1         # writes callgrind.PID.1
if [[ $PROTO == h2c ]]; then
  REQ=$(awk '/^requests:/ { print $8 }' "$OUT/load.txt")   # "requests: N total, N started, N done, N succeeded"
  [[ ${REQ:-0} -gt 0 ]] || { cat "$OUT/load.txt" >&2; die "no requests succeeded"; }
  awk '/^status codes:/ { if ($5 + $7 + $9 > 0) exit 1 }' "$OUT/load.txt" ||
    { cat "$OUT/load.txt" >&2; die "non-2xx responses"; }
  CONNS="$H2_CONNS x $H2_STREAMS streams"
  if [[ $UPSTREAM == grpc ]]; then
    # h2load cannot see grpc-status (trailers): the app counts the calls it answered OK.
    calls=$(curl -fsS --max-time 5 "http://127.0.0.1:$GRPC_STATS/") || die "grpc upstream: no call counters"
    awk '$1 == "ok" && $3 == "bad" { f = 1; if ($4 > 0) exit 1 } END { exit !f }' <<<"$calls" ||
      die "grpc upstream: calls refused ($calls)"
  fi
else
  REQ=$(awk '/requests in/ { print $1 }' "$OUT/load.txt")
  [[ ${REQ:-0} -gt 0 ]] || { cat "$OUT/load.txt" >&2; die "no requests completed"; }
  grep -q "Non-2xx" "$OUT/load.txt" && { cat "$OUT/load.txt" >&2; die "non-2xx responses"; }
fi
DUMP=$(ls "$OUT"/callgrind.*.1 2>/dev/null | head -n 1)
[[ -n $DUMP ]] || die "callgrind wrote no dump"
IR=$(callgrind_annotate "$DUMP" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1; exit }')

echo "sluice: $("$SLUICE" --version | head -n 1) ($SLUICE)"
echo "requests ($PROTO, upstream $UPSTREAM): $REQ in $DURATION on $CONNS connections (callgrind slows sluice ~50x; the count per request is what matters)"
echo "instructions per request: $((IR / REQ)) (total $IR)"
echo
echo "Top $TOP functions by self cost, instructions per request:"
# (callgrind charges the whole run to the worker thread's entry frames as their self cost:
# anything above 90% of the total is that, not a function's own work.)
callgrind_annotate --inclusive=no --threshold=100 "$DUMP" 2>/dev/null |
  awk -v n="$REQ" -v top="$TOP" -v total="$IR" '
    /^ *[0-9,]+ +\(/ && !/PROGRAM TOTALS/ {
      ir = $1; gsub(",", "", ir); ir += 0   # a number, not a string, in the comparison below
      if (ir > 0.9 * total) next
      fn = $0; sub(/^ *[0-9,]+ +\([^)]*\) +/, "", fn); sub(/^[^:]*:/, "", fn)
      if (++shown > top) exit
      printf "%8.0f  %s\n", ir / n, substr(fn, 1, 110)
    }'
echo
echo "(callgrind output kept in $OUT)"
trap - EXIT
cleanup
