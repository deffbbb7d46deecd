#!/usr/bin/env bash
# bench/run.sh: wrk against the upstream directly, sluice, nginx and HAProxy (one worker each,
# pinned to one core; upstream and wrk pinned to the other), runs alternated and repeated. The
# `h2` scenario loads the same proxies (the same HTTP/1.1 upstream behind them) with h2load over
# HTTP/2: cleartext with prior knowledge (h2c), or ALPN h2 with TLS=1. The `unix` scenario
# compares sluice's app hop over loopback TCP and over a Unix-domain socket (the same static
# nginx app listening on both), round by round. The `grpc` scenario sends gRPC unary calls
# (h2load POSTs of one gRPC message, `te: trailers`) through each proxy's own gRPC instance to a
# grpc-go app (bench/grpc_upstream, h2c), checked with a real gRPC client.
# Reports req/s, p50/p99 latency, each proxy's CPU time per request (utime+stime of all its
# processes and threads from /proc, divided by the requests wrk completed) and, for the
# Connection: close scenario, upstream connections opened per 1,000 requests.
#
# Run from anywhere after `make build`:  bench/run.sh   (knobs: see bench/README.md)
set -euo pipefail

SCRIPT=$(readlink -f "${BASH_SOURCE[0]}")
# Everything runs in a private network namespace (loopback only) when possible: its TCP
# counters (/proc/net/snmp) then count only this benchmark's connections, and nothing else on
# the machine can take our ports.
if [[ ${NETNS:-1} == 1 && -z ${SLUICE_BENCH_IN_NETNS:-} ]]; then
  if unshare -n true 2>/dev/null; then
    export SLUICE_BENCH_IN_NETNS=1
    exec unshare -n -- bash "$SCRIPT" "$@"
  fi
  echo "bench: cannot create a network namespace (needs root); TCP counters are system-wide" >&2
fi
if [[ -n ${SLUICE_BENCH_IN_NETNS:-} ]]; then
  ip link set lo up
fi

cd "$(dirname "$SCRIPT")/.."   # repo root: relative paths below are from here

DURATION=${DURATION:-10s}          # each measured wrk run
REPEATS=${REPEATS:-3}              # rounds of (upstream, sluice, nginx, haproxy)
CONNS=${CONNS:-64}                 # wrk -c
THREADS=${THREADS:-1}              # wrk -t
SLUICE=${SLUICE:-build/sluice}
WARMUP=${WARMUP:-1s}               # unmeasured wrk run just before each measured one ("0" = none)
TARGETS=${TARGETS:-"upstream sluice nginx haproxy"}
SCENARIOS=${SCENARIOS:-"keepalive close"}
UPSTREAM=${UPSTREAM:-demo-app}     # demo-app (sluice demo-app) | nginx (static, harness debugging)
PROXY_CPU=${PROXY_CPU:-0}          # core for the proxy under test
CLIENT_CPU=${CLIENT_CPU:-1}        # core for wrk and the upstream
PAUSE=${PAUSE:-1}                  # seconds of rest between runs
MAX_OTHER_LOAD=${MAX_OTHER_LOAD:-5}  # % of the proxy core used by anything else: above, the run is redone
RETRIES=${RETRIES:-1}              # how many times such a run is redone (the last attempt is kept)
OUT_DIR=${OUT_DIR:-bench/out}
PATH_REQ=${PATH_REQ:-/}            # request path
TLS=${TLS:-0}                      # 1: the proxies terminate HTTPS (same ECDSA P-256 certificate);
                                   # the "close" scenario is then a full TLS handshake per request
H2_CONNS=${H2_CONNS:-8}            # h2 scenario: h2load -c (connections)
H2_STREAMS=${H2_STREAMS:-8}        # h2 scenario: h2load -m (streams per connection; 8 x 8 = wrk's 64 in flight)
                                   # (the grpc scenario uses the same -c and -m)
GRPC_REQ_BYTES=${GRPC_REQ_BYTES:-32}     # grpc scenario: request message (+ the 5-byte gRPC prefix)
GRPC_RESP_BYTES=${GRPC_RESP_BYTES:-32}   # grpc scenario: the upstream's response message
GRPC_UNIX=${GRPC_UNIX:-0}          # grpc scenario: 1 = the proxies reach the app over a Unix socket
GRPC_UPSTREAM_BIN=build/bench/grpc_upstream   # built from bench/grpc_upstream by this script
GRPC_METHOD=/sluice.bench.Bench/Unary

die() { echo "bench: $*" >&2; exit 1; }
log() { echo "bench: $*" >&2; }

for tool in wrk taskset ss curl awk; do
  command -v "$tool" >/dev/null || die "missing $tool (make deps)"
done
[[ " $TARGETS " == *" nginx"* || $UPSTREAM == nginx ]] && { command -v nginx >/dev/null || die "missing nginx"; }
[[ " $TARGETS " == *" haproxy"* ]] && { command -v haproxy >/dev/null || die "missing haproxy"; }
if [[ $UPSTREAM == demo-app || " $TARGETS " == *" sluice "* ]]; then
  [[ -x $SLUICE ]] || die "$SLUICE not found: run 'make build' first (or set SLUICE=path)"
fi
[[ $(nproc --all) -ge 2 ]] || die "needs at least 2 cores"
if [[ " $SCENARIOS " == *" h2 "* || " $SCENARIOS " == *" grpc "* ]]; then
  command -v h2load >/dev/null || die "missing h2load (make deps: nghttp2-client)"
fi
if [[ " $SCENARIOS " == *" grpc "* ]]; then
  command -v go >/dev/null || die "missing go: the grpc scenario builds its upstream (bench/grpc_upstream) with Debian's golang-go and golang-google-grpc-dev (make deps)"
  [[ -d /usr/share/gocode/src/google.golang.org/grpc ]] || die "missing golang-google-grpc-dev (/usr/share/gocode/src/google.golang.org/grpc; make deps)"
  /usr/bin/python3 -c 'import grpc' 2>/dev/null || die "missing python3-grpcio (the grpc scenario checks grpc-status with it; make deps)"
fi
if [[ " $SCENARIOS " == *" unix "* ]]; then
  command -v nginx >/dev/null || die "missing nginx (the unix scenario's app)"
  [[ -x $SLUICE ]] || die "$SLUICE not found: run 'make build' first (or set SLUICE=path)"
fi

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
if awk -v l="${LOAD_BEFORE%% *}" 'BEGIN { exit !(l > 0.5) }'; then
  log "warning: load average is $LOAD_BEFORE: something else is running; figures will be noisy"
fi

STAMP=$(date +%Y%m%d-%H%M%S)
RUN_DIR="$OUT_DIR/run-$STAMP"
mkdir -p "$RUN_DIR"
RUN_DIR=$(cd "$RUN_DIR" && pwd)
RAW="$RUN_DIR/raw.tsv"
printf 'scenario\trepeat\ttarget\trequests\trps\tp50_ms\tp99_ms\tnon2xx\tsock_errors\tproxy_cpu_s\tproxy_cpu_us_req\tproxy_cpu_pct\tupstream_cpu_us_req\ttcp_active_opens\tup_connects\tup_connects_per_1k\ttcp_retrans\tlisten_drops\tother_on_proxy_core_pct\tsteal_pct\tproxy_user_cpu_us_req\tproxy_rss_kib\tproxy_pss_kib\n' >"$RAW"

