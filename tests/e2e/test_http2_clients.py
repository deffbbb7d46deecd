#!/usr/bin/python3
"""HTTP/2 from real clients (issue #15) and what the operator sees of it: trailers end to end,
Node's http2 module and headless Chromium, the access log's protocol, the connection metrics
split by protocol, /stats.

One sluice per test, on a configuration with two clusters: `/trailers` and `/upload` go to
fault_upstream.py in `ok` mode (a chunked response with trailers at /trailers, and a record of
every request's raw bytes: request trailers can be checked as the app got them), everything else
to the aiohttp app (echo with digests, bytes). Over h2c (prior knowledge) and TLS (ALPN h2).

- Trailers: an HTTP/1.1 app's chunked trailer section reaches an HTTP/2 client as a trailing
  HEADERS frame (python3-h2, Node, curl), field names lower-cased; a client's trailing HEADERS
  reach the app as the chunked body's trailer section (python3-h2, Node).
- Node's http2 module (tests/e2e/h2_node_client.js, no npm package), h2c and TLS: concurrent
  streams, an upload's digest, trailers both ways.
- Chromium over TLS: a page and its script load over HTTP/2 (the access log's protocol says so
  for both), and the script ran (the DOM it wrote).
- curl --http2 (ALPN) and --http2-prior-knowledge, nghttp: access log protocol "HTTP/2",
  sluice_downstream_connections_total{protocol="http2"}, /stats' HTTP/2 figures.

Node (/usr/bin/node) and Chromium (/usr/bin/chromium) come from `make deps` (Debian packages
nodejs and chromium); a missing one fails the test, never skips it.

Run: SLUICE_BIN=/abs/build/sluice /usr/bin/python3 test_http2_clients.py -v
"""
import hashlib
import json
import os
import re
import socket
import subprocess
import threading
import time
import unittest
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import h2.config
import h2.connection
import h2.events

from harness import CLEAN_ENV, HERE, LOOPBACK, E2ETestCase, curl, http, wait_until
from tls_certs import CertSet

NODE = "/usr/bin/node"
CHROMIUM = "/usr/bin/chromium"
NGHTTP = "/usr/bin/nghttp"
CERTS = None


def setUpModule():
    global CERTS
    CERTS = CertSet.create()


def tearDownModule():
    if CERTS is not None:
        CERTS.cleanup()


def node_pattern(n):
    """h2_node_client.js's upload body: byte k is k mod 251."""
    return bytes(k % 251 for k in range(n))


class H2(object):
    """A python3-h2 client on one connection (h2c), read until a stream has ended."""

    def __init__(self, port, timeout=30.0):
        self.sock = socket.create_connection((LOOPBACK, port), timeout=timeout)
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=True, header_encoding="utf-8"))
        self.conn.initiate_connection()
        self.sock.sendall(self.conn.data_to_send())
        self.headers, self.trailers, self.bodies, self.ended = {}, {}, {}, set()
        self.reset = {}

    def request(self, method, path, body=None, trailers=None, headers=()):
        sid = self.conn.get_next_available_stream_id()
        h = [(":method", method), (":scheme", "http"), (":authority", "app.test"),
             (":path", path)] + list(headers)
        self.conn.send_headers(sid, h, end_stream=body is None and trailers is None)
        self.bodies[sid] = bytearray()
        if body:
            self.conn.send_data(sid, body)  # small: within the first window
        if trailers:
            self.conn.send_headers(sid, trailers, end_stream=True)
        elif body is not None:
            self.conn.end_stream(sid)
        self.sock.sendall(self.conn.data_to_send())
        return sid

    def wait_ended(self, sid, timeout=30.0):
        deadline = time.monotonic() + timeout
        while sid not in self.ended and sid not in self.reset:
            if time.monotonic() > deadline:
                raise AssertionError("stream %d did not end" % sid)
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("sluice closed the connection")
            for ev in self.conn.receive_data(data):
                if isinstance(ev, h2.events.ResponseReceived):
                    self.headers[ev.stream_id] = dict(ev.headers)
                elif isinstance(ev, h2.events.TrailersReceived):
                    self.trailers[ev.stream_id] = list(ev.headers)
                elif isinstance(ev, h2.events.DataReceived):
                    self.bodies[ev.stream_id].extend(ev.data)
                    self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, h2.events.StreamEnded):
                    self.ended.add(ev.stream_id)
                elif isinstance(ev, h2.events.StreamReset):
                    self.reset[ev.stream_id] = ev.error_code
            self.sock.sendall(self.conn.data_to_send())
        if sid in self.reset:
            raise AssertionError("stream %d reset (%r)" % (sid, self.reset[sid]))

    def close(self):
        try:
            self.conn.close_connection()
            self.sock.sendall(self.conn.data_to_send())
        except OSError:
            pass
        self.sock.close()


