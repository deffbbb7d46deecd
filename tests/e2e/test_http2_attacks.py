#!/usr/bin/python3
"""HTTP/2 attack guards (issue #15), end to end: each attack sent as frames (python3-h2, or raw
frames where h2 would refuse to write them) against the real binary, with a bounded outcome
asserted: the connection ends (GOAWAY with the right code, or closed), the counters say why, the
upstream saw a bounded amount of work, and sluice goes on serving other clients.

- Rapid Reset (CVE-2023-44487): streams opened and reset in rounds against a slow upstream that
  counts its concurrent requests (never above the cap, max_concurrent_streams), then thousands
  of HEADERS+RST_STREAM pairs in a few writes; refused streams, then GOAWAY ENHANCE_YOUR_CALM.
- CONTINUATION flood (CVE-2024-28182): many CONTINUATIONs (nghttp2's cap), and a trickle of
  them that the header timeout ends.
- HPACK bomb: one large field referenced again and again (431, counted, in the access log),
  too many fields (HTTP/2 and HTTP/1.1).
- MadeYouReset (CVE-2025-8671): more DATA than the content-length on each new stream (a
  stream error nghttp2 resets), until the budget of stream errors ends the connection.
- PING, SETTINGS and empty-DATA floods (CVE-2019-9512/9515/9518).
- Zero-window stall (CVE-2019-9517) is in test_http2.py (the stream is reset, its upstream
  connection closed); here the client that also stops reading its socket.
- HTTP/2 off on a listener (`http2: {enabled: false}`): the preface gets 505.

Run: SLUICE_BIN=/abs/build/sluice /usr/bin/python3 test_http2_attacks.py -v
"""
import asyncio
import json
import os
import re
import select
import socket
import struct
import threading
import time
import unittest

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

from tls_certs import CertSet
from harness import (LOOPBACK, E2ETestCase, MiB, RawClient, curl, http, request_bytes,
                     tcp_sockets, wait_until)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
EYC = h2.errors.ErrorCodes.ENHANCE_YOUR_CALM


CERTS = None


def setUpModule():
    global CERTS
    CERTS = CertSet.create()


def tearDownModule():
    if CERTS is not None:
        CERTS.cleanup()


