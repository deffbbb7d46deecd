#!/usr/bin/python3
"""Maintenance and read-only mode per listener (issue 17), switched live by the admin API
(POST/GET/DELETE /maintenance), by `sluice maintenance` and by the configuration file, against
aiohttp upstreams: read-only lets GET through and refuses a POST with 503 and Retry-After, lets
a login POST exception through, refuses a new WebSocket upgrade while an established session
keeps echoing; full mode answers a custom body except on configured paths; an HTTP/2 request
is refused the same way; the mode survives a reload (the API's override wins until DELETE or
until the file's maintenance section changes); /stats, /metrics and the access log show it."""
import asyncio
import json
import os
import re
import signal
import subprocess
import time
import unittest

from harness import (CLEAN_ENV, SLUICE_BIN, E2ETestCase, RawClient, curl, http, request_bytes,
                     stderr_lines, wait_until)
from ws_upstream import WsUpstream, ws_connect


def admin(s, method, path, body=None):
    headers = [("Content-Type", "application/json")] if body is not None else []
    r = http(s.admin_port, method, path, headers,
             json.dumps(body).encode() if body is not None else None)
    return r.status, json.loads(r.body) if r.body.startswith(b"{") else r.body


def metric(s, name, labels):
    text = http(s.admin_port, "GET", "/metrics").body.decode()
    m = re.search(r"^%s\{%s\} (\S+)$" % (re.escape(name), re.escape(labels)), text, re.M)
    return float(m.group(1)) if m else None