PAGE = (b"<!doctype html><html><head><title>h2 page</title>"
        b"<script src=\"/files/page.js\"></script></head>"
        b"<body><p id=\"out\">script did not run</p></body></html>\n")
SCRIPT = (b"document.addEventListener('DOMContentLoaded', function () {\n"
          b"  document.getElementById('out').textContent = 'script ran';\n});\n")


class PageServer(object):
    """A small HTTP/1.1 app with a page and its script (the types a browser needs), in a
    thread of the test."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            body, ctype = {"/files/page.html": (PAGE, "text/html; charset=utf-8"),
                           "/files/page.js": (SCRIPT, "text/javascript")}.get(
                               self.path, (b"not here\n", "text/plain"))
            self.send_response(200 if ctype != "text/plain" else 404)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    def __init__(self):
        self.server = ThreadingHTTPServer((LOOPBACK, 0), self.Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class Http2ClientsTest(E2ETestCase):

    def start(self, tls=False):
        """sluice with the two clusters (see the module's doc), JSON access log."""
        self.app = self.start_aiohttp()
        self.fault = self.start_fault("ok")
        tls_block = ""
        if tls:
            cert, key = CERTS.pair("localhost")
            tls_block = "    tls: {cert: %s, key: %s}\n" % (json.dumps(cert), json.dumps(key))
        text = ("admin: {address: 127.0.0.1:0}\nworkers: 1\ndrain: {delay: 0s, budget: 10s}\n"
                "log: {format: json, access: true}\n"
                "listeners:\n  - name: ingress\n    address: 127.0.0.1:0\n%s"
                "    routes:\n      - {prefix: /trailers, cluster: fault}\n"
                "      - {prefix: /upload, cluster: fault}\n      - {cluster: app}\n"
                "clusters:\n  - {name: app, endpoints: [127.0.0.1:%d]}\n"
                "  - {name: fault, endpoints: [127.0.0.1:%d]}\n"
                % (tls_block, self.app.port, self.fault.port))
        path = os.path.join(self.make_tmpdir(), "sluice.yaml")
        with open(path, "w") as f:
            f.write(text)
        s = self.start_sluice("--config", path, defaults=False, workers=None)
        s.base = "%s://127.0.0.1:%d" % ("https" if tls else "http", s.port)
        return s

    def access(self, s, path, n=1, timeout=30.0):
        """The access log lines (JSON) for `path`, once there are n of them."""
        def lines():
            out = []
            for tag, line in list(s.lines):
                if tag == "out" and line.startswith("{"):
                    doc = json.loads(line)
                    if doc["path"] == path:
                        out.append(doc)
            return out
        wait_until(lambda: len(lines()) >= n, timeout, "%d access log lines for %s" % (n, path))
        return lines()

    def upstream_request(self, head_prefix, timeout=15.0):
        """The fault upstream's record of the request whose head starts with head_prefix."""
        found = []

        def look():
            found[:] = [q for q in self.fault.stats()["requests"]
                        if q["head"].startswith(head_prefix)]
            return found
        wait_until(look, timeout, "the app to record %r" % head_prefix)
        return found[-1]

    def node(self, url, requests, timeout=90):
        self.assertTrue(os.access(NODE, os.X_OK),
                        "%s missing: `make deps` installs Node.js (Debian package nodejs)" % NODE)
        cp = subprocess.run([NODE, os.path.join(HERE, "h2_node_client.js"), url,
                             json.dumps(requests)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=CLEAN_ENV, timeout=timeout)
        self.assertEqual(cp.returncode, 0, cp.stdout.decode() + cp.stderr.decode())
        out = sorted((json.loads(l) for l in cp.stdout.decode().splitlines()),
                     key=lambda r: r["i"])
        self.assertEqual(len(out), len(requests), cp.stdout)
        return out

    # ---- trailers ------------------------------------------------------------------------

    def test_trailers_both_ways_python_h2(self):
        s = self.start()
        c = H2(s.port)
        self.addCleanup(c.close)
        sid = c.request("GET", "/trailers")
        c.wait_ended(sid)
        self.assertEqual(c.headers[sid][":status"], "200")
        self.assertTrue(bytes(c.bodies[sid]).startswith(b"ok conn="), c.bodies[sid])
        # The app's `X-Checksum` and `X-Other`, lower-cased as HTTP/2 wants, in their order.
        self.assertEqual(c.trailers[sid], [("x-checksum", "sha-of-it"), ("x-other", "2")])
        self.assertEqual(c.headers[sid]["trailer"], "X-Checksum")  # the announcement passes
        # Request trailers: a body without a length goes chunked to the app, the trailing
        # HEADERS frame becomes its trailer section (the stream's own framing stays behind).
        sid = c.request("POST", "/upload?h2", body=b"hello", trailers=[
            ("x-checksum", "abc123"), ("grpc-status", "0")])
        c.wait_ended(sid)
        req = self.upstream_request("POST /upload?h2 ")
        self.assertIn("transfer-encoding: chunked", req["head"].lower())
        self.assertTrue(req["body_end"].endswith(
            "5\r\nhello\r\n0\r\nx-checksum: abc123\r\ngrpc-status: 0\r\n\r\n"),
            "request trailers at the app: %r" % req["body_end"])

    def test_trailers_to_curl_over_http2(self):
        s = self.start()
        cp = curl("--http2-prior-knowledge", "-D", "-", "-o", "/dev/null", s.base + "/trailers")
        self.assertEqual(cp.returncode, 0, cp.stderr)
        out = cp.stdout.decode()
        self.assertIn("HTTP/2 200", out)
        # curl prints trailer fields after the head's, as it got them.
        self.assertRegex(out, r"(?s)HTTP/2 200.*\r\n\r\nx-checksum: sha-of-it\r\nx-other: 2\r\n")

    # ---- Node's http2 module -------------------------------------------------------------

    def check_node(self, s):
        n = 300000
        reqs = [{"path": "/"}, {"path": "/bytes/200000"},
                {"path": "/echo", "method": "POST", "body_bytes": n},
                {"path": "/trailers"},
                {"path": "/upload?node", "method": "POST", "body_bytes": 1000,
                 "trailers": {"x-checksum": "from-node"}}]
        root, big, echo, trailers, upload = self.node(s.base, reqs)
        for r in (root, big, echo, trailers, upload):
            self.assertNotIn("error", r)
            self.assertEqual(r["status"], 200, r)
        self.assertEqual(root["body"], "hello from aiohttp\n")
        self.assertEqual(big["length"], 200000)
        doc = json.loads(echo["body"])
        self.assertEqual(doc["body_len"], n)
        self.assertEqual(doc["sha256"], hashlib.sha256(node_pattern(n)).hexdigest())
        self.assertEqual(trailers["trailers"], {"x-checksum": "sha-of-it", "x-other": "2"})
        req = self.upstream_request("POST /upload?node ")
        self.assertTrue(req["body_end"].endswith("0\r\nx-checksum: from-node\r\n\r\n"),
                        req["body_end"])
        for path in ("/", "/echo", "/trailers"):
            self.assertEqual(self.access(s, path)[-1]["protocol"], "HTTP/2", path)

    def test_node_http2_cleartext(self):
        self.check_node(self.start())

    def test_node_http2_tls(self):
        self.check_node(self.start(tls=True))

    # ---- Chromium ------------------------------------------------------------------------

    def test_chromium_loads_a_page_over_http2(self):
        """Headless Chromium fetches a page over TLS (ALPN h2) whose script, a subresource,
        writes into the DOM; the access log shows both requests came over HTTP/2."""
        self.assertTrue(os.access(CHROMIUM, os.X_OK),
                        "%s missing: `make deps` installs it (Debian package chromium)" % CHROMIUM)
        web = PageServer()
        self.addCleanup(web.close)
        cert, key = CERTS.pair("localhost")
        text = ("admin: {address: 127.0.0.1:0}\nworkers: 1\ndrain: {delay: 0s, budget: 10s}\n"
                "log: {format: json, access: true}\n"
                "listeners:\n  - name: ingress\n    address: 127.0.0.1:0\n    cluster: web\n"
                "    tls: {cert: %s, key: %s}\n"
                "clusters:\n  - {name: web, endpoints: [127.0.0.1:%d]}\n"
                % (json.dumps(cert), json.dumps(key), web.port))
        path = os.path.join(self.make_tmpdir(), "sluice.yaml")
        with open(path, "w") as f:
            f.write(text)
        s = self.start_sluice("--config", path, defaults=False, workers=None)
        profile = self.make_tmpdir()
        env = dict(CLEAN_ENV, HOME=profile, XDG_CONFIG_HOME=os.path.join(profile, "config"),
                   XDG_CACHE_HOME=os.path.join(profile, "cache"))
        cp = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--no-default-browser-check", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--disable-extensions",
             "--disable-dev-shm-usage", "--password-store=basic",
             "--user-data-dir=" + os.path.join(profile, "profile"),
             "--ignore-certificate-errors", "--dump-dom",
             "https://127.0.0.1:%d/files/page.html" % s.port],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, timeout=120)
        dom = cp.stdout.decode("utf-8", "replace")
        self.assertEqual(cp.returncode, 0, cp.stderr.decode("utf-8", "replace")[-4000:])
        self.assertIn("script ran", dom, dom + cp.stderr.decode("utf-8", "replace")[-4000:])
        page = self.access(s, "/files/page.html")[-1]
        script = self.access(s, "/files/page.js")[-1]
        self.assertEqual((page["status"], page["protocol"]), (200, "HTTP/2"))
        self.assertEqual((script["status"], script["protocol"]), (200, "HTTP/2"))

    # ---- curl, nghttp and what the operator sees -----------------------------------------

    def metric(self, s, name, **labels):
        text = http(s.admin_port, "GET", "/metrics").body.decode()
        want = ",".join('%s="%s"' % kv for kv in sorted(labels.items()))
        for line in text.splitlines():
            m = re.match(r"^%s\{([^}]*)\} (\S+)$" % re.escape(name), line)
            if m and ",".join(sorted(m.group(1).split(","))) == want:
                return float(m.group(2))
        raise AssertionError("no %s{%s} in /metrics:\n%s" % (name, want, text))

    def test_curl_nghttp_access_log_metrics_and_stats(self):
        s = self.start(tls=True)
        cp = curl("--http2", "-k", "-w", "\n%{http_version}", s.base + "/echo?alpn")
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertEqual(cp.stdout.rsplit(b"\n", 1)[1], b"2")
        cp = curl("--http1.1", "-k", "-w", "\n%{http_version}", s.base + "/echo?h1")
        self.assertEqual(cp.stdout.rsplit(b"\n", 1)[1], b"1.1")
        self.assertEqual(self.access(s, "/echo?alpn")[-1]["protocol"], "HTTP/2")
        self.assertEqual(self.access(s, "/echo?h1")[-1]["protocol"], "HTTP/1.1")
        self.assertEqual(self.metric(s, "sluice_downstream_connections_total",
                                     listener="ingress", protocol="http2"), 1)
        self.assertEqual(self.metric(s, "sluice_downstream_connections_total",
                                     listener="ingress", protocol="http1"), 1)

        p = self.start(tls=False)
        cp = curl("--http2-prior-knowledge", "-w", "\n%{http_version}", p.base + "/echo?pk")
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertEqual(cp.stdout.rsplit(b"\n", 1)[1], b"2")
        self.assertEqual(self.access(p, "/echo?pk")[-1]["protocol"], "HTTP/2")
        # nghttp, several streams on one connection.
        cp = subprocess.run([NGHTTP, "-n", p.base + "/echo?ng1", p.base + "/bytes/100000",
                             p.base + "/trailers"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=CLEAN_ENV,
                            timeout=60)
        self.assertEqual(cp.returncode, 0, cp.stdout + cp.stderr)
        self.assertEqual(self.access(p, "/echo?ng1")[-1]["protocol"], "HTTP/2")
        self.assertEqual(self.metric(p, "sluice_downstream_connections_total",
                                     listener="ingress", protocol="http2"), 2)
        self.assertEqual(self.metric(p, "sluice_downstream_connections_total",
                                     listener="ingress", protocol="http1"), 0)

        # An HTTP/2 connection held open with a slow stream on it: /stats counts the
        # connection and its stream, per listener and in all, and so does GET /drain's view.
        c = H2(p.port)
        self.addCleanup(c.close)
        sid = c.request("GET", "/sleep/3000")

        def stats():
            return json.loads(http(p.admin_port, "GET", "/stats").body)
        wait_until(lambda: stats()["http2"]["streams_active"] == 1, 15, "the stream in /stats")
        st = stats()
        self.assertEqual(st["http2"]["connections_active"], 1)
        [ingress] = [l for l in st["listeners"] if l["name"] == "ingress"]
        self.assertEqual(ingress["connections_by_protocol"]["http2"], {"active": 1, "total": 3})
        self.assertEqual(ingress["connections_by_protocol"]["http1"]["total"], 0)
        c.wait_ended(sid)
        self.assertEqual(bytes(c.bodies[sid]), b"slept 3000\n")
        wait_until(lambda: stats()["http2"]["streams_active"] == 0, 15, "the stream's end")


if __name__ == "__main__":
    unittest.main()