# ---------------------------------------------------------------- process bookkeeping
PIDS=()
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  local pid
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for _ in $(seq 50); do
    local alive=0
    for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [[ $alive == 0 ]] && break
    sleep 0.1
  done
  for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start NAME CPU CMD...: start CMD pinned to CPU (taskset execs, so $! is the program's pid).
start() {
  local name=$1 cpu=$2; shift 2
  echo "$*" >"$RUN_DIR/$name.cmd"
  taskset -c "$cpu" "$@" >"$RUN_DIR/$name.log" 2>&1 &
  PIDS+=("$!")
  LAST_PID=$!
}

USED_PORTS=" "
# A free TCP port below the ephemeral range (so wrk's and the proxies' source ports never collide).
free_port() {
  local p
  for _ in $(seq 500); do
    p=$((20000 + RANDOM % 12000))
    [[ $USED_PORTS == *" $p "* ]] && continue
    if [[ -z $(ss -Htan "( sport = :$p or dport = :$p )") ]]; then
      USED_PORTS+="$p "
      echo "$p"
      return
    fi
  done
  die "no free port found"
}

# wait_ready NAME PID PORT: until GET PATH_REQ answers 200 (max 10 s).
wait_ready() {
  local name=$1 pid=$2 port=$3
  for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || { cat "$RUN_DIR/$name.log" >&2; die "$name exited during start-up"; }
    local scheme=http
    [[ $TLS == 1 && $name != upstream ]] && scheme=https
    if curl -fsSk -o /dev/null --max-time 1 "$scheme://127.0.0.1:$port$PATH_REQ" 2>/dev/null; then return; fi
    sleep 0.1
  done
  cat "$RUN_DIR/$name.log" >&2
  die "$name not answering on 127.0.0.1:$port"
}

# instance_pids PID: PID and all its descendants (nginx master + worker, etc.).
instance_pids() {
  ps -e -o pid=,ppid= | awk -v root="$1" '
    { parent[$1] = $2; pids[NR] = $1 }
    END {
      keep[root] = 1; changed = 1
      while (changed) { changed = 0
        for (i in pids) { p = pids[i]; if (!(p in keep) && (parent[p] in keep)) { keep[p] = 1; changed = 1 } } }
      for (p in keep) print p
    }'
}

# cpu_ticks PID: "utime+stime utime" (clock ticks) of PID and its descendants. /proc/PID/stat of
# a process already sums all its threads (live and exited).
cpu_ticks() {
  local total=0 user=0 p line rest
  local -a f
  for p in $(instance_pids "$1"); do
    line=$(cat "/proc/$p/stat" 2>/dev/null) || continue
    rest=${line##*) }            # fields from 3 (state) on; comm may contain spaces
    read -r -a f <<<"$rest"
    total=$((total + f[11] + f[12]))   # fields 14 (utime) and 15 (stime)
    user=$((user + f[11]))
  done
  echo "$total $user"
}
CLK_TCK=$(getconf CLK_TCK)

# core_ticks N: "busy total steal" clock ticks of core N from /proc/stat (busy = user + nice +
# system + irq + softirq; total includes idle and iowait).
core_ticks() {
  awk -v c="cpu$1" '$1 == c { printf "%d %d %d\n", $2 + $3 + $4 + $7 + $8, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9, $9 }' /proc/stat
}

# tcp_counters: "ActiveOpens RetransSegs ListenDrops" from /proc/net/{snmp,netstat} (per
# network namespace).
tcp_counters() {
  awk '
    $1 == "Tcp:" || $1 == "TcpExt:" {
      if (!(($1) in hdr)) { hdr[$1] = 1; for (i = 2; i <= NF; i++) name[$1, i] = $i; next }
      for (i = 2; i <= NF; i++) v[$1 name[$1, i]] = $i
    }
    END { printf "%d %d %d\n", v["Tcp:ActiveOpens"], v["Tcp:RetransSegs"], v["TcpExt:ListenDrops"] }
  ' /proc/net/snmp /proc/net/netstat
}

# ---------------------------------------------------------------- configs
NGINX_KEEPALIVE_REQUESTS=1000000   # nginx's default (1000) would recycle connections mid-run
NGINX_UPSTREAM_KEEPALIVE=${NGINX_UPSTREAM_KEEPALIVE:-64}   # 0: no pool (checks the conn counter)

# job = 1 (the nginx-job target): nginx also does what sluice does by default: a JSON access log
# line per request (buffered, as sluice's is), X-Forwarded-For/-Proto, Host kept, X-Request-Id
# added when absent.
write_nginx_proxy_conf() {   # dir listen_port upstream_port [job] [h2_port]
  local dir=$1 port=$2 up=$3 job=${4:-0} h2port=${5:-}
  local job_http="" job_loc=""
  if [[ $job == 1 ]]; then
    job_http="log_format sluice_json escape=json '{\"time\":\"\$time_iso8601\",\"client\":\"\$remote_addr\",\"method\":\"\$request_method\",\"path\":\"\$request_uri\",\"host\":\"\$host\",\"status\":\$status,\"bytes_in\":\$request_length,\"bytes_out\":\$bytes_sent,\"duration_s\":\$request_time,\"upstream_duration_s\":\"\$upstream_response_time\",\"upstream\":\"\$upstream_addr\",\"request_id\":\"\$sluice_request_id\"}';
  map \$http_x_request_id \$sluice_request_id { default \$http_x_request_id; \"\" \$request_id; }
  access_log $dir/access.log sluice_json buffer=64k flush=1s;"
    job_loc="proxy_set_header Host \$http_host;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto \$scheme;
      proxy_set_header X-Request-Id \$sluice_request_id;"
  else
    job_http="access_log off;"
  fi
  # HTTP/2 (the h2 scenario): with TLS, ALPN h2; without, h2c prior knowledge only (nginx 1.22:
  # "http2" on a plain listen serves nothing else, hence a port of its own).
  local h2_server=""
  if [[ -n $h2port ]]; then
    local h2_ssl="" h2_tls=""
    if [[ $TLS == 1 ]]; then
      h2_ssl=" ssl"
      h2_tls="ssl_certificate $CERT_DIR/cert.pem; ssl_certificate_key $CERT_DIR/key.pem; ssl_protocols TLSv1.2 TLSv1.3;"
    fi
    h2_server="http2_max_requests $NGINX_KEEPALIVE_REQUESTS;
  server {
    listen 127.0.0.1:$h2port$h2_ssl http2;
    $h2_tls
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection \"\";
      $job_loc
    }
  }"
  fi
  mkdir -p "$dir/tmp"
  cat >"$dir/nginx.conf" <<EOF
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
  $job_http
  client_body_temp_path $dir/tmp/body;
  proxy_temp_path $dir/tmp/proxy;
  fastcgi_temp_path $dir/tmp/fastcgi;
  uwsgi_temp_path $dir/tmp/uwsgi;
  scgi_temp_path $dir/tmp/scgi;
  keepalive_requests $NGINX_KEEPALIVE_REQUESTS;
  upstream backend {
    server 127.0.0.1:$up;
    $([[ $NGINX_UPSTREAM_KEEPALIVE != 0 ]] && echo "keepalive $NGINX_UPSTREAM_KEEPALIVE;")
    keepalive_requests $NGINX_KEEPALIVE_REQUESTS;
  }
  server {
    listen 127.0.0.1:$port$([[ $TLS == 1 ]] && echo " ssl");
    $([[ $TLS == 1 ]] && echo "ssl_certificate $CERT_DIR/cert.pem; ssl_certificate_key $CERT_DIR/key.pem; ssl_protocols TLSv1.2 TLSv1.3;")
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      $job_loc
    }
  }
  $h2_server
}
EOF
}

# The static app: the harness-debugging upstream (UPSTREAM=nginx), and the unix scenario's app,
# which also listens on a Unix socket (the same server block: the same response either way).
write_nginx_static_conf() {   # dir listen_port [unix_socket_path]
  local dir=$1 port=$2 unix_path=${3:-}
  mkdir -p "$dir/tmp"
  cat >"$dir/nginx.conf" <<EOF
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $dir/tmp/body;
  proxy_temp_path $dir/tmp/proxy;
  fastcgi_temp_path $dir/tmp/fastcgi;
  uwsgi_temp_path $dir/tmp/uwsgi;
  scgi_temp_path $dir/tmp/scgi;
  keepalive_requests $NGINX_KEEPALIVE_REQUESTS;
  default_type text/plain;
  server {
    listen 127.0.0.1:$port;
    $([[ -n $unix_path ]] && echo "listen unix:$unix_path;")
    location / { return 200 "Hello from the sluice demo app\n"; }
  }
}
EOF
}

# job = 1 (the haproxy-job target): HAProxy also does what sluice does by default: a JSON log line
# per request (to stdout, HAProxy's only file-like log target; its log file here), X-Forwarded-For
# and -Proto, X-Request-Id added when absent.
write_haproxy_cfg() {   # file listen_port upstream_port [job] [h2_port]
  local job_global="" job_fe="" h2_fe=""
  if [[ -n ${5:-} ]]; then
    # HTTP/2 (the h2 scenario): h2c prior knowledge (proto h2), or ALPN h2 with TLS.
    if [[ $TLS == 1 ]]; then
      h2_fe="bind 127.0.0.1:$5 ssl crt $CERT_DIR/combined.pem alpn h2"
    else
      h2_fe="bind 127.0.0.1:$5 proto h2"
    fi
  fi
  if [[ ${4:-0} == 1 ]]; then
    job_global="log stdout format raw local0"
    job_fe="log global
  http-request capture req.hdr(host) len 128
  unique-id-format %[uuid()]
  http-request set-header X-Request-Id %[unique-id] unless { req.hdr(x-request-id) -m found }
  http-request capture req.hdr(x-request-id) len 64
  option forwardfor
  http-request set-header X-Forwarded-Proto %[ssl_fc,iif(https,http)]
  log-format '{\"time\":\"%tr\",\"client\":\"%ci\",\"method\":\"%HM\",\"path\":\"%HU\",\"host\":\"%[capture.req.hdr(0),json(utf8s)]\",\"status\":%ST,\"bytes_in\":%U,\"bytes_out\":%B,\"duration_ms\":%Ta,\"upstream_duration_ms\":%Tr,\"upstream\":\"%si:%sp\",\"request_id\":\"%[capture.req.hdr(1),json(utf8s)]\"}'"
  fi
  cat >"$1" <<EOF
global
  nbthread 1
  maxconn 4096
  $job_global

defaults
  mode http
  option http-keep-alive
  http-reuse always
  timeout connect 2s
  timeout client 75s
  timeout server 30s
  timeout http-request 10s
  timeout http-keep-alive 75s

frontend fe
  bind 127.0.0.1:$2$([[ $TLS == 1 ]] && echo " ssl crt $CERT_DIR/combined.pem")
  $h2_fe
  default_backend be
  $job_fe

backend be
  server up1 127.0.0.1:$3
EOF
}