def frame(ftype, flags, sid, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", sid) + payload


def settings_frame(ack=False):
    return frame(4, 1 if ack else 0, 0)


class SlowUpstream:
    """An HTTP/1.1 upstream in a thread that holds each request (head received) for `hold`
    seconds before answering, except /fast which it answers at once. It counts requests that
    are active (head received, not answered, connection open) and their maximum: what a cap on
    upstream work must bound. Counted in the protocol callbacks, in the order the events come."""

    def __init__(self, hold=2.0):
        self.hold = hold
        self.active = 0
        self.max_active = 0
        self.total = 0
        self.connections = 0
        self.lock = threading.Lock()
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        self.protocols = set()

        def run():
            asyncio.set_event_loop(self.loop)
            server = self.loop.run_until_complete(
                self.loop.create_server(lambda: _SlowProtocol(self), LOOPBACK, 0))
            self.port = server.sockets[0].getsockname()[1]
            ready.set()
            self.loop.run_forever()
            server.close()
            for p in list(self.protocols):
                p.transport.abort()
            self.loop.run_until_complete(server.wait_closed())
            self.loop.run_until_complete(asyncio.sleep(0))
            self.loop.close()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        if not ready.wait(10):
            raise AssertionError("the slow upstream did not start")

    def stop(self):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    def snapshot(self):
        with self.lock:
            return self.active, self.max_active, self.total


class _SlowProtocol(asyncio.Protocol):
    def __init__(self, up):
        self.up = up
        self.buf = b""
        self.counted = False
        self.transport = None
        self.timer = None

    def connection_made(self, transport):
        self.transport = transport
        self.up.protocols.add(self)
        with self.up.lock:
            self.up.connections += 1

    def data_received(self, data):
        self.buf += data
        while not self.counted and b"\r\n\r\n" in self.buf:
            head, self.buf = self.buf.split(b"\r\n\r\n", 1)
            fast = head.split(b" ", 2)[1].startswith(b"/fast")
            with self.up.lock:
                self.up.active += 1
                self.up.total += 1
                self.up.max_active = max(self.up.max_active, self.up.active)
            self.counted = True
            self.timer = asyncio.get_event_loop().call_later(0 if fast else self.up.hold,
                                                             self.answer)

    def answer(self):
        self.timer = None
        if not self.counted:
            return
        with self.up.lock:
            self.up.active -= 1
        self.counted = False
        self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
        if b"\r\n\r\n" in self.buf:
            self.data_received(b"")

    def connection_lost(self, exc):
        self.up.protocols.discard(self)
        if self.timer:
            self.timer.cancel()
        if self.counted:
            with self.up.lock:
                self.up.active -= 1
            self.counted = False


class H2Raw:
    """A python3-h2 client on a cleartext socket that reads only when asked (pump)."""

    def __init__(self, port, timeout=15.0):
        self.sock = socket.create_connection((LOOPBACK, port), timeout=timeout)
        cfg = h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        self.conn = h2.connection.H2Connection(cfg)
        self.conn.initiate_connection()
        self.conn.increment_flow_control_window(1 << 30)
        self.sock.sendall(self.conn.data_to_send())
        self.reset = {}
        self.ended = set()
        self.headers = {}
        self.goaway = None
        self.closed = False

    def send(self, data=None):
        data = data if data is not None else self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def pump(self, timeout=0.5):
        """Reads what arrives within `timeout`; False once the connection is closed."""
        if self.closed:
            return False
        readable, _, _ = select.select([self.sock], [], [], timeout)
        if not readable:
            return True
        try:
            data = self.sock.recv(1 << 20)
        except (ConnectionResetError, OSError):
            data = b""
        if not data:
            self.closed = True
            return False
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError:
            events = []
        for ev in events:
            if isinstance(ev, h2.events.StreamReset):
                self.reset[ev.stream_id] = ev.error_code
            elif isinstance(ev, h2.events.ResponseReceived):
                self.headers[ev.stream_id] = dict(ev.headers)
            elif isinstance(ev, h2.events.StreamEnded):
                self.ended.add(ev.stream_id)
            elif isinstance(ev, h2.events.DataReceived):
                self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.ConnectionTerminated):
                self.goaway = ev
        try:
            self.send()
        except OSError:
            pass
        return True

    def wait(self, cond, timeout=15.0, what="condition"):
        deadline = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > deadline:
                raise AssertionError("timed out waiting for " + what)
            if not self.pump(0.2) and not cond():
                raise AssertionError("connection closed while waiting for " + what)

    def wait_closed(self, timeout=15.0, what="the connection to close"):
        deadline = time.monotonic() + timeout
        while self.pump(0.2):
            if time.monotonic() > deadline:
                raise AssertionError("timed out waiting for " + what)

    def get(self, path, end_stream=True):
        sid = self.conn.get_next_available_stream_id()
        self.conn.send_headers(sid, [(":method", "GET"), (":scheme", "http"),
                                     (":authority", "app.test"), (":path", path)],
                               end_stream=end_stream)
        return sid

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def read_until_closed(sock, timeout):
    """Reads and discards until EOF (or a reset); False if the socket stays open."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        readable, _, _ = select.select([sock], [], [], 0.2)
        if readable:
            try:
                if not sock.recv(1 << 20):
                    return True
            except (ConnectionResetError, OSError):
                return True
    return False


class Http2AttackCase(E2ETestCase):

    def start_with(self, upstream_port, http2="", limits="", log="", tls=False):
        text = ("admin: {address: 127.0.0.1:0}\nworkers: 1\ndrain: {delay: 0s, budget: 5s}\n"
                "listeners:\n  - name: ingress\n    address: 127.0.0.1:0\n    cluster: app\n"
                + ("    http2: %s\n" % http2 if http2 else "")
                + ("    tls: {cert: %s, key: %s}\n" % tuple(json.dumps(p) for p in
                                                       CERTS.pair("localhost")) if tls else "")
                + "clusters:\n  - name: app\n    endpoints: [127.0.0.1:%d]\n" % upstream_port
                + ("limits: %s\n" % limits if limits else "")
                + ("log: %s\n" % log if log else ""))
        path = os.path.join(self.make_tmpdir(), "sluice.yaml")
        with open(path, "w") as f:
            f.write(text)
        return self.start_sluice("--config", path, defaults=False, workers=None)

    def slow_upstream(self, hold=2.0):
        up = SlowUpstream(hold)
        self.addCleanup(up.stop)
        return up

    def client(self, s):
        c = H2Raw(s.port)
        self.addCleanup(c.close)
        return c

    def metric(self, s, name, **labels):
        text = http(s.admin_port, "GET", "/metrics").body.decode()
        total = None
        for line in text.splitlines():
            if not line.startswith(name + "{") and not line.startswith(name + " "):
                continue
            if all('%s="%s"' % kv in line for kv in labels.items()):
                total = (total or 0) + float(line.rsplit(" ", 1)[1])
        self.assertIsNotNone(total, "no sample %s%r in /metrics" % (name, labels))
        return total

    def wait_metric(self, s, name, predicate, timeout=10.0, **labels):
        deadline = time.monotonic() + timeout
        while True:
            v = self.metric(s, name, **labels)
            if predicate(v):
                return v
            if time.monotonic() > deadline:
                raise AssertionError("%s%r stayed at %r" % (name, labels, v))
            time.sleep(0.05)

    def assertStillServes(self, s, path="/fast"):
        cp = curl("--http2-prior-knowledge", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                  s.url(path))
        self.assertEqual(cp.stdout, b"200", cp.stderr)
        r = http(s.port, "GET", path)
        self.assertEqual(r.status, 200)

    # ---- Rapid Reset -------------------------------------------------------------------

    def test_rapid_reset_rounds_keep_upstream_work_under_the_cap(self):
        """Rounds of 20 streams (the cap) held by a slow upstream, each round reset together
        with the next round's HEADERS in one write: the reset streams still count until their
        upstream connections are closed, so the new ones are refused, and the refusals spend
        the stream-error budget until GOAWAY ENHANCE_YOUR_CALM. The upstream never has more
        than 20 requests at once."""
        up = self.slow_upstream(hold=5.0)
        s = self.start_with(up.port, http2="{max_concurrent_streams: 20}")
        c = self.client(s)
        streams = [c.get("/hold") for _ in range(20)]
        c.send()
        deadline = time.monotonic() + 10
        while up.snapshot()[0] < 20:  # the first round reached the upstream
            self.assertLess(time.monotonic(), deadline, "the requests did not reach the upstream")
            c.pump(0.05)
        opened = 20
        for _ in range(400):
            if c.closed or c.goaway:
                break
            for sid in streams:
                if sid not in c.reset:
                    c.conn.reset_stream(sid, h2.errors.ErrorCodes.CANCEL)
            streams = [c.get("/hold") for _ in range(20)]
            opened += 20
            try:
                c.send()
            except OSError:
                break
            c.pump(0.05)
            self.assertLessEqual(up.snapshot()[1], 20)
        c.wait_closed(timeout=15, what="the connection to end")
        self.assertIsNotNone(c.goaway, "no GOAWAY")
        self.assertEqual(c.goaway.error_code, EYC)
        refused = [sid for sid, code in c.reset.items()
                   if code == h2.errors.ErrorCodes.REFUSED_STREAM]
        self.assertGreater(len(refused), 0)
        active, max_active, total = up.snapshot()
        self.assertLessEqual(max_active, 20)
        self.assertGreaterEqual(total, 20)
        self.assertEqual(self.metric(s, "sluice_http2_flood_closes_total", kind="rapid_reset"), 1)
        self.assertEqual(self.metric(s, "sluice_http2_goaway_sent_total",
                                     reason="enhance_your_calm"), 1)
        self.assertGreaterEqual(self.metric(s, "sluice_http2_resets_total", direction="received"),
                                20)
        self.assertGreaterEqual(self.metric(s, "sluice_http2_resets_total", direction="sent"),
                                len(refused))
        self.wait_metric(s, "sluice_http2_streams_active", lambda v: v == 0)
        self.assertStillServes(s)

    def test_thousands_of_open_and_reset_streams(self):
        """HEADERS and RST_STREAM for 5000 streams as fast as the socket takes them: the
        upstream sees at most the cap (the default 100) at once, the connection ends with
        GOAWAY ENHANCE_YOUR_CALM, and memory stays bounded."""
        up = self.slow_upstream(hold=5.0)
        s = self.start_with(up.port)
        sock = socket.create_connection((LOOPBACK, s.port), timeout=15)
        self.addCleanup(sock.close)
        sock.sendall(PREFACE + settings_frame())
        enc = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        enc.initiate_connection()
        enc.data_to_send()
        batch = bytearray()
        sent = 0
        for i in range(5000):
            sid = 1 + 2 * i
            enc.send_headers(sid, [(":method", "GET"), (":scheme", "http"),
                                   (":authority", "app.test"), (":path", "/hold")],
                             end_stream=True)
            enc.reset_stream(sid, h2.errors.ErrorCodes.CANCEL)
            batch += enc.data_to_send()
            if len(batch) > 32768:
                try:
                    sock.sendall(batch)
                except OSError:
                    break
                sent = i + 1
                batch = bytearray()
        else:
            try:
                sock.sendall(batch)
                sent = 5000
            except OSError:
                pass
        self.assertTrue(read_until_closed(sock, 15), "the connection stayed open")
        self.assertGreater(sent, 100)
        self.assertLessEqual(up.snapshot()[1], 100)
        self.assertEqual(self.metric(s, "sluice_http2_flood_closes_total", kind="rapid_reset"), 1)
        self.wait_metric(s, "sluice_http2_streams_active", lambda v: v == 0)
        self.assertStillServes(s)
        self.assertMemoryBounded(s)

    # ---- CONTINUATION ------------------------------------------------------------------

    def headers_block(self, path="/"):
        enc = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        enc.initiate_connection()
        enc.data_to_send()
        block = enc.encoder.encode([(":method", "GET"), (":scheme", "http"),
                                    (":authority", "app.test"), (":path", path)])
        return block

    def test_continuation_flood_closes_the_connection(self):
        up = self.slow_upstream()
        s = self.start_with(up.port)
        sock = socket.create_connection((LOOPBACK, s.port), timeout=15)
        self.addCleanup(sock.close)
        # HEADERS with END_STREAM and without END_HEADERS, then CONTINUATIONs without it,
        # each with one field.
        data = PREFACE + settings_frame() + frame(1, 0x01, 1, self.headers_block())
        piece = b"\x40\x01x\x01y"  # literal with indexing: "x: y"
        for _ in range(1000):
            data += frame(9, 0, 1, piece)
        try:
            sock.sendall(data)
        except OSError:
            pass
        self.assertTrue(read_until_closed(sock, 10), "the connection stayed open")
        self.assertEqual(self.metric(s, "sluice_http2_flood_closes_total", kind="continuation"),
                         1)
        self.assertEqual(up.snapshot()[2], 0)
        self.assertStillServes(s)

    def test_trickled_continuations_end_at_the_header_timeout(self):
        up = self.slow_upstream()
        s = self.start_with(up.port, limits="{header_timeout: 1s}")
        sock = socket.create_connection((LOOPBACK, s.port), timeout=15)
        self.addCleanup(sock.close)
        sock.sendall(PREFACE + settings_frame() + frame(1, 0x01, 1, self.headers_block()))
        t0 = time.monotonic()
        closed = False
        # One CONTINUATION per 0.3 s (under nghttp2's cap of 8 for 2.4 s), reading meanwhile.
        for _ in range(7):
            if read_until_closed(sock, 0.3):
                closed = True
                break
            try:
                sock.sendall(frame(9, 0, 1, b"\x40\x01x\x01y"))
            except OSError:
                closed = True
                break
        if not closed:
            closed = read_until_closed(sock, 5)
        self.assertTrue(closed, "the connection stayed open")
        elapsed = time.monotonic() - t0
        self.assertGreater(elapsed, 0.9)
        self.assertEqual(self.metric(s, "sluice_http2_goaway_sent_total", reason="header_timeout"),
                         1)
        self.assertEqual(self.metric(s, "sluice_http2_flood_closes_total", kind="continuation"),
                         0)
        self.assertStillServes(s)

    # ---- HPACK bomb and field counts ----------------------------------------------------

    def test_hpack_bomb_gets_431_counted_and_logged(self):
        up = self.slow_upstream()
        s = self.start_with(up.port, log="{format: json, access: true}")
        c = self.client(s)
        # One 4000-byte field, then 300 references to it: ~1.2 MB decoded from ~4 KB sent.
        sid = c.conn.get_next_available_stream_id()
        c.conn.send_headers(sid, [(":method", "GET"), (":scheme", "http"),
                                  (":authority", "app.test"), (":path", "/bomb")]
                            + [("x-bomb", "a" * 4000)] * 300, end_stream=True)
        many = c.conn.get_next_available_stream_id()
        c.conn.send_headers(many, [(":method", "GET"), (":scheme", "http"),
                                   (":authority", "app.test"), (":path", "/many")]
                            + [("x-f%d" % i, "v") for i in range(120)], end_stream=True)
        ok = c.get("/fast")
        c.send()
        c.wait(lambda: {sid, many, ok} <= c.ended, what="the three responses")
        self.assertEqual(c.headers[sid][":status"], "431")
        self.assertEqual(c.headers[many][":status"], "431")
        self.assertEqual(c.headers[ok][":status"], "200")
        self.assertEqual(up.snapshot()[2], 1)  # only /fast reached the upstream
        self.assertEqual(self.metric(s, "sluice_downstream_requests_total", code="4xx"), 2)
        lines = []
        deadline = time.monotonic() + 10
        while len(lines) < 3 and time.monotonic() < deadline:
            lines = [json.loads(l) for l in s.text("out").splitlines() if l.startswith("{")]
            time.sleep(0.05)
        by_path = {l["path"]: l for l in lines}
        self.assertEqual(by_path["/bomb"]["status"], 431)
        self.assertEqual(by_path["/bomb"]["reason"], "header_bytes")
        self.assertEqual(by_path["/bomb"]["protocol"], "HTTP/2")
        self.assertEqual(by_path["/many"]["reason"], "header_fields")
        self.assertEqual(by_path["/fast"]["status"], 200)
        self.assertMemoryBounded(s)

    def test_http11_field_count_limit(self):
        up = self.slow_upstream()
        s = self.start_with(up.port, limits="{max_header_fields: 50}")
        r = http(s.port, "GET", "/fast", [("X-F%d" % i, "v") for i in range(45)])
        self.assertEqual(r.status, 200)
        c = RawClient(s.port)
        c.send(request_bytes("GET", "/fast", [("X-F%d" % i, "v") for i in range(60)]))
        self.assertEqual(c.read_response().status, 431)

    # ---- MadeYouReset ------------------------------------------------------------------

    def test_made_you_reset_ends_with_enhance_your_calm(self):
        """Each new stream sends more DATA than its content-length, a stream error nghttp2
        answers with RST_STREAM PROTOCOL_ERROR: after the budget (20 here), GOAWAY."""
        up = self.slow_upstream(hold=0.5)
        s = self.start_with(up.port, http2="{max_stream_errors: 20}")
        c = self.client(s)
        sent = 0
        for _ in range(20):  # rounds of 5 (under the cap): stream errors, not refusals
            if c.closed or c.goaway:
                break
            sids = []
            for _ in range(5):
                sid = c.conn.get_next_available_stream_id()
                c.conn.send_headers(sid, [(":method", "POST"), (":scheme", "http"),
                                          (":authority", "app.test"), (":path", "/hold"),
                                          ("content-length", "1")])
                sids.append(sid)
            data = c.conn.data_to_send()
            for sid in sids:  # more DATA than the content-length said: a stream error
                data += frame(0, 0x1, sid, b"hello")
            try:
                c.send(data)
            except OSError:
                break
            sent += 5
            c.wait(lambda: c.closed or c.goaway or all(x in c.reset for x in sids),
                   what="the resets")
        c.wait_closed(timeout=10)
        self.assertIsNotNone(c.goaway)
        self.assertEqual(c.goaway.error_code, EYC)
        self.assertLessEqual(sent, 30)
        self.assertEqual(self.metric(s, "sluice_http2_flood_closes_total", kind="stream_errors"),
                         1)
        self.assertEqual(self.metric(s, "sluice_http2_goaway_sent_total",
                                     reason="enhance_your_calm"), 1)
        self.assertStillServes(s)

    # ---- floods ------------------------------------------------------------------------

    def flood(self, s, payload_frame, count, read=False):
        sock = socket.create_connection((LOOPBACK, s.port), timeout=15)
        self.addCleanup(sock.close)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        data = PREFACE + settings_frame() + payload_frame * count
        try:
            sock.sendall(data)
        except OSError:
            pass
        return sock

    def test_ping_flood(self):
        up = self.slow_upstream()
        s = self.start_with(up.port)
        sock = self.flood(s, frame(6, 0, 0, b"12345678"), 20000)
        self.assertTrue(read_until_closed(sock, 15), "the connection stayed open")
        self.assertEqual(self.metric(s, "sluice_http2_flood_closes_total", kind="ping"), 1)
        self.assertStillServes(s)
        self.assertMemoryBounded(s)

    def test_settings_flood(self):
        up = self.slow_upstream()
        s = self.start_with(up.port)
        sock = self.flood(s, settings_frame(), 20000)
        self.assertTrue(read_until_closed(sock, 15), "the connection stayed open")
        self.assertEqual(self.metric(s, "sluice_http2_flood_closes_total", kind="settings"), 1)
        self.assertStillServes(s)

    def test_empty_data_frame_flood(self):
        up = self.slow_upstream(hold=10)
        s = self.start_with(up.port)
        c = self.client(s)
        sid = c.get("/hold", end_stream=False)
        c.send()
        try:
            c.send(frame(0, 0, sid) * 5000)
        except OSError:
            pass
        c.wait_closed(timeout=15)
        self.assertIsNotNone(c.goaway)
        self.assertEqual(c.goaway.error_code, EYC)
        self.assertEqual(self.metric(s, "sluice_http2_flood_closes_total", kind="empty_frames"),
                         1)
        self.wait_metric(s, "sluice_http2_streams_active", lambda v: v == 0)
        self.assertStillServes(s)

    def test_a_client_that_stops_reading_is_closed_not_held(self):
        """Zero-window stall (CVE-2019-9517) from a client that also stops reading its socket:
        a large response fills sluice's queue, sluice stops reading the client, and after the
        idle timeout the stalled stream is reset, its upstream connection closed, and (the
        reset cannot be written either) the connection closed rather than held."""
        up = self.start_aiohttp()
        s = self.start_with(up.port, limits="{idle_timeout: 1s}")
        sock = socket.create_connection((LOOPBACK, s.port), timeout=15)
        self.addCleanup(sock.close)
        enc = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        enc.initiate_connection()
        enc.increment_flow_control_window(1 << 30)
        enc.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: (1 << 31) - 1})
        enc.send_headers(1, [(":method", "GET"), (":scheme", "http"), (":authority", "app.test"),
                             (":path", "/bytes/%d" % (200 * MiB))], end_stream=True)
        sock.sendall(enc.data_to_send())
        # The SETTINGS ACK it needs comes from sluice's SETTINGS, which we never read: sent
        # blind (RFC 9113 lets a client ACK before it reads them).
        sock.sendall(settings_frame(ack=True))
        t0 = time.monotonic()
        s.wait_line("the client took no response bytes", timeout=30, stream="err")
        s.wait_line("reads nothing and every stream stalled; closing", timeout=30, stream="err")
        self.assertGreater(time.monotonic() - t0, 0.9)
        # sluice's side of the socket is closed (FIN queued behind the bytes the client never
        # read): it is no longer ESTABLISHED, though the client has still read nothing.
        wait_until(lambda: "ESTABLISHED" not in tcp_sockets(sock.getsockname()[1]), 15,
                   "sluice to close its socket")
        # Only now does the client read: what was queued, then EOF.
        self.assertTrue(read_until_closed(sock, 30), "the connection stayed open")
        self.assertStillServes(s, "/")
        self.assertMemoryBounded(s)

    # ---- configuration -----------------------------------------------------------------

    def test_settings_from_the_http2_block(self):
        up = self.slow_upstream()
        s = self.start_with(up.port, http2="{max_concurrent_streams: 7, initial_stream_window: "
                            "1MiB, connection_window: 8MiB}")
        c = self.client(s)
        c.wait(lambda: c.conn.remote_settings.max_concurrent_streams == 7, what="SETTINGS")
        self.assertEqual(c.conn.remote_settings.initial_window_size, 1 << 20)
        c.wait(lambda: c.conn.outbound_flow_control_window >= 8 << 20,
               what="the connection window")

    def test_idle_goaway_is_counted_by_its_reason(self):
        up = self.slow_upstream()
        s = self.start_with(up.port, limits="{idle_timeout: 1s}")
        c = self.client(s)
        sid = c.get("/fast")
        c.send()
        c.wait(lambda: sid in c.ended, what="the response")
        c.wait(lambda: c.goaway is not None, what="GOAWAY")
        self.assertEqual(c.goaway.error_code, h2.errors.ErrorCodes.NO_ERROR)
        self.wait_metric(s, "sluice_http2_goaway_sent_total", lambda v: v == 1, reason="idle")
        self.assertEqual(self.metric(s, "sluice_http2_goaway_sent_total"), 1)  # once, not twice
        self.assertEqual(self.metric(s, "sluice_http2_flood_closes_total"), 0)
        self.assertEqual(self.metric(s, "sluice_http2_resets_total"), 0)

    def test_tls_alpn_follows_the_http2_block(self):
        up = self.slow_upstream()
        for http2, want in (("", b"2"), ("{enabled: false}", b"1.1"), ("{alpn: [http/1.1]}", b"1.1"),
                            ("{alpn: [http/1.1, h2]}", b"1.1")):
            s = self.start_with(up.port, http2=http2, tls=True)
            cp = curl("--http2", "--cacert", CERTS.path("ca"), "--resolve",
                      "localhost:%d:127.0.0.1" % s.port, "-s", "-o", "/dev/null",
                      "-w", "%{http_version} %{http_code}", "https://localhost:%d/fast" % s.port)
            self.assertEqual(cp.stdout, want + b" 200", (http2, cp.stderr))

    def test_http2_off_answers_the_preface_with_505(self):
        up = self.slow_upstream()
        s = self.start_with(up.port, http2="{enabled: false}")
        cp = curl("--http2-prior-knowledge", "-s", "-o", "/dev/null", s.url("/fast"))
        self.assertNotEqual(cp.returncode, 0)
        c = RawClient(s.port)
        c.send(PREFACE)
        self.assertEqual(c.read_response().status, 505)
        self.assertEqual(http(s.port, "GET", "/fast").status, 200)


if __name__ == "__main__":
    unittest.main()
