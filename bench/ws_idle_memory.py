#!/usr/bin/python3
"""RSS of sluice per idle WebSocket session.

Opens N WebSocket sessions through one sluice worker to an aiohttp echo upstream, lets them
idle, and reports (RSS after - RSS before) / N of the sluice process.
Usage: /usr/bin/python3 bench/ws_idle_memory.py [N] [path/to/sluice]   (default 2000, build/sluice)
Needs python3-aiohttp and python3-websockets (Debian) and `ulimit -n` above 2N + 100.
The comparison with HAProxy and nginx in the same run is still to come (issue #5).
"""
import asyncio, os, subprocess, sys, time, re, socket
import websockets
from aiohttp import web

N = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
SLUICE = sys.argv[2] if len(sys.argv) > 2 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "build", "sluice")

def rss(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"): return int(line.split()[1]) * 1024

async def ws_handler(request):
    ws = web.WebSocketResponse(); await ws.prepare(request)
    async for msg in ws: await ws.send_str(msg.data)
    return ws

async def main():
    app = web.Application(); app.router.add_get("/ws", ws_handler)
    runner = web.AppRunner(app); await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=4096); await site.start()
    up_port = site._server.sockets[0].getsockname()[1]
    p = subprocess.Popen([SLUICE, "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--workers", "1",
                          "--upstream", f"127.0.0.1:{up_port}", "--drain-delay", "0s", "--access-log", "false"], stderr=subprocess.PIPE, text=True)
    line = p.stderr.readline(); port = int(re.search(r"listening on 127.0.0.1:(\d+)", line).group(1))
    # warm up: 100 sessions open/close so pools and free lists exist
    warm = [await websockets.connect(f"ws://127.0.0.1:{port}/ws") for _ in range(100)]
    for w in warm: await w.close()
    await asyncio.sleep(0.5)
    base = rss(p.pid)
    conns = []
    for i in range(N):
        conns.append(await websockets.connect(f"ws://127.0.0.1:{port}/ws", ping_interval=None))
    for c in conns[:10]:
        await c.send("x"); await c.recv()
    await asyncio.sleep(1.0)
    after = rss(p.pid)
    print(f"sessions={N} rss_base={base} rss_after={after} per_session={(after-base)/N:.0f} bytes")
    for c in conns: await c.close()
    p.terminate(); p.wait()
    await runner.cleanup()

asyncio.run(main())