# The grpc scenario: each proxy gets an instance of its own (so that its CPU time and memory are
# the gRPC path's alone, and a sluice without HTTP/2 upstreams fails only this scenario), one
# worker like the others, HTTP/2 on the client side (h2c, or ALPN h2 with TLS=1, as the h2
# scenario) and an HTTP/2 cleartext pool to the grpc-go app, kept alive.
write_nginx_grpc_conf() {   # dir listen_port app_address (127.0.0.1:PORT or unix:/PATH)
  local dir=$1 port=$2 up=$3 ssl="" tls=""
  if [[ $TLS == 1 ]]; then
    ssl=" ssl"
    tls="ssl_certificate $CERT_DIR/cert.pem; ssl_certificate_key $CERT_DIR/key.pem; ssl_protocols TLSv1.2 TLSv1.3;"
  fi
  mkdir -p "$dir/tmp"
  cat >"$dir/nginx.conf" <<EOF
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $dir/tmp/body;
  proxy_temp_path $dir/tmp/proxy;
  fastcgi_temp_path $dir/tmp/fastcgi;
  uwsgi_temp_path $dir/tmp/uwsgi;
  scgi_temp_path $dir/tmp/scgi;
  # Client side: nginx 1.22 ends an HTTP/2 connection after keepalive_requests streams (1,000
  # by default: h2load does not reconnect, its streams in flight then fail).
  keepalive_requests $NGINX_KEEPALIVE_REQUESTS;
  upstream grpc_app {
    server $up;
    keepalive $NGINX_UPSTREAM_KEEPALIVE;
    keepalive_requests $NGINX_KEEPALIVE_REQUESTS;
  }
  server {
    listen 127.0.0.1:$port$ssl http2;
    $tls
    location / {
      grpc_pass grpc://grpc_app;
    }
  }
}
EOF
}

write_haproxy_grpc_cfg() {   # file listen_port app_address (127.0.0.1:PORT or /PATH of a Unix socket)
  local bind="bind 127.0.0.1:$2 proto h2"
  [[ $TLS == 1 ]] && bind="bind 127.0.0.1:$2 ssl crt $CERT_DIR/combined.pem alpn h2"
  cat >"$1" <<EOF
global
  nbthread 1
  maxconn 4096

defaults
  mode http
  option http-keep-alive
  http-reuse always
  timeout connect 2s
  timeout client 75s
  timeout server 30s
  timeout http-request 10s
  timeout http-keep-alive 75s

frontend fe_grpc
  $bind
  default_backend be_grpc

backend be_grpc
  server s1 $3 proto h2
EOF
}

# sluice as the sluice target runs (metrics, JSON access log), with an h2c cluster (issue 16).
write_sluice_grpc_conf() {   # file listen_port app_endpoint (127.0.0.1:PORT or unix:/PATH)
  local tls=""
  [[ $TLS == 1 ]] && tls=", tls: {cert: \"$CERT_DIR/cert.pem\", key: \"$CERT_DIR/key.pem\"}"
  cat >"$1" <<CONF
admin: {address: 127.0.0.1:0}
workers: 1
log: {format: json}
listeners:
  - {name: grpc, address: "127.0.0.1:$2", cluster: app$tls}
clusters:
  - {name: app, endpoints: ["$3"], protocol: h2c}
CONF
}

# grpc_check TARGET PORT: real gRPC calls through TARGET (bench/grpc_check.py, python3-grpcio):
# grpc-status 0 and the upstream's message every time. Prints its one-line verdict; status 1 when
# an OK call failed, 3 when only the app's error status did not come through (a finding about the
# proxy, reported, but the benchmark's calls are all OK ones).
grpc_check() {
  local -a tls=()
  [[ $TLS == 1 && $1 != upstream ]] && tls=(--tls "$CERT_DIR/cert.pem")
  /usr/bin/python3 bench/grpc_check.py "127.0.0.1:$2" "${tls[@]}" --calls 20 \
    --req-bytes "$GRPC_REQ_BYTES" --resp-bytes "$GRPC_RESP_BYTES" 2>&1
}

# grpc_upstream_calls: "ok bad" calls answered by the grpc-go app so far.
grpc_upstream_calls() {
  local got
  got=$(curl -fsS --max-time 5 "http://127.0.0.1:$GUP_STATS_PORT/") || die "grpc upstream: no call counters on :$GUP_STATS_PORT"
  awk '$1 == "ok" && $3 == "bad" { print $2, $4; f = 1 } END { exit !f }' <<<"$got" || die "grpc upstream: bad counters '$got'"
}

# ---------------------------------------------------------------- start everything
CERT_DIR="$RUN_DIR/certs"
if [[ $TLS == 1 ]]; then
  # One ECDSA P-256 certificate for every proxy (wrk does not verify it), each with its default
  # TLS settings (session tickets on) but nginx's protocols (TLS 1.2 and 1.3, as the others).
  # wrk never resumes a session, so each "close" request is a full handshake everywhere.
  mkdir -p "$CERT_DIR"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
    -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout "$CERT_DIR/key.pem" -out "$CERT_DIR/cert.pem" 2>/dev/null \
    || die "openssl could not make the test certificate"
  cat "$CERT_DIR/cert.pem" "$CERT_DIR/key.pem" >"$CERT_DIR/combined.pem"
fi
UP_PORT=$(free_port)
case $UPSTREAM in
  demo-app) start upstream "$CLIENT_CPU" "$SLUICE" demo-app --listen "127.0.0.1:$UP_PORT" ;;
  nginx)
    write_nginx_static_conf "$RUN_DIR/upstream-nginx" "$UP_PORT"
    start upstream "$CLIENT_CPU" nginx -p "$RUN_DIR/upstream-nginx" -c "$RUN_DIR/upstream-nginx/nginx.conf" -g 'daemon off;' ;;
  *) die "UPSTREAM must be demo-app or nginx" ;;
esac
UP_PID=$LAST_PID
wait_ready upstream "$UP_PID" "$UP_PORT"

# The grpc scenario's app: built here (incrementally, into the build tree, nothing downloaded),
# pinned with the client like the other upstream; the request body file for h2load is one gRPC
# message (uncompressed flag, 4-byte big-endian length, the bytes the app expects).
if [[ " $SCENARIOS " == *" grpc "* ]]; then
  mkdir -p "$(dirname "$GRPC_UPSTREAM_BIN")"
  log "building $GRPC_UPSTREAM_BIN (go build, GOPATH mode against /usr/share/gocode)"
  GOPATH=/usr/share/gocode GO111MODULE=off GOFLAGS='' GOCACHE="$PWD/build/bench/go-cache" \
    nice go build -o "$GRPC_UPSTREAM_BIN" ./bench/grpc_upstream >"$RUN_DIR/grpc_upstream-build.log" 2>&1 \
    || { cat "$RUN_DIR/grpc_upstream-build.log" >&2; die "go build of bench/grpc_upstream failed"; }
  GUP_PORT=$(free_port)
  GUP_STATS_PORT=$(free_port)
  # With GRPC_UNIX=1 it also listens on a Unix socket, and the proxies use that (h2load and the
  # upstream target still use TCP).
  GUP_SOCK=""
  [[ $GRPC_UNIX == 1 ]] && GUP_SOCK="$RUN_DIR/grpc-app.sock"
  start grpc_upstream "$CLIENT_CPU" "$GRPC_UPSTREAM_BIN" -listen "127.0.0.1:$GUP_PORT" -stats "127.0.0.1:$GUP_STATS_PORT" \
    ${GUP_SOCK:+-unix "$GUP_SOCK"} -req-bytes "$GRPC_REQ_BYTES" -resp-bytes "$GRPC_RESP_BYTES"
  GUP_PID=$LAST_PID
  for _ in $(seq 100); do
    kill -0 "$GUP_PID" 2>/dev/null || { cat "$RUN_DIR/grpc_upstream.log" >&2; die "grpc upstream exited during start-up"; }
    curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:$GUP_STATS_PORT/" 2>/dev/null && { [[ -z $GUP_SOCK || -S $GUP_SOCK ]] && break; }
    sleep 0.1
  done
  GRPC_BODY="$RUN_DIR/grpc-request.bin"
  hdr=$(printf '\\x%02x' 0 $((GRPC_REQ_BYTES >> 24 & 255)) $((GRPC_REQ_BYTES >> 16 & 255)) \
    $((GRPC_REQ_BYTES >> 8 & 255)) $((GRPC_REQ_BYTES & 255)))
  # shellcheck disable=SC2059  # the format is the escaped prefix
  { printf "$hdr"; head -c "$GRPC_REQ_BYTES" /dev/zero | tr '\0' x; } >"$GRPC_BODY"
  [[ $(stat -c %s "$GRPC_BODY") == $((5 + GRPC_REQ_BYTES)) ]] || die "could not write the gRPC request body"
fi

