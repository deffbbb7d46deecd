#!/usr/bin/python3
"""TLS (issue #7), end to end, with certificates made by the `openssl` command (tls_certs.py).

Termination: curl with the test CA through a TLS listener (X-Forwarded-Proto https, one TLS
connection for several requests), a plain-text client and a silent one (handshake timeout),
`openssl s_client` for the protocol versions (1.0 and 1.1 refused, 1.2 and 1.3 accepted), ALPN
and renegotiation, SNI choosing among three certificates (exact, wildcard, default), mTLS with
`client_ca`, WSS echo with `websockets` (and a frame sent with the upgrade request) and its
1001 on a drain, 20 pipelined requests in one TLS record, large bodies, a slow reader
(backpressure through the TLS layer), close_notify at every orderly close.
Origination: an aiohttp upstream serving HTTPS (upstream_app.py --tls-cert/--tls-key): pooled
TLS connections reused, a new connection per request resuming the last session (seen by the
upstream and in /metrics and /stats), SNI and ALPN as sent, verification failures (unknown CA,
name mismatch, expired, the system bundle by default) answering 502 with the reason logged,
`verify: false`, a client certificate, an idle TLS connection the upstream closes.
Rotation: a Kubernetes secret mount's `..data` symlink swapped under continuous new-connection
load (zero failures, the new certificate within 2 s, a kept-alive connection untouched), a
broken file rejected with an error while the old certificate stays, listener session tickets
(resumed; not across a rotation; kept by a reload that changes nothing), client_ca rotation,
SIGHUP and POST /reload.
Start-up: a broken certificate, key or CA file exits 1 naming the file.

Run: SLUICE_BIN=/abs/build/sluice /usr/bin/python3 test_tls.py -v
"""
import asyncio
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
import unittest
import warnings

from harness import (CLEAN_ENV, HERE, LOOPBACK, PYTHON, SLUICE_BIN, E2ETestCase, MiB, Proc,
                     RawClient, curl, http, request_bytes, run_parallel, stderr_lines,
                     tcp_sockets)
from tls_certs import OPENSSL, CertSet
from ws_upstream import (OP_CLOSE, OP_TEXT, WsUpstream, close_payload, read_ws_frame,
                         upgrade_request, ws_connect, ws_frame)

CERTS = None  # one CertSet for the whole file (made in setUpModule)


def setUpModule():
    global CERTS
    CERTS = CertSet.create()


def tearDownModule():
    if CERTS is not None:
        CERTS.cleanup()


def q(path):
    """A YAML double-quoted scalar (JSON strings are valid YAML)."""
    return json.dumps(path)


def tls_block(names, indent=4, extra=""):
    """A listener's `tls:` block serving the certificates `names` (CertSet names)."""
    pad = " " * indent
    if len(names) == 1:
        cert, key = CERTS.pair(names[0])
        return "%stls:\n%s  cert: %s\n%s  key: %s\n%s" % (pad, pad, q(cert), pad, q(key), extra)
    lines = ["%stls:" % pad, "%s  certificates:" % pad]
    for n in names:
        cert, key = CERTS.pair(n)
        lines.append("%s    - {cert: %s, key: %s}" % (pad, q(cert), q(key)))
    return "\n".join(lines) + "\n" + extra


def client_ctx(ca="ca", cert=None, check_hostname=True):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(CERTS.path(ca))
    ctx.check_hostname = check_hostname
    ctx.verify_mode = ssl.CERT_REQUIRED
    if cert:
        ctx.load_cert_chain(*CERTS.pair(cert))
    return ctx


def tls_client(port, server_hostname="localhost", ctx=None, timeout=10.0, session=None,
               rcvbuf=None):
    """A harness.RawClient speaking TLS (handshake done; .sock.getpeercert() works). A close
    without close_notify raises ssl.SSLEOFError instead of reading as an orderly EOF."""
    c = RawClient(port, timeout=timeout, rcvbuf=rcvbuf)
    c.sock = (ctx or client_ctx()).wrap_socket(c.sock, server_hostname=server_hostname,
                                               suppress_ragged_eofs=False, session=session)
    return c


def cn_of(peercert):
    for rdn in peercert.get("subject", ()):
        for k, v in rdn:
            if k == "commonName":
                return v
    return None


def one_tls_request(port, ctx, path="/echo", server_hostname="localhost", timeout=10.0):
    """A fresh TCP and TLS connection (full handshake), one request with Connection: close.
    Returns (status, peer certificate CN, peer serial)."""
    with socket.create_connection((LOOPBACK, port), timeout=timeout) as raw:
        # suppress_ragged_eofs=False: the end must be an orderly close_notify.
        with ctx.wrap_socket(raw, server_hostname=server_hostname,
                             suppress_ragged_eofs=False) as s:
            cert = s.getpeercert()
            s.sendall(request_bytes("GET", path, [("Connection", "close")], host="localhost"))
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
    m = re.match(rb"HTTP/1\.1 (\d{3}) ", data)
    return (int(m.group(1)) if m else None), cn_of(cert), int(cert["serialNumber"], 16)


SAMPLE_RX = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$')


def parse_metrics(text):
    out = {}
    for line in text.splitlines():
        m = SAMPLE_RX.match(line)
        if not m or line.startswith("#"):
            continue
        labels = frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


class TlsUpstream(Proc):
    """upstream_app.py serving HTTPS with a CertSet certificate."""

    def __init__(self, cert, name=None, client_ca=None, idle_close=None):
        crt, key = CERTS.pair(cert)
        argv = [PYTHON, os.path.join(HERE, "upstream_app.py"), "--port", "0",
                "--tls-cert", crt, "--tls-key", key]
        if idle_close is not None:
            argv += ["--idle-close", str(idle_close)]
        if name:
            argv += ["--name", name]
        if client_ca:
            argv += ["--tls-client-ca", CERTS.path(client_ca)]
        super().__init__("tls-upstream-" + (name or cert), argv)
        self.port = int(self.expect_line(r"^PORT (\d+)", stream="out").group(1))