class MaintenanceTest(E2ETestCase):

    def write(self, path, maintenance):
        text = ("admin: {address: 127.0.0.1:0}\nworkers: 2\ndrain: {delay: 0s, budget: 10s}\n"
                "log: {format: json}\n"
                "listeners:\n  - name: ingress\n    address: 127.0.0.1:0\n"
                "    routes: [{prefix: /ws, cluster: ws}, {prefix: /, cluster: app}]\n"
                "    maintenance:\n%s"
                "clusters:\n  - {name: app, endpoints: [127.0.0.1:%d]}\n"
                "  - {name: ws, endpoints: [127.0.0.1:%d]}\n"
                % (maintenance, self.app.port, self.ws.port))
        with open(path + ".tmp", "w") as f:
            f.write(text)
        os.replace(path + ".tmp", path)

    def start(self, maintenance="      mode: \"off\"\n"):
        self.app = self.start_aiohttp()
        self.ws = self._track(WsUpstream())
        self.path = os.path.join(self.make_tmpdir(), "sluice.yaml")
        self.write(self.path, "      allow_paths: [{prefix: /login, methods: [POST]}, /healthz]\n"
                   + maintenance)
        return self.start_sluice("--config", self.path, defaults=False, workers=None)

    def reload(self, s):
        n = len(stderr_lines(s))
        os.kill(s.pid, signal.SIGHUP)
        wait_until(lambda: any("reload: applied" in l for l in stderr_lines(s)[n:]), 30,
                   "the reload")

    def mode(self, s):
        return admin(s, "GET", "/maintenance")[1]["ingress"]

    def assert_refused(self, r, retry_after, text=b"read-only"):
        self.assertEqual(r.status, 503, r)
        self.assertEqual(r.header("Retry-After"), str(retry_after), r)
        self.assertIn(text, r.body)
        self.assertIsNone(r.header("X-Upstream-Conn"), "the request reached the app")

    def assert_forwarded(self, r, status=200):
        self.assertEqual(r.status, status, r)
        self.assertIsNotNone(r.header("X-Upstream-Conn"), "the request did not reach the app")

    def test_read_only_by_the_api(self):
        s = self.start()
        self.assert_forwarded(http(s.port, "POST", "/echo", body=b"before"))

        async def scenario():
            async with ws_connect("ws://127.0.0.1:%d/ws" % s.port) as session:
                await session.send("before")
                self.assertEqual(await session.recv(), "before")
                status, doc = admin(s, "POST", "/maintenance",
                                    {"mode": "read-only", "retry_after": "90s",
                                     "message": "migrating"})
                self.assertEqual(status, 200, doc)
                self.assertEqual(doc["ingress"]["mode"], "read-only")
                self.assertEqual(doc["ingress"]["source"], "api")
                # A new session is refused; the established one keeps working.
                c = RawClient(s.port)
                c.send(request_bytes("GET", "/ws", [
                    ("Upgrade", "websocket"), ("Connection", "Upgrade"),
                    ("Sec-WebSocket-Version", "13"),
                    ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")]))
                r = c.read_response()
                c.close()
                self.assertEqual((r.status, r.header("Retry-After")), (503, "90"), r)
                self.assertIn(b"WebSocket", r.body)
                await session.send("during")
                self.assertEqual(await session.recv(), "during")
        asyncio.run(asyncio.wait_for(scenario(), 60))

        self.assert_forwarded(http(s.port, "GET", "/echo"))
        self.assert_forwarded(http(s.port, "HEAD", "/echo"))
        self.assert_forwarded(http(s.port, "OPTIONS", "/echo"))
        r = http(s.port, "POST", "/echo", body=b"x" * 1000)
        self.assert_refused(r, 90)
        self.assertIn(b"migrating", r.body)
        self.assert_refused(http(s.port, "DELETE", "/echo"), 90)
        # The login POST is an exception (aiohttp has no /login: its 404 shows it got there).
        self.assert_forwarded(http(s.port, "POST", "/login", body=b"user=a"), 404)
        self.assert_refused(http(s.port, "PUT", "/login", body=b"user=a"), 90)
        # HTTP/2 streams go through the same check. (Without a request body: a response that
        # ends before the body is read is followed by RST_STREAM(NO_ERROR), RFC 9113 §8.1, and
        # curl 7.88 then sometimes reports error 92 for a body it had not sent yet.)
        cp = curl("--http2-prior-knowledge", "-i", "-X", "POST",
                  "http://127.0.0.1:%d/echo" % s.port)
        out = cp.stdout.decode("latin-1")
        self.assertTrue(out.startswith("HTTP/2 503"), (out, cp.stderr))
        self.assertIn("retry-after: 90", out)
        cp = curl("--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_code}",
                  "http://127.0.0.1:%d/echo" % s.port)
        self.assertEqual(cp.stdout, b"200")
        # Seen on /stats, /metrics and in the access log.
        st = json.loads(http(s.admin_port, "GET", "/stats").body)
        ingress = [l for l in st["listeners"] if l["name"] == "ingress"][0]
        self.assertEqual(ingress["maintenance_mode"], "read-only")
        self.assertEqual(ingress["maintenance_rejected"], 5)
        self.assertEqual(st["maintenance"]["ingress"]["mode"], "read-only")
        self.assertEqual(metric(s, "sluice_maintenance_mode", 'listener="ingress"'), 1)
        self.assertEqual(metric(s, "sluice_maintenance_rejected_total", 'listener="ingress"'), 5)
        s.wait_line(r'"method":\s*"POST".*"reason":\s*"maintenance"', timeout=10, stream="out")
        # Off again: everything passes.
        self.assertEqual(admin(s, "POST", "/maintenance", {"mode": "off"})[0], 200)
        self.assert_forwarded(http(s.port, "POST", "/echo", body=b"after"))
        self.assertEqual(metric(s, "sluice_maintenance_mode", 'listener="ingress"'), 0)

    def test_full_mode_with_a_custom_body_by_the_cli(self):
        s = self.start("      body: '{\"status\": \"maintenance\", \"back\": \"soon\"}'\n"
                       "      retry_after: 30s\n")

        def cli(*args):
            return subprocess.run([SLUICE_BIN, "maintenance"] + list(args) +
                                  ["--admin", "127.0.0.1:%d" % s.admin_port],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=CLEAN_ENV,
                                  timeout=30)
        cp = cli("on", "--listener", "ingress")
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertEqual(json.loads(cp.stdout)["ingress"]["mode"], "full")
        r = http(s.port, "GET", "/")
        self.assertEqual(r.status, 503, r)
        self.assertEqual(r.header("Retry-After"), "30")
        self.assertEqual(r.header("Content-Type"), "application/json")
        self.assertEqual(json.loads(r.body), {"status": "maintenance", "back": "soon"})
        self.assertEqual(http(s.port, "HEAD", "/").status, 503)
        # The configured exceptions still pass.
        self.assert_forwarded(http(s.port, "GET", "/healthz"), 404)
        self.assert_forwarded(http(s.port, "POST", "/login", body=b"u"), 404)
        cp = cli("read-only", "--retry-after", "5s")
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertEqual(self.mode(s)["retry_after_s"], 5)
        self.assert_forwarded(http(s.port, "GET", "/"))
        self.assertEqual(http(s.port, "POST", "/echo", body=b"x").header("Retry-After"), "5")
        cp = cli("off")
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assert_forwarded(http(s.port, "POST", "/echo", body=b"x"))
        # Errors are reported, with a non-zero exit.
        cp = cli("full", "--listener", "nope")
        self.assertEqual(cp.returncode, 1)
        self.assertIn(b"no listener named 'nope'", cp.stderr)
        self.assertEqual(admin(s, "POST", "/maintenance", {"mode": "sideways"})[0], 400)
        self.assertEqual(admin(s, "POST", "/maintenance", {"mode": "full", "retry_after": "0s"})[0],
                         400)

    def test_the_file_sets_it_and_the_api_override_survives_a_reload(self):
        s = self.start("      mode: read-only\n")
        self.assertEqual(self.mode(s)["source"], "file")
        self.assert_refused(http(s.port, "POST", "/echo", body=b"x"), 120)
        # The API turns it off; a reload of the same file keeps the API's word.
        self.assertEqual(admin(s, "POST", "/maintenance", {"mode": "off"})[0], 200)
        self.assert_forwarded(http(s.port, "POST", "/echo", body=b"x"))
        self.reload(s)
        self.assertEqual(self.mode(s)["mode"], "off")
        self.assert_forwarded(http(s.port, "POST", "/echo", body=b"x"))
        self.assertEqual(admin(s, "POST", "/maintenance", {"mode": "full"})[0], 200)
        self.reload(s)
        self.assertEqual((self.mode(s)["mode"], self.mode(s)["source"]), ("full", "api"))
        self.assertEqual(http(s.port, "GET", "/").status, 503)
        # DELETE: back to the file's mode.
        status, doc = admin(s, "DELETE", "/maintenance")
        self.assertEqual((status, doc["ingress"]["mode"], doc["ingress"]["source"]),
                         (200, "read-only", "file"))
        self.assert_forwarded(http(s.port, "GET", "/"))
        # A changed maintenance section in the file replaces an API override.
        self.assertEqual(admin(s, "POST", "/maintenance", {"mode": "full"})[0], 200)
        self.write(self.path, "      mode: \"off\"\n")
        self.reload(s)
        self.assertEqual((self.mode(s)["mode"], self.mode(s)["source"]), ("off", "file"))
        self.assert_forwarded(http(s.port, "POST", "/echo", body=b"x"))

    def test_check_config_reports_bad_maintenance_keys(self):
        path = os.path.join(self.make_tmpdir(), "bad.yaml")
        with open(path, "w") as f:
            f.write("listeners:\n  - name: ingress\n    cluster: app\n"
                    "    maintenance: {mode: maintenance, retry_after: 0s}\n"
                    "clusters:\n  - name: app\n    endpoints: [127.0.0.1:4000]\n"
                    "    circuit_breaker: {failure_ratio: 2}\n")
        cp = subprocess.run([SLUICE_BIN, "check-config", path], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=CLEAN_ENV, timeout=30)
        err = cp.stderr.decode()
        self.assertEqual(cp.returncode, 1, err)
        self.assertIn("%s:4:25: listeners[ingress].maintenance.mode: invalid value 'maintenance'"
                      % path, err)
        self.assertIn("%s:4:51: listeners[ingress].maintenance.retry_after: must be at least 1s"
                      % path, err)
        self.assertIn("%s:8:38: clusters[app].circuit_breaker.failure_ratio: invalid value '2'"
                      % path, err)


if __name__ == "__main__":
    unittest.main()