declare -A PORT PID H2PORT GPORT GPID   # GPORT/GPID: each target's gRPC instance (grpc scenario)
PORT[upstream]=$UP_PORT
PID[upstream]=$UP_PID
for t in $TARGETS; do
  case $t in
    upstream) ;;
    sluice)
      # As deployed: metrics counted, one JSON access log line per request (to a file here).
      PORT[sluice]=$(free_port)
      if [[ $TLS == 1 ]]; then
        cat >"$RUN_DIR/sluice-tls.yaml" <<CONF
admin: {address: 127.0.0.1:0}
workers: 1
log: {format: json}
listeners:
  - {name: ingress, address: "127.0.0.1:${PORT[sluice]}", cluster: app,
     tls: {cert: "$CERT_DIR/cert.pem", key: "$CERT_DIR/key.pem"}}
clusters: [{name: app, endpoints: ["127.0.0.1:$UP_PORT"]}]
CONF
        start sluice "$PROXY_CPU" "$SLUICE" --config "$RUN_DIR/sluice-tls.yaml"
      else
        start sluice "$PROXY_CPU" "$SLUICE" --workers 1 --listen "127.0.0.1:${PORT[sluice]}" \
          --upstream "127.0.0.1:$UP_PORT" --admin 127.0.0.1:0 --log-format json
      fi
      H2PORT[sluice]=${PORT[sluice]}   # one listener: the HTTP/2 preface or ALPN h2 picks it
      PID[sluice]=$LAST_PID ;;
    sluice-quiet)
      # The same binary without the access log (metrics cannot be turned off at run time).
      PORT[$t]=$(free_port)
      start "$t" "$PROXY_CPU" "$SLUICE" --workers 1 --listen "127.0.0.1:${PORT[$t]}" \
        --upstream "127.0.0.1:$UP_PORT" --admin 127.0.0.1:0 --access-log false
      PID[$t]=$LAST_PID ;;
    sluice-ratelimit)
      # As `sluice` (JSON access log) with a per-client-IP rate-limit rule that never refuses
      # (issue #17): what a rule costs per request.
      PORT[$t]=$(free_port)
      cat >"$RUN_DIR/sluice-ratelimit.yaml" <<CONF
admin: {address: 127.0.0.1:0}
workers: 1
log: {format: json}
listeners: [{name: ingress, address: "127.0.0.1:${PORT[$t]}", cluster: app}]
clusters: [{name: app, endpoints: ["127.0.0.1:$UP_PORT"]}]
rate_limits: [{name: per-ip, key: client_ip, rate: 1000000000/s}]
CONF
      start "$t" "$PROXY_CPU" "$SLUICE" --config "$RUN_DIR/sluice-ratelimit.yaml"
      PID[$t]=$LAST_PID ;;
    sluice-base)
      # Another build given by SLUICE_BASE (e.g. the commit before metrics and access log),
      # with the flags it knows.
      [[ -x ${SLUICE_BASE:-} ]] || die "sluice-base needs SLUICE_BASE=path/to/sluice"
      PORT[$t]=$(free_port)
      # shellcheck disable=SC2086  # SLUICE_BASE_ARGS: more flags, split on spaces
      start "$t" "$PROXY_CPU" "$SLUICE_BASE" --workers 1 --listen "127.0.0.1:${PORT[$t]}" \
        --upstream "127.0.0.1:$UP_PORT" --admin 127.0.0.1:0 ${SLUICE_BASE_ARGS:-}
      PID[$t]=$LAST_PID ;;
    nginx)
      PORT[nginx]=$(free_port)
      H2PORT[nginx]=$(free_port)
      write_nginx_proxy_conf "$RUN_DIR/nginx" "${PORT[nginx]}" "$UP_PORT" 0 "${H2PORT[nginx]}"
      start nginx "$PROXY_CPU" nginx -p "$RUN_DIR/nginx" -c "$RUN_DIR/nginx/nginx.conf" -g 'daemon off;'
      PID[nginx]=$LAST_PID ;;
    haproxy)
      PORT[haproxy]=$(free_port)
      H2PORT[haproxy]=$(free_port)
      write_haproxy_cfg "$RUN_DIR/haproxy.cfg" "${PORT[haproxy]}" "$UP_PORT" 0 "${H2PORT[haproxy]}"
      start haproxy "$PROXY_CPU" haproxy -db -f "$RUN_DIR/haproxy.cfg"
      PID[haproxy]=$LAST_PID ;;
    nginx-job)
      PORT[$t]=$(free_port)
      write_nginx_proxy_conf "$RUN_DIR/$t" "${PORT[$t]}" "$UP_PORT" 1
      start "$t" "$PROXY_CPU" nginx -p "$RUN_DIR/$t" -c "$RUN_DIR/$t/nginx.conf" -g 'daemon off;'
      PID[$t]=$LAST_PID ;;
    haproxy-job)
      PORT[$t]=$(free_port)
      write_haproxy_cfg "$RUN_DIR/$t.cfg" "${PORT[$t]}" "$UP_PORT" 1
      start "$t" "$PROXY_CPU" haproxy -db -f "$RUN_DIR/$t.cfg"
      PID[$t]=$LAST_PID ;;
    *) die "unknown target '$t' (upstream sluice sluice-quiet sluice-ratelimit sluice-base nginx haproxy nginx-job haproxy-job)" ;;
  esac
done
# The grpc scenario's instances (targets without one, the *-job and other sluice variants, are
# left out of it; the upstream target is the grpc-go app itself).
if [[ " $SCENARIOS " == *" grpc "* ]]; then
  # The app's address as sluice and nginx write it, and as HAProxy does (a path is a Unix socket).
  GAPP=127.0.0.1:$GUP_PORT GAPP_HAPROXY=127.0.0.1:$GUP_PORT
  [[ -n $GUP_SOCK ]] && GAPP=unix:$GUP_SOCK GAPP_HAPROXY=$GUP_SOCK
  for t in $TARGETS; do
    case $t in
      upstream) GPORT[$t]=$GUP_PORT; GPID[$t]=$GUP_PID; continue ;;
      sluice)
        GPORT[$t]=$(free_port)
        write_sluice_grpc_conf "$RUN_DIR/sluice-grpc.yaml" "${GPORT[$t]}" "$GAPP"
        start sluice-grpc "$PROXY_CPU" "$SLUICE" --config "$RUN_DIR/sluice-grpc.yaml" ;;
      nginx)
        GPORT[$t]=$(free_port)
        write_nginx_grpc_conf "$RUN_DIR/nginx-grpc" "${GPORT[$t]}" "$GAPP"
        start nginx-grpc "$PROXY_CPU" nginx -p "$RUN_DIR/nginx-grpc" -c "$RUN_DIR/nginx-grpc/nginx.conf" -g 'daemon off;' ;;
      haproxy)
        GPORT[$t]=$(free_port)
        write_haproxy_grpc_cfg "$RUN_DIR/haproxy-grpc.cfg" "${GPORT[$t]}" "$GAPP_HAPROXY"
        start haproxy-grpc "$PROXY_CPU" haproxy -db -f "$RUN_DIR/haproxy-grpc.cfg" ;;
      *) continue ;;
    esac
    GPID[$t]=$LAST_PID
  done