class TlsCase(E2ETestCase):

    def setUp(self):
        super().setUp()
        self._exits_itself = []

    def _cleanup_procs(self):
        for s in self._exits_itself:  # drained within the test: no SIGTERM from the harness
            s.kill()
            if s in self.procs:
                self.procs.remove(s)
        super()._cleanup_procs()

    def write_config(self, text, path=None):
        if path is None:
            path = os.path.join(self.make_tmpdir(), "sluice.yaml")
        with open(path + ".tmp", "w") as f:
            f.write(text)
        os.replace(path + ".tmp", path)
        return path

    def config(self, listeners, clusters, workers=1, drain="{delay: 0s, budget: 10s}"):
        return ("admin: {address: 127.0.0.1:0}\nworkers: %d\ndrain: %s\n"
                "listeners:\n%sclusters:\n%s" % (workers, drain, listeners, clusters))

    def tls_listener(self, names, cluster="app", extra=""):
        return ("  - name: ingress\n    address: 127.0.0.1:0\n    cluster: %s\n" % cluster +
                tls_block(names, extra=extra))

    @staticmethod
    def cluster(name, endpoints, extra=""):
        return "  - name: %s\n    endpoints: [%s]\n%s" % (name, ", ".join(endpoints), extra)

    def start_with(self, text, workers=None):
        return self.start_sluice("--config", self.write_config(text), defaults=False,
                                 workers=workers)

    def start_tls_upstream(self, cert, name=None, client_ca=None, idle_close=None):
        return self._track(TlsUpstream(cert, name, client_ca, idle_close))

    def admin(self, s, method, path):
        return http(s.admin_port, method, path, body=b"" if method == "POST" else None)

    def metrics(self, s):
        r = self.admin(s, "GET", "/metrics")
        self.assertEqual(r.status, 200)
        return parse_metrics(r.body.decode())

    def cluster_stats(self, s, name):
        doc = self.admin(s, "GET", "/stats").json()
        for c in doc["clusters"]:
            if c["name"] == name:
                return c
        self.fail("no cluster %r in /stats: %r" % (name, doc["clusters"]))

    def s_client(self, port, *args, servername="localhost", stdin=b""):
        """openssl s_client against 127.0.0.1:port with the test CA; (exit code, output)."""
        argv = [OPENSSL, "s_client", "-connect", "%s:%d" % (LOOPBACK, port), "-CAfile",
                CERTS.path("ca"), "-verify_return_error"]
        argv += ["-servername", servername] if servername else ["-noservername"]
        cp = subprocess.run(argv + list(args), input=stdin, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, timeout=20, env=CLEAN_ENV)
        return cp.returncode, cp.stdout.decode(errors="replace")

    def wait_for(self, pred, timeout, what):
        deadline = time.monotonic() + timeout
        while not pred():
            if time.monotonic() > deadline:
                self.fail("%s: not within %.1f s" % (what, timeout))
            time.sleep(0.02)


# ---------------------------------------------------------------------------------------------
# Termination


