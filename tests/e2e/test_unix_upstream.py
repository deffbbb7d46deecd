#!/usr/bin/python3
"""Unix-domain-socket upstream endpoints (issue #16), end to end: `unix:/path` in --upstream and
in a file, the aiohttp app (upstream_app.py --unix) and the WebSocket app (ws_upstream.py --unix)
on a socket in a temporary directory. Requests and keep-alive reuse, large bodies both ways, a
WebSocket session (the tunnel handover), a missing, stale or forbidden socket (502, logged with
the path and the reason), outlier detection between two sockets, readiness that follows the socket
appearing, TLS over the socket, and the configuration errors.

Run: SLUICE_BIN=/abs/build/sluice /usr/bin/python3 test_unix_upstream.py -v
"""
import asyncio
import hashlib
import json
import os
import signal
import socket
import subprocess
import unittest

from harness import (CLEAN_ENV, SLUICE_BIN, E2ETestCase, MiB, RawClient, curl_status, http,
                     pattern_sha256, request_bytes, stderr_lines, wait_until)
from tls_certs import CertSet
from ws_upstream import WsUpstream, ws_connect


class UnixUpstreamTest(E2ETestCase):

    def socket_path(self, name="app.sock"):
        return os.path.join(self.make_tmpdir(), name)

    def write_config(self, clusters, extra=""):
        path = os.path.join(self.make_tmpdir(), "sluice.yaml")
        with open(path, "w") as f:
            f.write("admin: {address: 127.0.0.1:0}\nworkers: 1\ndrain: {delay: 0s, budget: 10s}\n"
                    "listeners:\n  - {name: ingress, address: 127.0.0.1:0, cluster: app}\n"
                    "clusters:\n" + clusters + extra)
        return path

    def start_with(self, clusters, extra=""):
        return self.start_sluice("--config", self.write_config(clusters, extra), defaults=False,
                                 workers=None)

    def cluster_stats(self, s):
        return http(s.admin_port, "GET", "/stats").json()["clusters"][0]

    def readyz(self, s):
        r = http(s.admin_port, "GET", "/readyz")
        return r.status, r.body.decode()

    # ---- requests ----------------------------------------------------------------------------

    def test_requests_reuse_one_connection_and_show_the_path(self):
        path = self.socket_path()
        up = self.start_aiohttp(unix=path)
        # A pool idle timeout no stall of a busy machine reaches: one connection, counted.
        s = self.start_sluice("--upstream", "unix:" + path, "--pool-idle-timeout", "60s")
        self.assertEqual(s.upstream, "unix:" + path)  # the start-up line
        c = RawClient(s.port)
        conns = set()
        for i in range(200):
            c.send(request_bytes("GET", "/conn"))
            r = c.read_response()
            self.assertEqual(r.status, 200, "request %d" % i)
            conns.add(r.json()["conn"])
        c.close()
        for i in range(50):  # new client connections share the pooled upstream one
            r = http(s.port, "POST", "/echo", body=b"x" * 1000)
            self.assertEqual((r.status, r.json()["body_len"]), (200, 1000), "request %d" % i)
            conns.add(r.json()["conn"])
        # An HTTP/2 client's request goes the same way (h2c prior knowledge, curl).
        code, body, rc = curl_status(s.url("/conn"), "--http2-prior-knowledge")
        self.assertEqual((code, rc), (200, 0), body)
        conns.add(json.loads(body)["conn"])
        self.assertEqual(len(conns), 1, conns)
        st = self.cluster_stats(s)
        self.assertEqual(st["endpoints"], ["unix:" + path])
        self.assertEqual(st["connections_created"], 1, st)
        self.assertEqual(st["requests"].get("2xx"), 251, st)
        self.assertEqual(up.stats()["accepted"], 1 + 1)  # sluice's, and this /stats request's
        # The configuration as sluice shows it.
        cfg = http(s.admin_port, "GET", "/config").json()
        self.assertEqual(cfg["clusters"][0]["endpoints"], ["unix:" + path])

    def test_http10_request_gets_host_localhost_and_access_log_names_the_socket(self):
        path = self.socket_path()
        self.start_aiohttp(unix=path)
        cfg = self.write_config("  - {name: app, endpoints: [\"unix:%s\"]}\n" % path,
                                "log: {format: json, access: true}\n")
        s = self.start_sluice("--config", cfg, defaults=False, workers=None)
        c = RawClient(s.port)
        c.send(b"GET /echo HTTP/1.0\r\n\r\n")  # no Host: sluice adds one for the app
        r = c.read_response()
        c.close()
        self.assertEqual(r.status, 200, r)
        hosts = [v for k, v in r.json()["headers"] if k.lower() == "host"]
        self.assertEqual(hosts, ["localhost"])
        # A request with a Host keeps it.
        r = http(s.port, "GET", "/echo", headers=[("Host", "api.example")])
        self.assertEqual([v for k, v in r.json()["headers"] if k.lower() == "host"],
                         ["api.example"])
        lines = wait_until(lambda: (lambda l: l if len(l) >= 2 else None)(
            [l for t, l in list(s.lines) if t == "out"]), 30, "two access log lines")
        for line in lines:
            e = json.loads(line)
            self.assertEqual((e["status"], e["cluster"], e["upstream"]),
                             (200, "app", "unix:" + path), e)

    def test_large_download_and_upload(self):
        path = self.socket_path()
        self.start_aiohttp(unix=path)
        s = self.start_sluice("--upstream", "unix:" + path, "--pool-idle-timeout", "60s")
        n = 64 * MiB + 3
        c = RawClient(s.port, timeout=60)
        h = hashlib.sha256()
        c.send(request_bytes("GET", "/bytes/%d" % n))
        r = c.read_response(keep_body=False, on_data=h.update)
        self.assertEqual((r.status, r.body_len), (200, n))
        self.assertEqual(h.hexdigest(), pattern_sha256(n))
        # Chunked from the app, on the same connections.
        h = hashlib.sha256()
        c.send(request_bytes("GET", "/bytes/%d?chunked=1" % (8 * MiB)))
        r = c.read_response(keep_body=False, on_data=h.update)
        self.assertEqual((r.status, r.framing, r.body_len), (200, "chunked", 8 * MiB))
        self.assertEqual(h.hexdigest(), pattern_sha256(8 * MiB))
        # Upload: 32 MiB that the app reads slowly (backpressure through the socket).
        body = os.urandom(MiB) * 32
        c.send(request_bytes("POST", "/discard?ms_per_mib=5", body=body))
        r = c.read_response()
        c.close()
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json(), {"received": len(body),
                                    "sha256": hashlib.sha256(body).hexdigest()})
        self.assertEqual(self.cluster_stats(s)["connections_created"], 1)
        self.assertMemoryBounded(s)

    # ---- WebSocket: the upstream socket handed over to a tunnel ---------------------------

    def test_websocket_session_through_the_socket(self):
        path = self.socket_path("ws.sock")
        ws_up = self._track(WsUpstream(unix=path))
        s = self.start_sluice("--upstream", "unix:" + path)

        async def session():
            async with ws_connect("ws://127.0.0.1:%d/ws" % s.port) as ws:
                await ws.send("hello over a unix socket")
                self.assertEqual(await ws.recv(), "hello over a unix socket")
                big = os.urandom(MiB)
                await ws.send(big)
                self.assertEqual(await ws.recv(), big)
                listener = http(s.admin_port, "GET", "/stats").json()["listeners"][0]
                self.assertEqual(listener["websocket_sessions_active"], 1)
                await ws.close(1000)
                self.assertEqual(ws.close_code, 1000)

        asyncio.run(session())
        st = ws_up.wait_stats(lambda st: st["closed"] == 1)
        self.assertEqual((st["opened"], st["closed"], st["close_codes"]),
                         (1, 1, {"1000": 1}), st)
        # Plain requests still work after the handover took the first connection away.
        r = http(s.port, "GET", "/")
        self.assertEqual((r.status, r.body), (200, b"hello from ws_upstream\n"))
        wait_until(lambda: http(s.admin_port, "GET", "/stats").json()["listeners"][0]
                   ["websocket_sessions_active"] == 0, 30, "the session is gone from /stats")

    def test_reload_moves_the_cluster_from_tcp_to_the_socket(self):
        tcp_app = self.start_aiohttp(name="tcp")
        path = self.socket_path()
        self.start_aiohttp(unix=path, name="unix")
        cfg = self.write_config("  - {name: app, endpoints: [127.0.0.1:%d]}\n" % tcp_app.port)
        s = self.start_sluice("--config", cfg, defaults=False, workers=None)
        self.assertEqual(http(s.port, "GET", "/").header("X-Upstream-Name"), "tcp")
        with open(cfg + ".tmp", "w") as f:
            f.write(open(cfg).read().replace("127.0.0.1:%d" % tcp_app.port, "unix:" + path))
        os.replace(cfg + ".tmp", cfg)
        before = len(stderr_lines(s))
        os.kill(s.pid, signal.SIGHUP)
        wait_until(lambda: any("reload: applied" in l for l in stderr_lines(s)[before:]), 30,
                   "the reload applied")
        wait_until(lambda: http(s.port, "GET", "/").header("X-Upstream-Name") == "unix", 30,
                   "requests reach the app on the socket")
        st = self.cluster_stats(s)
        self.assertEqual(st["endpoints"], ["unix:" + path])

    # ---- failures ----------------------------------------------------------------------------

    def test_missing_then_stale_socket_is_502_with_the_reason_logged(self):
        path = self.socket_path()
        s = self.start_sluice("--upstream", "unix:" + path)
        r = http(s.port, "GET", "/")
        self.assertEqual(r.status, 502, r)
        self.assertIn(b"upstream connect failed", r.body)
        s.wait_line(r"upstream unix:%s: connect failed: no such file or directory" % path,
                    timeout=30, stream="err")
        # A socket file nobody listens on (the app died and left it): refused. Failures are
        # logged once a second at most, so ask until a line with the new reason shows.
        stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(stale.close)
        stale.bind(path)

        def refused_logged():
            self.assertEqual(http(s.port, "GET", "/").status, 502)
            return "upstream unix:%s: connect failed: connection refused" % path in s.text()
        wait_until(refused_logged, 30, "a 'connection refused' line", interval=0.2)
        st = self.cluster_stats(s)
        self.assertGreaterEqual(st["connect_failures"], 2, st)
        self.assertEqual(st["connections_created"], 0, st)
        # The app starts on that path (replacing the stale file): served again.
        stale.close()
        self.start_aiohttp(unix=path)
        wait_until(lambda: http(s.port, "GET", "/").status == 200, 30, "a 200 once the app is up")

    def test_socket_sluice_may_not_open_is_502_permission_denied(self):
        # EACCES, the socket permissions a shared emptyDir can get wrong. connect(2) needs write
        # permission on the socket file: a non-root sluice meets a socket of mode 0. Root ignores
        # modes, so as root sluice runs as nobody in front of a socket in a directory only root
        # may enter (mkdtemp makes it 0700).
        path = self.socket_path()
        self.start_aiohttp(unix=path)
        if os.geteuid() == 0:
            s = self.start_sluice("--upstream", "unix:" + path,
                                  wrapper=["setpriv", "--reuid=65534", "--regid=65534",
                                           "--clear-groups"])
        else:
            os.chmod(path, 0)
            s = self.start_sluice("--upstream", "unix:" + path)
        r = http(s.port, "GET", "/")
        self.assertEqual(r.status, 502, r)
        s.wait_line(r"upstream unix:%s: connect failed: permission denied" % path, timeout=30,
                    stream="err")

    def test_outlier_detection_between_two_sockets(self):
        live = self.socket_path("live.sock")
        dead = self.socket_path("dead.sock")
        self.start_aiohttp(unix=live, name="live")
        s = self.start_with("  - name: app\n    endpoints: [unix:%s, unix:%s]\n"
                            "    outlier: {consecutive_failures: 2, base_ejection: 30s}\n"
                            % (dead, live))
        for i in range(30):
            r = http(s.port, "GET", "/")
            self.assertEqual((r.status, r.header("X-Upstream-Name")), (200, "live"),
                             "request %d" % i)
        s.wait_line(r"upstream unix:%s: ejected for 30s after 2 connect failures" % dead,
                    timeout=30, stream="err")
        st = self.cluster_stats(s)
        self.assertEqual((st["connect_failures"], st["ejections"]), (2, 1), st)

    def test_readiness_follows_the_socket_appearing(self):
        path = self.socket_path()
        s = self.start_with("  - {name: app, endpoints: [\"unix:%s\"], readiness: true}\n" % path)
        status, body = wait_until(
            lambda: (lambda r: r if "no such file" in r[1] else None)(self.readyz(s)), 30,
            "/readyz naming the missing socket")
        self.assertEqual(status, 503)
        self.assertIn("unix:%s" % path, body)
        self.start_aiohttp(unix=path)
        wait_until(lambda: self.readyz(s)[0] == 200, 30, "/readyz 200 once the socket listens")
        self.assertEqual(http(s.port, "GET", "/").status, 200)

    # ---- TLS over the socket -----------------------------------------------------------------

    def test_tls_over_the_socket_with_sni_from_the_config(self):
        certs = CertSet.create()
        self.addCleanup(certs.cleanup)
        cert, key = certs.pair("localhost")
        path = self.socket_path()
        self.start_aiohttp(unix=path, args=["--tls-cert", cert, "--tls-key", key])
        s = self.start_with(
            "  - name: app\n    endpoints: [\"unix:%s\"]\n    pool: {idle_timeout: 60s}\n"
            "    tls: {ca: %s, sni: localhost}\n" % (path, certs.path("ca")))
        for _ in range(3):
            r = http(s.port, "GET", "/echo")
            self.assertEqual(r.status, 200, r)
            tls = r.json()["tls"]
            self.assertEqual(tls["sni"], "localhost")
        st = self.cluster_stats(s)
        self.assertEqual(st["connections_created"], 1, st)
        self.assertEqual(st["tls_handshakes"]["full"], 1, st)

        # A name the certificate does not carry: verification fails, 502.
        other = self.socket_path("other.sock")
        self.start_aiohttp(unix=other, args=["--tls-cert", cert, "--tls-key", key])
        t = self.start_with(
            "  - name: app\n    endpoints: [\"unix:%s\"]\n"
            "    tls: {ca: %s, sni: a.test}\n" % (other, certs.path("ca")))
        r = http(t.port, "GET", "/echo")
        self.assertEqual(r.status, 502, r)
        self.assertIn(b"upstream TLS handshake failed", r.body)

    # ---- configuration errors ------------------------------------------------------------------

    def test_bad_paths_are_refused_at_start(self):
        for value, why in (("unix:app.sock", "the Unix socket path must be absolute"),
                           ("unix:", "needs a path after 'unix:'"),
                           ("unix:/" + "d" * 120, "at most 107 fit in a socket address"),
                           ("unix:/run/a.sock,127.0.0.1:4000",
                            "either all Unix sockets or all HOST:PORT")):
            cp = subprocess.run([SLUICE_BIN, "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
                                 "--upstream", value], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=CLEAN_ENV, timeout=30)
            err = cp.stderr.decode()
            self.assertEqual(cp.returncode, 1, err)
            self.assertIn("--upstream", err)
            self.assertIn(why, err)


if __name__ == "__main__":
    unittest.main()
