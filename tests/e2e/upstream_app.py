#!/usr/bin/python3
"""aiohttp upstream for sluice's end-to-end tests.

Run: /usr/bin/python3 upstream_app.py --port 0 [--keepalive-timeout S] [--idle-close S]
         [--tls-cert FILE --tls-key FILE [--tls-client-ca FILE]] [--unix PATH]
(--keepalive-timeout is aiohttp's own, checked only about once a second after the first
expiry; --idle-close S closes a connection exactly S seconds after its last request ended.
--tls-cert/--tls-key serve HTTPS instead, with Python's ssl module: TLS 1.2 and 1.3, ALPN
http/1.1, session tickets; --tls-client-ca also requires a client certificate signed by it.)
Prints one line `PORT <n>` on stdout once listening, then serves until killed. With --unix PATH
it listens on a Unix-domain socket at PATH instead (a stale socket file there is replaced) and
prints `UNIX <path>`.

Endpoints:
  GET  /                 200 text "hello from aiohttp\n"
  ANY  /echo             200 JSON: method, path, query, version, headers (raw pairs, in order),
                         body_len, body (latin-1, first 64 KiB), conn (upstream connection id)
  POST /discard          reads the body in a stream, answers JSON {"received": n}
                         (?ms_per_mib=K: sleeps K ms per MiB read, a slow consumer)
  GET  /bytes/N          N bytes streamed with Content-Length (?chunked=1: chunked instead)
  GET  /slow-body        head at once, then 10 chunks of "chunk-i\n" 100 ms apart (chunked)
  GET  /sleep/MS         200 "slept MS\n" after MS milliseconds
  ANY  /status/N         status N (204/304 without a body)
  ANY  /conn             JSON {"conn": id, "conn_requests": k} for the TCP connection
  Over TLS, /echo and /conn also carry "tls": {"version", "cipher", "alpn", "sni" (the name
  the client sent, or null), "session_reused", "client_cert" (the client's subject CN or null)}
  Every response carries X-Upstream-Conn (connection id) and X-Upstream-Conn-Requests, and
  X-Upstream-Name when started with --name NAME.
  GET  /stats            JSON {"accepted": n, "open": m, "requests": r} (counts the /stats
                         request itself in requests)
  POST /stats/reset      resets the counters
"""
import argparse
import asyncio
import hashlib
import itertools
import ssl
import sys

from aiohttp import web

STATE = {"accepted": 0, "open": 0, "requests": 0}
CONN_IDS = {}  # RequestHandler -> [id, requests on it, idle-close timer, transport]
NAME = None  # --name: sent as X-Upstream-Name, to tell upstreams apart
IDLE_CLOSE = None  # seconds: close a connection idle that long (precise, unlike aiohttp's)
_next_id = itertools.count(1)
PATTERN = bytes(range(256)) * 256  # 64 KiB


def conn_info(request):
    info = CONN_IDS.get(request.protocol)
    if info is None:  # should not happen; be robust
        info = CONN_IDS.setdefault(request.protocol, [next(_next_id), 0, None, None])
    return info


def tls_info(request):
    """What the TLS connection under a request negotiated (None over plain TCP)."""
    obj = request.transport.get_extra_info("ssl_object") if request.transport else None
    if obj is None:
        return None
    cert = obj.getpeercert()
    cn = None
    for rdn in (cert or {}).get("subject", ()):
        for k, v in rdn:
            if k == "commonName":
                cn = v
    return {"version": obj.version(), "cipher": obj.cipher()[0],
            "alpn": obj.selected_alpn_protocol(), "sni": getattr(obj, "sni_name", None),
            "session_reused": obj.session_reused, "client_cert": cn}


