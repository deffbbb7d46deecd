#!/usr/bin/python3
"""sluice soak: mixed traffic for a bounded time, with reloads and one upstream restart, while
sluice's memory and descriptors are sampled; fails when they drift or errors show up that the
restart does not explain. Loopback only; it stops by itself.

    /usr/bin/python3 bench/soak.py                          # 10 minutes, build/sluice
    /usr/bin/python3 bench/soak.py --duration 3m --sluice build-san/sluice   # under ASan+UBSan

What runs (all on 127.0.0.1, ephemeral ports):
  - sluice with a configuration file this script writes: one listener, routes /ws → cluster
    `ws` (tests/e2e/ws_upstream.py, aiohttp WebSocket echo) and / → cluster `app`
    (tests/e2e/upstream_app.py, aiohttp); JSON logs, the access log on (to a file).
  - traffic (aiohttp client, one asyncio loop): keep-alive GETs (/, /bytes/N, /echo?q, each
    body checked), GETs on a new connection each, uploads of 200-600 KiB (POST /discard, or
    /echo with the body's SHA-256 checked), short WebSocket sessions (connect, 3-20 echoed text
    and binary messages up to 64 KiB, close 1000) and long ones (open 20-90 s, a message a
    second, through the reloads).
  - every --reload-interval (60 s): the file is rewritten (the app cluster's pool.max_idle
    toggles 64/32, which replaces its pools, and a route comes and goes) and sluice gets
    SIGHUP; the reload must be applied (/stats reloads.success).
  - at --restart-at (mid-run): both upstream processes are killed (SIGKILL) and started again
    on the same ports after --restart-downtime. An operation that was under way or started
    while they were down (from the kill to the moment both listen again) may fail: those
    errors are counted apart as inevitable; every other error is unexpected.
  - every --sample-interval (5 s): sluice's VmRSS and VmHWM (/proc/PID/status), its open
    descriptors (/proc/PID/fd) and a few /stats figures.
  - at the end: traffic stops, the script waits --quiesce (6 s: past the pool idle timeout of
    4 s) and compares the idle descriptor count with the one before any traffic, then stops
    sluice with SIGTERM (exit status 0 required) and looks for sanitizer reports (ASan, LSan,
    UBSan write them to files in the run directory).

Drift: the median of the samples in the first --window seconds after --warmup against the
median of the last --window seconds. Exit status 1 when: an unexpected error, RSS drift above
--max-rss-drift-mib (not enforced for an ASan build, whose quarantine grows RSS by design),
descriptor drift above --max-fd-drift, idle descriptors after the run not back to the count
before it (± --max-idle-fd-diff), a reload not applied, the restart not done, sluice dying or
not exiting 0, or any sanitizer report. Output: a report on stdout and in
bench/out/soak-YYYYMMDD-HHMMSS/ (report.md, samples.tsv, errors.tsv, summary.json, the logs).
"""
import argparse
import asyncio
import collections
import glob
import hashlib
import json
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
E2E = os.path.join(ROOT, "tests", "e2e")
sys.path.insert(0, E2E)

import aiohttp  # noqa: E402  (Debian's python3-aiohttp)

import harness  # noqa: E402  (tests/e2e/harness.py: process helpers, LISTEN_RX)

MiB = 1024 * 1024
PATTERN = bytes(range(256)) * 256  # what upstream_app.py's /bytes/N sends, 64 KiB


def parse_duration(text):
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)?", text.strip())
    if not m:
        raise argparse.ArgumentTypeError("expected a duration like 90s, 3m, 1h: %r" % text)
    return float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]


# ---------------------------------------------------------------------------------------------
# Processes


class Upstream:
    """An aiohttp upstream script on a fixed port (0 the first time), restartable on it."""

    def __init__(self, name, script, log_dir):
        self.name, self.script, self.log_dir = name, script, log_dir
        self.port = 0
        self.proc = None
        self.starts = 0

    def start(self):
        self.starts += 1
        self.proc = harness.Proc(self.name, [harness.PYTHON, os.path.join(E2E, self.script),
                                             "--port", str(self.port)])
        m = self.proc.expect_line(r"^PORT (\d+)", timeout=20, stream="out")
        self.port = int(m.group(1))
        return self

    def kill(self):
        self.proc.kill()
        with open(os.path.join(self.log_dir, "%s-%d.log" % (self.name, self.starts)), "w") as f:
            f.write(self.proc.log() + "\n")


