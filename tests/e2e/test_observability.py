#!/usr/bin/python3
"""Observability: /metrics (promtool, counters that move with requests, retries, timeouts,
connect failures, WebSocket closes by reason, pool gauges, reloads), /stats, /config,
/healthz and /readyz semantics (drain, a readiness cluster's app going away, an egress
cluster that never affects readiness), and the access log (JSON fields, text, off, and
dropping rather than blocking when stdout is not read)."""
import json
import os
import re
import signal
import subprocess
import tempfile
import threading
import time
import unittest

from harness import (LISTEN_RX, CLEAN_ENV, SLUICE_BIN, E2ETestCase, RawClient, reserve_port, http,
                     request_bytes, stderr_lines, wait_until)
from ws_upstream import WsUpstream, close_payload, raw_ws_handshake, read_ws_frame, ws_frame

PROMTOOL = "/usr/bin/promtool"
SAMPLE_RX = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$')


def parse_metrics(text):
    """{(name, frozenset(labels.items())): value} of a text exposition."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE_RX.match(line)
        assert m, "unparsable sample line: %r" % line
        labels = {}
        if m.group(2):
            for kv in re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2)):
                labels[kv[0]] = kv[1]
        out[(m.group(1), frozenset(labels.items()))] = float(m.group(3))
    return out


class ObservabilityTest(E2ETestCase):

    def write_config(self, text):
        path = os.path.join(self.make_tmpdir(), "sluice.yaml")
        with open(path, "w") as f:
            f.write(text)
        return path

    def admin(self, s, method, path, body=None):
        c = RawClient(s.admin_port)
        headers = [("Connection", "close")]
        if method == "POST" and body is None:
            headers.append(("Content-Length", "0"))
        c.send(request_bytes(method, path, headers, body))
        r = c.read_response(method=method)
        c.close()
        return r

    def metrics(self, s):
        r = self.admin(s, "GET", "/metrics")
        self.assertEqual(r.status, 200)
        self.assertTrue(r.header("Content-Type").startswith("text/plain; version=0.0.4"))
        return parse_metrics(r.body.decode())

    def value(self, m, name, **labels):
        key = (name, frozenset(labels.items()))
        self.assertIn(key, m, "no sample %s%r" % (name, labels))
        return m[key]

    def wait_value(self, s, pred, timeout=30.0):
        deadline = time.monotonic() + timeout
        while True:
            m = self.metrics(s)
            if pred(m) or time.monotonic() > deadline:
                return m
            time.sleep(0.05)

    # ---- /metrics ---------------------------------------------------------------------------

    def test_promtool_accepts_the_metrics(self):
        up = self.start_aiohttp()
        s = self.start_sluice(upstream=up.port)
        for _ in range(3):
            http(s.port, "GET", "/")
        text = self.admin(s, "GET", "/metrics").body
        cp = subprocess.run([PROMTOOL, "check", "metrics"], input=text, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, timeout=30)
        self.assertEqual((cp.returncode, cp.stdout), (0, b""), cp.stdout.decode())
        for family in ("sluice_downstream_requests_total", "sluice_upstream_requests_total",
                       "sluice_downstream_request_duration_seconds",
                       "sluice_upstream_request_duration_seconds",
                       "sluice_downstream_connections_active",
                       "sluice_downstream_connections_total",
                       "sluice_upstream_connections_created_total",
                       "sluice_upstream_pool_idle_connections",
                       "sluice_upstream_pool_active_connections",
                       "sluice_upstream_request_retries_total",
                       "sluice_upstream_connect_failures_total", "sluice_upstream_timeouts_total",
                       "sluice_websocket_sessions_active", "sluice_websocket_sessions_closed_total",
                       "sluice_draining", "sluice_drain_duration_seconds",
                       "sluice_drain_forced_closes_total", "sluice_config_reloads_total",
                       "sluice_build_info", "process_resident_memory_bytes", "process_open_fds",
                       "process_cpu_seconds_total", "sluice_access_log_dropped_total"):
            self.assertIn(b"# TYPE " + family.encode() + b" ", text, family)

    def test_request_counters_histograms_and_pool_gauges_move(self):
        up = self.start_aiohttp()
        s = self.start_sluice(upstream=up.port, workers=2)
        c = RawClient(s.port)
        for _ in range(5):
            c.send(request_bytes("GET", "/"))
            self.assertEqual(c.read_response().status, 200)
        for _ in range(2):
            c.send(request_bytes("GET", "/status/503"))
            self.assertEqual(c.read_response().status, 503)
        c.send(request_bytes("GET", "/status/404"))
        c.read_response()
        m = self.metrics(s)
        v = lambda name, **kw: self.value(m, name, **kw)
        self.assertEqual(v("sluice_downstream_requests_total", listener="ingress", code="2xx"), 5)
        self.assertEqual(v("sluice_downstream_requests_total", listener="ingress", code="5xx"), 2)
        self.assertEqual(v("sluice_downstream_requests_total", listener="ingress", code="4xx"), 1)
        self.assertEqual(v("sluice_upstream_requests_total", cluster="app", code="2xx"), 5)
        self.assertEqual(v("sluice_upstream_requests_total", cluster="app", code="5xx"), 2)
        self.assertEqual(v("sluice_downstream_request_duration_seconds_count", listener="ingress"),
                         8)
        self.assertEqual(v("sluice_downstream_request_duration_seconds_bucket", listener="ingress",
                           le="+Inf"), 8)
        self.assertEqual(v("sluice_upstream_request_duration_seconds_count", cluster="app"), 8)
        self.assertGreater(v("sluice_downstream_request_duration_seconds_sum", listener="ingress"), 0)
        self.assertEqual(v("sluice_downstream_connections_active", listener="ingress"), 1)
        self.assertEqual(v("sluice_downstream_connections_total", listener="ingress",
                           protocol="http1"), 1)
        self.assertEqual(v("sluice_downstream_connections_total", listener="ingress",
                           protocol="http2"), 0)
        self.assertEqual(v("sluice_upstream_connections_created_total", cluster="app"), 1)
        self.assertEqual(v("sluice_upstream_pool_idle_connections", cluster="app"), 1)
        self.assertEqual(v("sluice_upstream_pool_active_connections", cluster="app"), 0)
        # A slow request in flight shows as an active upstream connection.
        c.send(request_bytes("GET", "/sleep/800"))
        m = self.wait_value(s, lambda m: m.get(("sluice_upstream_pool_active_connections",
                                                frozenset({"cluster": "app"}.items()))) == 1)
        self.assertEqual(self.value(m, "sluice_upstream_pool_active_connections", cluster="app"),
                         1)
        self.assertEqual(self.value(m, "sluice_upstream_pool_idle_connections", cluster="app"), 0)
        c.read_response()
        c.close()
        m = self.wait_value(s, lambda m: m.get(("sluice_downstream_connections_active",
                                                frozenset({"listener": "ingress"}.items()))) == 0)
        self.assertEqual(self.value(m, "sluice_downstream_connections_active", listener="ingress"),
                         0)

    def test_retries_connect_failures_ejections_and_timeouts_are_counted(self):
        live = self.start_aiohttp()
        dead = reserve_port()
        cfg = self.write_config(
            "admin: {address: 127.0.0.1:0}\nworkers: 1\ndrain: {delay: 0s}\n"
            "listeners:\n  - {name: ingress, address: 127.0.0.1:0, cluster: app}\n"
            "clusters:\n  - name: app\n    endpoints: [127.0.0.1:%d, 127.0.0.1:%d]\n"
            "    response_timeout: 300ms\n"
            "    outlier: {consecutive_failures: 2, base_ejection: 30s}\n" % (dead, live.port))
        s = self.start_sluice("--config", cfg, defaults=False, workers=None)
        for _ in range(6):
            self.assertEqual(http(s.port, "GET", "/").status, 200)
        self.assertEqual(http(s.port, "GET", "/sleep/2000").status, 504)
        m = self.metrics(s)
        self.assertEqual(self.value(m, "sluice_upstream_connect_failures_total", cluster="app"), 2)
        self.assertEqual(self.value(m, "sluice_upstream_request_retries_total", cluster="app",
                                    reason="connect_failed"), 2)
        self.assertEqual(self.value(m, "sluice_upstream_ejections_total", cluster="app"), 1)
        self.assertEqual(self.value(m, "sluice_upstream_timeouts_total", cluster="app"), 1)
        self.assertEqual(self.value(m, "sluice_downstream_requests_total", listener="ingress",
                                    code="5xx"), 1)
        # The same figures in /stats.
        st = json.loads(self.admin(s, "GET", "/stats").body)
        app = [c for c in st["clusters"] if c["name"] == "app"][0]
        self.assertEqual((app["connect_failures"], app["retries"], app["ejections"],
                          app["timeouts"]), (2, 2, 1, 1))
        self.assertEqual(app["requests"]["2xx"], 6)
        self.assertEqual(app["endpoints"], ["127.0.0.1:%d" % dead, "127.0.0.1:%d" % live.port])
        ing = st["listeners"][0]
        self.assertEqual(ing["requests"]["2xx"], 6)
        self.assertEqual(ing["latency"]["count"], 7)
        self.assertFalse(st["draining"])

    def test_websocket_closes_are_counted_by_reason(self):
        up = self._track(WsUpstream())
        s = self.start_sluice("--ws-close-spread", "0s", "--drain-delay", "0s",
                              upstream=up.port, defaults=True)
        # A client that closes.
        c, _ = raw_ws_handshake(s.port)
        m = self.wait_value(s, lambda m: m.get(("sluice_websocket_sessions_active",
                                                frozenset({"listener": "ingress"}.items()))) == 1)
        self.assertEqual(self.value(m, "sluice_websocket_sessions_active", listener="ingress"), 1)
        c.close()  # the client goes away (its TCP connection ends first)
        m = self.wait_value(s, lambda m: m.get(("sluice_websocket_sessions_closed_total",
                                                frozenset({"listener": "ingress",
                                                           "reason": "client"}.items()))) == 1)
        self.assertEqual(self.value(m, "sluice_websocket_sessions_closed_total",
                                    listener="ingress", reason="client"), 1)
        self.assertEqual(self.value(m, "sluice_websocket_sessions_active", listener="ingress"), 0)
        # Clients that start the close handshake ended their sessions, even though the server,
        # as servers do, closes its TCP connection first once it has answered.
        for _ in range(5):
            c, _ = raw_ws_handshake(s.port)
            c.send(ws_frame(0x8, close_payload(1000)))
            self.assertEqual(read_ws_frame(c)[1], 0x8)
            c.read_until_close()
            c.close()
        key = ("sluice_websocket_sessions_closed_total",
               frozenset({"listener": "ingress", "reason": "client"}.items()))
        m = self.wait_value(s, lambda m: m.get(key) == 6)
        self.assertEqual(m.get(key), 6)
        self.assertEqual(self.value(m, "sluice_websocket_sessions_closed_total",
                                    listener="ingress", reason="upstream"), 0)
        # A session closed by the drain with 1001; the client answers the close.
        c, _ = raw_ws_handshake(s.port)
        time.sleep(0.1)
        r = self.admin(s, "POST", "/drain")
        self.assertEqual(r.status, 202)
        m = self.metrics(s)
        self.assertEqual(self.value(m, "sluice_draining"), 1)
        _, op, _, payload = read_ws_frame(c)
        self.assertEqual((op, payload[:2]), (0x8, b"\x03\xe9"))
        c.send(ws_frame(0x8, close_payload(1001)))
        # An admin-API drain leaves sluice running until its own signal (or POST /resume).
        s.wait_line("drain done", timeout=30)
        s.proc.send_signal(signal.SIGTERM)
        s.proc.wait(timeout=30)
        self.procs.remove(s)
        self.assertEqual(s.proc.returncode, 0)

    def test_reloads_are_counted_by_result(self):
        up = self.start_aiohttp()
        good = ("admin: {address: 127.0.0.1:0}\nworkers: 1\ndrain: {delay: 0s}\n"
                "listeners:\n  - {name: ingress, address: 127.0.0.1:0, cluster: app}\n"
                "clusters:\n  - {name: app, endpoints: [127.0.0.1:%d]}\n" % up.port)
        cfg = self.write_config(good)
        s = self.start_sluice("--config", cfg, defaults=False, workers=None)
        self.assertEqual(self.admin(s, "POST", "/reload").status, 200)
        with open(cfg, "w") as f:
            f.write(good.replace("cluster: app", "cluster: nope"))
        self.assertEqual(self.admin(s, "POST", "/reload").status, 400)
        m = self.metrics(s)
        self.assertEqual(self.value(m, "sluice_config_reloads_total", result="success"), 1)
        self.assertEqual(self.value(m, "sluice_config_reloads_total", result="failure"), 1)

    # ---- health, readiness, config ------------------------------------------------------------

    def test_readiness_follows_the_app_but_never_an_egress_cluster(self):
        app = self.start_aiohttp()
        app_port = app.port
        dead_api = reserve_port()
        cfg = self.write_config(
            "admin: {address: 127.0.0.1:0}\nworkers: 1\ndrain: {delay: 0s}\n"
            "listeners:\n  - {name: ingress, address: 127.0.0.1:0, cluster: app}\n"
            "  - {name: egress, address: 127.0.0.1:0, cluster: api, drain: false}\n"
            "clusters:\n  - {name: app, endpoints: [127.0.0.1:%d], readiness: true}\n"
            "  - {name: api, endpoints: [127.0.0.1:%d]}\n" % (app_port, dead_api))
        s = self.start_sluice("--config", cfg, defaults=False, workers=None)
        deadline = time.monotonic() + 30
        while self.admin(s, "GET", "/readyz").status != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(self.admin(s, "GET", "/readyz").status, 200)  # api is down: no matter
        self.assertEqual(self.admin(s, "GET", "/healthz").status, 200)
        app.kill()
        self.procs.remove(app)
        deadline = time.monotonic() + 30
        r = self.admin(s, "GET", "/readyz")
        while r.status != 503 and time.monotonic() < deadline:
            time.sleep(0.05)
            r = self.admin(s, "GET", "/readyz")
        self.assertEqual(r.status, 503)
        self.assertIn(b"cluster app: 127.0.0.1:%d" % app_port, r.body)
        self.assertEqual(self.admin(s, "GET", "/healthz").status, 200)  # alive, just not ready
        back = self.start_aiohttp(port=app_port)
        deadline = time.monotonic() + 30
        while self.admin(s, "GET", "/readyz").status != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(self.admin(s, "GET", "/readyz").status, 200)
        st = json.loads(self.admin(s, "GET", "/stats").body)
        self.assertEqual(st["readiness"], {"app": True})
        del back

    def test_readyz_fails_while_draining_and_unknown_paths_are_404(self):
        up = self.start_aiohttp()
        s = self.start_sluice("--drain-delay", "2s", upstream=up.port)
        self.assertEqual(self.admin(s, "GET", "/readyz").status, 200)
        self.assertEqual(self.admin(s, "GET", "/nope").status, 404)
        # A known path with a method it does not take: 405 naming the one it takes.
        r = self.admin(s, "POST", "/metrics")
        self.assertEqual((r.status, r.body), (405, b"use GET\n"))
        self.admin(s, "POST", "/drain")
        r = self.admin(s, "GET", "/readyz")
        self.assertEqual((r.status, r.body), (503, b"draining\n"))
        self.assertEqual(self.admin(s, "GET", "/healthz").status, 200)
        time.sleep(0.1)
        m = self.metrics(s)
        self.assertEqual(self.value(m, "sluice_draining"), 1)
        self.assertGreater(self.value(m, "sluice_drain_duration_seconds"), 0)
        # The drain ends on its own; sluice then waits for its signal (or POST /resume).
        s.wait_line("drain done; waiting for SIGTERM", timeout=10)
        s.proc.send_signal(signal.SIGTERM)
        self.assertEqual(s.proc.wait(timeout=10), 0)
        self.procs.remove(s)

    def test_config_endpoint_shows_the_effective_config_without_the_token(self):
        up = self.start_aiohttp()
        d = self.make_tmpdir()
        token = os.path.join(d, "token")
        with open(token, "w") as f:
            f.write("s3cret-token-value\n")
        s = self.start_sluice("--admin-token-file", token, "--pool-max-idle", "7",
                              upstream=up.port)
        r = self.admin(s, "GET", "/config")
        self.assertEqual(r.status, 200)
        self.assertNotIn(b"s3cret", r.body)
        cfg = r.json()
        self.assertEqual(cfg["clusters"][0]["pool"]["max_idle"], 7)
        self.assertEqual(cfg["clusters"][0]["endpoints"], ["127.0.0.1:%d" % up.port])
        self.assertEqual(cfg["admin"]["token_file"], token)

    # ---- access log -------------------------------------------------------------------------

    def access_lines(self, s, n, timeout=30.0):
        deadline = time.monotonic() + timeout
        while True:
            lines = [l for t, l in list(s.lines) if t == "out"]
            if len(lines) >= n or time.monotonic() > deadline:
                return lines
            time.sleep(0.02)

    def test_access_log_json_has_every_field(self):
        up = self.start_aiohttp()
        cfg = self.write_config(
            "admin: {address: 127.0.0.1:0}\nworkers: 1\ndrain: {delay: 0s}\n"
            "log: {format: json, access: true}\n"
            "listeners:\n  - {name: ingress, address: 127.0.0.1:0, cluster: app}\n"
            "clusters:\n  - {name: app, endpoints: [127.0.0.1:%d]}\n" % up.port)
        s = self.start_sluice("--config", cfg, defaults=False, workers=None)
        c = RawClient(s.port)
        c.send(request_bytes("POST", "/echo?a=\"b\"", [("X-Request-Id", "req-42")], b"x" * 100))
        r1 = c.read_response()
        c.send(request_bytes("GET", "/status/503", host="Api.Example"))
        c.read_response()
        c.close()
        http(s.port, "GET", "/nowhere", headers=[("Host", "h")])
        lines = self.access_lines(s, 3)
        self.assertEqual(len(lines), 3, lines)
        a, b, nf = [json.loads(l) for l in lines]
        self.assertEqual(set(a), {"time", "listener", "client", "method", "path", "host", "status",
                                  "bytes_in", "bytes_out", "duration_ms", "upstream_duration_ms",
                                  "cluster", "upstream", "reused", "request_id", "protocol",
                                  "reason"})
        self.assertRegex(a["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        self.assertEqual((a["listener"], a["client"], a["method"], a["path"], a["host"]),
                         ("ingress", "127.0.0.1", "POST", '/echo?a="b"', "test.local"))
        self.assertEqual((a["status"], a["bytes_in"], a["cluster"], a["upstream"], a["reused"],
                          a["request_id"]),
                         (200, 100, "app", "127.0.0.1:%d" % up.port, False, "req-42"))
        self.assertEqual((a["protocol"], a["reason"]), ("HTTP/1.1", None))
        self.assertGreater(a["bytes_out"], len(r1.body))  # the body and the head
        self.assertGreater(a["duration_ms"], 0)
        self.assertGreaterEqual(a["duration_ms"], a["upstream_duration_ms"])
        self.assertEqual((b["status"], b["host"], b["reused"]), (503, "api.example", True))
        self.assertRegex(b["request_id"], r"^[0-9a-f]{32}$")  # sluice made one
        self.assertEqual((nf["status"], nf["path"], nf["cluster"], nf["reused"]),
                         (404, "/nowhere", "app", True))
        # Lifecycle lines on stderr are JSON too (after the start-up line).
        errs = [l for l in stderr_lines(s) if l.startswith("{")]
        self.assertTrue(errs)
        for l in errs:
            self.assertEqual(set(json.loads(l)), {"time", "level", "msg"})

    def test_access_log_text_and_off(self):
        up = self.start_aiohttp()
        s = self.start_sluice(upstream=up.port)
        http(s.port, "GET", "/echo")
        line = self.access_lines(s, 1)[0]
        self.assertRegex(line, r'^\S+Z ingress 127\.0\.0\.1 "GET test\.local/echo HTTP/1\.1" 200 in=0 '
                               r'out=\d+ [\d.]+ms upstream=[\d.]+ms app 127\.0\.0\.1:%d new '
                               r'id=[0-9a-f]{32}$' % up.port)
        # Off: nothing at all on stdout. Lines are written by a thread after a flush (every
        # 250 ms, and at exit), so look once sluice has exited and its stdout is closed; the
        # same requests through a sluice with the log on give their three lines that way.
        for access, want in (("true", 3), ("false", 0)):
            t = self.start_sluice("--access-log", access, upstream=up.port)
            for _ in range(3):
                http(t.port, "GET", "/")
            self.assertEqual(t.terminate(timeout=60), 0)
            self.procs.remove(t)
            lines = [l for k, l in list(t.lines) if k == "out"]
            self.assertEqual(len(lines), want, "--access-log %s: %r" % (access, lines))

    def test_access_log_drops_lines_rather_than_blocking_requests(self):
        up = self.start_aiohttp()
        d = self.make_tmpdir()
        fifo = os.path.join(d, "stdout")
        os.mkfifo(fifo)
        # The test holds the FIFO's read end but does not read: stdout fills at 64 KiB, the
        # access log's queue behind it at 4 MiB, and from then on lines are dropped.
        reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        out = os.open(fifo, os.O_WRONLY)
        proc = subprocess.Popen(
            [SLUICE_BIN, "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
             "--workers", "1", "--drain-delay", "0s", "--upstream", "127.0.0.1:%d" % up.port],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.PIPE, env=CLEAN_ENV)
        os.close(out)
        drained = []

        def drain():  # reads stdout again, so that the writer thread can go on
            os.set_blocking(reader, True)
            while True:
                chunk = os.read(reader, 1 << 16)
                if not chunk:
                    break
                drained.append(chunk.count(b"\n"))

        reading = threading.Thread(target=drain, daemon=True)
        n = 2500  # ~7.5 MB of log lines
        try:
            line = proc.stderr.readline().decode()
            m = re.search(LISTEN_RX, line)
            port, admin_port = int(m.group(1)), int(m.group(4))
            # Never blocked: a worker waiting on the full pipe would leave a request unanswered
            # for good, and the client's 10 s read timeout fails it (no bound on the total,
            # which only measures how loaded the machine is).
            c = RawClient(port, timeout=10)
            long_path = "/echo?" + "p" * 3000
            for i in range(n):
                c.send(request_bytes("GET", long_path))
                r = c.read_response(keep_body=False)
                self.assertEqual(r.status, 200, "request %d" % i)
            c.close()
            s = type("S", (), {"admin_port": admin_port})
            dropped = lambda: self.value(self.metrics(s), "sluice_access_log_dropped_total")
            self.assertGreater(dropped(), 0)
            self.assertLess(dropped(), n)
            # Every line is either written (once stdout is read again) or counted as dropped.
            # The worker's last lines are handed over at its next flush, dropped or written
            # depending on when the reading starts: wait for the account to close.
            reading.start()
            wait_until(lambda: sum(drained) + dropped() == n, 30,
                       "every one of %d access log lines written or counted as dropped" % n)
        finally:
            if reading.ident is None:
                reading.start()
            proc.send_signal(signal.SIGTERM)
            rc = proc.wait(timeout=30)
            reading.join(10)
            os.close(reader)
            proc.stderr.close()
        self.assertEqual(rc, 0)


if __name__ == "__main__":
    unittest.main()
