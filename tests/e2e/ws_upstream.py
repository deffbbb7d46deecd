#!/usr/bin/python3
"""aiohttp upstream with WebSocket and server-sent-event endpoints, for sluice's drain and
WebSocket end-to-end tests.

Run: /usr/bin/python3 ws_upstream.py --port 0 [--unix PATH]
Prints one line `PORT <n>` on stdout once listening, then serves until killed (with --unix PATH:
on a Unix-domain socket at PATH instead, and the line is `UNIX <path>`).

Endpoints:
  GET /ws          WebSocket echo (text and binary, permessage-deflate if the client offers it).
                   A text message "close:CODE" makes the server start the close handshake with
                   CODE instead of echoing. When the peer sends a Close frame, the server answers
                   it with the same code (1000 if it had none) and records the code it received;
                   a session whose TCP connection ended without a Close frame is recorded as
                   "abnormal".
  GET /ws-stats    JSON {"opened": n, "open": n, "closed": n,
                         "close_codes": {"1001": k, "abnormal": m, ...},
                         "server_closes": n, "sse_open": n, "sse_started": n,
                         "last_close_at": monotonic seconds or null,
                         "slow_open": n, "held": n}
  GET /sse         text/event-stream (chunked): "data: tick N\\n\\n" every 200 ms, forever. Each
                   event is written in two chunks, split at a position that varies with N, with
                   30 ms between them, so an event boundary never coincides with a chunk boundary
                   for a proxy that does not track it.
  GET /slow/MS     200 "slow MS\\n" after MS milliseconds ("slow_open" in /ws-stats counts those
                   in progress).
  GET /hold        200 "released\\n" once GET /release has been called ("held" in /ws-stats
                   counts those waiting): an in-flight request that ends when the test says so.
  GET /release     releases every /hold, present and future.
  GET /            200 "hello from ws_upstream\\n" (also answers requests that ask for an
                   upgrade: a non-101 answer to an upgrade request).

The second half of this file holds the test side of it, shared by test_websocket.py and
test_drain.py: WsUpstream (this app in a subprocess), raw WebSocket frames over a
harness.RawClient, and a websockets client protocol that timestamps Close frames.
"""
import argparse
import asyncio
import collections
import sys
import time

from aiohttp import WSMsgType, web

STATS = {"opened": 0, "open": 0, "closed": 0, "server_closes": 0, "sse_open": 0,
         "sse_started": 0, "last_close_at": None, "slow_open": 0, "held": 0}
RELEASE = []  # the asyncio.Event /release sets (made in the server's loop)
CLOSE_CODES = collections.Counter()


def record_end(how):
    STATS["open"] -= 1
    STATS["closed"] += 1
    STATS["last_close_at"] = time.monotonic()
    CLOSE_CODES[how] += 1


async def ws_echo(request):
    ws = web.WebSocketResponse(autoclose=False, autoping=True, heartbeat=None, max_msg_size=0,
                               timeout=10.0)
    await ws.prepare(request)
    STATS["opened"] += 1
    STATS["open"] += 1
    how = "abnormal"
    try:
        while True:
            msg = await ws.receive()
            if msg.type == WSMsgType.TEXT:
                if msg.data.startswith("close:"):
                    STATS["server_closes"] += 1
                    await ws.close(code=int(msg.data[6:]), message=b"server says bye")
                    how = "server-initiated:%s" % ws.close_code
                    break
                await ws.send_str(msg.data)
            elif msg.type == WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
            elif msg.type == WSMsgType.CLOSE:
                code = msg.data
                how = str(code)
                reply = code if isinstance(code, int) and 1000 <= code < 5000 and code not in (
                    1005, 1006, 1015) else 1000
                await ws.close(code=reply)
                break
            else:  # CLOSED (EOF without a Close frame), ERROR, CLOSING
                how = "abnormal"
                break
    except (ConnectionResetError, asyncio.CancelledError):
        how = "abnormal"
        raise
    finally:
        record_end(how)
    return ws


async def ws_stats(request):
    doc = dict(STATS)
    doc["close_codes"] = dict(CLOSE_CODES)
    return web.json_response(doc)