fi
# The unix scenario: a static nginx app on the client core listening on a TCP port and on a
# Unix socket, and two sluice instances as `sluice` runs (JSON access log, metrics), one
# reaching the app over loopback TCP, the other over the socket. Only the app hop differs.
UNIX_TARGETS=""
if [[ " $SCENARIOS " == *" unix "* ]]; then
  UNIX_TARGETS="sluice-tcp sluice-unix"
  UNIX_APP_PORT=$(free_port)
  UNIX_APP_SOCK="$RUN_DIR/unix-app/app.sock"
  (( ${#UNIX_APP_SOCK} <= 107 )) || die "$UNIX_APP_SOCK is too long for a Unix socket (set OUT_DIR)"
  write_nginx_static_conf "$RUN_DIR/unix-app" "$UNIX_APP_PORT" "$UNIX_APP_SOCK"
  start unix-app "$CLIENT_CPU" nginx -p "$RUN_DIR/unix-app" -c "$RUN_DIR/unix-app/nginx.conf" -g 'daemon off;'
  PID[unix-app]=$LAST_PID
  wait_ready unix-app "${PID[unix-app]}" "$UNIX_APP_PORT"
  curl -fsS -o /dev/null --max-time 2 --unix-socket "$UNIX_APP_SOCK" "http://localhost$PATH_REQ" \
    || die "unix-app: no answer on $UNIX_APP_SOCK"
  for t in $UNIX_TARGETS; do
    PORT[$t]=$(free_port)
    app="127.0.0.1:$UNIX_APP_PORT"
    [[ $t == sluice-unix ]] && app="unix:$UNIX_APP_SOCK"
    start "$t" "$PROXY_CPU" "$SLUICE" --workers 1 --listen "127.0.0.1:${PORT[$t]}" \
      --upstream "$app" --admin 127.0.0.1:0 --log-format json
    PID[$t]=$LAST_PID
  done
fi
for t in $TARGETS $UNIX_TARGETS; do
  [[ $t == upstream ]] && continue
  wait_ready "$t" "${PID[$t]}" "${PORT[$t]}"
done
# Each gRPC instance must carry real gRPC calls (grpc-status 0, the app's message) before any
# measurement: h2load alone would count a proxy's own Trailers-Only error (HTTP 200) as a success.
GRPC_CHECKS=""
if [[ " $SCENARIOS " == *" grpc "* ]]; then
  for t in $TARGETS; do
    [[ -n ${GPORT[$t]:-} ]] || continue
    got=""
    for _ in $(seq 10); do
      if ! kill -0 "${GPID[$t]}" 2>/dev/null; then
        n=$t-grpc; [[ $t == upstream ]] && n=grpc_upstream
        cat "$RUN_DIR/$n.log" >&2
        if [[ $t == sluice ]] && grep -q -e "protocol" -e "unix:" "$RUN_DIR/$n.log"; then
          die "this sluice does not take the grpc instance's configuration ($RUN_DIR/sluice-grpc.yaml: an HTTP/2 upstream, cluster 'protocol: h2c'$([[ -n $GUP_SOCK ]] && echo ", at a 'unix:' endpoint"), issue 16): run the grpc scenario with TARGETS='upstream nginx haproxy', or build a sluice that has it"
        fi
        die "$t's gRPC instance exited during start-up (log: $RUN_DIR/$n.log)"
      fi
      rc=0
      got=$(grpc_check "$t" "${GPORT[$t]}") || rc=$?
      [[ $rc == 0 || $rc == 3 ]] && break
      got="FAILED: $got"
      sleep 0.2
    done
    [[ $got != FAILED* ]] || die "$t: gRPC calls through :${GPORT[$t]} do not succeed: ${got#FAILED: }"
    log "grpc check, $t: $got"
  done
fi
# The h2 scenario's port of each target answers over HTTP/2 (targets without one, the upstream
# and the *-job ones, are left out of that scenario).
if [[ " $SCENARIOS " == *" h2 "* ]]; then
  h2flag=--http2-prior-knowledge scheme=http
  [[ $TLS == 1 ]] && h2flag=--http2 scheme=https
  for t in $TARGETS; do
    [[ -n ${H2PORT[$t]:-} ]] || continue
    got=$(curl -sSk "$h2flag" -o /dev/null -w '%{http_version} %{http_code}' --max-time 5 \
      "$scheme://127.0.0.1:${H2PORT[$t]}$PATH_REQ" 2>&1) || true
    [[ $got == "2 200" ]] || die "$t: no HTTP/2 200 on :${H2PORT[$t]} ($got)"
  done
fi
# With TLS, what each proxy negotiates with an OpenSSL client (wrk uses the same library): the
# comparison holds only when it is the same (nginx 1.22's default protocols stop at TLS 1.2,
# hence its ssl_protocols line above: TLS 1.2 and 1.3, as sluice and HAProxy allow).
TLS_NEGOTIATED=""
if [[ $TLS == 1 ]]; then
  for t in $TARGETS; do
    [[ $t == upstream ]] && continue
    got=$(openssl s_client -connect "127.0.0.1:${PORT[$t]}" -servername localhost </dev/null 2>/dev/null |
      awk '/^New, / { sub(/,$/, "", $2); print $2 ", " $NF; exit }')
    TLS_NEGOTIATED+="${TLS_NEGOTIATED:+; }$t: ${got:-?}"
  done
  log "TLS negotiated: $TLS_NEGOTIATED"
fi
{
  for t in upstream $TARGETS ${UNIX_TARGETS:+unix-app $UNIX_TARGETS}; do
    for p in $(instance_pids "${PID[$t]}"); do
      echo "$t pid $p ($(cat "/proc/$p/comm")): $(taskset -pc "$p" | sed 's/.*: //') cores"
    done
    [[ -n ${GPID[$t]:-} ]] || continue
    for p in $(instance_pids "${GPID[$t]}"); do
      echo "$t (grpc) pid $p ($(cat "/proc/$p/comm")): $(taskset -pc "$p" | sed 's/.*: //') cores"
    done
  done
} | sort -u >"$RUN_DIR/pinning.txt"
log "upstream ($UPSTREAM) on :$UP_PORT; targets: $(for t in $TARGETS $UNIX_TARGETS; do printf '%s:%s ' "$t" "${PORT[$t]}"; done)"
[[ -n $UNIX_TARGETS ]] && log "unix scenario: nginx app on :$UNIX_APP_PORT and $UNIX_APP_SOCK"
[[ " $SCENARIOS " == *" grpc "* ]] &&
  log "grpc: app (bench/grpc_upstream) on :$GUP_PORT; instances: $(for t in $TARGETS; do [[ -n ${GPORT[$t]:-} ]] && printf '%s:%s ' "$t" "${GPORT[$t]}"; done)"
log "output in $RUN_DIR"

# ---------------------------------------------------------------- one wrk run
# parse_wrk FILE: prints "requests rps p50_ms p99_ms non2xx sock_errors"
parse_wrk() {
  awk '
    function ms(v) {
      if (v ~ /us$/) return substr(v, 1, length(v) - 2) / 1000
      if (v ~ /ms$/) return substr(v, 1, length(v) - 2) + 0
      if (v ~ /m$/)  return substr(v, 1, length(v) - 1) * 60000
      if (v ~ /s$/)  return substr(v, 1, length(v) - 1) * 1000
      return v + 0
    }
    /requests in/            { req = $1 }
    /^Requests\/sec:/        { rps = $2 }
    $1 == "50%"              { p50 = ms($2) }
    $1 == "99%"              { p99 = ms($2) }
    /Non-2xx or 3xx/         { non2xx = $NF }
    /Socket errors:/         { gsub(",", ""); err = $4 + $6 + $8 + $10 }
    END { printf "%d %.2f %.3f %.3f %d %d\n", req, rps, p50, p99, non2xx, err }
  ' "$1"
}

# parse_h2load FILE: the same fields from h2load's summary ("-" for the p99 it does not give;
# its mean time for request as p50; failed + errored + timed-out requests as errors).
parse_h2load() {
  awk '
    function ms(v) {
      if (v ~ /us$/) return substr(v, 1, length(v) - 2) / 1000
      if (v ~ /ms$/) return substr(v, 1, length(v) - 2) + 0
      if (v ~ /s$/)  return substr(v, 1, length(v) - 1) * 1000
      return v + 0
    }
    /^finished in/           { rps = $4 }
    /^requests:/             { req = $8; err = $10 + $12 + $14 }
    /^status codes:/         { non2xx = $5 + $7 + $9 }
    /^time for request:/     { mean = ms($6) }
    END { printf "%d %.2f %.3f - %d %d\n", req, rps, mean, non2xx, err }
  ' "$1"
}

# client_run SCENARIO URL DURATION OUT: the load generator of the scenario, pinned to the client core.
client_run() {
  local scen=$1 url=$2 dur=$3 out=$4
  case $scen in
    h2)   # h2load has no percentiles: its mean time for request goes in the p50 column.
      taskset -c "$CLIENT_CPU" h2load -t "$THREADS" -c "$H2_CONNS" -m "$H2_STREAMS" -D "${dur%s}" "$url" >"$out" 2>&1 ;;
    grpc) # One gRPC message per POST; h2load never reads trailers (grpc_verify_run makes up for it).
      taskset -c "$CLIENT_CPU" h2load -t "$THREADS" -c "$H2_CONNS" -m "$H2_STREAMS" -D "${dur%s}" -d "$GRPC_BODY" \
        -H 'content-type: application/grpc' -H 'te: trailers' "$url" >"$out" 2>&1 ;;
    close)
      taskset -c "$CLIENT_CPU" wrk -t "$THREADS" -c "$CONNS" -d "$dur" --latency -H 'Connection: close' "$url" >"$out" 2>&1 ;;
    *)
      taskset -c "$CLIENT_CPU" wrk -t "$THREADS" -c "$CONNS" -d "$dur" --latency "$url" >"$out" 2>&1 ;;
  esac
}
client_name() { [[ $1 == h2 || $1 == grpc ]] && echo h2load || echo wrk; }

# mem_kib PID: "VmRSS Pss" in KiB summed over PID and its descendants (RSS counts the pages nginx's
# master and worker share twice; PSS splits them).
mem_kib() {
  local rss=0 pss=0 p v
  for p in $(instance_pids "$1"); do
    v=$(awk '$1 == "VmRSS:" { print $2 }' "/proc/$p/status" 2>/dev/null) && rss=$((rss + ${v:-0}))
    v=$(awk '$1 == "Pss:" { print $2 }' "/proc/$p/smaps_rollup" 2>/dev/null) && pss=$((pss + ${v:-0}))
  done
  echo "$rss $pss"
}

