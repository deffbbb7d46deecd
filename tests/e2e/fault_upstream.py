#!/usr/bin/python3
"""A raw-asyncio upstream (no HTTP library) that misbehaves on purpose.

Run: /usr/bin/python3 fault_upstream.py --mode MODE
Prints one line `PORT <p> CONTROL <c>` on stdout once listening.

Modes (what happens on the data port):
  ok                 answers every request `200 ok conn=ID` with Content-Length, keep-alive;
                     paths /early-hints (103 first), /hop (hop-by-hop response headers),
                     /close (Connection: close), /http10 (HTTP/1.0 response) and /trailers
                     (chunked, with trailers X-Checksum and X-Other) are special,
                     and the connection is kept open whatever the response says
  drop-second        answers the first request on each connection; when the second request
                     arrives (fully read) the connection is closed without an answer
  answer-once        answers the very first request the server receives; every later request
                     (on any connection) is read, then its connection closed unanswered
  garbage            answers each request with non-HTTP bytes, then keeps the connection open
  no-answer          accepts and reads, never answers
  close-before-head  reads the request, then closes
  truncate           sends a head with Content-Length 100000 and 1000 body bytes, then closes
  close-delimited    `200` without Content-Length/chunked, N bytes (path /bytes/N, default
                     100000), then closes: the body ends at EOF
  reset              resets connections (RST: SO_LINGER 0, then close) depending on the path:
                       /rst-before-head  reads the request, resets without answering
                       /rst-mid-body     head with Content-Length 1048576, 65536 body bytes,
                                         then resets
                       /rst-mid-upload   reads the head and at most 64 KiB of the body, resets
                     (request bodies by Content-Length only in this mode)
                     every other path is answered like `ok` (`200 ok conn=ID`, keep-alive).
                     With --idle-reset S, a connection still idle S seconds after its last
                     response is reset (a pooled connection reset by the app).

Every request received on the data port is recorded (connection id, head, body length, the
body's first 64 bytes). The control port answers plain HTTP/1.1 (one request per connection):
  GET /stats   JSON {"connections": n, "bytes": total bytes received, "requests": [...]}
  POST /reset  clears the records
"""
import argparse
import asyncio
import json
import socket
import struct
import sys

STATE = {"connections": 0, "bytes": 0, "requests": []}
MODE = "ok"
IDLE_RESET = None  # seconds (--idle-reset, mode reset)


class ParseError(Exception):
    pass


async def read_request(reader, conn_id):
    """Reads one request (head + Content-Length or chunked body). Returns None at EOF
    before any byte of a request."""
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = await reader.read(65536)
        if not chunk:
            if head:
                record(conn_id, head, b"", incomplete=True)
            return None
        STATE["bytes"] += len(chunk)
        head += chunk
    head, rest = head.split(b"\r\n\r\n", 1)
    lines = head.split(b"\r\n")
    headers = {}
    for line in lines[1:]:
        if b":" in line:
            k, v = line.split(b":", 1)
            headers.setdefault(k.strip().lower(), v.strip())
    body = rest
    if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
        while not chunked_complete(body):
            chunk = await reader.read(65536)
            if not chunk:
                break
            STATE["bytes"] += len(chunk)
            body += chunk
    elif b"content-length" in headers:
        n = int(headers[b"content-length"])
        while len(body) < n:
            chunk = await reader.read(65536)
            if not chunk:
                break
            STATE["bytes"] += len(chunk)
            body += chunk
    record(conn_id, head, body)
    return head


