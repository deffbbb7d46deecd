#!/usr/bin/python3
"""HTTP/2 upstreams (cluster `protocol: h2c` and `h2`): multiplexing, bodies with backpressure,
trailers, GOAWAY (an upstream restarting gracefully) with the unprocessed requests retried, a
dead upstream, idle close, and gRPC through sluice.

Peers: tests/peers/h2_upstream.go (Go net/http + x/net/http2, built by the ctest fixture peers.go_h2_upstream: $H2_UPSTREAM),
grpc_app.py (python3-grpcio), h2_goaway_app.py (python3-h2), curl and h2load.
"""
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
import unittest

import grpc

from harness import (HERE, PYTHON, E2ETestCase, MiB, Proc, curl, http, run_parallel,
                     wait_until)
from tls_certs import CertSet

H2_UPSTREAM = os.environ.get("H2_UPSTREAM") or os.path.join(
    HERE, "..", "..", "build", "tests", "peers", "h2_upstream")
H2LOAD = shutil.which("h2load")
CERTS = None
SAMPLE_RX = re.compile(r"^(\w+)(\{[^}]*\})? (\S+)$")


def setUpModule():
    global CERTS
    CERTS = CertSet.create()


def tearDownModule():
    if CERTS is not None:
        CERTS.cleanup()


def parse_metrics(text):
    out = {}
    for line in text.splitlines():
        m = SAMPLE_RX.match(line)
        if not m or line.startswith("#"):
            continue
        labels = frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


class GoUpstream(Proc):
    def __init__(self, *args):
        super().__init__("h2_upstream", [H2_UPSTREAM] + list(args))
        self.port = int(self.expect_line(r"^PORT (\d+)", stream="out").group(1))

    def stats(self):
        return json.loads(http(self.port, "GET", "/stats").body)