class SluiceProcess:
    """sluice with stdout (the access log) and stderr in files of the run directory."""

    def __init__(self, binary, config_path, run_dir, san_dir):
        self.run_dir = run_dir
        self.err_path = os.path.join(run_dir, "sluice.stderr.log")
        self.out_path = os.path.join(run_dir, "access.log")
        env = dict(harness.CLEAN_ENV)
        # Ignored by an uninstrumented binary; an instrumented one writes its reports there.
        env["ASAN_OPTIONS"] = "log_path=%s/asan:detect_leaks=1" % san_dir
        env["LSAN_OPTIONS"] = "log_path=%s/lsan" % san_dir
        env["UBSAN_OPTIONS"] = "log_path=%s/ubsan:print_stacktrace=1:halt_on_error=1" % san_dir
        self._out = open(self.out_path, "wb")
        self._err = open(self.err_path, "wb")
        self.proc = subprocess.Popen([binary, "--config", config_path], stdin=subprocess.DEVNULL,
                                     stdout=self._out, stderr=self._err, env=env,
                                     start_new_session=True,
                                     preexec_fn=harness._die_with_parent)
        self.pid = self.proc.pid
        m = self.wait_stderr(harness.LISTEN_RX, timeout=60)
        self.port = int(m.group(1))
        self.admin_port = int(m.group(4))

    def stderr_text(self):
        with open(self.err_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def wait_stderr(self, pattern, timeout):
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = rx.search(self.stderr_text())
            if m:
                return m
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError("sluice: no %r (exit %r):\n%s" % (pattern, self.proc.poll(),
                                                             self.stderr_text()[-4000:]))

    def alive(self):
        return self.proc.poll() is None

    def sample(self):
        """(VmRSS, VmHWM) in bytes and the number of open descriptors."""
        mem = harness.proc_status(self.pid)
        fds = len(os.listdir("/proc/%d/fd" % self.pid))
        return mem["VmRSS"], mem["VmHWM"], fds

    def terminate(self, timeout):
        """SIGTERM (a drain), then waits; returns the exit status (None: killed after timeout)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            rc = None
        self._out.close()
        self._err.close()
        return rc


def write_config(path, app_port, ws_port, generation, workers):
    """The configuration of a reload generation: the app cluster's pool.max_idle and one extra
    route change with it (harmless: the extra route goes to the same cluster)."""
    max_idle = 64 if generation % 2 == 0 else 32
    extra = "      - {prefix: /soak-generation-%d, cluster: app}\n" % generation \
        if generation % 2 else ""
    text = ("# written by bench/soak.py, generation %d\n"
            "admin: {address: 127.0.0.1:0}\n"
            "workers: %d\n"
            "listeners:\n"
            "  - name: ingress\n"
            "    address: 127.0.0.1:0\n"
            "    routes:\n"
            "      - {prefix: /ws, cluster: ws}\n"
            "%s"
            "      - {prefix: /, cluster: app}\n"
            "clusters:\n"
            "  - name: app\n"
            "    endpoints: [127.0.0.1:%d]\n"
            "    pool: {max_idle: %d, idle_timeout: 4s}\n"
            "  - name: ws\n"
            "    endpoints: [127.0.0.1:%d]\n"
            "drain: {delay: 0s, budget: 20s, ws_close_spread: 1s, ws_close_timeout: 2s}\n"
            "log: {format: json, level: info, access: true}\n"
            % (generation, workers, extra, app_port, max_idle, ws_port))
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


# ---------------------------------------------------------------------------------------------
# Traffic


class Tally:
    """Operations done and failed, by kind; failures keep their time span for classification
    against the restart window at the end."""

    def __init__(self):
        self.done = collections.Counter()
        self.failed = []  # (kind, error, start, end, detail)
        self.ws_messages = 0
        self.bytes_up = 0
        self.bytes_down = 0

    def ok(self, kind):
        self.done[kind] += 1

    def fail(self, kind, error, start, detail=""):
        if len(self.failed) < 200000:
            self.failed.append((kind, error, start, time.monotonic(), str(detail)[:300]))


def error_kind(exc):
    if isinstance(exc, aiohttp.WSServerHandshakeError):
        return "ws_handshake_%s" % exc.status
    if isinstance(exc, asyncio.TimeoutError):
        return "timeout"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "disconnected"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "truncated_body"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "connect_failed"
    if isinstance(exc, aiohttp.ClientOSError):
        return "os_error"
    return type(exc).__name__


class Traffic:
    def __init__(self, port, deadline, tally, rng, pause):
        self.base = "http://127.0.0.1:%d" % port
        self.ws_url = "ws://127.0.0.1:%d/ws" % port
        self.deadline = deadline
        self.tally = tally
        self.rng = rng
        self.pause = pause
        # ASCII, so that /echo's JSON carries it without escapes.
        self.upload_source = bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz0123456789")
                                   for _ in range(MiB))
        self.timeout = aiohttp.ClientTimeout(total=30)

    def running(self):
        return time.monotonic() < self.deadline

    async def _get(self, session, kind):
        rng = self.rng
        start = time.monotonic()
        choice = rng.random()
        if choice < 0.4:
            path, check = "/", lambda st, b: b == b"hello from aiohttp\n"
        elif choice < 0.7:
            n = rng.randint(1, 64 * 1024)
            path, check = "/bytes/%d" % n, lambda st, b, n=n: b == PATTERN[:n]
        else:
            q = "q=%d" % rng.randint(0, 10 ** 9)
            path, check = "/echo?" + q, lambda st, b, q=q: json.loads(b)["query"] == q
        headers = {"Connection": "close"} if kind == "http_new_conn" else {}
        try:
            async with session.get(self.base + path, headers=headers) as r:
                body = await r.read()
                if r.status != 200:
                    self.tally.fail(kind, "http_%d" % r.status, start, body[:100])
                elif not check(r.status, body):
                    self.tally.fail(kind, "bad_body", start, path)
                else:
                    self.tally.bytes_down += len(body)
                    self.tally.ok(kind)
        except Exception as e:  # every failure is counted and classified, none stops the run
            self.tally.fail(kind, error_kind(e), start, repr(e))

    async def http_loop(self, kind):
        force_close = kind == "http_new_conn"
        conn = aiohttp.TCPConnector(limit=1, force_close=force_close)
        async with aiohttp.ClientSession(connector=conn, timeout=self.timeout) as session:
            while self.running():
                await self._get(session, kind)
                await asyncio.sleep(self.pause)

    async def upload_loop(self):
        kind = "upload"
        rng = self.rng
        conn = aiohttp.TCPConnector(limit=1)
        async with aiohttp.ClientSession(connector=conn, timeout=self.timeout) as session:
            while self.running():
                n = rng.randint(200 * 1024, 600 * 1024)
                off = rng.randint(0, len(self.upload_source) - n)
                body = self.upload_source[off:off + n]
                echo = rng.random() < 0.25
                start = time.monotonic()
                try:
                    async with session.post(self.base + ("/echo" if echo else "/discard"),
                                            data=body) as r:
                        doc = await r.read()
                        if r.status != 200:
                            self.tally.fail(kind, "http_%d" % r.status, start, doc[:100])
                        else:
                            doc = json.loads(doc)
                            good = (doc["body_len"] == n and
                                    doc["sha256"] == hashlib.sha256(body).hexdigest()) \
                                if echo else doc["received"] == n
                            if good:
                                self.tally.bytes_up += n
                                self.tally.ok(kind)
                            else:
                                self.tally.fail(kind, "bad_body", start, "upload of %d" % n)
                except Exception as e:
                    self.tally.fail(kind, error_kind(e), start, repr(e))
                await asyncio.sleep(self.pause)

    async def _echo(self, ws, rng, big):
        if rng.random() < 0.5:
            msg = "".join(rng.choice("abcdefghij✓") for _ in range(rng.randint(1, 2000)))
            await ws.send_str(msg)
        else:
            msg = rng.randbytes(rng.randint(1, 64 * 1024 if big else 512))
            await ws.send_bytes(msg)
        reply = await asyncio.wait_for(ws.receive(), 15)
        if reply.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
            raise SessionCut("%s %r" % (reply.type.name, ws.close_code))
        if reply.data != msg:
            raise EchoMismatch("echo differs (%d bytes sent)" % len(msg))
        self.tally.ws_messages += 1

    async def ws_session(self, session, kind, hold):
        """One session: connect, echo messages (for `hold` seconds a message a second, or a
        few at once), close with 1000 and check that the close handshake completed."""
        rng = self.rng
        start = time.monotonic()
        try:
            ws = await asyncio.wait_for(
                session.ws_connect(self.ws_url, autoping=True, heartbeat=None, max_msg_size=0),
                15)
            try:
                if hold:
                    end = time.monotonic() + hold
                    while time.monotonic() < end and self.running():
                        await self._echo(ws, rng, big=False)
                        await asyncio.sleep(1.0)
                else:
                    for _ in range(rng.randint(3, 20)):
                        await self._echo(ws, rng, big=True)
                await asyncio.wait_for(ws.close(code=1000), 15)
                if ws.close_code != 1000:
                    raise SessionCut("close handshake ended with %r" % ws.close_code)
            finally:
                if not ws.closed:
                    await ws.close()
            self.tally.ok(kind)
        except (SessionCut, EchoMismatch) as e:
            self.tally.fail(kind, e.kind, start, str(e))
        except Exception as e:
            self.tally.fail(kind, error_kind(e), start, repr(e))

    async def ws_loop(self, kind, hold_range):
        conn = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=conn, timeout=self.timeout) as session:
            if hold_range:  # spread the long sessions' starts
                await asyncio.sleep(self.rng.uniform(0, hold_range[0]))
            while self.running():
                hold = self.rng.uniform(*hold_range) if hold_range else 0
                await self.ws_session(session, kind, hold)
                await asyncio.sleep(self.pause)


class SessionCut(Exception):
    kind = "ws_session_cut"


class EchoMismatch(Exception):
    kind = "ws_bad_echo"


# ---------------------------------------------------------------------------------------------
# The run


def median_in(samples, lo, hi, field):
    vals = [s[field] for s in samples if lo <= s["t"] <= hi]
    return statistics.median(vals) if vals else None


def slope_per_hour(samples, field):
    """Least-squares slope of field over t, per hour."""
    if len(samples) < 3:
        return 0.0
    ts = [s["t"] for s in samples]
    vs = [s[field] for s in samples]
    mt, mv = statistics.fmean(ts), statistics.fmean(vs)
    den = sum((t - mt) ** 2 for t in ts)
    return 0.0 if den == 0 else sum((t - mt) * (v - mv) for t, v in zip(ts, vs)) / den * 3600


async def fetch_stats(admin_port):
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
            async with session.get("http://127.0.0.1:%d/stats" % admin_port,
                                   headers={"Connection": "close"}) as r:
                return json.loads(await r.read())
    except Exception:
        return None


def dump_descriptors(pid, path):
    """What sluice holds open (for a descriptor count that did not come back): its
    descriptors and its TCP sockets as `ss` sees them."""
    with open(path, "w") as f:
        for fd in sorted(os.listdir("/proc/%d/fd" % pid), key=int):
            try:
                f.write("%s -> %s\n" % (fd, os.readlink("/proc/%d/fd/%s" % (pid, fd))))
            except OSError:
                pass
        try:
            out = subprocess.run(["ss", "-tanpioe"], stdout=subprocess.PIPE, text=True).stdout
            f.write("\n".join(l for l in out.splitlines() if "pid=%d," % pid in l) + "\n")
        except OSError as e:
            f.write("ss: %s\n" % e)


def instrumented(binary):
    """True for a binary built with AddressSanitizer (its runtime is linked in)."""
    with open(binary, "rb") as f:
        return b"AddressSanitizer" in f.read()


async def run(args):
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir = os.path.abspath(args.out or os.path.join(HERE, "out", "soak-" + stamp))
    san_dir = os.path.join(run_dir, "sanitizer")
    os.makedirs(san_dir, exist_ok=True)
    log = lambda msg: print("[%6.1fs] %s" % (time.monotonic() - t0, msg), file=sys.stderr,
                            flush=True)
    t0 = time.monotonic()
    rng = random.Random(args.seed)
    asan = instrumented(args.sluice)
    problems = []

    app = Upstream("app", "upstream_app.py", run_dir).start()
    wsu = Upstream("ws", "ws_upstream.py", run_dir).start()
    cfg = os.path.join(run_dir, "sluice.yaml")
    generation = 0
    write_config(cfg, app.port, wsu.port, generation, args.workers)
    sluice = SluiceProcess(args.sluice, cfg, run_dir, san_dir)
    log("sluice pid %d on :%d (admin :%d), app :%d, ws :%d, %s build; run directory %s" % (
        sluice.pid, sluice.port, sluice.admin_port, app.port, wsu.port,
        "ASan+UBSan" if asan else "uninstrumented", run_dir))

    await asyncio.sleep(1.0)
    idle_before = sluice.sample()
    log("before traffic: RSS %.1f MiB, %d descriptors" % (idle_before[0] / MiB, idle_before[2]))

    start = time.monotonic()
    deadline = start + args.duration
    tally = Tally()
    traffic = Traffic(sluice.port, deadline, tally, rng, args.pause)
    tasks = []
    for _ in range(args.keepalive):
        tasks.append(traffic.http_loop("http_keepalive"))
    for _ in range(args.new_conn):
        tasks.append(traffic.http_loop("http_new_conn"))
    for _ in range(args.uploads):
        tasks.append(traffic.upload_loop())
    for _ in range(args.ws_short):
        tasks.append(traffic.ws_loop("ws_short", None))
    for _ in range(args.ws_long):
        tasks.append(traffic.ws_loop("ws_long", (20.0, 90.0)))
    traffic_tasks = [asyncio.ensure_future(t) for t in tasks]

    samples = []
    reloads = {"sent": 0, "applied": 0, "failed": []}
    restart = {"killed_at": None, "ready_at": None}
    restart_at = start + (args.restart_at if args.restart_at is not None else
                          args.duration / 2 + 10)
    next_reload = start + args.reload_interval
    next_sample = start
    loop = asyncio.get_running_loop()
    sluice_died = False

    while time.monotonic() < deadline:
        now = time.monotonic()
        if not sluice.alive():
            sluice_died = True
            problems.append("sluice exited during the run (status %r)" % sluice.proc.poll())
            break
        if now >= next_sample:
            next_sample += args.sample_interval
            rss, hwm, fds = sluice.sample()
            st = await fetch_stats(sluice.admin_port)
            s = {"t": now - start, "rss": rss, "hwm": hwm, "fds": fds,
                 "conns": None, "ws": None, "pool_idle": None, "pool_active": None,
                 "ops": sum(tally.done.values()), "errors": len(tally.failed)}
            if st:
                ing = st["listeners"][0]
                s["conns"] = ing["connections_active"]
                s["ws"] = ing["websocket_sessions_active"]
                s["pool_idle"] = sum(c["pool_idle"] for c in st["clusters"])
                s["pool_active"] = sum(c["pool_active"] for c in st["clusters"])
            samples.append(s)
            if len(samples) % 12 == 1:
                log("t=%4.0fs RSS %.1f MiB, %d fds, %s client conns, %s ws, %d ops, %d errors"
                    % (s["t"], rss / MiB, fds, s["conns"], s["ws"], s["ops"], s["errors"]))
        if restart["killed_at"] is None and now >= restart_at:
            log("upstream restart: SIGKILL app and ws upstreams")
            restart["killed_at"] = time.monotonic()
            app.kill()
            wsu.kill()
            await asyncio.sleep(args.restart_downtime)
            await loop.run_in_executor(None, app.start)
            await loop.run_in_executor(None, wsu.start)
            restart["ready_at"] = time.monotonic()
            log("upstreams back on :%d and :%d after %.1f s" % (
                app.port, wsu.port, restart["ready_at"] - restart["killed_at"]))
        if now >= next_reload and deadline - now > 5:
            next_reload += args.reload_interval
            generation += 1
            before = await fetch_stats(sluice.admin_port)
            ok_before = before["reloads"]["success"] if before else 0
            write_config(cfg, app.port, wsu.port, generation, args.workers)
            os.kill(sluice.pid, signal.SIGHUP)
            reloads["sent"] += 1
            applied = False
            for _ in range(100):
                await asyncio.sleep(0.1)
                st = await fetch_stats(sluice.admin_port)
                if st and st["reloads"]["success"] > ok_before:
                    applied = True
                    break
                if st and st["reloads"]["failure"] > (before or {}).get(
                        "reloads", {}).get("failure", 0):
                    break
            if applied:
                reloads["applied"] += 1
                log("reload %d applied (app pool.max_idle %d)" % (
                    generation, 64 if generation % 2 == 0 else 32))
            else:
                reloads["failed"].append(generation)
                log("reload %d NOT applied" % generation)
        await asyncio.sleep(0.2)

    log("traffic stops")
    # Let every loop finish its operation in hand (the long WebSocket sessions close).
    done, pending = await asyncio.wait(traffic_tasks, timeout=60)
    for t in pending:
        t.cancel()
    if pending:
        problems.append("%d traffic tasks did not finish within 60 s of the end" % len(pending))
    end = time.monotonic()

    idle_after = None
    final_stats = None
    if sluice.alive():
        await asyncio.sleep(args.quiesce)
        idle_after = sluice.sample()
        final_stats = await fetch_stats(sluice.admin_port)
        log("after traffic (%.0f s idle): RSS %.1f MiB, %d descriptors" % (
            args.quiesce, idle_after[0] / MiB, idle_after[2]))
        if idle_after[2] != idle_before[2]:
            dump_descriptors(sluice.pid, os.path.join(run_dir, "descriptors-after.txt"))
            log("descriptors and sockets written to descriptors-after.txt")
    rc = sluice.terminate(timeout=120 if asan else 30)
    app.kill()
    wsu.kill()
    log("sluice exit status %r" % rc)
    if not sluice_died and rc != 0:
        problems.append("sluice exit status %r after SIGTERM (0 expected)" % rc)
    san_reports = sorted(glob.glob(os.path.join(san_dir, "*")))

    # ---- classification and report ----------------------------------------------------------
    kill_t, ready_t = restart["killed_at"], restart["ready_at"]
    inevitable = collections.Counter()
    unexpected = collections.Counter()
    unexpected_examples = []
    with open(os.path.join(run_dir, "errors.tsv"), "w") as f:
        f.write("kind\terror\tstart_s\tend_s\tclass\tdetail\n")
        for kind, err, s0, s1, detail in tally.failed:
            in_window = kill_t is not None and s0 < ready_t and s1 >= kill_t
            cls = "restart" if in_window else "unexpected"
            (inevitable if in_window else unexpected)[(kind, err)] += 1
            if not in_window and len(unexpected_examples) < 10:
                unexpected_examples.append((kind, err, s0 - start, detail))
            f.write("%s\t%s\t%.3f\t%.3f\t%s\t%s\n" % (kind, err, s0 - start, s1 - start, cls,
                                                      detail.replace("\t", " ")))
    with open(os.path.join(run_dir, "samples.tsv"), "w") as f:
        keys = ["t", "rss", "hwm", "fds", "conns", "ws", "pool_idle", "pool_active", "ops",
                "errors"]
        f.write("\t".join(keys) + "\n")
        for s in samples:
            f.write("\t".join("%.1f" % s[k] if k == "t" else str(s[k]) for k in keys) + "\n")

    warm = [s for s in samples if s["t"] >= args.warmup]
    warm_rss = median_in(samples, args.warmup, args.warmup + args.window, "rss")
    warm_fds = median_in(samples, args.warmup, args.warmup + args.window, "fds")
    last_t = samples[-1]["t"] if samples else 0
    end_rss = median_in(samples, last_t - args.window, last_t, "rss")
    end_fds = median_in(samples, last_t - args.window, last_t, "fds")
    rss_drift = (end_rss - warm_rss) if warm_rss is not None and end_rss is not None else None
    fd_drift = (end_fds - warm_fds) if warm_fds is not None and end_fds is not None else None

    if kill_t is None:
        problems.append("the upstream restart did not happen (run shorter than --restart-at)")
    if reloads["failed"]:
        problems.append("reloads not applied: %r" % reloads["failed"])
    if sum(unexpected.values()) > args.max_unexpected_errors:
        problems.append("%d unexpected errors (at most %d allowed)" % (
            sum(unexpected.values()), args.max_unexpected_errors))
    if rss_drift is None or fd_drift is None:
        problems.append("not enough samples after the warm-up to measure drift")
    else:
        if rss_drift > args.max_rss_drift_mib * MiB:
            msg = "RSS drift %+.1f MiB (at most %.1f MiB)" % (rss_drift / MiB,
                                                              args.max_rss_drift_mib)
            if asan:
                log("note: %s; not enforced for an ASan build" % msg)
            else:
                problems.append(msg)
        if fd_drift > args.max_fd_drift:
            problems.append("descriptor drift %+d (at most %d)" % (fd_drift, args.max_fd_drift))
    if idle_after is not None and abs(idle_after[2] - idle_before[2]) > args.max_idle_fd_diff:
        problems.append("idle descriptors %d after the run, %d before it" % (idle_after[2],
                                                                            idle_before[2]))
    if san_reports:
        problems.append("%d sanitizer report file(s): %s" % (
            len(san_reports), ", ".join(os.path.basename(p) for p in san_reports)))

    def fmt_counter(c):
        if not c:
            return "none"
        return ", ".join("%s %s: %d" % (k, e, n) for (k, e), n in sorted(c.items()))

    def mib(v):
        return "–" if v is None else "%.1f" % (v / MiB)

    rss_vals = [s["rss"] for s in warm] or [0]
    fd_vals = [s["fds"] for s in warm] or [0]
    lines = [
        "# sluice soak, %s" % time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "",
        "- binary: `%s` (%s), workers %d, commit %s" % (
            os.path.relpath(args.sluice, ROOT), "ASan+UBSan" if asan else "uninstrumented",
            args.workers, git_commit()),
        "- duration %.0f s (traffic ran %.1f s), warm-up %.0f s, samples every %.0f s (%d)" % (
            args.duration, end - start, args.warmup, args.sample_interval, len(samples)),
        "- concurrency: %d keep-alive GET loops, %d new-connection GET loops, %d upload loops, "
        "%d short and %d long WebSocket session loops; pause %.0f ms between operations" % (
            args.keepalive, args.new_conn, args.uploads, args.ws_short, args.ws_long,
            args.pause * 1000),
        "- reloads: %d sent, %d applied" % (reloads["sent"], reloads["applied"]),
        "- upstream restart: %s" % (
            "killed at %.1f s, both listening again %.1f s later" % (
                kill_t - start, ready_t - kill_t) if kill_t else "not done"),
        "",
        "| done | count |",
        "|---|---:|",
    ]
    for kind in ("http_keepalive", "http_new_conn", "upload", "ws_short", "ws_long"):
        lines.append("| %s | %d |" % (kind, tally.done[kind]))
    lines += [
        "| WebSocket messages echoed | %d |" % tally.ws_messages,
        "| MiB uploaded / downloaded (bodies checked) | %.0f / %.0f |" % (
            tally.bytes_up / MiB, tally.bytes_down / MiB),
        "",
        "- errors the restart makes inevitable (under way or started from the kill until both "
        "upstreams listened again): %d (%s)" % (sum(inevitable.values()),
                                                fmt_counter(inevitable)),
        "- unexpected errors: %d (%s)" % (sum(unexpected.values()), fmt_counter(unexpected)),
    ]
    for kind, err, t_s, detail in unexpected_examples:
        lines.append("  - at %.1f s: %s %s: %s" % (t_s, kind, err, detail))
    lines += [
        "",
        "| sluice | before traffic | warm-up end (median of %.0f s) | end (median of last "
        "%.0f s) | drift | min–max after warm-up | slope /h | idle after (%.0f s) |" % (
            args.window, args.window, args.quiesce),
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        "| RSS MiB | %s | %s | %s | %s | %s–%s | %+.1f | %s |" % (
            mib(idle_before[0]), mib(warm_rss), mib(end_rss),
            "–" if rss_drift is None else "%+.2f" % (rss_drift / MiB),
            mib(min(rss_vals)), mib(max(rss_vals)), slope_per_hour(warm, "rss") / MiB,
            mib(idle_after[0]) if idle_after else "–"),
        "| open descriptors | %d | %s | %s | %s | %d–%d | %+.1f | %s |" % (
            idle_before[2], warm_fds, end_fds, "–" if fd_drift is None else "%+g" % fd_drift,
            min(fd_vals), max(fd_vals), slope_per_hour(warm, "fds"),
            idle_after[2] if idle_after else "–"),
        "",
        "- peak RSS (VmHWM): %s MiB" % mib(samples[-1]["hwm"] if samples else None),
        "- sluice exit status after SIGTERM: %r; sanitizer reports: %s" % (
            rc, ", ".join(os.path.basename(p) for p in san_reports) or "none"),
    ]
    if final_stats:
        ing = final_stats["listeners"][0]
        lines.append("- sluice's own count: %s responses by class, %d client connections "
                     "accepted, WebSocket sessions closed %s; %d access log lines dropped" % (
                         json.dumps(ing["requests"]), ing["connections_total"],
                         json.dumps(ing["websocket_sessions_closed"]),
                         final_stats["access_log_dropped"]))
    lines += ["", "**%s**" % ("PASS" if not problems else "FAIL: " + "; ".join(problems))]
    report = "\n".join(lines) + "\n"
    with open(os.path.join(run_dir, "report.md"), "w") as f:
        f.write(report)
    with open(os.path.join(run_dir, "summary.json"), "w") as f:
        json.dump({"done": tally.done, "inevitable": {"%s %s" % k: n
                                                      for k, n in inevitable.items()},
                   "unexpected": {"%s %s" % k: n for k, n in unexpected.items()},
                   "rss_drift": rss_drift, "fd_drift": fd_drift, "idle_before": idle_before,
                   "idle_after": idle_after, "reloads": reloads, "exit": rc,
                   "sanitizer_reports": san_reports, "problems": problems}, f, indent=1)
    print(report)
    log("report in %s" % run_dir)
    return 1 if problems else 0


def git_commit():
    try:
        out = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sluice", default=os.path.join(ROOT, "build", "sluice"),
                    help="the binary (default build/sluice; build-san/sluice for ASan+UBSan)")
    ap.add_argument("--duration", type=parse_duration, default=600.0,
                    help="how long traffic runs (default 10m)")
    ap.add_argument("--warmup", type=parse_duration, default=None,
                    help="samples before this are not used for drift (default: a tenth of "
                         "the duration, between 20 s and 60 s)")
    ap.add_argument("--window", type=parse_duration, default=30.0,
                    help="drift compares the medians of this long after the warm-up and at "
                         "the end (default 30s)")
    ap.add_argument("--sample-interval", type=parse_duration, default=5.0)
    ap.add_argument("--reload-interval", type=parse_duration, default=60.0)
    ap.add_argument("--restart-at", type=parse_duration, default=None,
                    help="when the upstreams are restarted (default: half-way + 10 s)")
    ap.add_argument("--restart-downtime", type=parse_duration, default=2.0)
    ap.add_argument("--quiesce", type=parse_duration, default=6.0,
                    help="idle time after the traffic before the last sample (default 6s)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--keepalive", type=int, default=4, help="keep-alive GET loops")
    ap.add_argument("--new-conn", type=int, default=2, help="new-connection GET loops")
    ap.add_argument("--uploads", type=int, default=2, help="upload loops")
    ap.add_argument("--ws-short", type=int, default=2, help="short WebSocket session loops")
    ap.add_argument("--ws-long", type=int, default=16, help="long WebSocket session loops")
    ap.add_argument("--pause", type=parse_duration, default=0.005,
                    help="pause of each loop between operations (default 5ms)")
    ap.add_argument("--seed", type=int, default=9)
    ap.add_argument("--max-rss-drift-mib", type=float, default=4.0)
    ap.add_argument("--max-fd-drift", type=int, default=8)
    ap.add_argument("--max-idle-fd-diff", type=int, default=0)
    ap.add_argument("--max-unexpected-errors", type=int, default=0)
    ap.add_argument("--out", default=None, help="run directory (default bench/out/soak-STAMP)")
    args = ap.parse_args()
    args.sluice = os.path.abspath(args.sluice)
    if not os.access(args.sluice, os.X_OK):
        ap.error("%s: not an executable (make build first)" % args.sluice)
    if args.warmup is None:
        args.warmup = max(20.0, min(60.0, args.duration / 10))
    if args.warmup + 2 * args.window > args.duration:
        ap.error("--duration must leave room for the warm-up and two windows")
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
