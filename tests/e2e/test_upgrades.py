#!/usr/bin/python3
"""Upgrade allow-list (issue 15, "h2c smuggling"): a listener forwards `Upgrade` only for the
protocols on its `upgrades:` list (default [websocket]). Against an app that accepts *any*
upgrade (what makes h2c smuggling work), `Upgrade: h2c` never reaches it in any spelling; the
request arrives as a plain request and the client gets that plain answer. WebSockets still
open (the `websockets` client against aiohttp), and a listener that allows `foo` tunnels it.

Run: SLUICE_BIN=/abs/build/sluice /usr/bin/python3 test_upgrades.py -v
"""
import asyncio
import os
import re
import socket
import threading
import unittest

from harness import E2ETestCase, RawClient
from ws_upstream import WsUpstream, ws_connect

# What h2csmuggler sends (RFC 7540 §3.2: the HTTP/1.1 upgrade to cleartext HTTP/2).
H2C_SETTINGS = "AAMAAABkAARAAAAAAAIAAAAA"


class AnyUpgradeUpstream:
    """A raw TCP app that switches to whatever protocol a request asks for first (101, then
    echoes bytes upper-cased), as an app that accepts h2c would; a request without Upgrade gets
    200 and its own head back as the body, on a kept-alive connection. Every head it receives is
    recorded. `X-Answer-Upgrade: P` makes it switch to P instead (an app misbehaving)."""

    def __init__(self, test):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.heads = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()
        test.addCleanup(self.sock.close)

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    @staticmethod
    def _headers(head):
        out = []
        for line in head.split("\r\n")[1:]:
            name, _, value = line.partition(":")
            out.append((name.strip().lower(), value.strip()))
        return out

    def _serve(self, conn):
        buf = b""
        with conn:
            while True:
                while b"\r\n\r\n" not in buf:
                    try:
                        chunk = conn.recv(65536)
                    except OSError:
                        return
                    if not chunk:
                        return
                    buf += chunk
                raw, _, buf = buf.partition(b"\r\n\r\n")
                head = raw.decode("latin-1")
                with self.lock:
                    self.heads.append(head)
                headers = self._headers(head)
                offered = [v for n, v in headers if n == "upgrade"]
                answer = [v for n, v in headers if n == "x-answer-upgrade"]
                if offered:
                    proto = answer[0] if answer else offered[0].split(",")[0].strip()
                    conn.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: %s\r\n"
                                  "Connection: Upgrade\r\n\r\n" % proto).encode())
                    if buf:
                        conn.sendall(buf.upper())
                    while True:
                        try:
                            data = conn.recv(65536)
                        except OSError:
                            return
                        if not data:
                            return
                        conn.sendall(data.upper())
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: "
                             + str(len(raw)).encode() + b"\r\n\r\n" + raw)

    def last_head(self):
        with self.lock:
            return self.heads[-1]


def head_of(request_lines):
    return ("\r\n".join(request_lines) + "\r\n\r\n").encode()


