#!/usr/bin/python3
"""WebSocket proxying (issue #5): echo of text, binary, large and fragmented messages through
sluice with the `websockets` client and an aiohttp upstream (ws_upstream.py), many concurrent
sessions, clean close handshakes started by either side, a non-101 answer to an upgrade, early
bytes after the upgrade head, and raw frames trickled byte by byte with control frames between
fragments.

Run: SLUICE_BIN=/abs/build/sluice /usr/bin/python3 test_websocket.py -v
"""
import asyncio
import os
import random
import socket
import time
import unittest

import websockets

from harness import E2ETestCase, RawClient, http, request_bytes, tcp_sockets
from ws_upstream import (OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, WsUpstream,
                         close_payload, raw_ws_handshake, read_ws_frame, upgrade_request,
                         ws_connect, ws_frame)

# The harness stops sluice with SIGTERM at the end of every test and wants exit status 0
# quickly: keep the drain short (environment, so that a sluice without these settings still
# starts and the WebSocket tests fail for WebSocket reasons only).
QUICK_DRAIN_ENV = {"SLUICE_DRAIN_DELAY": "0s", "SLUICE_DRAIN_BUDGET": "5s",
                   "SLUICE_WS_CLOSE_SPREAD": "200ms", "SLUICE_WS_CLOSE_TIMEOUT": "1s"}

SIZES = [0, 1, 125, 126, 127, 65535, 65536, 1 << 20]  # every payload-length encoding


def run_async(coro, timeout=60):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def random_text(n, rng):
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789 éß✓€"
    return "".join(rng.choice(alphabet) for _ in range(n))


