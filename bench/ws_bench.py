#!/usr/bin/python3
"""WebSocket benchmarks for sluice (issue #5, "Benchmarks (bench/)").

Part 1, idle memory: N idle WebSocket sessions through sluice, HAProxy and nginx (one worker
each) to the same aiohttp echo upstream, in one run. Reports each proxy's RSS growth per session
(RSS summed over all its processes): (RSS with N idle sessions - RSS after a warm-up of 500
sessions opened at once and closed) / N, and the marginal growth from N/2 to N sessions (which
leaves out whatever a process keeps whatever the count: buffer pools, tables sized by the
first burst).

Part 2, drain: N sessions through sluice (--drain-delay 0s --ws-close-spread 10s
--ws-close-timeout 3s --drain-budget 25s), SIGTERM, then when each client got its Close 1001,
the spread achieved, time to sluice's exit, its exit status and its CPU time.

Usage (Debian's python3 has aiohttp and websockets; run as root for a private network namespace):
    /usr/bin/python3 bench/ws_bench.py [--sessions N] [--drain-sessions N]
        [--proxies sluice,haproxy,nginx] [--skip-idle] [--skip-drain] [--sluice PATH] [--out FILE]
Writes the Markdown report to bench/ws_bench.md (--out) and prints it.

Process layout: the upstream runs in its own process (it holds N descriptors), the clients in
this one (N descriptors), each proxy in its own process group (2N descriptors). The proxy is
pinned to core 0, clients and upstream to core 1 (when there are 2 cores). Every process started
here is killed (its process group) on exit.
"""
import argparse, asyncio, datetime, os, re, resource, shlex, signal, socket, subprocess, sys
import tempfile, threading, time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PY = "/usr/bin/python3"
FD_MARGIN = 200          # descriptors a proxy needs beyond its 2 per session
BATCH = 500              # connects in flight at once
WARMUP_SESSIONS = BATCH  # opened and closed before the baseline


def log(*a):
    print("ws_bench:", *a, file=sys.stderr, flush=True)


# ------------------------------------------------------------------ upstream (separate process)
def upstream_main():
    from aiohttp import web

    async def ws_handler(request):
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == web.WSMsgType.TEXT:
                await ws.send_str(msg.data)
            elif msg.type == web.WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
        return ws

    async def main():
        app = web.Application()
        app.router.add_get("/ws", ws_handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=4096)
        await site.start()
        print(site._server.sockets[0].getsockname()[1], flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


# ------------------------------------------------------------------ process helpers
PROCS = []   # Popen objects, each the leader of its own process group


def spawn(cmd, cpu=None, **kw):
    def pre():
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})
    p = subprocess.Popen(cmd, start_new_session=True, preexec_fn=pre, **kw)
    PROCS.append(p)
    return p


def kill_group(p, grace=5.0):
    if p.poll() is None:
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            p.wait(grace)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(p.pid, signal.SIGKILL)   # leftovers (nginx worker) even if the leader is gone
    except (ProcessLookupError, PermissionError):
        pass
    try:
        p.wait(2)
    except subprocess.TimeoutExpired:
        pass


def tree_pids(root):
    parent = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    s = f.read()
                parent[int(d)] = int(s[s.rindex(")") + 2:].split()[1])
            except (OSError, ValueError):
                pass
    keep, changed = {root}, True
    while changed:
        changed = False
        for pid, pp in parent.items():
            if pid not in keep and pp in keep:
                keep.add(pid)
                changed = True
    return sorted(p for p in keep if p in parent)


def rss_tree(root):
    total = 0
    for pid in tree_pids(root):
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


def fd_count(root):
    n = 0
    for pid in tree_pids(root):
        try:
            n += len(os.listdir(f"/proc/{pid}/fd"))
        except OSError:
            pass
    return n


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        s = f.read()
    fields = s[s.rindex(")") + 2:].split()
    return int(fields[11]) + int(fields[12])   # utime, stime (fields 14, 15)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, p, name, timeout=10):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if p.poll() is not None:
            raise RuntimeError(f"{name} exited during start-up (status {p.returncode})")
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{name} not listening on 127.0.0.1:{port}")