async def sse(request):
    resp = web.StreamResponse()
    resp.content_type = "text/event-stream"
    resp.headers["Cache-Control"] = "no-cache"
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    STATS["sse_started"] += 1
    STATS["sse_open"] += 1
    try:
        n = 0
        while True:
            event = b"data: tick %d\n\n" % n
            cut = 1 + n % (len(event) - 1)  # 1 .. len-1: every split point, incl. between \n\n
            await resp.write(event[:cut])
            await asyncio.sleep(0.03)
            await resp.write(event[cut:])
            await asyncio.sleep(0.2)
            n += 1
    except (ConnectionResetError, ConnectionError, asyncio.CancelledError):
        pass
    finally:
        STATS["sse_open"] -= 1
    return resp


async def slow(request):
    ms = int(request.match_info["ms"])
    STATS["slow_open"] += 1
    try:
        await asyncio.sleep(ms / 1000.0)
    finally:
        STATS["slow_open"] -= 1
    return web.Response(text="slow %d\n" % ms)


async def hold(request):
    STATS["held"] += 1
    try:
        await RELEASE[0].wait()
    finally:
        STATS["held"] -= 1
    return web.Response(text="released\n")


async def release(request):
    RELEASE[0].set()
    return web.Response(text="released\n")


async def root(request):
    return web.Response(text="hello from ws_upstream\n")


def make_app():
    app = web.Application()
    app.router.add_get("/ws", ws_echo)
    app.router.add_get("/ws-stats", ws_stats)
    app.router.add_get("/sse", sse)
    app.router.add_get("/slow/{ms:\\d+}", slow)
    app.router.add_get("/hold", hold)
    app.router.add_get("/release", release)
    app.router.add_get("/", root)
    return app