class UpgradeAllowListTest(E2ETestCase):

    def write_config(self, text):
        path = os.path.join(self.make_tmpdir(), "sluice.yaml")
        with open(path, "w") as f:
            f.write(text)
        return path

    def start_listeners(self, upstream_port, upgrades_by_listener):
        """One sluice with a listener per entry (None: no `upgrades` key); returns (sluice,
        [port of each listener])."""
        listeners = ""
        for i, upgrades in enumerate(upgrades_by_listener):
            listeners += "  - {name: l%d, address: 127.0.0.1:0, cluster: app%s}\n" % (
                i, "" if upgrades is None else ", upgrades: [%s]" % ", ".join(upgrades))
        path = self.write_config(
            "admin: {address: 127.0.0.1:0}\nworkers: 1\ndrain: {delay: 0s, budget: 5s, "
            "ws_close_spread: 200ms, ws_close_timeout: 1s}\nlisteners:\n" + listeners +
            "clusters:\n  - {name: app, endpoints: [127.0.0.1:%d]}\n" % upstream_port)
        s = self.start_sluice("--config", path, defaults=False, workers=None)
        m = re.search(r"listening on (.*?) \(\d+ workers?\)", s.log())
        ports = [int(a.rsplit(":", 1)[1]) for a in m.group(1).split(", ")]
        self.assertEqual(len(ports), len(upgrades_by_listener), s.log())
        return s, ports

    def plain_answer(self, port, lines):
        """Sends the head; expects the app's plain 200 (the head it got) and the client
        connection closed after it (it asked to switch, so it may send bytes of the other
        protocol next). Returns the head the app received, lower-cased."""
        c = RawClient(port, timeout=10)
        c.send(head_of(lines))
        r = c.read_response()
        self.assertEqual(r.status, 200, "the upgrade was not refused: %r" % r)
        self.assertTrue(c.closed_within(5), "client connection left open after the plain answer")
        c.close()
        return r.body.decode("latin-1").lower()

    def assertNoUpgradeReached(self, got, what):
        for needle in ("upgrade:", "http2-settings", "h2c", "connection:"):
            self.assertNotIn(needle, got, "%s: %r reached the app:\n%s" % (what, needle, got))

    def switch(self, port, lines, early=b"", echo=True):
        """Sends the head (and early bytes); expects 101 and, with `echo`, a working tunnel (the
        app echoes upper-cased; not for WebSocket, whose frames sluice follows). Returns the 101
        head, lower-cased."""
        c = RawClient(port, timeout=10)
        c.send(head_of(lines) + early)
        got = b""
        while b"\r\n\r\n" not in got:
            chunk = c.sock.recv(4096)
            self.assertTrue(chunk, "closed before a response head: %r" % got)
            got += chunk
        head, _, rest = got.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 101"), head)
        if not echo:
            c.close()
            return head.decode("latin-1").lower()
        c.send(b"tunnelled bytes")
        want = early.upper() + b"TUNNELLED BYTES"
        while len(rest) < len(want):
            chunk = c.sock.recv(65536)
            self.assertTrue(chunk, "tunnel closed early")
            rest += chunk
        self.assertEqual(rest, want)
        c.close()
        return head.decode("latin-1").lower()

    # ---- h2c --------------------------------------------------------------------------------

    def test_h2c_never_reaches_the_app(self):
        app = AnyUpgradeUpstream(self)
        # The default listener (no file, no upgrades key), then one with an explicit list.
        s = self.start_sluice(upstream=app.port)
        base = ["GET /flag HTTP/1.1", "Host: test.local"]
        variants = {
            "h2csmuggler": ["Upgrade: h2c", "HTTP2-Settings: " + H2C_SETTINGS,
                            "Connection: Upgrade, HTTP2-Settings"],
            "upper case": ["UPGRADE: H2C", "HTTP2-Settings: " + H2C_SETTINGS,
                           "CONNECTION: UPGRADE, HTTP2-SETTINGS"],
            "mixed case": ["Upgrade: H2c", "Connection: upgrade"],
            "settings not in Connection": ["Upgrade: h2c", "HTTP2-Settings: " + H2C_SETTINGS,
                                           "Connection: Upgrade"],
            "two Upgrade headers": ["Upgrade: h2c", "Upgrade: h2c", "Connection: Upgrade"],
            "h2c with a version": ["Upgrade: h2c/1", "Connection: Upgrade"],
            "another protocol": ["Upgrade: foo", "Connection: Upgrade"],
            "h2 over cleartext": ["Upgrade: h2", "Connection: Upgrade"],
        }
        def check(port):
            for name, extra in variants.items():
                with self.subTest(port=port, variant=name):
                    got = self.plain_answer(port, base + extra)
                    self.assertTrue(got.startswith("get /flag http/1.1"), got)
                    self.assertNoUpgradeReached(got, name)

        check(s.port)
        s2, (explicit,) = self.start_listeners(app.port, [["websocket"]])
        check(explicit)
        # Nothing the app ever received carried h2c.
        for h in app.heads:
            self.assertNotIn("h2c", h.lower(), h)
        # A plain request on the same listener is unaffected and keeps its connection.
        c = RawClient(s.port, timeout=10)
        for _ in range(2):
            c.send(head_of(base))
            self.assertEqual(c.read_response().status, 200)
        c.close()

    def test_h2c_beside_websocket_forwards_websocket_only(self):
        app = AnyUpgradeUpstream(self)
        s = self.start_sluice(upstream=app.port)
        for offered in ("h2c, websocket", "H2C, WebSocket"):
            with self.subTest(offered=offered):
                self.switch(s.port, ["GET /ws HTTP/1.1", "Host: test.local",
                                     "Upgrade: " + offered,
                                     "HTTP2-Settings: " + H2C_SETTINGS,
                                     "Connection: Upgrade, HTTP2-Settings"], echo=False)
                got = app.last_head().lower()
                self.assertIn("\r\nupgrade: websocket\r\n", got)
                self.assertIn("\r\nconnection: upgrade\r\n", got)
                self.assertNotIn("h2c", got)
                self.assertNotIn("http2-settings", got)
        # Two Upgrade headers, the allowed one second.
        self.switch(s.port, ["GET /ws HTTP/1.1", "Host: test.local", "Upgrade: h2c",
                             "Upgrade: websocket", "Connection: Upgrade"], echo=False)
        got = app.last_head().lower()
        self.assertEqual(got.count("upgrade: "), 1, got)
        self.assertIn("\r\nupgrade: websocket\r\n", got)

    def test_app_switching_to_a_protocol_off_the_list_is_a_502(self):
        app = AnyUpgradeUpstream(self)
        s = self.start_sluice(upstream=app.port)
        c = RawClient(s.port, timeout=10)
        c.send(head_of(["GET /ws HTTP/1.1", "Host: test.local", "Upgrade: websocket",
                        "Connection: Upgrade", "X-Answer-Upgrade: h2c"]))
        r = c.read_response()
        self.assertEqual(r.status, 502, r)
        self.assertIn(b"upgrades list", r.body)
        c.close()

    # ---- what still switches -----------------------------------------------------------------

    def test_websocket_still_opens(self):
        up = self._track(WsUpstream())
        s = self.start_sluice(upstream=up.port)
        s2, (explicit, none) = self.start_listeners(up.port, [["websocket", "foo"], []])

        async def echo(port):
            async with ws_connect("ws://127.0.0.1:%d/ws" % port) as ws:
                await ws.send("through the allow-list")
                return await ws.recv()

        for port in (s.port, explicit):
            self.assertEqual(asyncio.run(asyncio.wait_for(echo(port), 30)),
                             "through the allow-list")
        # `upgrades: []`: not even WebSocket is forwarded; aiohttp answers the plain GET.
        c = RawClient(none, timeout=10)
        c.send(head_of(["GET / HTTP/1.1", "Host: test.local", "Upgrade: websocket",
                        "Connection: Upgrade", "Sec-WebSocket-Version: 13",
                        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="]))
        r = c.read_response()
        self.assertEqual(r.status, 200, r)
        c.close()

    def test_a_listener_allowing_foo_forwards_foo(self):
        app = AnyUpgradeUpstream(self)
        s, (foo, default) = self.start_listeners(app.port, [["websocket", "foo"], None])
        head = self.switch(foo, ["GET /foo HTTP/1.1", "Host: test.local", "Upgrade: Foo/2",
                                 "Connection: Upgrade"], early=b"first ")
        self.assertIn("upgrade: foo/2", head)
        got = app.last_head().lower()
        self.assertIn("\r\nupgrade: foo/2\r\n", got)
        # h2c on that listener is still removed; foo on the default listener too.
        got = self.plain_answer(foo, ["GET / HTTP/1.1", "Host: test.local",
                                      "Upgrade: h2c", "HTTP2-Settings: " + H2C_SETTINGS,
                                      "Connection: Upgrade, HTTP2-Settings"])
        self.assertNoUpgradeReached(got, "h2c on the foo listener")
        got = self.plain_answer(default, ["GET / HTTP/1.1", "Host: test.local", "Upgrade: foo",
                                          "Connection: Upgrade"])
        self.assertNoUpgradeReached(got, "foo on the default listener")


if __name__ == "__main__":
    unittest.main()