class TerminationTest(TlsCase):

    def test_curl_over_https_with_keep_alive_and_x_forwarded_proto(self):
        up = self.start_aiohttp()
        s = self.start_with(self.config(
            self.tls_listener(["localhost"], extra="      handshake_timeout: 1s\n"),
            self.cluster("app", ["127.0.0.1:%d" % up.port])))
        base = "https://localhost:%d" % s.port
        cp = curl("--http1.1", "--cacert", CERTS.path("ca"), "-w",
                  r"\nRESULT %{http_code} %{num_connects} %{ssl_verify_result} %{http_version}\n",
                  base + "/echo?n=1", base + "/echo?n=2", base + "/echo?n=3", base + "/echo?n=4")
        self.assertEqual(cp.returncode, 0, cp.stderr)
        lines = cp.stdout.decode().splitlines()
        results = [l.split()[1:] for l in lines if l.startswith("RESULT ")]
        bodies = [json.loads(l) for l in lines if l.startswith("{")]
        self.assertEqual(results, [["200", "1", "0", "1.1"]] + [["200", "0", "0", "1.1"]] * 3,
                         "one TLS connection for four requests, verified, HTTP/1.1:\n%s" %
                         cp.stdout.decode())
        self.assertEqual([b["query"] for b in bodies], ["n=1", "n=2", "n=3", "n=4"])
        for b in bodies:
            headers = {k.lower(): v for k, v in b["headers"]}
            self.assertEqual(headers.get("x-forwarded-proto"), "https", b["headers"])
            self.assertEqual(headers.get("host"), "localhost:%d" % s.port)
        m = self.metrics(s)
        for protocol, n in (("http1", 1.0), ("http2", 0.0)):
            self.assertEqual(m[("sluice_downstream_connections_total",
                                frozenset({("listener", "ingress"), ("protocol", protocol)}))], n)
        # Also by IP (the certificate has IP:127.0.0.1; curl sends no SNI for an IP).
        cp = curl("--cacert", CERTS.path("ca"), "https://127.0.0.1:%d/" % s.port)
        self.assertEqual((cp.returncode, cp.stdout), (0, b"hello from aiohttp\n"), cp.stderr)
        # Without the test CA, curl refuses the certificate.
        cp = curl("https://localhost:%d/" % s.port)
        self.assertEqual(cp.returncode, 60, cp.stderr)  # CURLE_PEER_FAILED_VERIFICATION

        # Plain HTTP on the TLS port: no HTTP answer, closed, and the reason logged.
        n = len(stderr_lines(s))
        c = RawClient(s.port)
        c.send(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        self.assertTrue(c.closed_within(30), "plain HTTP on a TLS listener left open")
        self.assertFalse(c.buf.startswith(b"HTTP/"), c.buf[:100])
        c.close()
        self.wait_for(lambda: any(re.search(r" info client 127\.0\.0\.1: TLS handshake: ", l)
                                  for l in stderr_lines(s)[n:]), 30,
                      "the failed handshake logged at info level")
        # A client that connects and sends nothing is cut at the handshake timeout (1 s).
        c = RawClient(s.port)
        t0 = time.monotonic()
        # Not before it, and before the 10 s header timeout (the other timer it could be).
        self.assertTrue(c.closed_within(8), "silent client not cut by handshake_timeout")
        took = time.monotonic() - t0
        self.assertGreater(took, 0.9)
        self.assertLess(took, 8, "cut after %.2f s (handshake_timeout 1s)" % took)
        c.close()
        self.assertEqual(up.stats()["requests"], 4 + 1 + 1, "only the good requests arrive")

    def test_pipelining_large_bodies_and_backpressure_over_tls(self):
        up = self.start_aiohttp()
        s = self.start_with(self.config(self.tls_listener(["localhost"]),
                                        self.cluster("app", ["127.0.0.1:%d" % up.port])))
        # 20 requests in one write: one TLS record holds them all, so after the first no more
        # ciphertext arrives; each must still be answered, in order.
        c = tls_client(s.port)
        c.send(b"".join(request_bytes("GET", "/echo?i=%d" % i, host="localhost")
                        for i in range(20)))
        self.assertEqual([c.read_response().json()["query"] for _ in range(20)],
                         ["i=%d" % i for i in range(20)])
        # A 5 MiB body (hundreds of records) on the same connection, then a 3 MiB response.
        body = os.urandom(5 * MiB)
        c.send(request_bytes("POST", "/echo", host="localhost", body=body))
        r = c.read_response()
        self.assertEqual((r.status, r.json()["sha256"]), (200, hashlib.sha256(body).hexdigest()))
        c.send(request_bytes("GET", "/bytes/%d" % (3 * MiB), host="localhost"))
        self.assertEqual(c.read_response().body_len, 3 * MiB)
        c.close()
        # A client that stops reading a 64 MiB response: sluice stops reading the upstream
        # rather than buffering (ciphertext included), then everything arrives intact.
        n = 64 * MiB
        c = tls_client(s.port, rcvbuf=65536)
        before = s.memory()["VmRSS"]
        c.send(request_bytes("GET", "/bytes/%d" % n, host="localhost"))
        time.sleep(1.5)
        grown = s.memory()["VmRSS"] - before
        got = hashlib.sha256()
        r = c.read_response(keep_body=False, on_data=got.update)
        want = hashlib.sha256()
        block = bytes(range(256)) * 256
        for _ in range(n // len(block)):
            want.update(block)
        self.assertEqual((r.body_len, got.hexdigest()), (n, want.hexdigest()))
        self.assertLess(grown, 24 * MiB, "sluice grew by %.1f MiB while the client did not read"
                        % (grown / MiB))
        c.close()

    def test_versions_alpn_and_no_renegotiation(self):
        up = self.start_aiohttp()
        s = self.start_with(self.config(self.tls_listener(["localhost"]),
                                        self.cluster("app", ["127.0.0.1:%d" % up.port])))
        # TLS 1.0 and 1.1: the client is allowed them (security level 0), sluice is not.
        # A Python server that allows TLS 1.1 shows the same client command could succeed.
        legacy = "DEFAULT@SECLEVEL=0"
        with LegacyTlsServer() as control:
            rc, out = self.s_client(control.port, "-tls1_1", "-cipher", legacy)
            self.assertEqual(rc, 0, "control: s_client -tls1_1 cannot do TLS 1.1 at all:\n" + out)
            self.assertIn("Protocol  : TLSv1.1", out)
        for flag in ("-tls1_1", "-tls1"):
            rc, out = self.s_client(s.port, flag, "-cipher", legacy)
            self.assertNotEqual(rc, 0, "%s accepted:\n%s" % (flag, out))
            self.assertIn("alert protocol version", out, out)
        self.assertIn("unsupported protocol", s.log())
        for flag, version in (("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")):
            rc, out = self.s_client(s.port, flag, "-alpn", "http/1.1")
            self.assertEqual(rc, 0, "%s refused:\n%s" % (flag, out))
            self.assertRegex(out, r"New, %s, Cipher is " % re.escape(version))
            self.assertIn("ALPN protocol: http/1.1", out)
            self.assertIn("Verify return code: 0 (ok)", out)
        # ALPN: h2 preferred when offered (issue #15), http/1.1 otherwise; a protocol sluice
        # does not speak is not acknowledged (no failure).
        rc, out = self.s_client(s.port, "-alpn", "http/1.1,h2")
        self.assertEqual(rc, 0, out)
        self.assertIn("ALPN protocol: h2", out)
        rc, out = self.s_client(s.port, "-alpn", "spdy/3,http/1.1")
        self.assertEqual(rc, 0, out)
        self.assertIn("ALPN protocol: http/1.1", out)
        rc, out = self.s_client(s.port, "-alpn", "spdy/3")
        self.assertEqual(rc, 0, out)
        self.assertIn("No ALPN negotiated", out)
        # Renegotiation (TLS 1.2): s_client's "R" command; sluice refuses it.
        self.assertRenegotiationRefused(s.port)
        self.assertTrue(s.alive())
        # min_version "1.3": TLS 1.2 refused as well.
        s13 = self.start_with(self.config(
            self.tls_listener(["localhost"], extra='      min_version: "1.3"\n'),
            self.cluster("app", ["127.0.0.1:%d" % up.port])))
        rc, out = self.s_client(s13.port, "-tls1_2")
        self.assertNotEqual(rc, 0, "TLS 1.2 accepted with min_version 1.3:\n" + out)
        self.assertIn("alert protocol version", out)
        rc, out = self.s_client(s13.port, "-tls1_3")
        self.assertEqual(rc, 0, out)

    def assertRenegotiationRefused(self, port):
        argv = [OPENSSL, "s_client", "-connect", "%s:%d" % (LOOPBACK, port), "-tls1_2",
                "-CAfile", CERTS.path("ca"), "-servername", "localhost"]
        p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, env=CLEAN_ENV)
        chunks = []
        reader = threading.Thread(target=lambda: chunks.extend(iter(
            lambda: p.stdout.read1(65536), b"")), daemon=True)
        reader.start()
        seen = lambda text: text in b"".join(list(chunks))
        try:
            # The handshake is done once s_client has printed its session summary.
            self.wait_for(lambda: seen(b"Verify return code") or p.poll() is not None, 30,
                          "s_client's handshake")
            p.stdin.write(b"R\n")
            p.stdin.flush()
            self.wait_for(lambda: seen(b"RENEGOTIATING") or p.poll() is not None, 30,
                          "s_client starting the renegotiation")
            try:
                p.stdin.write(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
                p.stdin.flush()
            except BrokenPipeError:
                pass
            # Refused: sluice's alert ends the connection and s_client exits by itself (its
            # stdin stays open). Accepted: it would stay connected, and show the response.
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                pass
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
            reader.join(10)
            for f in (p.stdin, p.stdout):
                try:
                    f.close()
                except BrokenPipeError:  # s_client gone with a byte of ours unread
                    pass
        out = b"".join(chunks).decode(errors="replace")
        self.assertIn("RENEGOTIATING", out, out)
        self.assertIn("no renegotiation", out.lower(), "renegotiation not refused:\n" + out)
        self.assertNotIn("hello from aiohttp", out, "the connection went on after the "
                         "renegotiation attempt:\n" + out)

    def test_sni_picks_the_certificate(self):
        up = self.start_aiohttp()
        s = self.start_with(self.config(self.tls_listener(["localhost", "a", "wild_b"]),
                                        self.cluster("app", ["127.0.0.1:%d" % up.port])))
        verified = client_ctx()
        for name, cn in (("a.test", "a.test"), ("x.b.test", "wildcard b.test"),
                         ("Other-Name.B.test", "wildcard b.test"), ("localhost", "localhost")):
            with self.subTest(sni=name):
                c = tls_client(s.port, server_hostname=name, ctx=verified)  # name verified
                self.assertEqual(cn_of(c.sock.getpeercert()), cn)
                c.send(request_bytes("GET", "/echo", host=name))
                self.assertEqual(c.read_response().status, 200)
                c.close()
        unchecked = client_ctx(check_hostname=False)
        # No SNI, an unknown name, two labels under the wildcard: the default certificate.
        for name in (None, "unknown.test", "x.y.b.test", "b.test"):
            with self.subTest(sni=name):
                c = tls_client(s.port, server_hostname=name, ctx=unchecked)
                self.assertEqual(cn_of(c.sock.getpeercert()), "localhost")
                c.close()
        # The same with openssl s_client (its subject line), upper case included.
        for servername, subject in (("a.test", "CN = a.test"), ("A.TEST", "CN = a.test"),
                                    ("x.b.test", "CN = wildcard b.test"),
                                    (None, "CN = localhost")):
            with self.subTest(s_client=servername):
                rc, out = self.s_client(s.port, servername=servername)
                self.assertEqual(rc, 0, out)
                self.assertIn("subject=" + subject + "\n", out)
        # curl to https://a.test:PORT (resolved to loopback) verifies a.test's certificate.
        cp = curl("--cacert", CERTS.path("ca"), "--resolve", "a.test:%d:127.0.0.1" % s.port,
                  "https://a.test:%d/echo" % s.port)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        hosts = [v for k, v in json.loads(cp.stdout)["headers"] if k.lower() == "host"]
        self.assertEqual(hosts, ["a.test:%d" % s.port])

    def test_mtls_requires_a_client_certificate_signed_by_client_ca(self):
        up = self.start_aiohttp()
        s = self.start_with(self.config(
            self.tls_listener(["localhost"], extra="      client_ca: %s\n" % q(CERTS.path("ca"))),
            self.cluster("app", ["127.0.0.1:%d" % up.port])))
        url = "https://localhost:%d/echo" % s.port
        ca = ["--cacert", CERTS.path("ca")]
        cp = curl(*ca, url)
        self.assertNotEqual(cp.returncode, 0, "no client certificate, yet: %r" % cp.stdout[:200])
        cert, key = CERTS.pair("rogue_client")
        cp = curl(*ca, "--cert", cert, "--key", key, url)
        self.assertNotEqual(cp.returncode, 0, "a client certificate from another CA, yet: %r" %
                            cp.stdout[:200])
        self.assertEqual(up.stats()["requests"], 1, "a refused client reached the upstream")
        cert, key = CERTS.pair("client")
        cp = curl(*ca, "--cert", cert, "--key", key, "-w", r"\n%{http_code}", url)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        body, code = cp.stdout.decode().rsplit("\n", 1)
        self.assertEqual(code, "200")
        self.assertEqual(json.loads(body)["path"], "/echo")
        # Python's ssl with the client certificate.
        c = tls_client(s.port, ctx=client_ctx(cert="client"))
        c.send(request_bytes("GET", "/", host="localhost"))
        self.assertEqual(c.read_response().status, 200)
        c.close()
        fails = [l for l in stderr_lines(s) if "client 127.0.0.1: TLS handshake: " in l]
        self.assertGreaterEqual(len(fails), 2, "refused clients not logged:\n" + s.log())

    def test_wss_echo_through_tls_and_1001_on_drain(self):
        up = self._track(WsUpstream())
        s = self.start_with(self.config(
            self.tls_listener(["localhost"]), self.cluster("app", ["127.0.0.1:%d" % up.port]),
            drain="{delay: 0s, budget: 10s, ws_close_spread: 0s, ws_close_timeout: 2s}"))
        self._exits_itself.append(s)
        url = "wss://localhost:%d/ws" % s.port
        ctx = client_ctx()
        box = {}
        # Upgrade request and a first frame in one TLS write: the frame must not be lost in
        # the switch to tunnel mode.
        c = tls_client(s.port)
        head, accept = upgrade_request()
        c.send(head + ws_frame(OP_TEXT, b"early bird"))
        r = c.read_head()
        self.assertEqual((r.status, r.header("Sec-WebSocket-Accept")), (101, accept))
        self.assertEqual(read_ws_frame(c), (True, OP_TEXT, False, b"early bird"))
        c.send(ws_frame(OP_CLOSE, close_payload(1000)))
        self.assertEqual(read_ws_frame(c)[1], OP_CLOSE)
        self.assertTrue(c.closed_within(30))
        c.close()
        up.wait_stats(lambda st: st["closed"] == 1)

        async def main():
            conns = [await ws_connect(url, ssl=ctx) for _ in range(3)]
            for i, ws in enumerate(conns):
                for n in (0, 1, 125, 126, 65536, 1 << 20):
                    text = ("%d-" % i + "x" * n)[:max(n, 1)]
                    await ws.send(text)
                    self.assertEqual(await ws.recv(), text)
                    data = os.urandom(n)
                    await ws.send(data)
                    self.assertEqual(await ws.recv(), data)
            self.assertEqual(up.stats()["open"], 3)
            loop = asyncio.get_running_loop()
            r = await loop.run_in_executor(None, self.admin, s, "POST", "/drain")
            box["drain"] = r.status
            out = []
            for ws in conns:
                try:
                    msg = await asyncio.wait_for(ws.recv(), 8)
                    out.append(("message", msg))
                except Exception as e:  # websockets.ConnectionClosed
                    rcvd = getattr(e, "rcvd", None)
                    out.append((type(e).__name__, rcvd.code if rcvd else None))
            return out

        results = asyncio.run(asyncio.wait_for(main(), 40))
        self.assertEqual(box["drain"], 202)
        self.assertEqual(results, [("ConnectionClosedOK", 1001)] * 3)
        st = up.wait_stats(lambda st: st["closed"] == 4)
        self.assertEqual(st["close_codes"], {"1000": 1, "1001": 3}, st)
        # An admin-API drain leaves sluice running until its own signal (or POST /resume).
        s.wait_line("drain done; waiting for SIGTERM", timeout=10)
        s.proc.send_signal(signal.SIGTERM)
        self.assertEqual(s.proc.wait(10), 0, "exit status after the drain")


class LegacyTlsServer:
    """A TLS server in a thread that accepts TLS 1.0 to 1.3 (security level 0), to show that
    the client side of the version test can speak TLS 1.1 at all."""

    def __init__(self):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # that is the point here
            ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.set_ciphers("DEFAULT@SECLEVEL=0")
        ctx.load_cert_chain(*CERTS.pair("localhost"))
        self.ctx = ctx
        self.sock = socket.socket()
        self.sock.bind((LOOPBACK, 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self):
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            try:
                conn.settimeout(5)
                with self.ctx.wrap_socket(conn, server_side=True) as t:
                    t.recv(1)  # until the client closes
            except (OSError, ssl.SSLError):
                pass
            finally:
                conn.close()

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(5)
        self.sock.close()


# ---------------------------------------------------------------------------------------------
# Origination


class OriginationTest(TlsCase):

    def handshakes(self, s, cluster):
        m = self.metrics(s)
        name = "sluice_upstream_tls_handshakes_total"
        return tuple(m.get((name, frozenset({("cluster", cluster), ("resumed", r)})))
                     for r in ("false", "true"))

    def test_pooled_connections_are_reused_and_new_ones_resume_the_session(self):
        up = self.start_tls_upstream("localhost")
        s = self.start_with(self.config(
            "  - name: ingress\n    address: 127.0.0.1:0\n    routes:\n"
            "      - {host: reuse.test, cluster: api}\n"
            "      - {host: fresh.test, cluster: fresh}\n",
            self.cluster("api", ["localhost:%d" % up.port],
                         "    tls: {ca: %s}\n" % q(CERTS.path("ca"))) +
            self.cluster("fresh", ["127.0.0.1:%d" % up.port],
                         "    tls: {ca: %s, sni: localhost}\n"
                         "    pool: {max_requests_per_connection: 1}\n" % q(CERTS.path("ca")))))
        self.assertEqual(self.handshakes(s, "api"), (0.0, 0.0))

        def get(host):
            r = http(s.port, "GET", "/echo", headers=[("Host", host)])
            self.assertEqual(r.status, 200, r)
            return r, r.json()

        conns = []
        for _ in range(5):
            r, body = get("reuse.test")
            conns.append(r.header("X-Upstream-Conn"))
            self.assertEqual((body["tls"]["sni"], body["tls"]["alpn"], body["tls"]["version"]),
                             ("localhost", "http/1.1", "TLSv1.3"), body["tls"])
        self.assertEqual(len(set(conns)), 1, "pooled TLS connection not reused: %r" % conns)
        self.assertEqual(self.handshakes(s, "api"), (1.0, 0.0))

        conns, reused = [], []
        for _ in range(6):
            r, body = get("fresh.test")
            conns.append(r.header("X-Upstream-Conn"))
            reused.append(body["tls"]["session_reused"])
            self.assertEqual(body["tls"]["sni"], "localhost", "sni: setting not sent")
        self.assertEqual(len(set(conns)), 6, "max_requests_per_connection: 1 reused: %r" % conns)
        self.assertEqual(reused, [False] + [True] * 5,
                         "the upstream's view of session resumption (sluice counted %r)" %
                         (self.handshakes(s, "fresh"),))
        self.assertEqual(self.handshakes(s, "fresh"), (1.0, 5.0))
        self.assertEqual(self.cluster_stats(s, "fresh")["tls_handshakes"],
                         {"full": 1, "resumed": 5})
        self.assertEqual(self.cluster_stats(s, "api")["tls_handshakes"],
                         {"full": 1, "resumed": 0})
        # 16 at once, each on a new connection: as many handshakes as connections, and
        # sluice's resumed count is what the upstream saw.
        results = run_parallel([lambda: get("fresh.test")[1] for _ in range(16)])
        self.assertTrue(all(isinstance(b, dict) for b in results), results)
        full, resumed = self.handshakes(s, "fresh")
        self.assertEqual((full + resumed, resumed - 5),
                         (6 + 16, sum(b["tls"]["session_reused"] for b in results)))
        self.assertEqual(self.cluster_stats(s, "fresh")["connections_created"], 6 + 16)
        # A body both ways over the TLS upstream connection (larger than a TLS record).
        payload = os.urandom(300000)
        r = http(s.port, "POST", "/echo", headers=[("Host", "reuse.test")], body=payload)
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json()["body_len"], len(payload))
        r = http(s.port, "GET", "/bytes/1000000", headers=[("Host", "reuse.test")])
        self.assertEqual((r.status, len(r.body)), (200, 1000000))

    def test_an_idle_tls_connection_closed_by_the_upstream_leaves_the_pool(self):
        up = self.start_tls_upstream("localhost", idle_close=0.3)  # close_notify, then FIN
        s = self.start_with(self.config(
            "  - name: ingress\n    address: 127.0.0.1:0\n    cluster: api\n",
            self.cluster("api", ["localhost:%d" % up.port],
                         "    tls: {ca: %s}\n" % q(CERTS.path("ca")))))
        conns = []
        for _ in range(3):
            r = http(s.port, "GET", "/echo")
            self.assertEqual(r.status, 200, r)
            conns.append(r.header("X-Upstream-Conn"))
            # The upstream closes it 0.3 s later; sluice notices and closes its end.
            self.wait_for(lambda: not {"ESTABLISHED", "CLOSE_WAIT"} & set(tcp_sockets(up.port)),
                          30, "the idle upstream connection closed at both ends")
        self.assertEqual(len(set(conns)), 3, conns)
        m = self.metrics(s)
        self.assertEqual(m[("sluice_upstream_request_retries_total",
                            frozenset({("cluster", "api"), ("reason", "stale_connection")}))], 0,
                         "a request was sent on a connection the upstream had closed")
        self.assertEqual(self.handshakes(s, "api"), (1.0, 2.0))

    def test_verification_failures_answer_502_with_the_reason_logged(self):
        good = self.start_tls_upstream("localhost", name="good")
        rogue = self.start_tls_upstream("rogue", name="rogue")
        other = self.start_tls_upstream("other", name="other")
        expired = self.start_tls_upstream("expired", name="expired")
        ca = q(CERTS.path("ca"))
        cases = [  # cluster, endpoint, tls, expected reason (None: 200)
            ("unknown_ca", "localhost:%d" % rogue.port, "{ca: %s}" % ca,
             "unable to get local issuer certificate"),
            ("mismatch", "localhost:%d" % other.port, "{ca: %s}" % ca, "hostname mismatch"),
            ("wrong_sni", "localhost:%d" % good.port, "{ca: %s, sni: wrong.test}" % ca,
             "hostname mismatch"),
            ("ip_mismatch", "127.0.0.1:%d" % other.port, "{ca: %s}" % ca, "IP address mismatch"),
            ("expired", "localhost:%d" % expired.port, "{ca: %s}" % ca,
             "certificate has expired"),
            ("system_bundle", "localhost:%d" % good.port, "{}",
             "unable to get local issuer certificate"),
            ("no_verify", "localhost:%d" % rogue.port, "{verify: false}", None),
            ("by_ip", "127.0.0.1:%d" % good.port, "{ca: %s}" % ca, None),
            ("good", "localhost:%d" % good.port, "{ca: %s}" % ca, None),
        ]
        routes = "".join("      - {host: %s.test, cluster: %s}\n" % (c[0].replace("_", "-"), c[0])
                         for c in cases)
        clusters = "".join(self.cluster(c[0], [c[1]], "    tls: %s\n" % c[2]) for c in cases)
        s = self.start_with(self.config(
            "  - name: ingress\n    address: 127.0.0.1:0\n    routes:\n" + routes, clusters))
        for name, endpoint, _, reason in cases:
            with self.subTest(cluster=name):
                n = len(stderr_lines(s))
                t0 = time.monotonic()
                r = http(s.port, "GET", "/echo", headers=[("Host", name.replace("_", "-") +
                                                           ".test")])
                took = time.monotonic() - t0
                if reason is None:
                    self.assertEqual(r.status, 200, r)
                    continue
                self.assertEqual(r.status, 502, r)
                self.assertIn(b"upstream TLS handshake failed", r.body)
                self.assertLess(took, 10)  # refused at the handshake, not at a timeout
                port = endpoint.rsplit(":", 1)[1]
                # "upstream localhost:PORT (127.0.0.1): TLS handshake: ..."
                rx = (r"upstream \S*:%s(?: \(\S+\))?: TLS handshake: certificate verify "
                      r"failed: %s$" % (port, re.escape(reason)))
                self.wait_for(lambda: any(re.search(rx, l) for l in stderr_lines(s)[n:]), 30,
                              "log line /%s/" % rx)
        self.assertTrue(s.alive())

    def test_client_certificate_to_an_upstream_that_requires_one(self):
        up = self.start_tls_upstream("localhost", client_ca="ca")
        ca = q(CERTS.path("ca"))
        cert, key = CERTS.pair("client")
        s = self.start_with(self.config(
            "  - name: ingress\n    address: 127.0.0.1:0\n    routes:\n"
            "      - {host: with.test, cluster: with_cert}\n"
            "      - {host: without.test, cluster: without}\n",
            self.cluster("with_cert", ["localhost:%d" % up.port],
                         "    tls: {ca: %s, cert: %s, key: %s}\n" % (ca, q(cert), q(key))) +
            self.cluster("without", ["localhost:%d" % up.port], "    tls: {ca: %s}\n" % ca)))
        r = http(s.port, "GET", "/echo", headers=[("Host", "with.test")])
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["tls"]["client_cert"], "client-pod")
        r = http(s.port, "GET", "/echo", headers=[("Host", "without.test")])
        self.assertEqual(r.status, 502, r)


# ---------------------------------------------------------------------------------------------
# Rotation


class SecretMount:
    """A directory laid out as the kubelet mounts a secret: cert.pem -> ..data/cert.pem,
    key.pem -> ..data/key.pem, ..data -> ..<timestamp>; update() writes a new timestamped
    directory, renames a new ..data symlink over the old one (atomic) and removes the old
    directory, as the kubelet's AtomicWriter does."""

    def __init__(self, directory, cert, key):
        self.dir = directory
        self.version = 0
        self.current = None
        self.update(cert, key)
        os.symlink("..data/cert.pem", os.path.join(self.dir, "cert.pem"))
        os.symlink("..data/key.pem", os.path.join(self.dir, "key.pem"))

    @property
    def cert(self):
        return os.path.join(self.dir, "cert.pem")

    @property
    def key(self):
        return os.path.join(self.dir, "key.pem")

    def update(self, cert, key):
        self.version += 1
        ts = "..2026_01_01_%02d_00_00.v%d" % (self.version, self.version)
        os.mkdir(os.path.join(self.dir, ts))
        shutil.copyfile(cert, os.path.join(self.dir, ts, "cert.pem"))
        shutil.copyfile(key, os.path.join(self.dir, ts, "key.pem"))
        tmp = os.path.join(self.dir, "..data_tmp")
        os.symlink(ts, tmp)
        os.replace(tmp, os.path.join(self.dir, "..data"))
        if self.current:
            shutil.rmtree(os.path.join(self.dir, self.current))
        self.current = ts


class HandshakeLoad:
    """Threads that each open new TLS connections in a loop (a full handshake each, one
    request, Connection: close) and record (started, (cn, serial), status or error)."""

    def __init__(self, port, threads=2):
        self.port = port
        self.records = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]
        for t in self.threads:
            t.start()

    def _run(self):
        ctx = client_ctx()
        while not self.stop.is_set():
            t0 = time.monotonic()
            try:
                status, cn, serial = one_tls_request(self.port, ctx, "/")
                rec = (t0, (cn, serial), status)
            except Exception as e:  # reported as a failure
                rec = (t0, None, "%s: %s" % (type(e).__name__, e))
            with self.lock:
                self.records.append(rec)

    def since(self, t):
        with self.lock:
            return [r for r in self.records if r[0] >= t]

    def failures(self):
        with self.lock:
            return [r for r in self.records if r[2] != 200]

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(15)
        return self.records