async def serve(port, unix=None):
    RELEASE.append(asyncio.Event())
    runner = web.AppRunner(make_app(), access_log=None, handle_signals=False)
    await runner.setup()
    loop = asyncio.get_running_loop()
    if unix is not None:
        await loop.create_unix_server(runner.server, unix, backlog=2048)
        print("UNIX %s" % unix, flush=True)
        await asyncio.Event().wait()
    srv = await loop.create_server(runner.server, "127.0.0.1", port, backlog=2048)
    print("PORT %d" % srv.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--unix", default=None, help="listen on a Unix-domain socket at this path")
    args = ap.parse_args()
    try:
        asyncio.run(serve(args.port, args.unix))
    except KeyboardInterrupt:
        pass
    return 0


# ---------------------------------------------------------------------------------------------
# Test side (imported by test_websocket.py and test_drain.py; unused when run as the app)

import base64  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import struct  # noqa: E402

import harness  # noqa: E402

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


class WsUpstream(harness.Proc):
    """ws_upstream.py in a subprocess."""

    def __init__(self, unix=None):
        argv = [harness.PYTHON, os.path.join(harness.HERE, "ws_upstream.py"), "--port", "0"]
        if unix is not None:
            argv += ["--unix", unix]
        super().__init__("ws-upstream", argv)
        self.unix = unix
        if unix is not None:
            self.expect_line(r"^UNIX ", stream="out")
            self.port = None
        else:
            self.port = int(self.expect_line(r"^PORT (\d+)", stream="out").group(1))

    def stats(self):
        if self.unix is not None:
            cp = harness.curl("--unix-socket", self.unix, "http://localhost/ws-stats", timeout=15)
            return json.loads(cp.stdout)
        return json.loads(harness.direct_get(self.port, "/ws-stats").body)

    def release(self):
        """Answers every /hold request, present and future."""
        harness.direct_get(self.port, "/release")

    def wait_stats(self, pred, timeout=10.0):
        """Polls /ws-stats until pred(stats) holds; returns the last stats either way."""
        deadline = time.monotonic() + timeout
        st = self.stats()
        while not pred(st) and time.monotonic() < deadline:
            time.sleep(0.05)
            st = self.stats()
        return st


def ws_frame(opcode, payload=b"", fin=True, mask=True, key=None):
    """One WebSocket frame (masked, as a client sends it, unless mask=False)."""
    b0 = (0x80 if fin else 0) | opcode
    mbit = 0x80 if mask else 0
    n = len(payload)
    if n < 126:
        head = bytes([b0, mbit | n])
    elif n < 65536:
        head = bytes([b0, mbit | 126]) + struct.pack("!H", n)
    else:
        head = bytes([b0, mbit | 127]) + struct.pack("!Q", n)
    if not mask:
        return head + payload
    key = key or os.urandom(4)
    return head + key + bytes(c ^ key[i % 4] for i, c in enumerate(payload))


def close_payload(code, reason=b""):
    return struct.pack("!H", code) + reason


def _need(client, n):
    while len(client.buf) < n:
        if not client._fill():
            raise harness.IncompleteResponse("EOF inside a WebSocket frame (have %r)" %
                                             client.buf[:64])


def read_ws_frame(client):
    """Reads one frame from a RawClient: (fin, opcode, masked, payload unmasked)."""
    _need(client, 2)
    b0, b1 = client.buf[0], client.buf[1]
    n = b1 & 0x7F
    pos = 2
    if n == 126:
        _need(client, 4)
        n = struct.unpack("!H", client.buf[2:4])[0]
        pos = 4
    elif n == 127:
        _need(client, 10)
        n = struct.unpack("!Q", client.buf[2:10])[0]
        pos = 10
    masked = bool(b1 & 0x80)
    key = None
    if masked:
        _need(client, pos + 4)
        key = client.buf[pos:pos + 4]
        pos += 4
    _need(client, pos + n)
    payload = client.buf[pos:pos + n]
    client.buf = client.buf[pos + n:]
    if masked:
        payload = bytes(c ^ key[i % 4] for i, c in enumerate(payload))
    return bool(b0 & 0x80), b0 & 0x0F, masked, payload


def upgrade_request(path="/ws", key=None, extra=()):
    """The bytes of a WebSocket upgrade request, and the Sec-WebSocket-Accept it expects."""
    key = key or base64.b64encode(os.urandom(16)).decode()
    headers = [("Host", "test.local"), ("Connection", "Upgrade"), ("Upgrade", "websocket"),
               ("Sec-WebSocket-Version", "13"), ("Sec-WebSocket-Key", key)] + list(extra)
    head = "GET %s HTTP/1.1\r\n" % path + "".join("%s: %s\r\n" % kv for kv in headers) + "\r\n"
    accept = base64.b64encode(hashlib.sha1(key.encode() + WS_GUID).digest()).decode()
    return head.encode("latin-1"), accept


def raw_ws_handshake(port, path="/ws", early=b"", timeout=10.0):
    """A RawClient that completed a WebSocket handshake (asserting a correct 101); `early`
    bytes are sent in the same write as the request head. Returns (client, response)."""
    c = harness.RawClient(port, timeout=timeout)
    head, accept = upgrade_request(path)
    c.send(head + early)
    r = c.read_head()
    if r.status != 101:
        raise AssertionError("upgrade answered %d, not 101: %r" % (r.status, r))
    if r.header("Sec-WebSocket-Accept") != accept:
        raise AssertionError("wrong Sec-WebSocket-Accept in %r" % r)
    return c, r


_TIMED = []


def _timed_protocol():
    if _TIMED:
        return _TIMED[0]
    from websockets.frames import Opcode
    from websockets.legacy.client import WebSocketClientProtocol

    class TimedClientProtocol(WebSocketClientProtocol):
        """Records when the first Close frame arrived (close_frame_at, time.monotonic())."""
        close_frame_at = None

        async def read_frame(self, max_size):
            frame = await super().read_frame(max_size)
            if frame.opcode == Opcode.CLOSE and self.close_frame_at is None:
                self.close_frame_at = time.monotonic()
            return frame

    _TIMED.append(TimedClientProtocol)
    return TimedClientProtocol


def ws_connect(url, **kw):
    """websockets.connect with test defaults: no pings, no size limit, short open timeout,
    Close-frame timestamps (ws.close_frame_at)."""
    import websockets
    opts = dict(max_size=None, ping_interval=None, open_timeout=10, close_timeout=5,
                create_protocol=_timed_protocol())
    opts.update(kw)
    return websockets.connect(url, **opts)


if __name__ == "__main__":
    sys.exit(main())
