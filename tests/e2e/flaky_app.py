#!/usr/bin/python3
"""aiohttp API that fails on demand, then recovers: a third-party API behind a circuit breaker,
for sluice's end-to-end tests (test_breaker.py).

Run: /usr/bin/python3 flaky_app.py --port 0
Prints one line `PORT <n>` on stdout once listening, then serves until killed.

Endpoints:
  ANY  /api/...        200 "ok\\n" while healthy; the configured failure status while failing
  GET  /slow/MS        200 "slow MS\\n" after MS milliseconds
  POST /control        JSON {"fail": bool, "status": n}: starts or stops failing (status 503 by
                       default)
  GET  /control/stats  JSON {"api": n (requests to /api), "in_flight": n, "max_in_flight": n}
"""
import argparse
import asyncio
import sys

from aiohttp import web

STATE = {"fail": False, "status": 503, "api": 0, "in_flight": 0, "max_in_flight": 0}


async def api(request):
    STATE["api"] += 1
    if STATE["fail"]:
        return web.Response(status=STATE["status"], text="failing on purpose\n")
    return web.Response(text="ok\n")


async def slow(request):
    STATE["in_flight"] += 1
    STATE["max_in_flight"] = max(STATE["max_in_flight"], STATE["in_flight"])
    try:
        await asyncio.sleep(int(request.match_info["ms"]) / 1000.0)
    finally:
        STATE["in_flight"] -= 1
    return web.Response(text="slow %s\n" % request.match_info["ms"])


async def control(request):
    doc = await request.json()
    STATE["fail"] = bool(doc.get("fail", False))
    STATE["status"] = int(doc.get("status", 503))
    return web.json_response({"fail": STATE["fail"], "status": STATE["status"]})


async def stats(request):
    return web.json_response({k: STATE[k] for k in ("api", "in_flight", "max_in_flight")})


async def serve(port):
    app = web.Application()
    app.router.add_route("*", "/api/{tail:.*}", api)
    app.router.add_get("/slow/{ms:\\d+}", slow)
    app.router.add_post("/control", control)
    app.router.add_get("/control/stats", stats)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    loop = asyncio.get_running_loop()
    srv = await loop.create_server(runner.server, "127.0.0.1", port, backlog=1024)
    print("PORT %d" % srv.sockets[0].getsockname()[1], flush=True)
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
