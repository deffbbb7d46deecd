#!/usr/bin/python3
"""gRPC upstream for sluice's end-to-end tests (python3-grpcio, generic handlers, no codegen).

Run: /usr/bin/python3 grpc_app.py --port 0 [--unix PATH] [--tls-cert FILE --tls-key FILE]
         [--name NAME] [--grace S] [--max-workers N] [--reuseport]
Prints one line `PORT <n>` on stdout once listening (`PORT 0` with only --unix), then serves
until SIGTERM or SIGINT: the server then stops gracefully (grpcio sends GOAWAY, calls in flight
get --grace seconds, default 5) and the process exits 0.

Messages are raw bytes (no protobuf): every method takes and returns opaque payloads, so any
client can call them with identity (de)serializers. Service `sluice.test.Echo`, methods:
  Unary         echo the request payload
  ServerStream  request payload ignored; sends `x-count` messages (default 3) of `x-size` bytes
                (default 16), `x-interval-ms` apart (default 0). Message i is
                b"msg-<i>:" padded with b"." to x-size
  ClientStream  answers b"count=<n> bytes=<total> sha256=<hex>" over all request messages;
                pauses `x-interval-ms` (default 0) before reading each next message (a slow app)
  Bidi          echoes each request message as it arrives (b"" ends nothing; the client half-
                close ends the call)
  Sleep         sleeps `x-sleep-ms` (default 0) then echoes; honours cancellation/deadlines
  Peer          answers context.peer() (e.g. b"ipv4:127.0.0.1:51234"): one value per
                client connection, to count the connections a proxy opened
  Info          answers JSON {"name", "calls", "peers": [distinct peers seen]}

Request metadata that every method honours:
  x-status: N         end the call with status code N (after sending what the method would
                      send, so streaming calls end with an error after their messages);
                      x-message: TEXT is the status message (ASCII metadata), or
                      x-message-bin: UTF-8 bytes for any unicode text (grpcio percent-encodes
                      it in grpc-message)
  x-echo-*            copied into the response's initial metadata (as is, -bin keys too)
  x-early-head: 1     the response head (initial metadata) goes out as the call starts, before
                      any message (grpcio otherwise sends it with the first message)
Every successful or failed call carries trailing metadata `x-trailer: done`,
`x-trailer-bin: b"\\x00\\x01\\xfe\\xff"` and `x-upstream-name` (when --name is given).
"""
import argparse
import hashlib
import json
import os
import signal
import sys
import threading
from concurrent import futures

import grpc

SERVICE = "sluice.test.Echo"
TRAILER_BIN = b"\x00\x01\xfe\xff"
NAME = None
STATS_LOCK = threading.Lock()
STATS = {"calls": 0, "peers": set()}


def _md(context):
    return {k: v for k, v in context.invocation_metadata()}


def _begin(context):
    with STATS_LOCK:
        STATS["calls"] += 1
        STATS["peers"].add(context.peer())
    md = _md(context)
    echo = tuple((k, v) for k, v in context.invocation_metadata() if k.startswith("x-echo-"))
    if echo or md.get("x-early-head") == "1":
        context.send_initial_metadata(echo)
    trailers = [("x-trailer", "done"), ("x-trailer-bin", TRAILER_BIN)]
    if NAME:
        trailers.append(("x-upstream-name", NAME))
    context.set_trailing_metadata(tuple(trailers))
    return md


def _finish(context, md):
    """Applies x-status/x-message; returns True when the call ends with an error."""
    code = md.get("x-status")
    if code is None or int(code) == 0:
        return False
    status = next((c for c in grpc.StatusCode if c.value[0] == int(code)), grpc.StatusCode.UNKNOWN)
    context.set_code(status)
    text = md.get("x-message-bin")
    context.set_details(text.decode("utf-8") if text is not None else md.get("x-message", ""))
    return True


def unary(request, context):
    md = _begin(context)
    _finish(context, md)
    return request


def _cancel_event(context):
    """An Event set when the call ends before its handler does (cancelled, deadline passed)."""
    event = threading.Event()
    if not context.add_callback(event.set):  # the call is already over
        event.set()
    return event