# grpc_verify_run TARGET H2LOAD_OUTPUT SUCCEEDED NON2XX ERRORS "OK BAD before" "OK BAD after": a
# gRPC run counts only if every call succeeded. h2load reports HTTP statuses, and a gRPC error
# (the proxy's own Trailers-Only response included) is an HTTP 200 with grpc-status in the
# trailers, which h2load does not read. So: no non-2xx and no failed, errored or timed-out
# stream; at least one whole response message (5 + GRPC_RESP_BYTES bytes of DATA) per call
# counted (a Trailers-Only error has no DATA); the app answered OK at least as many calls
# (it also answered the last ones in flight, which h2load dropped at the end) and refused none.
grpc_verify_run() {
  local t=$1 out=$2 req=$3 non2xx=$4 errs=$5 ok0 bad0 ok1 bad1 data s2xx
  read -r ok0 bad0 <<<"$6"
  read -r ok1 bad1 <<<"$7"
  data=$(awk '/^traffic:/ { if (match($0, /\(([0-9]+)\) data/)) { s = substr($0, RSTART + 1); sub(/\).*/, "", s); print s } }' "$out")
  s2xx=$(awk '/^status codes:/ { print $3 }' "$out")
  local why=""
  [[ $non2xx == 0 && $errs == 0 ]] || why="$non2xx non-2xx responses and $errs failed, errored or timed-out calls"
  # (2xx statuses include the streams in flight at the end whose response head had arrived.)
  [[ -z $why && ${s2xx:-0} -lt $req ]] && why="h2load counted $req succeeded calls but ${s2xx:-no} 2xx statuses"
  [[ -z $why && ${data:-0} -lt $((req * (5 + GRPC_RESP_BYTES))) ]] &&
    why="${data:-0} bytes of DATA for $req calls: fewer than one $((5 + GRPC_RESP_BYTES))-byte response message per call (gRPC errors in Trailers-Only responses?)"
  [[ -z $why && $((ok1 - ok0)) -lt $req ]] && why="the app answered $((ok1 - ok0)) calls OK, h2load counted $req successes"
  [[ -z $why && $bad1 != "$bad0" ]] && why="the app refused $((bad1 - bad0)) malformed calls"
  if [[ -n $why ]]; then
    cat "$out" >&2
    die "grpc run against $t failed, no figures reported: $why (h2load output: $out)"
  fi
}

# run_one SCENARIO REPEAT TARGET [warmup]
run_one() {
  local scen=$1 rep=$2 t=$3 warm=${4:-}
  local dur=$DURATION
  [[ -n $warm ]] && dur=$WARMUP
  local scheme=http
  [[ $TLS == 1 && $t != upstream ]] && scheme=https
  local url="$scheme://127.0.0.1:${PORT[$t]}$PATH_REQ"
  [[ $scen == h2 ]] && url="$scheme://127.0.0.1:${H2PORT[$t]}$PATH_REQ"
  # The instance under test and the upstream behind it (the unix and grpc scenarios have their
  # own app: its CPU is the upstream's).
  local pid=${PID[$t]} uppid=$UP_PID pname=$t upname=upstream
  [[ $scen == unix ]] && uppid=${PID[unix-app]} upname=unix-app
  if [[ $scen == grpc ]]; then
    url="$scheme://127.0.0.1:${GPORT[$t]}$GRPC_METHOD"
    pid=${GPID[$t]} uppid=$GUP_PID pname=$t-grpc upname=grpc_upstream
    [[ $t == upstream ]] && pname=grpc_upstream
  fi
  local base="$RUN_DIR/$scen-$t-r$rep"
  [[ -n $warm ]] && base="$RUN_DIR/$scen-$t-warmup"
  # The app's call counters (grpc): read outside the TCP counters' window (curl connects too).
  local calls0="" calls1=""
  [[ $scen == grpc && -z $warm ]] && calls0=$(grpc_upstream_calls)
  local opens0 retr0 drops0 cpu0 ucpu0 upcpu0 opens1 retr1 drops1 cpu1 ucpu1 upcpu1
  read -r opens0 retr0 drops0 < <(tcp_counters)
  local busy0 total0 steal0 busy1 total1 steal1
  read -r busy0 total0 steal0 < <(core_ticks "$PROXY_CPU")
  cpu0=0 ucpu0=0
  [[ $t != upstream ]] && read -r cpu0 ucpu0 < <(cpu_ticks "$pid")
  read -r upcpu0 _ < <(cpu_ticks "$uppid")
  local t0 t1 cpid rss="-" pss="-"
  t0=$(date +%s%N)
  client_run "$scen" "$url" "$dur" "$base.wrk" &
  cpid=$!
  # The proxy's memory half-way through the measured run (all streams or connections open).
  if [[ -z $warm && $t != upstream ]]; then
    sleep "$(awk -v d="${dur%s}" 'BEGIN { print d / 2 }')"
    read -r rss pss < <(mem_kib "$pid")
  fi
  wait "$cpid" || { cat "$base.wrk" >&2; die "$(client_name "$scen") failed against $t"; }
  t1=$(date +%s%N)
  cpu1=0 ucpu1=0
  [[ $t != upstream ]] && read -r cpu1 ucpu1 < <(cpu_ticks "$pid")
  read -r upcpu1 _ < <(cpu_ticks "$uppid")
  read -r busy1 total1 steal1 < <(core_ticks "$PROXY_CPU")
  read -r opens1 retr1 drops1 < <(tcp_counters)
  [[ -n $calls0 ]] && calls1=$(grpc_upstream_calls)
  local who_pid who_name
  for who_name in "$pname" "$upname"; do
    who_pid=$pid
    [[ $who_name == "$upname" ]] && who_pid=$uppid
    if ! kill -0 "$who_pid" 2>/dev/null; then
      tail -n 20 "$RUN_DIR/$who_name.log" >&2
      die "$who_name died during the run against $t (log: $RUN_DIR/$who_name.log)"
    fi
  done
  [[ -n $warm ]] && return

  local req rps p50 p99 non2xx errs
  if [[ $scen == h2 || $scen == grpc ]]; then
    read -r req rps p50 p99 non2xx errs < <(parse_h2load "$base.wrk")
  else
    read -r req rps p50 p99 non2xx errs < <(parse_wrk "$base.wrk")
  fi
  [[ $req -gt 0 ]] || { cat "$base.wrk" >&2; die "no requests completed against $t"; }
  [[ $scen == grpc ]] && grpc_verify_run "$t" "$base.wrk" "$req" "$non2xx" "$errs" "$calls0" "$calls1"
  local secs
  secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')   # wall time of the wrk run

  local proxy_cpu_s="-" proxy_us="-" proxy_pct="-" proxy_user_us="-" up_us up_connects per1k
  up_us=$(awk -v a="$upcpu0" -v b="$upcpu1" -v hz="$CLK_TCK" -v n="$req" 'BEGIN { printf "%.2f", (b - a) / hz * 1e6 / n }')
  if [[ $t != upstream ]]; then
    read -r proxy_cpu_s proxy_us proxy_pct < <(awk -v a="$cpu0" -v b="$cpu1" -v hz="$CLK_TCK" -v n="$req" -v s="$secs" \
      'BEGIN { c = (b - a) / hz; printf "%.2f %.2f %.1f\n", c, c * 1e6 / n, 100 * c / s }')
    # Of which user space: the rest is the kernel's (system calls, the loopback TCP path).
    proxy_user_us=$(awk -v a="$ucpu0" -v b="$ucpu1" -v hz="$CLK_TCK" -v n="$req" 'BEGIN { printf "%.2f", (b - a) / hz * 1e6 / n }')
  fi
  # Upstream connections opened = TCP active opens during the run (connect() calls in this
  # network namespace) minus wrk's own connects: one probe connect at start-up (wrk 4.1 checks
  # the address first), CONNS connections, plus one per completed request when each request has
  # its own connection, plus one per socket error. Against the upstream directly this leaves
  # wrk's residual (0 when nothing failed), i.e. the method's noise floor.
  local wrk_connects=$((1 + CONNS + errs))
  [[ $scen == close ]] && wrk_connects=$((wrk_connects + req))
  [[ $scen == h2 || $scen == grpc ]] && wrk_connects=$((H2_CONNS + errs))   # h2load makes no probe connect
  up_connects=$((opens1 - opens0 - wrk_connects))
  per1k=$(awk -v u="$up_connects" -v n="$req" 'BEGIN { printf "%.2f", u * 1000 / n }')
  # Connects to a Unix socket are no TCP active opens: not counted there.
  [[ $t == sluice-unix ]] && up_connects="-" per1k="-"
  [[ $scen == grpc && $GRPC_UNIX == 1 && $t != upstream ]] && up_connects="-" per1k="-"
  # Anything else that ran on the proxy's core during the run (should be ~0), and the time the
  # hypervisor took from it.
  local other_pct steal_pct
  read -r other_pct steal_pct < <(awk -v b="$((busy1 - busy0))" -v t="$((total1 - total0))" -v p="$((cpu1 - cpu0))" \
    -v st="$((steal1 - steal0))" 'BEGIN { if (t <= 0) t = 1; o = 100 * (b - p) / t; if (o < 0) o = 0; printf "%.1f %.1f\n", o, 100 * st / t }')
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$scen" "$rep" "$t" "$req" "$rps" "$p50" "$p99" \
    "$non2xx" "$errs" "$proxy_cpu_s" "$proxy_us" "$proxy_pct" "$up_us" "$((opens1 - opens0))" "$up_connects" "$per1k" "$((retr1 - retr0))" "$((drops1 - drops0))" "$other_pct" "$steal_pct" \
    "$proxy_user_us" "$rss" "$pss" >"$RUN_DIR/last-row.tsv"
  LAST_OTHER=$other_pct
  log "$(printf '%-9s r%s %-8s %9s req/s  p50 %7s ms  p99 %7s ms  cpu %6s us/req (user %s, %s%%)  upstream connects %s (%s/1k)  non2xx %s  errors %s  retrans %s  listen drops %s  other load on proxy core %s%%  steal %s%%  RSS %s KiB (PSS %s)' \
    "$scen" "$rep" "$t" "$rps" "$p50" "$p99" "$proxy_us" "$proxy_user_us" "$proxy_pct" "$up_connects" "$per1k" "$non2xx" "$errs" \
    "$((retr1 - retr0))" "$((drops1 - drops0))" "$other_pct" "$steal_pct" "$rss" "$pss")"
}

