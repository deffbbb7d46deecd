#!/usr/bin/python3
"""An aiohttp app as a new user writes it, for the connection-herd tests (issue 17): served by
aiohttp's own TCPSite with its default accept backlog (128), so a herd of connects overflows
its accept queue unless the proxy in front paces them.

Run: /usr/bin/python3 herd_app.py --port 0
Prints `PORT <n>` once listening, then serves until killed.

Endpoints:
  GET /ws     WebSocket echo (text and binary)
  GET /       200 "hello from the herd app\n"
  GET /stats  JSON {"ws_opened": n, "ws_open": m, "requests": r, "accepted": a}
"""
import argparse
import asyncio
import sys

from aiohttp import WSMsgType, web

STATS = {"ws_opened": 0, "ws_open": 0, "requests": 0, "accepted": 0}


async def ws_echo(request):
    ws = web.WebSocketResponse(heartbeat=None, max_msg_size=0)
    await ws.prepare(request)
    STATS["ws_opened"] += 1
    STATS["ws_open"] += 1
    try:
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                await ws.send_str(msg.data)
            elif msg.type == WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
    finally:
        STATS["ws_open"] -= 1
    return ws


async def root(request):
    STATS["requests"] += 1
    return web.Response(text="hello from the herd app\n")


async def stats(request):
    return web.json_response(STATS)


async def serve(port):
    app = web.Application()
    app.router.add_get("/ws", ws_echo)
    app.router.add_get("/", root)
    app.router.add_get("/stats", stats)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    orig_made = runner.server.connection_made

    def made(handler, transport):
        STATS["accepted"] += 1
        orig_made(handler, transport)

    runner.server.connection_made = made
    site = web.TCPSite(runner, "127.0.0.1", port)  # aiohttp's default backlog
    await site.start()
    print("PORT %d" % site._server.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    try:
        asyncio.run(serve(args.port))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