class WebSocketTest(E2ETestCase):

    def start_pair(self, *args, workers=1):
        up = self._track(WsUpstream())
        s = self.start_sluice(*args, upstream=up.port, env=QUICK_DRAIN_ENV, workers=workers)
        return up, s

    @staticmethod
    def url(s, path="/ws"):
        return "ws://127.0.0.1:%d%s" % (s.port, path)

    def assertNoOpenSockets(self, port, what, timeout=30.0):
        """No ESTABLISHED/CLOSE_WAIT socket on this host connected to 127.0.0.1:port."""
        deadline = time.monotonic() + timeout
        while True:
            live = [st for st in tcp_sockets(port) if st in ("ESTABLISHED", "CLOSE_WAIT")]
            if not live or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        self.assertEqual(live, [], "%s: connections left open: %r" % (what, live))

    # ---- echo ------------------------------------------------------------------------------

    def test_echo_text_binary_large_and_fragmented(self):
        up, s = self.start_pair()
        rng = random.Random(5)

        async def session(compression):
            async with ws_connect(self.url(s), compression=compression) as ws:
                if compression:
                    self.assertEqual(len(ws.extensions), 1,
                                     "permessage-deflate not negotiated through sluice")
                for n in SIZES:
                    text = random_text(n, rng)
                    await ws.send(text)
                    got = await ws.recv()
                    self.assertEqual((len(got), got == text), (len(text), True),
                                     "text of %d chars" % n)
                    data = os.urandom(n)
                    await ws.send(data)
                    got = await ws.recv()
                    self.assertIsInstance(got, bytes)
                    self.assertEqual((len(got), got == data), (n, True), "binary of %d bytes" % n)
                await ws.send("héllo wörld ✓ 🚀")
                self.assertEqual(await ws.recv(), "héllo wörld ✓ 🚀")
                # Fragmented messages (the library sends one frame per item).
                parts = ["frag-1 ", "frag-2 " * 2000, "frag-3"]
                await ws.send(parts)
                self.assertEqual(await ws.recv(), "".join(parts))
                bparts = [os.urandom(70000), os.urandom(3), os.urandom(126)]
                await ws.send(bparts)
                self.assertEqual(await ws.recv(), b"".join(bparts))
                # A ping through sluice, answered by the upstream.
                pong = await ws.ping(b"ping-through")
                await asyncio.wait_for(pong, 5)
                # 100 messages in a row before reading any echo.
                msgs = ["burst %d %s" % (i, "x" * i) for i in range(100)]
                for m in msgs:
                    await ws.send(m)
                got = [await ws.recv() for _ in msgs]
                self.assertEqual(got, msgs)

        for compression in (None, "deflate"):
            with self.subTest(compression=compression):
                run_async(session(compression))
        st = up.wait_stats(lambda st: st["closed"] == 2)
        self.assertEqual((st["opened"], st["closed"], st["close_codes"]),
                         (2, 2, {"1000": 2}), st)

    def test_raw_frames_trickled_with_control_frames_between_fragments(self):
        up, s = self.start_pair()
        c, _ = raw_ws_handshake(s.port)
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        big = os.urandom(70000)
        mid = bytes(range(256)) * 2
        stream = (ws_frame(OP_TEXT, b"Hel", fin=False) + ws_frame(OP_PING, b"p1") +
                  ws_frame(OP_CONT, b"lo ", fin=False) + ws_frame(OP_PONG, b"unsolicited") +
                  ws_frame(OP_CONT, b"world") + ws_frame(OP_BINARY, mid) +
                  ws_frame(OP_BINARY, big[:1000], fin=False) + ws_frame(OP_PING, b"p2") +
                  ws_frame(OP_CONT, big[1000:]))
        # The first 400 bytes one piece at a time (1, 2, 3, 5, 7 bytes, 1 ms apart): frame
        # headers split at every position; then the rest in 7-byte writes.
        pos, sizes, i = 0, [1, 2, 3, 5, 7], 0
        while pos < len(stream):
            n = sizes[i % len(sizes)] if pos < 400 else 7
            c.send(stream[pos:pos + n])
            pos += n
            i += 1
            if pos < 400:
                time.sleep(0.001)
        frames = [read_ws_frame(c) for _ in range(5)]
        self.assertEqual([(f[0], f[1], f[2]) for f in frames],
                         [(True, OP_PONG, False), (True, OP_TEXT, False), (True, OP_BINARY, False),
                          (True, OP_PONG, False), (True, OP_BINARY, False)])
        self.assertEqual(frames[0][3], b"p1")
        self.assertEqual(frames[1][3], b"Hello world")
        self.assertEqual(frames[2][3], mid)
        self.assertEqual(frames[3][3], b"p2")
        self.assertTrue(frames[4][3] == big, "70000-byte fragmented message corrupted")
        c.send(ws_frame(OP_CLOSE, close_payload(1000, b"done")))
        fin, op, masked, payload = read_ws_frame(c)
        self.assertEqual((op, masked, payload[:2]), (OP_CLOSE, False, close_payload(1000)))
        self.assertTrue(c.closed_within(30), "connection not closed after the close handshake")
        c.close()
        st = up.wait_stats(lambda st: st["closed"] == 1)
        self.assertEqual(st["close_codes"], {"1000": 1})

    # ---- many sessions ---------------------------------------------------------------------

    def test_200_concurrent_sessions_echo(self):
        up, s = self.start_pair(workers=2)
        n = 200

        async def one(i, ws):
            for k in range(5):
                msg = "session %d message %d %s" % (i, k, "y" * (i * 7 % 300))
                await ws.send(msg)
                got = await ws.recv()
                if got != msg:
                    return "session %d: sent %r got %r" % (i, msg[:40], got[:40])
                data = (b"%d:%d:" % (i, k)) * (1 + i % 50)
                await ws.send(data)
                got = await ws.recv()
                if got != data:
                    return "session %d: binary echo mismatch" % i
            return None

        async def main():
            conns = await asyncio.gather(*[ws_connect(self.url(s)) for _ in range(n)],
                                         return_exceptions=True)
            failed = [c for c in conns if isinstance(c, BaseException)]
            ok = [c for c in conns if not isinstance(c, BaseException)]
            try:
                self.assertEqual(len(failed), 0, "%d of %d sessions failed to open, first: %.300r"
                                 % (len(failed), n, failed[:1]))
                st = up.stats()
                self.assertEqual(st["open"], n, st)
                errors = await asyncio.gather(*[one(i, ws) for i, ws in enumerate(ok)])
                self.assertEqual([e for e in errors if e], [])
            finally:
                await asyncio.gather(*[ws.close() for ws in ok], return_exceptions=True)
            self.assertEqual(sorted(ws.close_code for ws in ok), [1000] * n)

        run_async(main(), timeout=80)
        st = up.wait_stats(lambda st: st["closed"] == n)
        self.assertEqual((st["opened"], st["open"], st["closed"], st["close_codes"]),
                         (n, 0, n, {"1000": n}), st)
        self.assertNoOpenSockets(up.port, "sluice to upstream")
        self.assertNoOpenSockets(s.port, "clients to sluice")

    # ---- close handshakes ------------------------------------------------------------------

    def test_client_initiated_close_is_clean_on_both_sides(self):
        up, s = self.start_pair()

        async def main():
            out = []
            for code, reason in ((4000, "client bye"), (1000, "")):
                ws = await ws_connect(self.url(s), compression=None, close_timeout=30)
                await ws.send("before close")
                self.assertEqual(await ws.recv(), "before close")
                t0 = time.monotonic()
                await ws.close(code=code, reason=reason)
                out.append((code, ws.close_code, ws.close_reason, time.monotonic() - t0))
            return out

        for sent, got_code, got_reason, took in run_async(main()):
            # The upstream answers with the code it received: both sides saw the same handshake.
            self.assertEqual(got_code, sent, "close code seen by the client")
            # websockets waits close_timeout (30 s here) for the server to close TCP: a quicker
            # return means sluice closed the client connection once the handshake was done.
            self.assertLess(took, 15, "client connection not closed after the close handshake")
        st = up.wait_stats(lambda st: st["closed"] == 2)
        self.assertEqual((st["open"], st["close_codes"]), (0, {"4000": 1, "1000": 1}), st)
        self.assertNoOpenSockets(up.port, "sluice to upstream")
        self.assertNoOpenSockets(s.port, "clients to sluice")

    def test_server_initiated_close_passes_through(self):
        up, s = self.start_pair()

        async def main():
            ws = await ws_connect(self.url(s), compression=None)
            await ws.send("close:4001")
            try:
                msg = await asyncio.wait_for(ws.recv(), 10)
                return "unexpected message %r" % msg
            except websockets.ConnectionClosed as e:
                return e

        e = run_async(main())
        self.assertIsInstance(e, websockets.ConnectionClosed, e)
        self.assertIsNotNone(e.rcvd, "no Close frame reached the client")
        self.assertEqual((e.rcvd.code, e.rcvd.reason), (4001, "server says bye"))
        self.assertIsNotNone(e.sent, "the client's close reply was not sent")
        st = up.wait_stats(lambda st: st["closed"] == 1)
        # server-initiated:CODE is the code of the client's reply as the upstream received it.
        self.assertEqual(st["close_codes"], {"server-initiated:4001": 1}, st)

    # ---- upgrade edge cases ----------------------------------------------------------------

    def test_non_101_answer_to_upgrade_is_a_plain_response(self):
        up, s = self.start_pair()
        # The aiohttp app answers 200 to an upgrade request for / ...
        c = RawClient(s.port)
        c.send(upgrade_request("/")[0])
        r = c.read_response()
        self.assertEqual((r.status, r.body), (200, b"hello from ws_upstream\n"), r)
        self.assertTrue(c.closed_within(30), "client connection left open after a non-101 "
                        "answer to an upgrade")
        c.close()
        # ... and 400 to a WebSocket handshake without a key.
        head = upgrade_request("/ws")[0]
        head = b"\r\n".join(l for l in head.split(b"\r\n")
                            if not l.startswith(b"Sec-WebSocket-Key"))
        c = RawClient(s.port)
        c.send(head)
        r = c.read_response()
        self.assertEqual(r.status, 400, r)
        self.assertTrue(c.closed_within(30), "client connection left open after a 400 to an "
                        "upgrade")
        c.close()

        async def client_to_root():
            try:
                ws = await ws_connect(self.url(s, "/"))
            except websockets.InvalidStatusCode as e:
                return e.status_code
            await ws.close()
            return "upgraded"

        self.assertEqual(run_async(client_to_root()), 200)
        # sluice still proxies both plain HTTP and WebSockets afterwards.
        self.assertEqual(http(s.port, "GET", "/").status, 200)

        async def echo():
            async with ws_connect(self.url(s)) as ws:
                await ws.send("still fine")
                return await ws.recv()

        self.assertEqual(run_async(echo()), "still fine")

    def test_early_bytes_sent_with_the_upgrade_head(self):
        up, s = self.start_pair()
        blob = bytes(range(256)) * 4
        c, _ = raw_ws_handshake(s.port, early=ws_frame(OP_TEXT, b"early bird") +
                                ws_frame(OP_BINARY, blob))
        f1, f2 = read_ws_frame(c), read_ws_frame(c)
        self.assertEqual((f1[1], f1[2], f1[3]), (OP_TEXT, False, b"early bird"))
        self.assertEqual((f2[1], f2[2], f2[3] == blob), (OP_BINARY, False, True))
        c.send(ws_frame(OP_TEXT, b"after"))
        self.assertEqual(read_ws_frame(c)[3], b"after")
        c.close()
        # Head, a message and the Close frame all in one write.
        c, _ = raw_ws_handshake(s.port, early=ws_frame(OP_TEXT, b"hi and bye") +
                                ws_frame(OP_CLOSE, close_payload(1000)))
        f1, f2 = read_ws_frame(c), read_ws_frame(c)
        self.assertEqual((f1[1], f1[3]), (OP_TEXT, b"hi and bye"))
        self.assertEqual((f2[1], f2[3][:2]), (OP_CLOSE, close_payload(1000)))
        self.assertTrue(c.closed_within(30))
        c.close()
        st = up.wait_stats(lambda st: st["closed"] == 2)
        self.assertEqual(st["close_codes"].get("1000"), 1, st)

    def test_upgrade_on_a_reused_keepalive_connection_then_plain_http(self):
        up, s = self.start_pair()
        c = RawClient(s.port)
        for _ in range(3):  # warm both the client connection and sluice's upstream pool
            c.send(request_bytes("GET", "/"))
            r = c.read_response()
            self.assertEqual(r.status, 200)
        head, accept = upgrade_request("/ws")
        c.send(head)
        r = c.read_head()
        self.assertEqual((r.status, r.header("Sec-WebSocket-Accept")), (101, accept), r)
        c.send(ws_frame(OP_TEXT, b"upgraded late"))
        self.assertEqual(read_ws_frame(c)[3], b"upgraded late")
        c.send(ws_frame(OP_CLOSE, close_payload(1000)))
        self.assertEqual(read_ws_frame(c)[1], OP_CLOSE)
        self.assertTrue(c.closed_within(30))
        c.close()
        # The tunnelled upstream connection must never go back to the pool.
        for i in range(20):
            r = http(s.port, "GET", "/")
            self.assertEqual((r.status, r.body), (200, b"hello from ws_upstream\n"), i)