def established(port, direction="dport"):
    out = subprocess.run(["ss", "-Htn", "state", "established", f"( {direction} = :{port} )"],
                         capture_output=True, text=True).stdout
    return sum(1 for l in out.splitlines() if l.strip())


# ------------------------------------------------------------------ proxies
def start_sluice(tmp, up_port, cpu, extra=()):
    logf = open(os.path.join(tmp, "sluice.log"), "w+")
    p = spawn([ARGS.sluice, "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--workers", "1",
               "--upstream", f"127.0.0.1:{up_port}", "--access-log", "false", *extra], cpu=cpu,
              stderr=logf)
    end = time.monotonic() + 10
    while time.monotonic() < end:
        logf.seek(0)
        m = re.search(r"listening on 127\.0\.0\.1:(\d+)", logf.read())
        if m:
            return p, int(m.group(1)), logf
        if p.poll() is not None:
            break
        time.sleep(0.05)
    logf.seek(0)
    raise RuntimeError("sluice did not start: " + logf.read())


def start_haproxy(tmp, up_port, cpu, n):
    port = free_port()
    cfg = os.path.join(tmp, "haproxy.cfg")
    # HAProxy refuses to start when 2 * maxconn + its own overhead exceeds the descriptor limit.
    maxconn = min(n + 100, (resource.getrlimit(resource.RLIMIT_NOFILE)[0] - 100) // 2)
    with open(cfg, "w") as f:
        f.write(f"""global
  nbthread 1
  maxconn {maxconn}

defaults
  mode http
  maxconn {maxconn}
  timeout connect 5s
  timeout client 1h
  timeout server 1h
  timeout tunnel 1h
  timeout http-request 10s

frontend fe
  bind 127.0.0.1:{port}
  default_backend be

backend be
  server up1 127.0.0.1:{up_port} maxconn {n + 100}
""")
    logf = open(os.path.join(tmp, "haproxy.log"), "w")
    p = spawn(["haproxy", "-db", "-f", cfg], cpu=cpu, stdout=logf, stderr=subprocess.STDOUT)
    wait_port(port, p, "haproxy")
    return p, port, logf


def start_nginx(tmp, up_port, cpu, n):
    port = free_port()
    d = os.path.join(tmp, "nginx")
    os.makedirs(os.path.join(d, "tmp"), exist_ok=True)
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    # nginx starts closing connections still waiting for their request ("worker_connections are
    # not enough, reusing connections") once fewer than 1/16 of worker_connections are free: allow
    # 2N plus that reserve. This may exceed the descriptor limit (nginx only warns); the
    # descriptors actually used stay at 2N + a few.
    wc = (2 * n + 100) * 16 // 15 + 1
    with open(os.path.join(d, "nginx.conf"), "w") as f:
        f.write(f"""worker_processes 1;
worker_rlimit_nofile {hard};
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections {wc}; }}
http {{
  access_log off;
  client_body_temp_path {d}/tmp/body;
  proxy_temp_path {d}/tmp/proxy;
  fastcgi_temp_path {d}/tmp/fastcgi;
  uwsgi_temp_path {d}/tmp/uwsgi;
  scgi_temp_path {d}/tmp/scgi;
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    location / {{
      proxy_pass http://127.0.0.1:{up_port};
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection "upgrade";
      proxy_read_timeout 1h;
      proxy_send_timeout 1h;
    }}
  }}
}}
""")
    logf = open(os.path.join(d, "stderr.log"), "w")
    p = spawn(["nginx", "-p", d, "-c", os.path.join(d, "nginx.conf"), "-g", "daemon off;"],
              cpu=cpu, stdout=logf, stderr=subprocess.STDOUT)
    wait_port(port, p, "nginx")
    return p, port, logf


# ------------------------------------------------------------------ clients
async def open_sessions(port, n, retries=3):
    import websockets
    uri = f"ws://127.0.0.1:{port}/ws"

    async def one():
        for attempt in range(retries):
            try:
                return await websockets.connect(uri, ping_interval=None, compression=None,
                                                open_timeout=30, close_timeout=1, max_queue=4)
            except Exception as e:   # noqa: BLE001 (counted below)
                err = e
                await asyncio.sleep(0.2 * (attempt + 1))
        one.errors.append(repr(err))
        return None
    one.errors = []
    conns = []
    for i in range(0, n, BATCH):
        res = await asyncio.gather(*(one() for _ in range(min(BATCH, n - i))))
        conns.extend(c for c in res if c is not None)
    if one.errors:
        log(f"  {len(one.errors)} of {n} connects failed, e.g. {one.errors[0]}")
    return conns


def abort_all(conns):
    for c in conns:
        try:
            c.transport.abort()
        except Exception:   # noqa: BLE001
            pass


async def echo_check(conns, k=10):
    ok = 0
    for c in conns[:k]:
        try:
            await c.send("ping")
            if await asyncio.wait_for(c.recv(), 5) == "ping":
                ok += 1
        except Exception:   # noqa: BLE001
            pass
    return ok, min(k, len(conns))


async def wait_stable_rss(pid, min_wait=2.0, max_wait=20.0):
    """Sample every 0.5 s until two samples 1 s apart differ by < 0.2 % (idle), at most max_wait."""
    t0 = time.monotonic()
    samples = []
    while True:
        await asyncio.sleep(0.5)
        samples.append(rss_tree(pid))
        el = time.monotonic() - t0
        if el >= min_wait and len(samples) >= 3 and abs(samples[-1] - samples[-3]) <= 0.002 * samples[-1]:
            return samples[-1]
        if el >= max_wait:
            return samples[-1]


# ------------------------------------------------------------------ part 1
async def idle_memory(tmp, up_port, n, proxy_cpu):
    rows = []
    for name in ARGS.proxies:
        log(f"idle memory: {name}, {n} sessions")
        sub = os.path.join(tmp, f"idle-{name}")
        os.makedirs(sub)
        if name == "sluice":
            p, port, logf = start_sluice(sub, up_port, proxy_cpu, ["--drain-delay", "0s"])
        elif name == "haproxy":
            p, port, logf = start_haproxy(sub, up_port, proxy_cpu, n)
        elif name == "nginx":
            p, port, logf = start_nginx(sub, up_port, proxy_cpu, n)
        else:
            raise SystemExit(f"unknown proxy {name}")
        conns = []
        try:
            start_rss = rss_tree(p.pid)
            # The warm-up opens as many sessions at once as the measured run does, so caches
            # that grow with connects in flight (buffer pools) are full before the baseline.
            warm = await open_sessions(port, WARMUP_SESSIONS)
            wok, wk = await echo_check(warm)
            for w in warm:
                await w.close()
            base = await wait_stable_rss(p.pid, min_wait=1.0)
            t0 = time.monotonic()
            conns = await open_sessions(port, n // 2)
            half_n = len(conns)
            half = await wait_stable_rss(p.pid)
            conns += await open_sessions(port, n - n // 2)
            t_open = time.monotonic() - t0
            ok, k = await echo_check(conns)
            after = await wait_stable_rss(p.pid)
            marginal = ((after - half) / (len(conns) - half_n) if len(conns) > half_n
                        else float("nan"))
            up_est = established(up_port)
            cl_est = established(port)
            npids = len(tree_pids(p.pid))
            fds = fd_count(p.pid)
            alive = p.poll() is None
            per = (after - base) / len(conns) if conns else float("nan")
            log(f"  {name}: opened {len(conns)} in {t_open:.1f}s, base {base} after {after} "
                f"-> {per:.0f} B/session; upstream conns {up_est}, client conns {cl_est}, proxy fds {fds}, echo {ok}/{k}")
            log(f"  {name}: marginal (from {half_n} to {len(conns)} sessions) {marginal:.0f} B/session")
            rows.append(dict(name=name, n=n, opened=len(conns), t_open=t_open, start=start_rss,
                             base=base, after=after, per=per, marginal=marginal,
                             up_est=up_est, cl_est=cl_est,
                             echo=f"{ok}/{k}", warm_echo=f"{wok}/{wk}", npids=npids, fds=fds, alive=alive))
        finally:
            abort_all(conns)
            kill_group(p)
            logf.close()
            # let the upstream see every connection gone before the next proxy
            for _ in range(100):
                if established(up_port, "sport") <= 1:
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(1.0)
    return rows


# ------------------------------------------------------------------ part 2
async def drain(tmp, up_port, n, proxy_cpu):
    from websockets.exceptions import ConnectionClosed
    spread, budget = 10.0, 25.0
    sub = os.path.join(tmp, "drain")
    os.makedirs(sub)
    flags = ["--drain-delay", "0s", "--ws-close-spread", "10s", "--ws-close-timeout", "3s",
             "--drain-budget", "25s"]
    p, port, logf = start_sluice(sub, up_port, proxy_cpu, flags)
    conns = []
    try:
        log(f"drain: opening {n} sessions through sluice")
        conns = await open_sessions(port, n)
        ok, k = await echo_check(conns)
        await asyncio.sleep(1.0)
        up_est = established(up_port)
        log(f"  opened {len(conns)}, echo {ok}/{k}, upstream conns {up_est}; SIGTERM")

        state = {"cpu": None, "exit_t": None}
        clk = os.sysconf("SC_CLK_TCK")

        def sampler():
            while p.poll() is None:
                try:
                    state["cpu"] = cpu_ticks(p.pid)
                except (OSError, ValueError, IndexError):
                    break
                time.sleep(0.1)

        def waiter():
            p.wait()
            state["exit_t"] = time.monotonic()

        cpu_before = cpu_ticks(p.pid)
        th1 = threading.Thread(target=sampler, daemon=True)
        th2 = threading.Thread(target=waiter, daemon=True)
        th1.start()
        th2.start()

        results = [None] * len(conns)

        async def watch(i, c):
            try:
                while True:
                    await c.recv()   # nothing is expected; returns only on a stray message
            except ConnectionClosed as e:
                t = time.monotonic()
                code = e.rcvd.code if e.rcvd is not None else None
                results[i] = (t, code)
            except Exception:   # noqa: BLE001
                results[i] = (time.monotonic(), "error")

        tasks = [asyncio.ensure_future(watch(i, c)) for i, c in enumerate(conns)]
        await asyncio.sleep(0.2)   # all watchers are in recv()
        t_sig = time.monotonic()
        os.kill(p.pid, signal.SIGTERM)
        done, pending = await asyncio.wait(tasks, timeout=budget + 10)
        for t in pending:
            t.cancel()
        while state["exit_t"] is None and time.monotonic() - t_sig < budget + 15:
            await asyncio.sleep(0.1)
        th1.join(1)
        exit_status = p.returncode
        exit_s = (state["exit_t"] - t_sig) if state["exit_t"] else None
        cpu_s = (state["cpu"] / clk) if state["cpu"] is not None else None
        cpu_drain_s = ((state["cpu"] - cpu_before) / clk) if state["cpu"] is not None else None

        arr = sorted(r[0] - t_sig for r in results if r is not None and r[1] == 1001)
        codes = {}
        for r in results:
            key = "no close" if r is None else r[1]
            codes[key] = codes.get(key, 0) + 1

        def pct(q):
            if not arr:
                return None
            return arr[min(len(arr) - 1, int(round(q / 100 * (len(arr) - 1))))]
        buckets = {}
        for a in arr:
            buckets[int(a)] = buckets.get(int(a), 0) + 1
        logf.flush()
        logf.seek(0)
        log_tail = [l.rstrip() for l in logf.read().splitlines()][-8:]
        res = dict(n=n, opened=len(conns), up_est=up_est, echo=f"{ok}/{k}", got1001=len(arr),
                   codes=codes, first=arr[0] if arr else None, last=arr[-1] if arr else None,
                   pcts={q: pct(q) for q in (1, 10, 25, 50, 75, 90, 99)},
                   buckets=dict(sorted(buckets.items())), ideal=len(conns) / spread,
                   exit_s=exit_s, exit_status=exit_status, cpu_s=cpu_s, cpu_drain_s=cpu_drain_s,
                   log_tail=log_tail)
        log(f"  1001: {len(arr)}/{len(conns)}, first {res['first']}, last {res['last']}, "
            f"exit {exit_status} after {exit_s}, cpu {cpu_s}")
        return res
    finally:
        abort_all(conns)
        kill_group(p)
        logf.close()


# ------------------------------------------------------------------ report
def fmt_bytes(b):
    return f"{b / 2**20:.1f} MiB"


def f3(x, unit=" s"):
    return "–" if x is None else f"{x:.3f}{unit}"


def report(cmdline, idle_rows, drain_res, notes):
    L = []
    git = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                         text=True).stdout.strip() or "?"
    dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--", "proxy", "CMakeLists.txt"],
                           capture_output=True, text=True).stdout.strip()
    ver = subprocess.run([ARGS.sluice, "--version"], capture_output=True, text=True).stdout.strip()
    hv = subprocess.run(["haproxy", "-v"], capture_output=True, text=True).stdout.split("\n")[0].split()
    nv = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip().split(": ")[-1]
    import aiohttp, websockets
    cpu_model = next((l.split(": ", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    L.append("# WebSocket benchmarks: idle memory per session and drain")
    L.append("")
    L.append(f"Command: `{cmdline}`")
    L.append("")
    L.append(f"Date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}; {ver} at {git}"
             f"{' (+ uncommitted changes)' if dirty else ''}; HAProxy {hv[2] if len(hv) > 2 else '?'}; {nv}; "
             f"{os.cpu_count()} cores ({cpu_model}); kernel {os.uname().release}; Python "
             f"{sys.version.split()[0]}, aiohttp {aiohttp.__version__}, websockets {websockets.__version__}; "
             f"descriptor limit {resource.getrlimit(resource.RLIMIT_NOFILE)[1]} (hard).")
    L.append("")
    L.append("Layout: aiohttp WebSocket echo upstream (own process) and the clients (`websockets`, one asyncio "
             "process) pinned to core 1; the proxy under test (one worker) pinned to core 0; everything on "
             "127.0.0.1" + (" in a private network namespace" if os.environ.get("WS_BENCH_IN_NETNS") else "") + ".")
    L.append("")
    for n in notes:
        L.append(f"**Note:** {n}")
        L.append("")
    if idle_rows:
        L.append("## 1. Idle memory per WebSocket session")
        L.append("")
        L.append(f"| proxy | sessions open | RSS after {WARMUP_SESSIONS}-session warm-up | RSS with sessions idle | "
                 "RSS growth per session | marginal, N/2 to N | upstream conns established | proxy fds | echo check | processes | time to open all |")
        L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in idle_rows:
            L.append(f"| {r['name']} | {r['opened']} of {r['n']} | {fmt_bytes(r['base'])} | {fmt_bytes(r['after'])} | "
                     f"**{r['per'] / 1024:.2f} KiB** ({r['per']:.0f} B) | {r['marginal']:.0f} B | {r['up_est']} | {r['fds']} | {r['echo']} | {r['npids']} | {r['t_open']:.1f} s |")
        L.append("")
        L.append("RSS = sum of VmRSS over the proxy's process tree (nginx: master + worker). Growth per session = "
                 f"(RSS once idle with all sessions open − RSS after {WARMUP_SESSIONS} sessions were opened at once and closed) ÷ sessions "
                 "open; \"once idle\" = two samples 1 s apart within 0.2 %. Upstream conns: established TCP "
                 "connections to the upstream port (`ss`) while the sessions were held. Echo check: 10 sessions "
                 f"sent a text frame and got it back. Time to open all: wall time for the client to open the sessions, {BATCH} connects in flight at a time. Configs: sluice `--workers 1 --drain-delay 0s --access-log false`; HAProxy "
                 "`nbthread 1`, `mode http`, `timeout client/server/tunnel 1h`; nginx `worker_processes 1`, "
                 "`proxy_http_version 1.1`, `Upgrade $http_upgrade` / `Connection \"upgrade\"`, "
                 "`proxy_read_timeout 1h`, `worker_connections` (2N+100)×16/15 (nginx starts closing connections that "
                 "still wait for their request once fewer than 1/16 of worker_connections are free), `worker_rlimit_nofile` = "
                 "the hard limit. Proxy fds: open descriptors of the proxy's processes while holding the sessions.")
        L.append("")
    if drain_res:
        d = drain_res
        L.append("## 2. Drain of WebSocket sessions through sluice")
        L.append("")
        L.append("sluice `--workers 1 --drain-delay 0s --ws-close-spread 10s --ws-close-timeout 3s --drain-budget 25s`; "
                 "times from SIGTERM.")
        L.append("")
        L.append("| metric | value |")
        L.append("|---|---:|")
        L.append(f"| sessions open at SIGTERM | {d['opened']} of {d['n']} (upstream conns {d['up_est']}) |")
        L.append(f"| clients that got Close 1001 | **{d['got1001']} of {d['opened']}** |")
        other = {k: v for k, v in d["codes"].items() if k != 1001}
        L.append(f"| other outcomes | {', '.join(f'{k}: {v}' for k, v in other.items()) if other else 'none'} |")
        L.append(f"| first 1001 | {f3(d['first'])} |")
        L.append(f"| last 1001 | **{f3(d['last'])}** |")
        L.append("| 1001 arrival p1 / p10 / p25 / p50 / p75 / p90 / p99 | " +
                 " / ".join(f3(d['pcts'][q], "") for q in (1, 10, 25, 50, 75, 90, 99)) + " s |")
        bk = d["buckets"]
        inside = [bk.get(i, 0) for i in range(10)]
        L.append(f"| max 1001s in any 1 s bucket (ideal N/10) | **{max(bk.values()) if bk else 0}** "
                 f"(ideal {d['ideal']:.0f}) |")
        L.append(f"| min in the 1 s buckets 0–9 s | {min(inside)} |")
        L.append(f"| per 1 s bucket [0,1) … | {' '.join(str(bk.get(i, 0)) for i in range(0, max(bk) + 1)) if bk else '–'} |")
        L.append(f"| SIGTERM → sluice exit | **{f3(d['exit_s'])}** |")
        L.append(f"| exit status | {d['exit_status']} |")
        L.append(f"| sluice CPU during the drain (utime+stime, last 100 ms sample before exit − at SIGTERM) | "
                 f"{f3(d['cpu_drain_s'])} |")
        L.append(f"| sluice CPU total since start (incl. accepting the sessions) | {f3(d['cpu_s'])} |")
        L.append("")
        if d["log_tail"]:
            L.append("sluice's stderr (last lines):")
            L.append("")
            L.append("```")
            L.extend(d["log_tail"])
            L.append("```")
            L.append("")
        L.append("Arrival time = when the client's `recv()` raised `ConnectionClosed` with a received Close frame "
                 "(`e.rcvd.code`), measured in the client process (one asyncio loop, sharing core 1 with the "
                 "upstream), so it includes the client's own scheduling delay. CPU: /proc/PID/stat sampled every "
                 "100 ms; the last sample is ≤ 100 ms before exit, so up to 100 ms of CPU may be missing.")
        L.append("")
    return "\n".join(L)


# ------------------------------------------------------------------ main
def main():
    global ARGS
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sessions", type=int, default=10000)
    ap.add_argument("--drain-sessions", type=int, default=10000)
    ap.add_argument("--proxies", default="sluice,haproxy,nginx")
    ap.add_argument("--skip-idle", action="store_true")
    ap.add_argument("--skip-drain", action="store_true")
    ap.add_argument("--sluice", default=os.path.join(ROOT, "build", "sluice"))
    ap.add_argument("--out", default=os.path.join(HERE, "ws_bench.md"))
    ap.add_argument("--no-netns", action="store_true")
    ap.add_argument("--upstream-server", action="store_true", help=argparse.SUPPRESS)
    ARGS = ap.parse_args()
    if ARGS.upstream_server:
        return upstream_main()
    ARGS.proxies = [p for p in ARGS.proxies.split(",") if p]
    ARGS.sluice = os.path.abspath(ARGS.sluice)

    cmdline = os.environ.get("WS_BENCH_CMDLINE") or " ".join(
        shlex.quote(a) for a in [PY, os.path.relpath(os.path.abspath(sys.argv[0]), ROOT)] + sys.argv[1:])
    # A private network namespace (loopback only) when we can: no other traffic, no port clashes.
    if not ARGS.no_netns and not os.environ.get("WS_BENCH_IN_NETNS"):
        if subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0:
            env = dict(os.environ, WS_BENCH_IN_NETNS="1", WS_BENCH_CMDLINE=cmdline)
            os.execvpe("unshare", ["unshare", "-n", "--", PY, os.path.abspath(sys.argv[0])] + sys.argv[1:], env)
        log("cannot create a network namespace (needs root); using the host's loopback")
    if os.environ.get("WS_BENCH_IN_NETNS"):
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)

    notes = []
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):
        pass
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    # Each proxy holds 2 descriptors per session (client + upstream); clients and upstream are
    # separate processes with N each.
    max_n = (soft - FD_MARGIN) // 2
    for attr, label in (("sessions", "--sessions"), ("drain_sessions", "--drain-sessions")):
        want = getattr(ARGS, attr)
        if want > max_n:
            msg = (f"{label} {want} lowered to {max_n}: the descriptor limit is {soft} (hard limit, cannot "
                   f"be raised here) and the proxy needs 2 per session + {FD_MARGIN}.")
            log("warning: " + msg)
            notes.append(msg)
            setattr(ARGS, attr, max_n)

    ncpu = os.cpu_count() or 1
    proxy_cpu, client_cpu = (0, 1) if ncpu >= 2 else (None, None)
    if client_cpu is not None:
        os.sched_setaffinity(0, {client_cpu})

    signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))   # run the clean-up below
    tmp = tempfile.mkdtemp(prefix="ws_bench-")
    log(f"work dir {tmp}")
    idle_rows, drain_res = [], None
    try:
        up = spawn([PY, os.path.abspath(__file__), "--upstream-server"], cpu=client_cpu,
                   stdout=subprocess.PIPE, text=True)
        up_port = int(up.stdout.readline())
        log(f"upstream on 127.0.0.1:{up_port} (pid {up.pid})")
        if not ARGS.skip_idle:
            idle_rows = asyncio.run(idle_memory(tmp, up_port, ARGS.sessions, proxy_cpu))
        if not ARGS.skip_drain:
            drain_res = asyncio.run(drain(tmp, up_port, ARGS.drain_sessions, proxy_cpu))
    finally:
        for p in reversed(PROCS):
            kill_group(p)
    text = report(cmdline, idle_rows, drain_res, notes)
    with open(ARGS.out, "w") as f:
        f.write(text + "\n")
    print(text)
    log(f"report written to {ARGS.out}")


if __name__ == "__main__":
    main()