def make_tls_context(cert, key, client_ca=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols(["http/1.1"])

    def remember_sni(ssl_obj, server_name, _ctx):
        ssl_obj.sni_name = server_name  # read back by tls_info()

    ctx.sni_callback = remember_sni
    if client_ca:
        ctx.load_verify_locations(client_ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def close_if_idle(info):
    info[2] = None
    if info[3] is not None and not info[3].is_closing():
        info[3].close()


@web.middleware
async def count_requests(request, handler):
    STATE["requests"] += 1
    info = conn_info(request)
    info[1] += 1
    if info[2] is not None:
        info[2].cancel()
        info[2] = None
    try:
        return await handler(request)
    finally:
        if IDLE_CLOSE is not None:
            info[2] = asyncio.get_running_loop().call_later(IDLE_CLOSE, close_if_idle, info)


async def root(request):
    return web.Response(text="hello from aiohttp\n")


async def echo(request):
    body = await request.read()
    info = conn_info(request)
    doc = {
        "method": request.method,
        "path": request.path,
        "query": request.query_string,
        "version": "%d.%d" % (request.version.major, request.version.minor),
        "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in request.raw_headers],
        "body_len": len(body),
        "sha256": hashlib.sha256(body).hexdigest(),
        "body": body[:65536].decode("latin-1"),
        "conn": info[0],
        "conn_requests": info[1],
    }
    tls = tls_info(request)
    if tls is not None:
        doc["tls"] = tls
    return web.json_response(doc)


async def discard(request):
    # ?ms_per_mib=K: a slow reader that sleeps K ms per MiB received.
    ms_per_mib = int(request.query.get("ms_per_mib", "0"))
    n = 0
    digest = hashlib.sha256()
    next_pause = 1 << 20
    while True:
        chunk = await request.content.readany()
        if not chunk:
            break
        n += len(chunk)
        digest.update(chunk)
        if ms_per_mib and n >= next_pause:
            next_pause += 1 << 20
            await asyncio.sleep(ms_per_mib / 1000.0)
    return web.json_response({"received": n, "sha256": digest.hexdigest()})


async def stream_bytes(request):
    n = int(request.match_info["n"])
    resp = web.StreamResponse()
    resp.content_type = "application/octet-stream"
    if request.query.get("chunked") == "1":
        resp.enable_chunked_encoding()
    else:
        resp.content_length = n
    await resp.prepare(request)
    if request.method == "HEAD":
        await resp.write_eof()
        return resp
    left = n
    while left > 0:
        piece = PATTERN if left >= len(PATTERN) else PATTERN[:left]
        await resp.write(piece)
        left -= len(piece)
    await resp.write_eof()
    return resp


async def slow_body(request):
    resp = web.StreamResponse()
    resp.content_type = "text/plain"
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    for i in range(10):
        await resp.write(b"chunk-%d\n" % i)
        await asyncio.sleep(0.1)
    await resp.write_eof()
    return resp


async def sleep(request):
    ms = int(request.match_info["ms"])
    await asyncio.sleep(ms / 1000.0)
    return web.Response(text="slept %d\n" % ms)


async def status(request):
    code = int(request.match_info["code"])
    await request.read()
    if code in (204, 304) or code < 200:
        return web.Response(status=code)
    return web.Response(status=code, text="status %d\n" % code)


async def conn(request):
    await request.read()
    info = conn_info(request)
    doc = {"conn": info[0], "conn_requests": info[1]}
    tls = tls_info(request)
    if tls is not None:
        doc["tls"] = tls
    return web.json_response(doc)


async def stats(request):
    return web.json_response(dict(STATE))


async def stats_reset(request):
    STATE["accepted"] = 0
    STATE["requests"] = 0
    return web.json_response(dict(STATE))


async def tag_response(request, response):
    info = CONN_IDS.get(request.protocol)
    if info is not None:
        response.headers["X-Upstream-Conn"] = str(info[0])
        response.headers["X-Upstream-Conn-Requests"] = str(info[1])
    if NAME is not None:
        response.headers["X-Upstream-Name"] = NAME


def make_app():
    app = web.Application(middlewares=[count_requests], client_max_size=1 << 40)
    app.on_response_prepare.append(tag_response)
    app.router.add_get("/", root)
    app.router.add_route("*", "/echo", echo)
    app.router.add_route("*", "/discard", discard)
    app.router.add_get("/bytes/{n:\\d+}", stream_bytes)
    app.router.add_get("/slow-body", slow_body)
    app.router.add_get("/sleep/{ms:\\d+}", sleep)
    app.router.add_route("*", "/status/{code:\\d+}", status)
    app.router.add_route("*", "/conn", conn)
    app.router.add_get("/stats", stats)
    app.router.add_post("/stats/reset", stats_reset)
    return app


async def serve(port, keepalive_timeout, host="127.0.0.1", tls=None, unix=None):
    # Header limits well above sluice's 64 KiB default, so sluice's own limits are tested.
    runner = web.AppRunner(make_app(), keepalive_timeout=keepalive_timeout, access_log=None,
                           max_line_size=1 << 20, max_field_size=1 << 20)
    await runner.setup()
    server = runner.server
    orig_made, orig_lost = server.connection_made, server.connection_lost

    def made(handler, transport):
        STATE["accepted"] += 1
        STATE["open"] += 1
        info = CONN_IDS[handler] = [next(_next_id), 0, None, transport]
        if IDLE_CLOSE is not None:
            info[2] = loop.call_later(IDLE_CLOSE, close_if_idle, info)
        orig_made(handler, transport)

    def lost(handler, exc=None):
        STATE["open"] -= 1
        info = CONN_IDS.pop(handler, None)
        if info is not None and info[2] is not None:
            info[2].cancel()
        orig_lost(handler, exc)

    loop = asyncio.get_running_loop()
    server.connection_made = made
    server.connection_lost = lost
    if unix is not None:
        # asyncio replaces a stale socket file left by an earlier run at the same path.
        await loop.create_unix_server(server, unix, backlog=1024, ssl=tls)
        print("UNIX %s" % unix, flush=True)
        await asyncio.Event().wait()
    # SO_REUSEPORT: a test may hold the port (harness.reserve_port) to restart us on it.
    srv = await loop.create_server(server, host, port, backlog=1024, ssl=tls, reuse_port=True)
    print("PORT %d" % srv.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--keepalive-timeout", type=float, default=75.0)
    ap.add_argument("--idle-close", type=float, default=None,
                    help="close a connection after this many idle seconds (precise)")
    ap.add_argument("--name", default=None, help="sent as X-Upstream-Name on every response")
    ap.add_argument("--host", default="127.0.0.1", help="address to listen on")
    ap.add_argument("--tls-cert", default=None, help="serve HTTPS with this PEM certificate")
    ap.add_argument("--tls-key", default=None, help="the PEM private key of --tls-cert")
    ap.add_argument("--tls-client-ca", default=None,
                    help="require a client certificate signed by these PEM CAs")
    ap.add_argument("--unix", default=None,
                    help="listen on a Unix-domain socket at this path instead of TCP")
    args = ap.parse_args()
    if bool(args.tls_cert) != bool(args.tls_key) or (args.tls_client_ca and not args.tls_cert):
        ap.error("--tls-cert and --tls-key go together (and --tls-client-ca needs them)")
    tls = make_tls_context(args.tls_cert, args.tls_key, args.tls_client_ca) \
        if args.tls_cert else None
    global IDLE_CLOSE, NAME
    IDLE_CLOSE = args.idle_close
    NAME = args.name
    try:
        asyncio.run(serve(args.port, args.keepalive_timeout, args.host, tls, args.unix))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