class Http2UpstreamTest(E2ETestCase):

    def start_go(self, *args):
        return self._track(GoUpstream(*args))

    def start_with(self, cluster_yaml, workers=1):
        path = os.path.join(self.make_tmpdir(), "sluice.yaml")
        with open(path, "w") as f:
            f.write("admin: {address: 127.0.0.1:0}\nworkers: %d\n"
                    "drain: {delay: 0s, budget: 10s}\n"
                    "listeners:\n  - name: ingress\n    address: 127.0.0.1:0\n    cluster: app\n"
                    "clusters:\n  - name: app\n%s" % (workers, cluster_yaml))
        return self.start_sluice("--config", path, defaults=False, workers=None)

    def h2c_pair(self, *go_args, extra="", workers=1):
        up = self.start_go(*go_args)
        s = self.start_with("    protocol: h2c\n    endpoints: [127.0.0.1:%d]\n%s"
                            % (up.port, extra), workers)
        return up, s

    def metrics(self, s):
        return parse_metrics(http(s.admin_port, "GET", "/metrics").body.decode())

    def cluster_stats(self, s):
        doc = json.loads(http(s.admin_port, "GET", "/stats").body)
        return [c for c in doc["clusters"] if c["name"] == "app"][0]

    # ---- requests and responses -------------------------------------------------------------

    def test_h2c_request_head_and_statuses(self):
        up, s = self.h2c_pair()
        r = http(s.port, "GET", "/headers?a=1", headers=[("X-Test-One", "1"),
                                                        ("Keep-Alive", "timeout=5")])
        self.assertEqual(r.status, 200, r)
        doc = r.json()
        self.assertEqual(doc["proto"], "HTTP/2.0")
        self.assertEqual(doc["method"], "GET")
        self.assertEqual(doc["path"], "/headers?a=1")
        self.assertEqual(doc["host"], "test.local")
        self.assertEqual(doc["headers"]["x-test-one"], "1")
        for hop in ("keep-alive", "connection", "transfer-encoding", "host", "upgrade"):
            self.assertNotIn(hop, doc["headers"])
        # A body both ways; the client's framing is sluice's business, not the upstream's.
        r = http(s.port, "POST", "/echo", body=b"x" * 100000)
        self.assertEqual((r.status, len(r.body), r.header("X-Method")), (200, 100000, "POST"))
        self.assertEqual(http(s.port, "GET", "/status/204").status, 204)
        r = http(s.port, "GET", "/status/304")
        self.assertEqual((r.status, r.body), (304, b""))
        r = http(s.port, "HEAD", "/bytes/1234")
        self.assertEqual((r.status, r.body, r.header("Content-Length")), (200, b"", "1234"))
        r = http(s.port, "GET", "/status/503")
        self.assertEqual((r.status, r.body), (503, b"status 503\n"))
        # An HTTP/2 client too.
        cp = curl("--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_code} %{size_download}",
                  s.url("/bytes/200000"))
        self.assertEqual(cp.stdout.decode(), "200 200000", cp.stderr)
        # Every request went over the one connection (the /stats request adds its own).
        self.assertEqual(up.stats()["accepted"] - 1, 1)

    def test_websocket_upgrade_refused(self):
        # A breaker that would open after 4 failures of 4: the refusals are sluice's (a route
        # misconfigured), not the app failing, and must not open it.
        up, s = self.h2c_pair(extra="    circuit_breaker: {window: 60s, min_requests: 4, "
                                    "failure_ratio: 0.5, open_for: 60s}\n")
        for _ in range(6):
            r = http(s.port, "GET", "/echo", headers=[("Upgrade", "websocket"),
                                                     ("Connection", "Upgrade"),
                                                     ("Sec-WebSocket-Key",
                                                      "dGhlIHNhbXBsZSBub25jZQ=="),
                                                     ("Sec-WebSocket-Version", "13")])
            self.assertEqual(r.status, 502, r)
            self.assertIn(b"cannot be forwarded to an HTTP/2 cluster", r.body)
        self.assertEqual(up.stats()["requests"], 1)  # none reached the app (1: this /stats)
        self.assertEqual(http(s.port, "GET", "/echo").status, 200)
        g = json.loads(http(s.admin_port, "GET", "/stats").body)["cluster_guards"]["app"]
        self.assertEqual((g["circuit"], g["window_failures"]), ("closed", 0), g)

    # ---- multiplexing --------------------------------------------------------------------

    def test_multiplexing_packs_streams_onto_few_connections(self):
        up, s = self.h2c_pair("-max-streams", "10")
        results = []

        def one():
            results.append(http(s.port, "GET", "/sleep/3000", timeout=30).status)

        threads = [threading.Thread(target=one) for _ in range(30)]
        for t in threads:
            t.start()
        # 30 at once over streams of at most 10 per connection: three connections, all busy.
        wait_until(lambda: self.cluster_stats(s)["streams_active"] == 30, 20,
                   "30 upstream streams open")
        cs = self.cluster_stats(s)
        self.assertEqual((cs["pool_active"], cs["pool_idle"]), (3, 0), cs)
        self.assertEqual(cs["protocol"], "h2c")
        for t in threads:
            t.join()
        self.assertEqual(results, [200] * 30)
        st = up.stats()
        self.assertEqual(st["accepted"] - 1, 3, st)  # less the /stats connection itself
        self.assertGreaterEqual(st["max_active"], 30)
        wait_until(lambda: self.cluster_stats(s)["streams_active"] == 0, 10, "streams closed")
        m = self.metrics(s)
        self.assertEqual(m[("sluice_upstream_streams_active", frozenset({("cluster", "app")}))], 0)
        self.assertEqual(m[("sluice_upstream_pool_idle_connections",
                            frozenset({("cluster", "app")}))], 3)

    def test_h2load_many_streams_few_connections(self):
        self.assertTrue(H2LOAD, "h2load is missing: make deps installs nghttp2-client")
        up, s = self.h2c_pair()
        # One request first: the server's SETTINGS (250 streams) are known before the burst.
        self.assertEqual(http(s.port, "GET", "/echo").status, 200)
        cp = subprocess.run([H2LOAD, "-n", "2000", "-c", "4", "-m", "50", s.url("/echo")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
        out = cp.stdout.decode()
        self.assertIn("2000 succeeded", out, out)
        # 200 concurrent streams from clients, under the Go server's 250: one upstream connection.
        self.assertEqual(up.stats()["accepted"] - 1, 1)

    # ---- bodies and backpressure -----------------------------------------------------------

    def test_big_download_to_a_slow_reader_keeps_memory_bounded(self):
        up, s = self.h2c_pair()
        n = 256 * MiB
        cp = curl("--limit-rate", "64M", "-o", "/dev/null", "-w", "%{http_code} %{size_download}",
                  s.url("/bytes/%d" % n), timeout=120)
        self.assertEqual(cp.stdout.decode(), "200 %d" % n, cp.stderr)
        self.assertMemoryBounded(s, 64 * MiB)

    def test_big_upload_to_a_slow_upstream(self):
        up, s = self.h2c_pair()
        path = os.path.join(self.make_tmpdir(), "up.bin")
        with open(path, "wb") as f:
            f.write(os.urandom(1 * MiB) * 48)
        import hashlib
        with open(path, "rb") as f:
            want = hashlib.sha256(f.read()).hexdigest()
        for args in ((), ("--http2-prior-knowledge",)):
            cp = curl(*args, "--data-binary", "@" + path, s.url("/discard?ms_per_mib=20"),
                      timeout=120)
            doc = json.loads(cp.stdout)
            self.assertEqual((doc["received"], doc["sha256"]), (48 * MiB, want), cp.stderr)
        self.assertMemoryBounded(s, 64 * MiB)

    def test_trailers_end_to_end(self):
        up, s = self.h2c_pair()
        # HTTP/1.1 client, chunked request with a trailer; the response's trailers come back in
        # a chunked response.
        from harness import RawClient
        c = RawClient(s.port)
        c.send(b"POST /trailers HTTP/1.1\r\nHost: t\r\nTE: trailers\r\nTrailer: X-Req-Sum\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-Req-Sum: abc\r\n\r\n")
        r = c.read_response("POST")
        c.close()
        self.assertEqual((r.status, r.body), (200, b"hello"), r)
        t = dict((k.lower(), v) for k, v in r.trailers)
        self.assertEqual(t.get("x-count"), "5", r.trailers)
        self.assertEqual(t.get("x-checksum"),
                         "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824")
        self.assertEqual(t.get("x-got-trailers"), "x-req-sum=abc")

    # ---- TLS (h2) --------------------------------------------------------------------------

    def test_tls_h2_cluster(self):
        cert, key = CERTS.pair("localhost")
        up = self.start_go("-tls-cert", cert, "-tls-key", key)
        s = self.start_with("    protocol: h2\n    endpoints: [localhost:%d]\n"
                            "    tls: {ca: %s}\n" % (up.port, CERTS.path("ca")))
        for _ in range(3):
            r = http(s.port, "GET", "/headers")
            self.assertEqual((r.status, r.json()["proto"]), (200, "HTTP/2.0"), r)
        cp = curl("--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_code}",
                  "--data-binary", "@/dev/null", s.url("/echo"))
        self.assertEqual(cp.stdout.decode(), "200")
        # Asked through sluice: the one TLS connection carried everything.
        self.assertEqual(json.loads(http(s.port, "GET", "/stats").body)["accepted"], 1)

    def test_tls_server_without_h2_fails_clearly(self):
        # aiohttp over TLS offers only http/1.1 and, like OpenSSL servers, completes the
        # handshake without ALPN when the client offers only h2.
        cert, key = CERTS.pair("localhost")
        up = self._track(Proc("aiohttp-tls", [PYTHON, os.path.join(HERE, "upstream_app.py"),
                                              "--port", "0", "--tls-cert", cert,
                                              "--tls-key", key]))
        up.port = int(up.expect_line(r"^PORT (\d+)", stream="out").group(1))
        s = self.start_with("    protocol: h2\n    endpoints: [localhost:%d]\n"
                            "    tls: {ca: %s}\n" % (up.port, CERTS.path("ca")))
        r = http(s.port, "GET", "/headers")
        self.assertEqual(r.status, 502, r)
        s.wait_line(r"did not choose HTTP/2 in the TLS handshake \(ALPN none\)", stream="err")

    # ---- GOAWAY ----------------------------------------------------------------------------

    def test_unprocessed_requests_are_retried_even_post(self):
        app = self._track(Proc("h2-goaway", [PYTHON, os.path.join(HERE, "h2_goaway_app.py")]))
        port = int(app.expect_line(r"^PORT (\d+)", stream="out").group(1))
        s = self.start_with("    protocol: h2c\n    endpoints: [127.0.0.1:%d]\n" % port)
        # Each connection answers one request and turns the next away with a GOAWAY whose last
        # stream id is below it: that one was never processed and goes to a new connection.
        conns = set()
        for i in range(4):
            r = http(s.port, "POST", "/submit", body=b"p" * 1000)
            self.assertEqual(r.status, 200, r)
            doc = r.json()
            self.assertEqual((doc["method"], doc["body_len"]), ("POST", 1000))
            conns.add(doc["conn"])
        self.assertEqual(len(conns), 4)
        m = self.metrics(s)
        self.assertEqual(m[("sluice_upstream_request_retries_total",
                            frozenset({("cluster", "app"), ("reason", "goaway_unprocessed")}))], 3)
        self.assertEqual(m[("sluice_upstream_goaway_received_total",
                            frozenset({("cluster", "app")}))], 3)

    def test_graceful_restart_under_load_loses_nothing(self):
        old = self.start_go("-reuseport", "-name", "old")
        s = self.start_with("    protocol: h2c\n    endpoints: [127.0.0.1:%d]\n"
                            "    pool: {queue_timeout: 10s}\n" % old.port)
        stop = threading.Event()
        failures, done = [], [0]
        lock = threading.Lock()

        def load(k):
            while not stop.is_set():
                try:
                    if k % 2:
                        r = http(s.port, "POST", "/echo", body=b"b" * 2000)
                        ok = r.status == 200 and len(r.body) == 2000
                    else:
                        r = http(s.port, "GET", "/sleep/30")
                        ok = r.status == 200
                except Exception as e:  # noqa: BLE001 - any failure is a lost request
                    r, ok = e, False
                with lock:
                    done[0] += 1
                    if not ok:
                        failures.append(repr(r)[:300])

        threads = [threading.Thread(target=load, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        wait_until(lambda: done[0] >= 100, 30, "load running")
        new = self.start_go("-reuseport", "-name", "new", "-port", str(old.port))
        old.proc.send_signal(15)
        wait_until(lambda: old.proc.poll() is not None, 30, "the old upstream exited")
        before = done[0]
        wait_until(lambda: done[0] >= before + 100, 30, "load continued on the new upstream")
        stop.set()
        for t in threads:
            t.join()
        self.assertEqual(old.proc.returncode, 0)
        self.assertEqual(failures, [])
        m = self.metrics(s)
        self.assertGreaterEqual(m[("sluice_upstream_goaway_received_total",
                                   frozenset({("cluster", "app")}))], 1)
        self.assertGreater(new.stats()["requests"], 50)

    # ---- dead upstreams and idle connections ------------------------------------------------

    def test_silent_upstream_is_a_connect_timeout(self):
        # Accepts and reads, never answers (not even SETTINGS).
        lst = socket.socket()
        lst.bind(("127.0.0.1", 0))
        lst.listen(16)
        conns = []

        def accept():
            while True:
                try:
                    c, _ = lst.accept()
                except OSError:
                    return
                conns.append(c)

        threading.Thread(target=accept, daemon=True).start()
        self.addCleanup(lst.close)
        s = self.start_with("    protocol: h2c\n    endpoints: [127.0.0.1:%d]\n"
                            "    connect_timeout: 500ms\n" % lst.getsockname()[1])
        # A connection is ready only once the server's SETTINGS came: this one never is.
        t0 = time.monotonic()
        r = http(s.port, "GET", "/x")
        # Connects time out and are retried after a backoff (the cluster's only address) until
        # the request's queue timeout: a 503 either way, never a hang.
        self.assertEqual(r.status, 503, r)
        self.assertIn(r.body, (b"503 Service Unavailable: upstream connect timeout\n",
                               b"503 Service Unavailable: upstream pool queue timeout\n"))
        self.assertLess(time.monotonic() - t0, 10)
        s.wait_line(r"upstream 127\.0\.0\.1:\d+: connect timeout", stream="err")

    def test_hung_upstream_is_found_by_ping(self):
        # SETTINGS, then silence: no response, no PING ACK. After 10 s without a frame sluice
        # sends a PING; 5 s without an answer and the connection is closed, its stream failed.
        app = self._track(Proc("h2-silent", [PYTHON, os.path.join(HERE, "h2_goaway_app.py"),
                                             "--silent"]))
        port = int(app.expect_line(r"^PORT (\d+)", stream="out").group(1))
        s = self.start_with("    protocol: h2c\n    endpoints: [127.0.0.1:%d]\n"
                            "    response_timeout: 120s\n" % port)
        t0 = time.monotonic()
        r = http(s.port, "GET", "/hang", timeout=60)
        took = time.monotonic() - t0
        self.assertEqual(r.status, 502, r)
        self.assertGreater(took, 9)
        self.assertLess(took, 40)
        s.wait_line(r"no answer to a PING within 5000 ms; closing the connection", stream="err")

    def test_idle_connections_close(self):
        up, s = self.h2c_pair(extra="    pool: {idle_timeout: 300ms}\n")
        self.assertEqual(http(s.port, "GET", "/echo").status, 200)
        # The /stats request's own connection is the one left open.
        wait_until(lambda: up.stats()["open"] == 1, 10, "the idle upstream connection closed")
        cs = self.cluster_stats(s)
        self.assertEqual((cs["pool_idle"], cs["pool_active"]), (0, 0), cs)
        self.assertEqual(http(s.port, "GET", "/echo").status, 200)

    def test_upstream_gone_mid_response(self):
        up, s = self.h2c_pair()
        box = []
        th = threading.Thread(target=lambda: box.append(
            curl("-o", "/dev/null", "-w", "%{http_code}", s.url("/slow/100"), timeout=30)))
        th.start()
        wait_until(lambda: self.cluster_stats(s)["streams_active"] == 1, 10, "stream open")
        up.kill()
        th.join()
        self.assertNotEqual(box[0].returncode, 0, "a cut response must not look complete")
        wait_until(lambda: self.cluster_stats(s)["streams_active"] == 0, 10, "stream closed")

    # ---- gRPC ------------------------------------------------------------------------------

    def test_grpc_every_rpc_kind_over_h2c(self):
        app = self._track(Proc("grpc-app", [PYTHON, os.path.join(HERE, "grpc_app.py")]))
        port = int(app.expect_line(r"^PORT (\d+)", stream="out").group(1))
        s = self.start_with("    protocol: h2c\n    endpoints: [127.0.0.1:%d]\n" % port)
        ch = grpc.insecure_channel("127.0.0.1:%d" % s.port,
                                   options=[("grpc.max_receive_message_length", 16 << 20)])
        self.addCleanup(ch.close)
        svc = "/sluice.test.Echo/"
        r, call = ch.unary_unary(svc + "Unary").with_call(b"hello", metadata=[("x-echo-a", "1")],
                                                          timeout=10)
        self.assertEqual(r, b"hello")
        self.assertIn(("x-echo-a", "1"), [tuple(m) for m in call.initial_metadata()])
        trailers = dict(tuple(m) for m in call.trailing_metadata())
        self.assertEqual(trailers["x-trailer"], "done")
        self.assertEqual(trailers["x-trailer-bin"], b"\x00\x01\xfe\xff")
        msgs = list(ch.unary_stream(svc + "ServerStream")(
            b"", metadata=[("x-count", "50"), ("x-size", "10000")], timeout=10))
        self.assertEqual(len(msgs), 50)
        self.assertTrue(msgs[49].startswith(b"msg-49:"))
        big = [os.urandom(100000) for _ in range(20)]
        import hashlib
        want = hashlib.sha256(b"".join(big)).hexdigest().encode()
        r = ch.stream_unary(svc + "ClientStream")(iter(big), timeout=10)
        self.assertEqual(r, b"count=20 bytes=2000000 sha256=" + want)
        echoed = list(ch.stream_stream(svc + "Bidi")(iter([b"a", b"bb", b"ccc"]), timeout=10))
        self.assertEqual(echoed, [b"a", b"bb", b"ccc"])
        self.assertEqual(len(ch.unary_unary(svc + "Unary")(b"z" * (8 << 20), timeout=20)), 8 << 20)
        with self.assertRaises(grpc.RpcError) as cm:
            ch.unary_unary(svc + "Unary")(b"x", metadata=[
                ("x-status", "5"), ("x-message-bin", "nicht da \u00fc".encode())], timeout=10)
        e = cm.exception
        self.assertEqual(e.code(), grpc.StatusCode.NOT_FOUND)
        self.assertEqual(e.details(), "nicht da \u00fc")
        self.assertEqual(dict(tuple(m) for m in e.trailing_metadata())["x-trailer-bin"],
                         b"\x00\x01\xfe\xff")
        # A server stream that ends with an error after its messages.
        it = ch.unary_stream(svc + "ServerStream")(b"", metadata=[("x-count", "3"),
                                                                  ("x-status", "14")], timeout=10)
        got = []
        with self.assertRaises(grpc.RpcError) as cm:
            for m in it:
                got.append(m)
        self.assertEqual((len(got), cm.exception.code()), (3, grpc.StatusCode.UNAVAILABLE))
        # Every call rode one upstream connection.
        info = json.loads(ch.unary_unary(svc + "Info")(b"", timeout=10))
        self.assertEqual(len(info["peers"]), 1, info)


    def test_grpc_over_a_unix_socket(self):
        sock = os.path.join(self.make_tmpdir(), "grpc.sock")
        app = self._track(Proc("grpc-app-unix", [PYTHON, os.path.join(HERE, "grpc_app.py"),
                                                 "--unix", sock, "--no-tcp"]))
        app.expect_line(r"^PORT 0", stream="out")
        s = self.start_with("    protocol: h2c\n    endpoints: [\"unix:%s\"]\n" % sock)
        ch = grpc.insecure_channel("127.0.0.1:%d" % s.port)
        self.addCleanup(ch.close)
        svc = "/sluice.test.Echo/"
        self.assertEqual(ch.unary_unary(svc + "Unary")(b"via unix", timeout=10), b"via unix")
        self.assertEqual(len(list(ch.unary_stream(svc + "ServerStream")(
            b"", metadata=[("x-count", "5")], timeout=10))), 5)
        self.assertEqual(list(ch.stream_stream(svc + "Bidi")(iter([b"a", b"b"]), timeout=10)),
                         [b"a", b"b"])

    def test_grpc_over_tls_h2(self):
        cert, key = CERTS.pair("localhost")
        app = self._track(Proc("grpc-app-tls", [PYTHON, os.path.join(HERE, "grpc_app.py"),
                                                "--tls-cert", cert, "--tls-key", key]))
        port = int(app.expect_line(r"^PORT (\d+)", stream="out").group(1))
        s = self.start_with("    protocol: h2\n    endpoints: [localhost:%d]\n"
                            "    tls: {ca: %s}\n" % (port, CERTS.path("ca")))
        ch = grpc.insecure_channel("127.0.0.1:%d" % s.port)
        self.addCleanup(ch.close)
        svc = "/sluice.test.Echo/"
        r, call = ch.unary_unary(svc + "Unary").with_call(b"over tls", timeout=10)
        self.assertEqual(r, b"over tls")
        self.assertEqual(dict(tuple(m) for m in call.trailing_metadata())["x-trailer-bin"],
                         b"\x00\x01\xfe\xff")
        self.assertEqual(list(ch.stream_stream(svc + "Bidi")(iter([b"1", b"22"]), timeout=10)),
                         [b"1", b"22"])
        with self.assertRaises(grpc.RpcError) as cm:
            ch.unary_unary(svc + "Unary")(b"x", metadata=[("x-status", "7"),
                                                          ("x-message", "no")], timeout=10)
        self.assertEqual((cm.exception.code(), cm.exception.details()),
                         (grpc.StatusCode.PERMISSION_DENIED, "no"))


if __name__ == "__main__":
    unittest.main()
