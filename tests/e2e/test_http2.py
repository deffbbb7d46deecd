#!/usr/bin/python3
"""HTTP/2 from clients (issue #15), end to end, onto the HTTP/1.1 upstream pools.

Cleartext with prior knowledge (h2c): curl --http2-prior-knowledge, nghttp, h2load (1000
requests over 4 connections, 10 streams each, none failed), a preface that arrives in pieces,
HTTP/1.1 clients on the same listener. TLS with ALPN h2: curl --http2 (and --http1.1 on the
same listener). Per stream: X-Forwarded-*, request ids, the access log; bodies of a few MiB
both ways (digests compared); many concurrent streams on one connection where a slow one (a
slow upstream, and a stream whose client grants no window) does not stall the others; a client
RST_STREAM mid-response (python3-h2): the upstream connection that carried it is never used
again (the aiohttp upstream's connection ids); connection-specific fields refused with
PROTOCOL_ERROR.

Run: SLUICE_BIN=/abs/build/sluice /usr/bin/python3 test_http2.py -v
"""
import hashlib
import json
import os
import re
import select
import socket
import subprocess
import time
import unittest

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.settings

from harness import CLEAN_ENV, LOOPBACK, E2ETestCase, MiB, curl, http, wait_until
from tls_certs import CertSet

PATTERN = bytes(range(256)) * 256  # upstream_app.py's /bytes/N content, repeated
NGHTTP = "/usr/bin/nghttp"
H2LOAD = "/usr/bin/h2load"
CERTS = None


def setUpModule():
    global CERTS
    CERTS = CertSet.create()


def tearDownModule():
    if CERTS is not None:
        CERTS.cleanup()