# ---------------------------------------------------------------- the runs
# measure SCENARIO REPEAT TARGET: a warm-up and one run, redone (up to RETRIES times) when something else
# used the proxy's core; rejected attempts are kept in rejected.tsv.
measure() {
  local attempt
  for attempt in $(seq 0 "$RETRIES"); do
    # Warm up first, so every measured run starts with the proxy's pool in its steady state
    # (a proxy's previous run was long enough ago for pool idle timeouts to have fired).
    [[ $WARMUP != 0 ]] && run_one "$1" "$2" "$3" warmup
    run_one "$@"
    if awk -v o="$LAST_OTHER" -v m="$MAX_OTHER_LOAD" 'BEGIN { exit !(o <= m) }' || [[ $attempt == "$RETRIES" ]]; then
      break
    fi
    log "  other load on the proxy core was $LAST_OTHER% (> $MAX_OTHER_LOAD%): redoing this run"
    cat "$RUN_DIR/last-row.tsv" >>"$RUN_DIR/rejected.tsv"
    sleep 2
  done
  cat "$RUN_DIR/last-row.tsv" >>"$RAW"
}

for scen in $SCENARIOS; do
  [[ $scen == keepalive || $scen == close || $scen == h2 || $scen == unix || $scen == grpc ]] ||
    die "unknown scenario '$scen' (keepalive close h2 unix grpc)"
  scen_targets=$TARGETS
  [[ $scen == unix ]] && scen_targets=$UNIX_TARGETS   # alternated within each round
  for rep in $(seq "$REPEATS"); do
    for t in $scen_targets; do
      [[ $scen == h2 && -z ${H2PORT[$t]:-} ]] && continue   # no HTTP/2 there
      [[ $scen == grpc && -z ${GPORT[$t]:-} ]] && continue   # no gRPC instance
      measure "$scen" "$rep" "$t"; sleep "$PAUSE"
    done
  done
done
rm -f "$RUN_DIR/last-row.tsv"
# After the runs, real gRPC calls through every instance once more (h2load saw HTTP statuses only).
if [[ " $SCENARIOS " == *" grpc "* ]]; then
  for t in $TARGETS; do
    [[ -n ${GPORT[$t]:-} ]] || continue
    rc=0
    got=$(grpc_check "$t" "${GPORT[$t]}") || rc=$?
    [[ $rc == 0 || $rc == 3 ]] || die "$t: gRPC calls fail after the runs: $got"
    log "grpc check after the runs, $t: $got"
    [[ $rc == 3 ]] && log "WARNING: $t does not relay the app's gRPC error as it should (the benchmark's OK calls are not affected)"
    GRPC_CHECKS+="- $t: ${got#127.0.0.1:*: }"$'\n'
  done
fi