class OpaqueUpgradeUpstream:
    """A raw TCP upstream that answers any Upgrade request with 101 and then echoes bytes
    upper-cased: a protocol that is not WebSocket, so sluice must tunnel it opaquely."""

    def __init__(self, test):
        import threading
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.requests = []
        self.closed_by_peer = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()
        test.addCleanup(self.sock.close)

    def _serve(self):
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        with conn:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                head += chunk
            head, _, rest = head.partition(b"\r\n\r\n")
            self.requests.append(head.decode("latin-1"))
            conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: shout/1\r\n"
                         b"Connection: Upgrade\r\n\r\n")
            if rest:
                conn.sendall(rest.upper())
            while True:
                data = conn.recv(65536)
                if not data:
                    self.closed_by_peer.set()
                    return
                conn.sendall(data.upper())


class OpaqueTunnelTest(E2ETestCase):
    def test_non_websocket_upgrade_becomes_an_opaque_tunnel(self):
        up = OpaqueUpgradeUpstream(self)
        # Upgrades other than WebSocket are forwarded only when the listener allows them
        # (test_upgrades.py has the rest of the allow-list).
        path = os.path.join(self.make_tmpdir(), "sluice.yaml")
        with open(path, "w") as f:
            f.write("admin: {address: 127.0.0.1:0}\nworkers: 1\ndrain: {delay: 0s}\n"
                    "listeners: [{name: in, address: 127.0.0.1:0, cluster: app, "
                    "upgrades: [websocket, shout]}]\n"
                    "clusters: [{name: app, endpoints: [127.0.0.1:%d]}]\n" % up.port)
        s = self.start_sluice("--config", path, defaults=False, workers=None)
        c = RawClient(s.port, timeout=5)
        # Early bytes of the new protocol in the same write as the head.
        c.send(b"GET /shout HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\n"
               b"Upgrade: shout/1\r\n\r\nearly-")
        got = b""
        while b"\r\n\r\n" not in got:
            got += c.sock.recv(4096)
        head, _, rest = got.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 101"), head)
        self.assertIn(b"upgrade: shout/1", head.lower())
        self.assertIn(b"connection: upgrade", head.lower())
        # The upstream saw the Upgrade request with its Upgrade header kept.
        self.assertIn("upgrade: shout/1", up.requests[0].lower())
        self.assertIn("connection: upgrade", up.requests[0].lower())
        payload = bytes(range(256)) * 512  # 128 KiB of arbitrary bytes, not frames
        c.send(payload)
        want = b"EARLY-" + payload.upper()
        while len(rest) < len(want):
            chunk = c.sock.recv(65536)
            self.assertTrue(chunk, "tunnel closed early")
            rest += chunk
        self.assertEqual(rest, want)
        # Closing the client side ends the tunnel on the upstream side too.
        c.close()
        self.assertTrue(up.closed_by_peer.wait(3), "the upstream side of the tunnel stayed open")


if __name__ == "__main__":
    unittest.main()
