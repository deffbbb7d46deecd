#!/usr/bin/env bash
# bench/tls_origination.sh: what the upstream keep-alive pool and TLS session resumption save
# when sluice originates TLS (the egress case: an app calling a remote HTTPS API through
# sluice). wrk -> sluice (plain, loopback) -> nginx over HTTPS, three ways in one run:
#   pooled     keep-alive upstream connections (the default): handshakes only at start
#   resumed    a new TLS connection per request (max_requests_per_connection: 1); sluice
#              resumes the previous session (TLS 1.3 tickets)
#   full       the same, against an nginx with tickets and its session cache off: a full
#              handshake per request
# Reports req/s, sluice CPU µs per request and sluice's handshake counters.
# Run after `make build`:  bench/tls_origination.sh   (DURATION=10s REPEATS=3 CONNS=16)
set -euo pipefail
cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."
DURATION=${DURATION:-10s}
REPEATS=${REPEATS:-3}
CONNS=${CONNS:-16}
SLUICE=${SLUICE:-build/sluice}
[[ -x $SLUICE ]] || { echo "build first (make build)" >&2; exit 1; }
for t in nginx wrk openssl taskset curl; do command -v $t >/dev/null || { echo "missing $t (make deps)" >&2; exit 1; }; done
DIR=$(mktemp -d /tmp/sluice-tls-bench.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$DIR"; }
trap cleanup EXIT

# A CA and a certificate for localhost (ECDSA P-256, as most public APIs now serve).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$DIR/ca.key" \
  -out "$DIR/ca.pem" -days 2 -subj "/CN=bench CA" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$DIR/srv.key" \
  -out "$DIR/srv.csr" -subj "/CN=localhost" 2>/dev/null
printf 'subjectAltName=DNS:localhost\n' >"$DIR/ext"
openssl x509 -req -in "$DIR/srv.csr" -CA "$DIR/ca.pem" -CAkey "$DIR/ca.key" -CAcreateserial \
  -out "$DIR/srv.pem" -days 2 -extfile "$DIR/ext" 2>/dev/null

# Two nginx servers: tickets and session cache on (nginx's defaults) and off.
user=""; [[ $(id -u) == 0 ]] && user="user root;"
for mode in on off; do
  port=$((21000 + RANDOM % 5000))
  mkdir -p "$DIR/nginx-$mode"
  if [[ $mode == on ]]; then sess="ssl_session_tickets on; ssl_session_cache shared:s:1m;"
  else sess="ssl_session_tickets off; ssl_session_cache off;"; fi
  cat >"$DIR/nginx-$mode/nginx.conf" <<CONF
worker_processes 1; $user pid $DIR/nginx-$mode/pid; error_log $DIR/nginx-$mode/error.log;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$port ssl; ssl_certificate $DIR/srv.pem; ssl_certificate_key $DIR/srv.key;
           ssl_protocols TLSv1.3; $sess
           location / { return 200 "hello over TLS\n"; } } }
CONF
  taskset -c 1 nginx -p "$DIR/nginx-$mode" -c "$DIR/nginx-$mode/nginx.conf" -g 'daemon off;' &
  PIDS+=($!)
  eval "PORT_$mode=$port"
done

start_sluice() {  # $1 = nginx port, $2 = extra pool settings
  local listen=$((26000 + RANDOM % 4000)) admin=$((30000 + RANDOM % 2000))
  cat >"$DIR/sluice.yaml" <<CONF
admin: {address: 127.0.0.1:$admin}
workers: 1
log: {access: false}
drain: {delay: 0s}
listeners: [{name: egress, address: "127.0.0.1:$listen", cluster: api}]
clusters:
  - {name: api, endpoints: ["localhost:$1"], tls: {ca: "$DIR/ca.pem"}, pool: {$2}}
CONF
  taskset -c 0 "$SLUICE" --config "$DIR/sluice.yaml" >/dev/null 2>"$DIR/sluice.err" &
  SLUICE_PID=$!
  LISTEN=$listen ADMIN=$admin
  for _ in $(seq 50); do curl -fs -o /dev/null "http://127.0.0.1:$listen/" && return; sleep 0.1; done
  cat "$DIR/sluice.err" >&2; exit 1
}
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
metric() { curl -fs "http://127.0.0.1:$ADMIN/metrics" | awk -v k="$1" '$1 == k { print $2 }'; }

printf '| mode | round | req/s | sluice CPU µs/req | full handshakes | resumed handshakes |\n|---|---:|---:|---:|---:|---:|\n' >"$DIR/rows"
sleep 0.5
for round in $(seq "$REPEATS"); do
  for mode in pooled resumed full; do
    case $mode in
      pooled)  start_sluice "$PORT_on" "max_idle: 64" ;;
      resumed) start_sluice "$PORT_on" "max_requests_per_connection: 1" ;;
      full)    start_sluice "$PORT_off" "max_requests_per_connection: 1" ;;
    esac
    t0=$(cpu_ticks "$SLUICE_PID")
    taskset -c 1 wrk -t1 -c"$CONNS" -d"$DURATION" "http://127.0.0.1:$LISTEN/" >"$DIR/wrk.out"
    t1=$(cpu_ticks "$SLUICE_PID")
    req=$(awk '/requests in/ { print $1 }' "$DIR/wrk.out")
    rps=$(awk '/^Requests\/sec:/ { print $2 }' "$DIR/wrk.out")
    full=$(metric 'sluice_upstream_tls_handshakes_total{cluster="api",resumed="false"}')
    resumed=$(metric 'sluice_upstream_tls_handshakes_total{cluster="api",resumed="true"}')
    hz=$(getconf CLK_TCK)
    printf '| %s | %d | %.0f | %.1f | %s | %s |\n' "$mode" "$round" "$rps" \
      "$(awk -v a="$t0" -v b="$t1" -v r="$req" -v hz="$hz" 'BEGIN { print (b - a) / hz * 1e6 / r }')" \
      "$full" "$resumed" >>"$DIR/rows"
    kill "$SLUICE_PID"; wait "$SLUICE_PID" 2>/dev/null || true
    sleep 0.5
  done
done
echo "Command: \`DURATION=$DURATION REPEATS=$REPEATS CONNS=$CONNS bench/tls_origination.sh\`"
echo "($(date -u '+%Y-%m-%d %H:%M UTC'); $("$SLUICE" --version | head -1) at $(git rev-parse --short HEAD); $(nginx -v 2>&1 | sed 's/.*: //'); $(openssl version | cut -d' ' -f1-2); sluice pinned to core 0, nginx and wrk to core 1)"
echo
cat "$DIR/rows"