# ---------------------------------------------------------------- report
# Which sluice: its --version, and the repository state when the binary was built from this
# checkout (SLUICE=SOME/OTHER/PATH may have been built from anything: say so).
sluice_desc="sluice (not run)"
if [[ " $TARGETS " == *" sluice "* || $UPSTREAM == demo-app ]]; then
  sluice_desc="$("$SLUICE" --version 2>/dev/null | head -n 1)"
  if [[ $(readlink -f "$SLUICE") == "$PWD"/* ]]; then
    sluice_desc+=" at $(git rev-parse --short HEAD 2>/dev/null || echo "no commit")"
    [[ -n $(git status --porcelain -- proxy CMakeLists.txt 2>/dev/null) ]] && sluice_desc+=" (+ uncommitted changes)"
  else
    sluice_desc+=" ($SLUICE, built outside this checkout)"
  fi
fi
REPORT="$RUN_DIR/results.md"
{
  cmd="DURATION=$DURATION REPEATS=$REPEATS CONNS=$CONNS THREADS=$THREADS WARMUP=$WARMUP"
  [[ $SLUICE != build/sluice ]] && cmd+=" SLUICE=$SLUICE"
  [[ -n ${SLUICE_BASE:-} ]] && cmd+=" SLUICE_BASE=$SLUICE_BASE"
  [[ -n ${SLUICE_BASE_ARGS:-} ]] && cmd+=" SLUICE_BASE_ARGS='$SLUICE_BASE_ARGS'"
  [[ $UPSTREAM != demo-app ]] && cmd+=" UPSTREAM=$UPSTREAM"
  [[ $TARGETS != "upstream sluice nginx haproxy" ]] && cmd+=" TARGETS='$TARGETS'"
  [[ $SCENARIOS != "keepalive close" ]] && cmd+=" SCENARIOS='$SCENARIOS'"
  [[ " $SCENARIOS " == *" h2 "* || " $SCENARIOS " == *" grpc "* ]] && cmd+=" H2_CONNS=$H2_CONNS H2_STREAMS=$H2_STREAMS"
  [[ " $SCENARIOS " == *" grpc "* ]] && cmd+=" GRPC_REQ_BYTES=$GRPC_REQ_BYTES GRPC_RESP_BYTES=$GRPC_RESP_BYTES"
  [[ " $SCENARIOS " == *" grpc "* && $GRPC_UNIX == 1 ]] && cmd+=" GRPC_UNIX=1"
  [[ $PATH_REQ != / ]] && cmd+=" PATH_REQ=$PATH_REQ"
  [[ $TLS == 1 ]] && cmd="TLS=1 $cmd"
  echo "Command: \`$cmd bench/run.sh\`"
  echo "($(date -u '+%Y-%m-%d %H:%M UTC'); $sluice_desc; $(nproc --all) cores, $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo);" \
    "kernel $(uname -r); $(nginx -v 2>&1 | sed 's/.*: //'); HAProxy $(haproxy -v | awk 'NR == 1 { print $3 }'); wrk $THREADS thread(s), $CONNS connections;" \
    "medians of $REPEATS runs of $DURATION; load average before the run: $LOAD_BEFORE)"
  [[ -n $TLS_NEGOTIATED ]] && echo "TLS negotiated with an OpenSSL client: $TLS_NEGOTIATED."
  if [[ -n $GRPC_CHECKS ]]; then
    echo
    echo "gRPC calls checked with python3-grpcio ($GRPC_METHOD through each instance, after the runs):"
    echo
    printf '%s' "$GRPC_CHECKS"
  fi
  echo
  awk -F'\t' -v targets="$TARGETS $UNIX_TARGETS" -v scenarios="$SCENARIOS" -v grpc_unix="$GRPC_UNIX" '
    function median(key,   n, i, j, a, t, v) {
      n = cnt[key]; if (n == 0) return "-"
      for (i = 1; i <= n; i++) a[i] = vals[key, i]
      for (i = 2; i <= n; i++) { v = a[i]; j = i - 1; while (j > 0 && a[j] + 0 > v + 0) { a[j + 1] = a[j]; j-- } a[j + 1] = v }
      return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    function add(key, v) { if (v == "-" || v == "") return; vals[key, ++cnt[key]] = v }
    function fmt(v, d) { return (v == "-") ? "–" : sprintf("%." d "f", v) }
    function ratio(a, b) { return (a == "-" || b == "-" || b + 0 == 0) ? "–" : sprintf("%.2f×", a / b) }
    # The ratio of CPU per request within each round (the two ran a minute apart at most), then
    # the median and range of those: a slow drift of the machine cancels out of each round.
    function paired(s, a, p,   r, k, key, lo, hi, v) {
      key = s SUBSEP a SUBSEP p SUBSEP "paired"; lo = ""; hi = ""
      for (k in rounds) {
        split(k, r, SUBSEP); if (r[1] != s) continue
        if (!((s, a, r[2]) in round_cpu) || !((s, p, r[2]) in round_cpu) || round_cpu[s, p, r[2]] + 0 == 0) continue
        v = round_cpu[s, a, r[2]] / round_cpu[s, p, r[2]]
        vals[key, ++cnt[key]] = v
        if (lo == "" || v < lo) lo = v; if (hi == "" || v > hi) hi = v
      }
      if (lo == "") return "–"
      return sprintf("%.2f× (%.2f–%.2f)", median(key), lo, hi)
    }
    NR == 1 { next }
    { s = $1; t = $3
      add(s SUBSEP t SUBSEP "rps", $5); add(s SUBSEP t SUBSEP "p50", $6); add(s SUBSEP t SUBSEP "p99", $7)
      add(s SUBSEP t SUBSEP "cpu", $11); add(s SUBSEP t SUBSEP "pct", $12); add(s SUBSEP t SUBSEP "upcpu", $13)
      add(s SUBSEP t SUBSEP "per1k", $16); add(s SUBSEP t SUBSEP "other", $19)
      add(s SUBSEP t SUBSEP "ucpu", $21)
      if (NF >= 23) { add(s SUBSEP t SUBSEP "rss", ($22 == "-") ? "-" : $22 / 1024); add(s SUBSEP t SUBSEP "pss", ($23 == "-") ? "-" : $23 / 1024) }
      if ($11 != "-") { round_cpu[s, t, $2] = $11; rounds[s, $2] = 1 }
      bad[s SUBSEP t] += $8 + $9; reqs[s SUBSEP t] += $4 }
    END {
      ns = split(scenarios, S, " "); nt = split(targets, T, " ")
      title["keepalive"] = "Scenario 1: keep-alive small GETs"
      title["close"] = "Scenario 2: a new client connection per request (wrk -H \"Connection: close\")"
      title["h2"] = "Scenario 3: HTTP/2 small GETs (h2load; p50 is its mean request time, p99 not measured)"
      title["grpc"] = "Scenario 5: gRPC unary calls (h2load POSTs of one gRPC message with te: trailers, to a grpc-go app over h2c on " ((grpc_unix == 1) ? "a Unix socket" : "loopback TCP") "; p50 is its mean call time, p99 not measured)"
      title["unix"] = "Scenario 4: sluice to its app over loopback TCP vs a Unix socket (keep-alive small GETs; the app: static nginx on both)"
      for (i = 1; i <= ns; i++) {
        s = S[i]
        print "### " title[s]; print ""
        u = (s == "grpc") ? "call" : "req"
        print "| target | " u "/s | p50 ms | p99 ms | proxy CPU µs/" u " | of which user space | proxy CPU % of core | upstream CPU µs/" u " | upstream conns opened /1k " u " | non-2xx + socket errors | other load on proxy core % | proxy RSS MiB (PSS) mid-run |"
        print "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        for (j = 1; j <= nt; j++) {
          t = T[j]; k = s SUBSEP t
          # The unix scenario has its own two targets, which run in no other scenario.
          if ((s == "unix") != (t == "sluice-tcp" || t == "sluice-unix")) continue
          name = (t == "upstream") ? "upstream (direct, no proxy)" : t
          if (t == "sluice-tcp") name = "sluice-tcp (app over loopback TCP)"
          if (t == "sluice-unix") name = "sluice-unix (app over a Unix socket)"
          line = sprintf("| %s | %s | %s | %s | %s | %s | %s | %s", name, fmt(median(k SUBSEP "rps"), 0), fmt(median(k SUBSEP "p50"), 3),
            fmt(median(k SUBSEP "p99"), 3), fmt(median(k SUBSEP "cpu"), 1), fmt(median(k SUBSEP "ucpu"), 1), fmt(median(k SUBSEP "pct"), 0),
            fmt(median(k SUBSEP "upcpu"), 1))
          v = fmt(median(k SUBSEP "per1k"), 2)
          line = line " | " ((t == "upstream") ? "(" v ")" : v)
          mem = (median(k SUBSEP "rss") == "-") ? "–" : fmt(median(k SUBSEP "rss"), 1) " (" fmt(median(k SUBSEP "pss"), 1) ")"
          print line sprintf(" | %d of %d | %s | %s |", bad[k], reqs[k], fmt(median(k SUBSEP "other"), 1), mem)
        }
        print ""
        if ((s SUBSEP "sluice" SUBSEP "rps") in cnt) {
          hdr = "| ratio |"; sep = "|---|"; r1 = "| CPU µs/" u " |"; r5 = "| CPU µs/" u ", per round: median (range) |"; r4 = "| user-space CPU µs/" u " |"; r2 = "| " u "/s |"; r3 = "| p99 |"; r6 = "| RSS mid-run |"; any = 0
          for (j = 1; j <= nt; j++) {
            p = T[j]; if (p == "upstream" || p == "sluice" || p == "sluice-tcp" || p == "sluice-unix") continue
            any = 1; hdr = hdr " sluice/" p " |"; sep = sep "---:|"
            r1 = r1 " " ratio(median(s SUBSEP "sluice" SUBSEP "cpu"), median(s SUBSEP p SUBSEP "cpu")) " |"
            r4 = r4 " " ratio(median(s SUBSEP "sluice" SUBSEP "ucpu"), median(s SUBSEP p SUBSEP "ucpu")) " |"
            r5 = r5 " " paired(s, "sluice", p) " |"
            r2 = r2 " " ratio(median(s SUBSEP "sluice" SUBSEP "rps"), median(s SUBSEP p SUBSEP "rps")) " |"
            r3 = r3 " " ratio(median(s SUBSEP "sluice" SUBSEP "p99"), median(s SUBSEP p SUBSEP "p99")) " |"
            r6 = r6 " " ratio(median(s SUBSEP "sluice" SUBSEP "rss"), median(s SUBSEP p SUBSEP "rss")) " |"
          }
          if (any) { print hdr; print sep; print r1; print r5; print r4; print r2; print r3; print r6; print "" }
        }
        if (s == "unix" && ((s SUBSEP "sluice-unix" SUBSEP "rps") in cnt)) {
          a = "sluice-unix"; p = "sluice-tcp"
          print "| ratio | sluice-unix/sluice-tcp (below 1: what the Unix socket saves) |"; print "|---|---:|"
          print "| CPU µs/req | " ratio(median(s SUBSEP a SUBSEP "cpu"), median(s SUBSEP p SUBSEP "cpu")) " |"
          print "| CPU µs/req, per round: median (range) | " paired(s, a, p) " |"
          print "| user-space CPU µs/req | " ratio(median(s SUBSEP a SUBSEP "ucpu"), median(s SUBSEP p SUBSEP "ucpu")) " |"
          print "| app CPU µs/req | " ratio(median(s SUBSEP a SUBSEP "upcpu"), median(s SUBSEP p SUBSEP "upcpu")) " |"
          print "| req/s | " ratio(median(s SUBSEP a SUBSEP "rps"), median(s SUBSEP p SUBSEP "rps")) " |"
          print "| p99 | " ratio(median(s SUBSEP a SUBSEP "p99"), median(s SUBSEP p SUBSEP "p99")) " |"
          print ""
        }
      }
      print "Medians per target. CPU: utime+stime of all the proxy'"'"'s processes/threads (/proc/PID/stat) over"
      print "the run ÷ requests completed; user space: utime alone (the rest is the kernel'"'"'s). Ratios are of"
      print "the medians, except \"per round\": sluice'"'"'s CPU ÷ the other'"'"'s in the same round, whose median"
      print "and range are immune to the machine'"'"'s drift between rounds. Upstream conns opened: TCP active opens in the benchmark'"'"'s"
      print "network namespace minus wrk'"'"'s own connects; the value in parentheses (no proxy) is the"
      print "method'"'"'s noise floor. Other load on proxy core: busy time of that core (/proc/stat) not"
      print "spent by the proxy; more than a few % means something else ran there and the row is suspect"
      print "(such runs are redone RETRIES times; see rejected.tsv). Proxy RSS: VmRSS summed over the"
      print "proxy'"'"'s processes half-way through the run (PSS in parentheses: shared pages split)."
      if (index(" " scenarios " ", " grpc ")) {
        print "gRPC: each proxy runs a gRPC instance of its own; a run counts only if h2load saw 2xx for every"
        print "call, one whole response message per call arrived and the app answered at least as many calls OK"
        print "(h2load does not read trailers, so grpc-status is checked with a real gRPC client, above)."
        if (grpc_unix == 1) print "The proxies reach the app over a Unix socket: upstream conns opened (TCP only) cannot count them (–)."
      }
      print ""
    }' "$RAW"
  echo "<details><summary>All runs</summary>"
  echo
  echo "| scenario | round | target | requests | req/s | p50 ms | p99 ms | non-2xx | socket errors | proxy CPU s | proxy CPU µs/req | proxy CPU % | upstream CPU µs/req | TCP active opens | upstream conns opened | per 1k req | TCP retransmits | listen drops | other load on proxy core % | steal % | proxy user CPU µs/req | proxy RSS KiB | proxy PSS KiB |"
  echo "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  awk -F'\t' 'NR > 1 { line = "|"; for (i = 1; i <= NF; i++) line = line " " $i " |"; print line }' "$RAW"
  echo
  echo "</details>"
} >"$REPORT"
cp "$REPORT" "$OUT_DIR/latest.md"
echo
cat "$REPORT"
log "report: $REPORT (also $OUT_DIR/latest.md); raw data: $RAW"