def chunked_complete(body):
    """A whole chunked body: the last chunk (0) and its trailer section, which ends with an
    empty line. Walks the chunks (a body's bytes may look like a last chunk)."""
    pos = 0
    while True:
        eol = body.find(b"\r\n", pos)
        if eol < 0:
            return False
        size = int(body[pos:eol].split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            trailers = body[eol + 2:]
            return trailers.startswith(b"\r\n") or b"\r\n\r\n" in trailers
        pos = eol + 2 + size + 2
        if pos > len(body):
            return False


def record(conn_id, head, body, incomplete=False):
    STATE["requests"].append({
        "conn": conn_id,
        "head": head.decode("latin-1"),
        "body_len": len(body),
        "body_start": body[:64].decode("latin-1"),
        "body_end": body[-64:].decode("latin-1"),
        "incomplete": incomplete,
    })


def ok_response(body=b"ok\n"):
    return (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n"
            % len(body)) + body


def ok_special(head, conn_id):
    """`ok` mode: a few paths send unusual but valid responses; the connection stays open
    whatever the response says, so a proxy that wrongly reuses it would be seen doing so."""
    path = head.split(b"\r\n", 1)[0].split(b" ")[1]
    body = b"ok conn=%d\n" % conn_id
    if path == b"/early-hints":
        return (b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
                + ok_response(body))
    if path == b"/hop":
        return (b"HTTP/1.1 200 OK\r\nConnection: X-Resp-Hop, keep-alive\r\nX-Resp-Hop: 1\r\n"
                b"Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nUpgrade: foo/2\r\n"
                b"X-End-To-End: kept\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    if path == b"/close":
        return (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: %d\r\n\r\n"
                % len(body) + body)
    if path == b"/trailers":  # a chunked response with trailers
        return (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n"
                b"%x\r\n%s\r\n0\r\nX-Checksum: sha-of-it\r\nX-Other: 2\r\n\r\n" % (len(body), body))
    if path == b"/http10":
        return b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    return ok_response(body)


def reset_connection(writer):
    """Closes with RST instead of FIN: SO_LINGER on with a zero timeout, then close."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    writer.transport.abort()


async def handle_reset(reader, writer, conn_id):
    """Mode reset: see the module docstring (request bodies by Content-Length only)."""
    loop = asyncio.get_running_loop()
    idle_timer = None
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError as e:
                if e.partial:
                    record(conn_id, e.partial, b"", incomplete=True)
                return
            finally:
                if idle_timer is not None:
                    idle_timer.cancel()
                    idle_timer = None
            STATE["bytes"] += len(head)
            head = head[:-4]
            lines = head.split(b"\r\n")
            parts = lines[0].split(b" ")
            path = parts[1] if len(parts) > 1 else b""
            length = 0
            for line in lines[1:]:
                k, _, v = line.partition(b":")
                if k.strip().lower() == b"content-length":
                    length = int(v.strip())
            if path == b"/rst-mid-upload":
                body = await reader.read(min(length, 65536)) if length else b""
                STATE["bytes"] += len(body)
                record(conn_id, head, body, incomplete=len(body) < length)
                reset_connection(writer)
                return
            body = await reader.readexactly(length) if length else b""
            STATE["bytes"] += len(body)
            record(conn_id, head, body)
            if path == b"/rst-before-head":
                reset_connection(writer)
                return
            if path == b"/rst-mid-body":
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                             b"Content-Length: 1048576\r\n\r\n" + b"r" * 65536)
                await writer.drain()
                await asyncio.sleep(0.05)  # let the bytes reach the peer before the RST
                reset_connection(writer)
                return
            writer.write(ok_response(b"ok conn=%d\n" % conn_id))
            await writer.drain()
            if IDLE_RESET is not None:
                idle_timer = loop.call_later(IDLE_RESET, reset_connection, writer)
    except (ConnectionError, asyncio.IncompleteReadError):
        return
    finally:
        if idle_timer is not None:
            idle_timer.cancel()
        if not writer.transport.is_closing():
            writer.close()


async def handle(reader, writer):
    STATE["connections"] += 1
    conn_id = STATE["connections"]
    if MODE == "reset":
        await handle_reset(reader, writer, conn_id)
        return
    served = 0
    try:
        while True:
            head = await read_request(reader, conn_id)
            if head is None:
                return
            served += 1
            if MODE == "ok":
                writer.write(ok_special(head, conn_id))
            elif MODE == "answer-once":
                if STATE.get("answered"):
                    return
                STATE["answered"] = 1
                writer.write(ok_response(b"ok conn=%d\n" % conn_id))
            elif MODE == "drop-second":
                if served >= 2:
                    return
                writer.write(ok_response(b"ok conn=%d\n" % conn_id))
            elif MODE == "garbage":
                writer.write(b"SSH-2.0-definitely not http\r\n\x00\x01\x02\xff garbage \r\n\r\n")
            elif MODE == "no-answer":
                pass
            elif MODE == "close-before-head":
                return
            elif MODE == "truncate":
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                             b"Content-Length: 100000\r\n\r\n" + b"x" * 1000)
                await writer.drain()
                await asyncio.sleep(0.05)
                return
            elif MODE == "close-delimited":
                path = head.split(b"\r\n", 1)[0].split(b" ")[1]
                n = 100000
                if path.startswith(b"/bytes/"):
                    n = int(path[len(b"/bytes/"):])
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                             b"Connection: close\r\n\r\n")
                left = n
                block = b"y" * 65536
                while left > 0:
                    piece = block[:min(left, len(block))]
                    writer.write(piece)
                    left -= len(piece)
                    await writer.drain()
                return
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        return
    finally:
        try:
            writer.close()
        except Exception:
            pass


async def control(reader, writer):
    try:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = await reader.read(4096)
            if not chunk:
                return
            head += chunk
        line = head.split(b"\r\n", 1)[0]
        if line.startswith(b"POST /reset"):
            STATE["connections_at_reset"] = STATE["connections"]
            STATE["requests"] = []
            STATE["bytes"] = 0
        body = json.dumps(STATE).encode()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        await writer.drain()
    finally:
        writer.close()


async def serve(port):
    data = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
    ctl = await asyncio.start_server(control, "127.0.0.1", 0)
    print("PORT %d CONTROL %d" % (data.sockets[0].getsockname()[1],
                                  ctl.sockets[0].getsockname()[1]), flush=True)
    await asyncio.Event().wait()


def main():
    global MODE
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--mode", default="ok",
                    choices=["ok", "drop-second", "answer-once", "garbage", "no-answer", "close-before-head",
                             "truncate", "close-delimited", "reset"])
    ap.add_argument("--idle-reset", type=float, default=None,
                    help="mode reset: reset a connection idle this many seconds")
    args = ap.parse_args()
    MODE = args.mode
    global IDLE_RESET
    IDLE_RESET = args.idle_reset
    try:
        asyncio.run(serve(args.port))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