def pattern_bytes(n):
    return (PATTERN * (n // len(PATTERN) + 1))[:n]


class H2Client:
    """A python3-h2 client on one cleartext connection (prior knowledge), read by hand so a
    test can decide which stream gets window and when to reset one."""

    def __init__(self, port, timeout=15.0, preface_split=None, raw=False):
        self.sock = socket.create_connection((LOOPBACK, port), timeout=timeout)
        # raw: send header fields as given (h2 otherwise strips connection-specific ones).
        config = h2.config.H2Configuration(client_side=True, header_encoding="utf-8",
                                           validate_outbound_headers=not raw,
                                           normalize_outbound_headers=not raw)
        self.conn = h2.connection.H2Connection(config)
        self.conn.initiate_connection()
        # A large connection window: DATA that arrives for a stream after we reset it is not
        # handed to us, and its credit must not starve the other streams.
        self.conn.increment_flow_control_window(1 << 30)
        data = self.conn.data_to_send()
        if preface_split:
            # A part of the preface alone: sluice must wait for the rest, answering nothing
            # (an HTTP/1.1 parser would answer 400 or 505 to "PRI * H").
            self.sock.sendall(data[:preface_split])
            readable, _, _ = select.select([self.sock], [], [], 0.3)
            if readable:
                raise AssertionError("sluice answered a partial preface: %r" % self.sock.recv(4096))
            self.sock.sendall(data[preface_split:])
        else:
            self.sock.sendall(data)
        self.headers = {}
        self.bodies = {}
        self.ended = set()
        self.reset = {}
        self.no_window = set()  # streams whose data is not acknowledged (their window closes)
        self.settings = None
        self.goaway = None

    def request(self, method, path, headers=(), body=None, authority="app.test"):
        sid = self.conn.get_next_available_stream_id()
        h = [(":method", method), (":scheme", "http"), (":authority", authority),
             (":path", path)] + list(headers)
        self.conn.send_headers(sid, h, end_stream=body is None)
        self.bodies[sid] = bytearray()
        self.flush()
        if body is not None:
            self.send_body(sid, body)
        return sid

    def send_body(self, sid, body):
        off = 0
        while off < len(body):
            window = min(self.conn.local_flow_control_window(sid),
                         self.conn.max_outbound_frame_size)
            if window <= 0:
                self.pump()
                continue
            piece = body[off:off + window]
            self.conn.send_data(sid, piece)
            off += len(piece)
            self.flush()
        self.conn.end_stream(sid)
        self.flush()

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def pump(self):
        data = self.sock.recv(262144)
        if not data:
            raise ConnectionError("sluice closed the connection")
        for ev in self.conn.receive_data(data):
            if isinstance(ev, h2.events.ResponseReceived):
                self.headers[ev.stream_id] = dict(ev.headers)
            elif isinstance(ev, h2.events.DataReceived):
                self.bodies.setdefault(ev.stream_id, bytearray()).extend(ev.data)
                if ev.stream_id in self.no_window:
                    self.conn.increment_flow_control_window(ev.flow_controlled_length)
                elif ev.stream_id not in self.reset and ev.stream_id not in self.ended:
                    self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                else:
                    self.conn.increment_flow_control_window(ev.flow_controlled_length)
            elif isinstance(ev, h2.events.StreamEnded):
                self.ended.add(ev.stream_id)
            elif isinstance(ev, h2.events.StreamReset):
                self.reset[ev.stream_id] = ev.error_code
            elif isinstance(ev, h2.events.RemoteSettingsChanged):
                self.settings = {k: v.new_value for k, v in ev.changed_settings.items()}
            elif isinstance(ev, h2.events.ConnectionTerminated):
                self.goaway = ev
        self.flush()

    def wait(self, cond, timeout=15.0, what="condition"):
        deadline = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > deadline:
                raise AssertionError("timed out waiting for " + what)
            self.pump()

    def cancel(self, sid):
        self.conn.reset_stream(sid, h2.errors.ErrorCodes.CANCEL)
        self.reset[sid] = h2.errors.ErrorCodes.CANCEL
        self.flush()

    def close(self):
        try:
            self.conn.close_connection()
            self.flush()
        except OSError:
            pass
        self.sock.close()


class Http2Case(E2ETestCase):

    def write_config(self, text):
        path = os.path.join(self.make_tmpdir(), "sluice.yaml")
        with open(path, "w") as f:
            f.write(text)
        return path

    def start_pair(self, *args):
        up = self.start_aiohttp()
        s = self.start_sluice(*args, upstream=up.port)
        return up, s

    def start_tls(self, up, extra_args=()):
        cert, key = CERTS.pair("localhost")
        text = ("admin: {address: 127.0.0.1:0}\nworkers: 1\ndrain: {delay: 0s, budget: 10s}\n"
                "listeners:\n  - name: ingress\n    address: 127.0.0.1:0\n    cluster: app\n"
                "    tls:\n      cert: %s\n      key: %s\n"
                "clusters:\n  - name: app\n    endpoints: [127.0.0.1:%d]\n"
                % (json.dumps(cert), json.dumps(key), up.port))
        return self.start_sluice("--config", self.write_config(text), *extra_args,
                                 defaults=False, workers=None)

    def h2c(self, s, **kw):
        c = H2Client(s.port, **kw)
        self.addCleanup(c.close)
        return c

    # ---- clients -------------------------------------------------------------------------

    def test_curl_prior_knowledge(self):
        up, s = self.start_pair()
        cp = curl("--http2-prior-knowledge", "-H", "Cookie: a=1", "-w", "\n%{http_version}",
                  s.url("/echo?x=1"))
        self.assertEqual(cp.returncode, 0, cp.stderr)
        body, version = cp.stdout.rsplit(b"\n", 1)
        self.assertEqual(version, b"2")
        doc = json.loads(body)
        self.assertEqual(doc["version"], "1.1")  # the upstream pools speak HTTP/1.1
        self.assertEqual(doc["path"], "/echo")
        self.assertEqual(doc["query"], "x=1")
        names = {k.lower(): v for k, v in doc["headers"]}
        self.assertEqual(names["host"], "127.0.0.1:%d" % s.port)
        self.assertEqual(names["x-forwarded-for"], "127.0.0.1")
        self.assertEqual(names["x-forwarded-proto"], "http")
        self.assertRegex(names["x-request-id"], r"^[0-9a-f]{32}$")
        self.assertEqual(names["cookie"], "a=1")
        self.assertNotIn("transfer-encoding", names)
        # HTTP/1.1 on the same listener is unchanged, including a method starting with "P".
        cp = curl("--http1.1", "-X", "POST", "--data-binary", "abc", "-w", "\n%{http_version}",
                  s.url("/echo"))
        body, version = cp.stdout.rsplit(b"\n", 1)
        self.assertEqual(version, b"1.1")
        self.assertEqual(json.loads(body)["body"], "abc")

    def test_nghttp(self):
        up, s = self.start_pair()
        cp = subprocess.run([NGHTTP, "-n", "-s", s.url("/"), s.url("/echo"), s.url("/bytes/100000"),
                             s.url("/status/204"), s.url("/nope-404-is-upstreams")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=CLEAN_ENV,
                            timeout=30)
        self.assertEqual(cp.returncode, 0, cp.stdout + cp.stderr)
        cp = subprocess.run([NGHTTP, s.url("/bytes/300000")], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=CLEAN_ENV, timeout=30)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertEqual(hashlib.sha256(cp.stdout).hexdigest(),
                         hashlib.sha256(pattern_bytes(300000)).hexdigest())

    def test_h2load_no_failures(self):
        up, s = self.start_pair()
        cp = subprocess.run([H2LOAD, "-n", "1000", "-c", "4", "-m", "10", s.url("/")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=CLEAN_ENV,
                            timeout=120)
        out = cp.stdout.decode()
        self.assertEqual(cp.returncode, 0, out + cp.stderr.decode())
        self.assertIn("requests: 1000 total, 1000 started, 1000 done, 1000 succeeded, 0 failed, "
                      "0 errored, 0 timeout", out)
        self.assertRegex(out, r"status codes: 1000 2xx, 0 3xx, 0 4xx, 0 5xx")

    def test_tls_alpn(self):
        up = self.start_aiohttp()
        s = self.start_tls(up)
        base = "https://localhost:%d" % s.port
        resolve = "localhost:%d:127.0.0.1" % s.port
        for flag, want in (("--http2", b"2"), ("--http1.1", b"1.1")):
            cp = curl(flag, "--cacert", CERTS.path("ca"), "--resolve", resolve,
                      "-w", "\n%{http_version}", base + "/echo")
            self.assertEqual(cp.returncode, 0, cp.stderr)
            body, version = cp.stdout.rsplit(b"\n", 1)
            self.assertEqual(version, want, flag)
            names = {k.lower(): v for k, v in json.loads(body)["headers"]}
            self.assertEqual(names["x-forwarded-proto"], "https")
            self.assertEqual(names["host"], "localhost:%d" % s.port)
        # Several streams over one TLS connection, bodies whole.
        cp = curl("--http2", "--cacert", CERTS.path("ca"), "--resolve", resolve, "-Z",
                  "-o", "/dev/null", "-o", "/dev/null", "-o", "/dev/null",
                  "-w", "%{http_version} %{size_download}\n",
                  base + "/bytes/1000000", base + "/bytes/200000", base + "/")
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertEqual(sorted(cp.stdout.decode().split("\n")[:3]),
                         ["2 1000000", "2 19", "2 200000"])

    # ---- bodies and flow control ---------------------------------------------------------

    def test_bodies_both_ways(self):
        up, s = self.start_pair()
        data = os.urandom(3 * MiB + 12345)
        path = os.path.join(self.make_tmpdir(), "up.bin")
        with open(path, "wb") as f:
            f.write(data)
        # Upload with a Content-Length (curl), and without one (python3-h2: chunked upstream).
        cp = curl("--http2-prior-knowledge", "--data-binary", "@" + path, s.url("/echo"))
        self.assertEqual(cp.returncode, 0, cp.stderr)
        doc = json.loads(cp.stdout)
        self.assertEqual(doc["body_len"], len(data))
        self.assertEqual(doc["sha256"], hashlib.sha256(data).hexdigest())
        c = self.h2c(s)
        sid = c.request("POST", "/echo", body=data)
        c.wait(lambda: sid in c.ended, what="the echo of an upload without a length")
        doc = json.loads(c.bodies[sid])
        self.assertEqual(doc["sha256"], hashlib.sha256(data).hexdigest())
        self.assertIn(["Transfer-Encoding", "chunked"], doc["headers"])
        # Download.
        n = 5 * MiB + 7
        cp = curl("--http2-prior-knowledge", s.url("/bytes/%d" % n))
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertEqual(hashlib.sha256(cp.stdout).hexdigest(),
                         hashlib.sha256(pattern_bytes(n)).hexdigest())
        sid = c.request("GET", "/bytes/%d?chunked=1" % n)
        c.wait(lambda: sid in c.ended, what="a chunked download")
        self.assertEqual(c.bodies[sid], pattern_bytes(n))
        sid = c.request("HEAD", "/bytes/777")
        c.wait(lambda: sid in c.ended, what="HEAD")
        self.assertEqual(c.headers[sid]["content-length"], "777")
        self.assertEqual(c.bodies[sid], b"")

    def test_large_bodies_keep_memory_bounded(self):
        """200 MiB each way over one stream, to a slow upstream reader and to a slow client:
        flow control and the watermarks keep sluice's memory bounded."""
        up, s = self.start_pair()
        n = 200 * MiB
        path = os.path.join(self.make_tmpdir(), "big.bin")
        with open(path, "wb") as f:
            f.truncate(n)  # sparse: zeros
        cp = curl("--http2-prior-knowledge", "-X", "POST", "-T", path,
                  s.url("/discard?ms_per_mib=5"), timeout=120)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertEqual(json.loads(cp.stdout)["received"], n)
        cp = curl("--http2-prior-knowledge", "--limit-rate", "100M", "-o", "/dev/null",
                  "-w", "%{http_version} %{size_download}", s.url("/bytes/%d" % n), timeout=120)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertEqual(cp.stdout, b"2 %d" % n)
        self.assertMemoryBounded(s)

    def test_settings_sent(self):
        up, s = self.start_pair()
        c = self.h2c(s)
        c.wait(lambda: c.settings is not None, what="SETTINGS")
        self.assertEqual(c.settings[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS], 100)
        self.assertEqual(c.settings[h2.settings.SettingCodes.INITIAL_WINDOW_SIZE], 65536)
        self.assertEqual(c.settings[h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE], 65536)
        self.assertNotIn(h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL, c.settings)

    def test_slow_streams_do_not_stall_the_others(self):
        up, s = self.start_pair()
        c = self.h2c(s)
        slow_upstream = c.request("GET", "/sleep/3000")
        # A stream whose client grants no window past the first 64 KiB: its response stays
        # queued in sluice (and its upstream paused), the connection goes on.
        stuck = c.request("GET", "/bytes/%d" % (8 * MiB))
        c.no_window.add(stuck)
        t0 = time.monotonic()
        fast = [c.request("GET", "/echo?i=%d" % i) for i in range(60)]
        big = [c.request("GET", "/bytes/300000") for _ in range(4)]
        c.wait(lambda: all(f in c.ended for f in fast + big), what="the fast streams")
        self.assertLess(time.monotonic() - t0, 2.5)
        self.assertNotIn(slow_upstream, c.ended)
        self.assertNotIn(stuck, c.ended)
        for f in big:
            self.assertEqual(c.bodies[f], pattern_bytes(300000))
        self.assertLessEqual(len(c.bodies[stuck]), 65535)
        c.wait(lambda: slow_upstream in c.ended, what="the slow upstream's stream")
        self.assertEqual(c.bodies[slow_upstream], b"slept 3000\n")
        # The stuck stream gets its window: the rest arrives.
        c.no_window.discard(stuck)
        c.conn.increment_flow_control_window(8 * MiB, stuck)
        c.flush()
        c.wait(lambda: stuck in c.ended, timeout=30, what="the stuck stream")
        self.assertEqual(c.bodies[stuck], pattern_bytes(8 * MiB))

    def test_split_preface(self):
        up, s = self.start_pair()
        c = self.h2c(s, preface_split=7)
        sid = c.request("GET", "/")
        c.wait(lambda: sid in c.ended, what="a response")
        self.assertEqual(c.headers[sid][":status"], "200")
        self.assertEqual(c.bodies[sid], b"hello from aiohttp\n")

    # ---- errors and resets ---------------------------------------------------------------

    def test_client_reset_mid_response_never_reuses_the_upstream_connection(self):
        up, s = self.start_pair()
        c = self.h2c(s)
        first = c.request("GET", "/conn")
        c.wait(lambda: first in c.ended, what="/conn")
        conn_a = json.loads(c.bodies[first])["conn"]
        big = c.request("GET", "/bytes/%d" % (50 * MiB))
        c.wait(lambda: len(c.bodies[big]) > 100000, what="the start of a large body")
        self.assertEqual(c.headers[big]["x-upstream-conn"], str(conn_a))  # pooled, reused
        c.cancel(big)
        after = c.request("GET", "/conn")
        c.wait(lambda: after in c.ended, what="/conn after the reset")
        self.assertNotEqual(json.loads(c.bodies[after])["conn"], conn_a)
        # The reset upstream connection is closed, not parked idle: the one left open is the
        # new one (stats() counts its own connection too).
        wait_until(lambda: up.stats()["open"] - 1 <= 1, 10, "the reset upstream connection closed")
        self.assertEqual(up.stats()["open"] - 1, 1)

    def test_stalled_request_body_resets_the_stream(self):
        up, s = self.start_pair("--idle-timeout", "1s")
        c = self.h2c(s)
        sid = c.conn.get_next_available_stream_id()
        c.conn.send_headers(sid, [(":method", "POST"), (":scheme", "http"),
                                  (":authority", "app.test"), (":path", "/discard")])
        c.conn.send_data(sid, b"x" * 1000)  # and then nothing more
        c.flush()
        t0 = time.monotonic()
        c.wait(lambda: sid in c.reset, timeout=10, what="the stalled stream's reset")
        self.assertGreater(time.monotonic() - t0, 0.9)
        self.assertEqual(c.reset[sid], h2.errors.ErrorCodes.CANCEL)
        s.wait_line("the request body stalled", timeout=30, stream="err")  # read by a thread
        ok = c.request("GET", "/")  # the connection goes on
        c.wait(lambda: ok in c.ended, what="a response after the reset")
        self.assertEqual(c.headers[ok][":status"], "200")

    def test_zero_window_stream_is_reset_and_its_upstream_connection_closed(self):
        up, s = self.start_pair("--idle-timeout", "1s")
        c = self.h2c(s)
        stuck = c.request("GET", "/bytes/%d" % (8 * MiB))
        c.no_window.add(stuck)  # the client never opens its window past the first 64 KiB
        c.wait(lambda: stuck in c.headers, what="the response head")
        conn_a = c.headers[stuck]["x-upstream-conn"]
        t0 = time.monotonic()
        c.wait(lambda: stuck in c.reset, timeout=10, what="the stuck stream's reset")
        self.assertGreater(time.monotonic() - t0, 0.9)
        self.assertEqual(c.reset[stuck], h2.errors.ErrorCodes.CANCEL)
        s.wait_line("the client took no response bytes", timeout=30, stream="err")
        after = c.request("GET", "/conn")
        c.wait(lambda: after in c.ended, what="/conn after the reset")
        self.assertNotEqual(str(json.loads(c.bodies[after])["conn"]), conn_a)

    def test_malformed_requests_are_stream_errors(self):
        up, s = self.start_pair()
        c = self.h2c(s, raw=True)
        bad = c.request("GET", "/", headers=[("connection", "keep-alive")])
        c.wait(lambda: bad in c.reset, what="RST_STREAM")
        self.assertEqual(c.reset[bad], h2.errors.ErrorCodes.PROTOCOL_ERROR)
        bad_te = c.request("GET", "/", headers=[("te", "gzip")])
        c.wait(lambda: bad_te in c.reset, what="RST_STREAM")
        self.assertEqual(c.reset[bad_te], h2.errors.ErrorCodes.PROTOCOL_ERROR)
        # The connection goes on; sluice's own errors come as small text responses.
        ok = c.request("GET", "/echo", headers=[("te", "trailers")])
        c.wait(lambda: ok in c.ended, what="a response")
        self.assertEqual(c.headers[ok][":status"], "200")
        self.assertEqual(up.stats()["requests"], 2)  # the /echo and this /stats

    def test_idle_connection_closes_with_goaway(self):
        up, s = self.start_pair("--idle-timeout", "1s")
        c = self.h2c(s)
        sid = c.request("GET", "/sleep/1500")  # longer than the idle timeout: not idle
        c.wait(lambda: sid in c.ended, what="a response")
        t0 = time.monotonic()
        c.wait(lambda: c.goaway is not None, timeout=5, what="GOAWAY")
        self.assertGreater(time.monotonic() - t0, 0.5)
        self.assertEqual(c.goaway.error_code, h2.errors.ErrorCodes.NO_ERROR)


    # ---- drain ---------------------------------------------------------------------------

    def test_drain_two_goaways_and_streams_in_flight_finish(self):
        """The shutdown notice (last stream id 2^31-1) and a PING, then after its ACK the final
        GOAWAY naming the last stream taken; the five slow streams in flight all finish."""
        up, s = self.start_pair("--drain-budget", "10s")
        calls = 1
        base = up.stats()["requests"]
        p = subprocess.Popen([NGHTTP, "-v", "-n", "--no-dep"] +
                             [s.url("/sleep/1500?i=%d" % i) for i in range(5)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=CLEAN_ENV)
        self.addCleanup(p.kill)
        deadline = time.monotonic() + 10
        while True:  # the five requests reached the upstream (each stats() counts itself)
            calls += 1
            if up.stats()["requests"] - base - calls >= 4:
                break
            self.assertLess(time.monotonic(), deadline, "the requests did not reach the app")
            time.sleep(0.02)
        r = http(s.admin_port, "POST", "/drain", body=b"")
        self.assertEqual(r.status, 202)
        out, err = p.communicate(timeout=30)
        out = out.decode()
        self.assertEqual(p.returncode, 0, out + err.decode())
        goaways = re.findall(r"recv GOAWAY frame <[^>]*>\s*\(last_stream_id=(\d+), "
                             r"error_code=(\w+)", out)
        sent = [int(i) for i in re.findall(r"send HEADERS frame <[^>]*stream_id=(\d+)>", out)]
        self.assertEqual(len(sent), 5, out)
        self.assertEqual(goaways, [("2147483647", "NO_ERROR"), (str(max(sent)), "NO_ERROR")],
                         out)
        self.assertEqual(len(re.findall(r"recv \(stream_id=\d+\) :status: 200", out)), 5, out)
        # An admin-API drain leaves sluice running until its own signal (POST /resume may
        # follow); then it exits 0.
        s.wait_line("drain done", timeout=30)
        self.assertEqual(s.terminate(), 0)
        self.procs.remove(s)


if __name__ == "__main__":
    unittest.main()