def server_stream(request, context):
    md = _begin(context)
    count = int(md.get("x-count", "3"))
    size = int(md.get("x-size", "16"))
    interval = int(md.get("x-interval-ms", "0")) / 1000.0
    cancelled = _cancel_event(context)
    for i in range(count):
        # The app's pacing between messages, cut short when the call is cancelled.
        if i and interval and cancelled.wait(interval):
            return
        if not context.is_active():
            return
        head = b"msg-%d:" % i
        yield head + b"." * max(0, size - len(head))
    _finish(context, md)


def client_stream(request_iterator, context):
    md = _begin(context)
    n = total = 0
    digest = hashlib.sha256()
    interval = int(md.get("x-interval-ms", "0")) / 1000.0
    cancelled = _cancel_event(context) if interval else None
    for msg in request_iterator:
        if interval and cancelled.wait(interval):
            return b""
        n += 1
        total += len(msg)
        digest.update(msg)
    _finish(context, md)
    return b"count=%d bytes=%d sha256=%s" % (n, total, digest.hexdigest().encode())


def bidi(request_iterator, context):
    md = _begin(context)
    for msg in request_iterator:
        yield msg
    _finish(context, md)


def sleep(request, context):
    md = _begin(context)
    # The app's slow work: it ends early when the call is cancelled (a deadline, a reset).
    _cancel_event(context).wait(int(md.get("x-sleep-ms", "0")) / 1000.0)
    _finish(context, md)
    return request


def peer(request, context):
    md = _begin(context)
    _finish(context, md)
    return context.peer().encode()


def info(request, context):
    md = _begin(context)
    _finish(context, md)
    with STATS_LOCK:
        body = {"name": NAME, "calls": STATS["calls"], "peers": sorted(STATS["peers"])}
    return json.dumps(body).encode()


def handler():
    return grpc.method_handlers_generic_handler(SERVICE, {
        "Unary": grpc.unary_unary_rpc_method_handler(unary),
        "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream),
        "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream),
        "Bidi": grpc.stream_stream_rpc_method_handler(bidi),
        "Sleep": grpc.unary_unary_rpc_method_handler(sleep),
        "Peer": grpc.unary_unary_rpc_method_handler(peer),
        "Info": grpc.unary_unary_rpc_method_handler(info),
    })


def main():
    global NAME
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--unix", help="also listen on this Unix socket path")
    ap.add_argument("--no-tcp", action="store_true", help="listen only on --unix")
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    ap.add_argument("--name")
    ap.add_argument("--grace", type=float, default=5.0)
    ap.add_argument("--max-workers", type=int, default=64)
    ap.add_argument("--reuseport", action="store_true",
                    help="SO_REUSEPORT: a new instance may listen on the port of a running one")
    args = ap.parse_args()
    NAME = args.name

    # Streaming calls each hold a worker thread: allow as many concurrent calls as workers.
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=args.max_workers),
                         options=[("grpc.so_reuseport", 1 if args.reuseport else 0),
                                  ("grpc.max_receive_message_length", 64 << 20),
                                  ("grpc.max_send_message_length", 64 << 20)],
                         maximum_concurrent_rpcs=None)
    server.add_generic_rpc_handlers((handler(),))
    creds = None
    if args.tls_cert:
        with open(args.tls_cert, "rb") as f:
            cert = f.read()
        with open(args.tls_key, "rb") as f:
            key = f.read()
        creds = grpc.ssl_server_credentials(((key, cert),))
    port = 0
    if not args.no_tcp:
        addr = "%s:%d" % (args.host, args.port)
        port = server.add_secure_port(addr, creds) if creds else server.add_insecure_port(addr)
        if port == 0:
            sys.exit("grpc_app: cannot listen on %s" % addr)
    if args.unix:
        if os.path.exists(args.unix):
            os.unlink(args.unix)
        target = "unix:" + args.unix
        ok = server.add_secure_port(target, creds) if creds else server.add_insecure_port(target)
        if ok == 0:
            sys.exit("grpc_app: cannot listen on %s" % target)
    server.start()

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print("PORT %d" % port, flush=True)
    while not stop.wait(0.2):
        pass
    server.stop(args.grace).wait()


if __name__ == "__main__":
    main()