class TunnelHandoverTest(TlsCase):
    """After a 101 the upstream socket leaves its pool for the tunnel. A reload then removes
    the cluster, its pool is freed, and the TLS upstream sends a NewSessionTicket: the ticket
    must not be stored in the freed pool's session slot (a heap use-after-free that ASan
    reports; CI runs this file under ASan). The session keeps working throughout."""

    def test_a_late_session_ticket_after_the_pool_is_freed(self):
        peer_bin = os.environ.get("TLS_TICKET_UPSTREAM")
        self.assertTrue(peer_bin and os.access(peer_bin, os.X_OK),
                        "TLS_TICKET_UPSTREAM (tests/peers, built with the tests) is not set")
        cert, key = CERTS.pair("localhost")
        peer = subprocess.Popen([peer_bin, cert, key], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.addCleanup(lambda: (peer.kill(), peer.wait(), peer.stdout.close(),
                                 peer.stderr.close(), peer.stdin.close()))
        port = int(re.match(rb"PORT (\d+)", peer.stdout.readline()).group(1))
        other = self.start_aiohttp()
        log = "log: {level: debug}\n"
        listener = ("  - name: ingress\n    address: 127.0.0.1:0\n    routes:\n"
                    "      - {prefix: /ws, cluster: wss}\n      - {prefix: /, cluster: other}\n")
        wss = self.cluster("wss", ["localhost:%d" % port], "    tls: {ca: %s}\n" % q(CERTS.path("ca")))
        plain = self.cluster("other", ["127.0.0.1:%d" % other.port])
        path = self.write_config(log + self.config(listener, wss + plain))
        s = self.start_sluice("--config", path, defaults=False)
        c = RawClient(s.port)
        head, _ = upgrade_request("/ws")
        c.send(head)
        self.assertEqual(c.read_head().status, 101)
        self.assertEqual(peer.stdout.readline(), b"UPGRADED\n")
        # The cluster goes; its pool is freed once nothing uses it (the tunnel does not).
        self.write_config(log + self.config(
            "  - name: ingress\n    address: 127.0.0.1:0\n    cluster: other\n", plain), path)
        before = len(stderr_lines(s))
        os.kill(s.pid, signal.SIGHUP)
        s.wait_line(r"cluster wss: retired and unused, freed", timeout=30)
        self.assertTrue(any("reload: applied" in l for l in stderr_lines(s)[before:]))
        peer.stdin.write(b"ticket\n")
        peer.stdin.flush()
        self.assertEqual(peer.stdout.readline(), b"SENT\n")
        fin, opcode, masked, payload = read_ws_frame(c)
        self.assertEqual((fin, opcode, masked, payload), (True, OP_TEXT, False, b"after-ticket"))
        c.close()
        self.assertTrue(s.alive(), s.log())
        self.assertEqual(http(s.port, "GET", "/").status, 200)


class RotationTest(TlsCase):

    @staticmethod
    def identity(name):
        """(subject CN, serial) of the CertSet certificate `name`, as HandshakeLoad records."""
        return CERTS.subject_cn(name), CERTS.serial(name)

    def wait_cert(self, load, since, name, timeout):
        """Waits until a handshake started after `since` presents certificate `name`; returns
        when that handshake started."""
        cn = self.identity(name)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            seen = [r for r in load.since(since) if r[1] == cn]
            if seen:
                return seen[0][0]
            time.sleep(0.02)
        self.fail("no handshake presented %r within %.1f s of the swap (seen: %r)" % (
            cn, timeout, sorted({r[1] for r in load.since(since)}, key=str)))

    def assertOnly(self, load, since, name, what):
        """Waits for six handshakes started after `since`; all presented certificate name."""
        cn = self.identity(name)
        self.wait_for(lambda: len(load.since(since)) > 5, 30, "six handshakes %s" % what)
        recs = load.since(since)
        self.assertEqual({r[1] for r in recs}, {cn}, what)

    def test_symlink_swap_under_load(self):
        up = self.start_aiohttp()
        d = os.path.join(self.make_tmpdir(), "secret")
        os.mkdir(d)
        mount = SecretMount(d, *CERTS.pair("rot_v1"))
        listener = ("  - name: ingress\n    address: 127.0.0.1:0\n    cluster: app\n"
                    "    tls: {cert: %s, key: %s}\n" % (q(mount.cert), q(mount.key)))
        s = self.start_with(self.config(listener, self.cluster("app", ["127.0.0.1:%d" % up.port]),
                                        workers=2))
        # Session resumption on the listener, with a ticket of the v1 context.
        resuming = client_ctx()
        c = tls_client(s.port, ctx=resuming)
        c.send(request_bytes("GET", "/", host="localhost"))
        self.assertEqual(c.read_response().status, 200)
        ticket = c.sock.session
        c.close()
        c = tls_client(s.port, ctx=resuming, session=ticket)
        self.assertTrue(c.sock.session_reused, "the listener does not resume sessions")
        c.close()
        # A keep-alive TLS connection opened before any rotation.
        ka = tls_client(s.port)
        self.assertEqual(cn_of(ka.sock.getpeercert()), "rotation v1")
        ka.send(request_bytes("GET", "/", host="localhost"))
        self.assertEqual(ka.read_response().status, 200)

        load = HandshakeLoad(s.port)
        try:
            time.sleep(0.5)
            self.assertOnly(load, 0, "rot_v1", "before the swap")
            # v1 -> v2.
            t_swap = time.monotonic()
            mount.update(*CERTS.pair("rot_v2"))
            seen = self.wait_cert(load, t_swap, "rot_v2", 30)
            self.assertOnly(load, seen + 1.0, "rot_v2",
                            "handshakes later than 1 s after the first v2 (every worker)")
            # A ticket from before the rotation gives a full handshake with the new certificate.
            c = tls_client(s.port, ctx=resuming, session=ticket)
            self.assertEqual((c.sock.session_reused, cn_of(c.sock.getpeercert())),
                             (False, "rotation v2"))
            c.close()
            for i in range(3):  # the connection from before is untouched
                ka.send(request_bytes("GET", "/echo?ka=%d" % i, host="localhost"))
                self.assertEqual(ka.read_response().status, 200)
            # v2 -> a broken certificate: rejected with an error naming the file; v2 stays.
            n = len(stderr_lines(s))
            t_broken = time.monotonic()
            mount.update(CERTS.path("broken"), CERTS.key("rot_v2"))
            self.wait_for(lambda: any(re.search(r" error .*%s" % re.escape(mount.cert), l)
                                      for l in stderr_lines(s)[n:]), 30,
                          "an error naming %s" % mount.cert)
            self.assertOnly(load, t_broken, "rot_v2", "after the broken swap")
            # -> v3 whose key belongs to another certificate: rejected as well.
            n = len(stderr_lines(s))
            mount.update(CERTS.path("rot_v3"), CERTS.key("rot_v2"))
            self.wait_for(lambda: any(" error " in l and "key.pem" in l
                                      for l in stderr_lines(s)[n:]), 30,
                          "an error about the key that does not match")
            t_mismatch = time.monotonic()
            self.assertOnly(load, t_mismatch, "rot_v2", "after the mismatched key")
            # -> v4, good again: the watch survived the rejections.
            t_swap = time.monotonic()
            mount.update(*CERTS.pair("rot_v4"))
            self.wait_cert(load, t_swap, "rot_v4", 30)
            ka.send(request_bytes("GET", "/", host="localhost"))
            self.assertEqual(ka.read_response().status, 200)
        finally:
            records = load.finish()
        self.assertEqual(load.failures(), [], "failed requests during the rotations")
        self.assertGreater(len(records), 100, "the load was too light to mean anything")
        ka.close()

    def test_client_ca_rotates_too(self):
        up = self.start_aiohttp()
        d = os.path.join(self.make_tmpdir(), "ca")
        os.mkdir(d)
        mount = SecretMount(d, CERTS.path("ca"), CERTS.key("ca"))  # key.pem unused
        s = self.start_with(self.config(
            self.tls_listener(["localhost"], extra="      client_ca: %s\n" % q(mount.cert)),
            self.cluster("app", ["127.0.0.1:%d" % up.port])))

        def accepted(client):
            try:
                status, _, _ = one_tls_request(s.port, client_ctx(cert=client), "/")
                return status == 200
            except (OSError, ssl.SSLError):
                return False

        self.assertEqual((accepted("client"), accepted("rogue_client")), (True, False))
        mount.update(CERTS.path("rogue_ca"), CERTS.key("rogue_ca"))
        self.wait_for(lambda: accepted("rogue_client"), 30, "the new client_ca in use")
        self.assertFalse(accepted("client"), "a client of the old CA still accepted")

    def test_sighup_and_post_reload_reread_the_files(self):
        up = self.start_aiohttp()
        d = self.make_tmpdir()
        cert, key = os.path.join(d, "tls.crt"), os.path.join(d, "tls.key")

        def put(src_cert, src_key):
            for src, dst in ((src_cert, cert), (src_key, key)):
                shutil.copyfile(src, dst + ".tmp")
            os.replace(key + ".tmp", key)
            os.replace(cert + ".tmp", cert)

        put(*CERTS.pair("rot_v1"))
        listener = ("  - name: ingress\n    address: 127.0.0.1:0\n    cluster: app\n"
                    "    tls: {cert: %s, key: %s}\n" % (q(cert), q(key)))
        s = self.start_with(self.config(listener, self.cluster("app", ["127.0.0.1:%d" % up.port])))
        ctx = client_ctx()

        def current():
            return one_tls_request(s.port, ctx, "/")[1]

        self.assertEqual(current(), "rotation v1")
        # A reload that changes nothing keeps the context, so its session tickets stay valid.
        c = tls_client(s.port, ctx=ctx)
        c.send(request_bytes("GET", "/", host="localhost"))
        self.assertEqual(c.read_response().status, 200)
        ticket = c.sock.session
        c.close()
        n = len(stderr_lines(s))
        os.kill(s.pid, signal.SIGHUP)
        self.wait_for(lambda: any("reload: applied" in l for l in stderr_lines(s)[n:]), 30,
                      "the reload applied")
        c = tls_client(s.port, ctx=ctx, session=ticket)
        self.assertTrue(c.sock.session_reused, "an unchanged reload invalidated the tickets")
        c.close()
        put(*CERTS.pair("rot_v2"))
        os.kill(s.pid, signal.SIGHUP)
        self.wait_for(lambda: current() == "rotation v2", 30, "v2 after SIGHUP")
        # A broken file: POST /reload is refused naming it, and v2 stays.
        put(CERTS.path("truncated"), CERTS.key("rot_v3"))
        r = self.admin(s, "POST", "/reload")
        self.assertEqual(r.status, 400, r)
        doc = r.json()
        self.assertEqual(doc["result"], "invalid", doc)
        self.assertTrue(any(cert in e for e in doc["errors"]), doc)
        time.sleep(0.3)
        self.assertEqual(current(), "rotation v2")
        put(*CERTS.pair("rot_v3"))
        r = self.admin(s, "POST", "/reload")
        self.assertIn(r.status, (200, 202), r)
        self.wait_for(lambda: current() == "rotation v3", 30, "v3 after POST /reload")


# ---------------------------------------------------------------------------------------------
# Start-up


class StartupTest(TlsCase):

    def test_a_broken_file_at_start_exits_1_naming_it(self):
        up_port = 1  # never contacted
        cert, key = CERTS.pair("localhost")
        missing = os.path.join(self.make_tmpdir(), "missing.pem")
        cases = [
            ("broken certificate", CERTS.path("broken"), key, "", CERTS.path("broken")),
            ("truncated certificate", CERTS.path("truncated"), key, "", CERTS.path("truncated")),
            ("empty certificate", CERTS.path("empty"), key, "", CERTS.path("empty")),
            ("missing key", cert, missing, "", missing),
            ("key of another certificate", cert, CERTS.key("a"), "", CERTS.key("a")),
            ("broken client_ca", cert, key, "      client_ca: %s\n" % q(CERTS.path("broken")),
             CERTS.path("broken")),
        ]
        for what, c, k, extra, named in cases:
            with self.subTest(what):
                listener = ("  - name: ingress\n    address: 127.0.0.1:0\n    cluster: app\n"
                            "    tls:\n      cert: %s\n      key: %s\n%s" % (q(c), q(k), extra))
                self.assertStartFails(self.config(
                    listener, self.cluster("app", ["127.0.0.1:%d" % up_port])), named)
        with self.subTest("cluster ca missing"):
            self.assertStartFails(self.config(
                "  - name: ingress\n    address: 127.0.0.1:0\n    cluster: app\n",
                self.cluster("app", ["127.0.0.1:%d" % up_port], "    tls: {ca: %s}\n" %
                             q(missing))), missing)

    def assertStartFails(self, text, named):
        cfg = self.write_config(text)
        cp = subprocess.run([SLUICE_BIN, "--config", cfg], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=CLEAN_ENV, timeout=20)
        err = cp.stderr.decode(errors="replace")
        self.assertEqual(cp.returncode, 1, err)
        self.assertIn(named, err)
        self.assertNotIn("listening on", err)


if __name__ == "__main__":
    unittest.main()
