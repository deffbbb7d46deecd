#!/usr/bin/python3
"""The status page on the admin listener (GET /), rendered by Debian's headless Chromium and
driven over the DevTools protocol: it shows live numbers from /stats (the 2xx count the test
sent, the listener's address, the cluster, its 5xx share), updates itself as more requests go
through, shows several listeners and clusters with readiness per cluster and WebSocket
sessions, shows a drain with its progress bar and what is left, says when sluice stops
answering, keeps retrying, and recovers when sluice is back.

Console check: Runtime and Log events are enabled on the tab before it navigates, and every
console call (Runtime.consoleAPICalled, any level), uncaught exception or unhandled rejection
(Runtime.exceptionThrown) and browser log entry at warning or error level (Log.entryAdded:
failed loads, CSP, deprecations) counts. None is allowed while sluice answers; once it has
exited, only Chromium's own failed loads of /stats are, and there must be some, which shows
that the capture works.

Chromium comes from `make deps` (Debian package chromium); this test fails, never skips,
without it.

Run: SLUICE_BIN=/abs/build/sluice /usr/bin/python3 test_status_page.py -v
"""
import asyncio
import itertools
import json
import os
import re
import signal
import threading
import time
import unittest

import websockets

from harness import (CLEAN_ENV, E2ETestCase, Proc, RawClient, reserve_port, http, request_bytes)
from ws_upstream import WsUpstream, raw_ws_handshake, read_ws_frame, ws_frame

CHROMIUM = "/usr/bin/chromium"

# Reads the page as a person sees it: every [data-metric] element's raw value (data-value),
# its text and whether it is displayed, per header / drain box / listener row / cluster row.
SNAPSHOT_JS = r"""(() => {
  const cell = (e) => ({value: e.dataset.value, text: e.textContent.trim(),
                        shown: e.getClientRects().length > 0});
  const metrics = (root) => {
    const o = {};
    for (const e of root.querySelectorAll('[data-metric]')) o[e.dataset.metric] = cell(e);
    return o;
  };
  const rows = (sel, attr) => {
    const o = {};
    for (const r of document.querySelectorAll(sel)) o[r.dataset[attr]] = metrics(r);
    return o;
  };
  const drain = document.getElementById('drain');
  if (!drain || !document.body.dataset.state) return null;  // not the status page (yet)
  const bar = document.getElementById('drain-progress');
  const offline = document.getElementById('offline');
  return {
    state: document.body.dataset.state,
    phase: document.body.dataset.phase || null,
    polls: Number(document.body.dataset.polls),
    title: document.title,
    header: metrics(document.querySelector('header')),
    offline: offline.hidden ? null : offline.textContent,
    drain: drain.hidden ? null : Object.assign(metrics(drain), {
      fraction: Number(bar.dataset.fraction),
      valuenow: Number(bar.getAttribute('aria-valuenow')),
      valuemax: Number(bar.getAttribute('aria-valuemax')),
      bar_px: bar.getBoundingClientRect().width,
      fill_px: document.getElementById('drain-fill').getBoundingClientRect().width,
    }),
    listeners: rows('#listeners tbody tr', 'listener'),
    clusters: rows('#clusters tbody tr', 'cluster'),
    ratelimits: rows('#ratelimits tbody tr', 'rule'),
    ratelimit_order: Array.from(document.querySelectorAll('#ratelimits tbody tr'))
        .map((r) => r.dataset.rule),
    text: document.body.innerText,
  };
})()"""


class DevTools:
    """A DevTools protocol client on Chromium's browser endpoint: one websocket, read by an
    asyncio loop in a background thread; call() blocks for the answer, events are kept in
    arrival order."""

    def __init__(self, ws_url):
        self.events = []
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._pending = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._ws = self._run(self._connect(ws_url))
        self._reader = asyncio.run_coroutine_threadsafe(self._read(), self._loop)

    @staticmethod
    async def _connect(ws_url):
        # No Origin header is sent, so Chromium needs no --remote-allow-origins.
        return await websockets.connect(ws_url, max_size=None, ping_interval=None,
                                        open_timeout=10)

    def _run(self, coro, timeout=20):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    async def _read(self):
        try:
            async for raw in self._ws:
                msg = json.loads(raw)
                if "id" in msg:
                    fut = self._pending.pop(msg["id"], None)
                    if fut is not None and not fut.done():
                        fut.set_result(msg)
                else:
                    with self._lock:
                        self.events.append(msg)
        finally:
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(ConnectionError("DevTools connection closed"))
            self._pending.clear()

    async def _call(self, method, params, session):
        mid = next(self._ids)
        fut = self._loop.create_future()
        self._pending[mid] = fut
        msg = {"id": mid, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        await self._ws.send(json.dumps(msg))
        return await fut

    def call(self, method, params=None, session=None, timeout=15):
        msg = self._run(asyncio.wait_for(self._call(method, params, session), timeout),
                        timeout + 1)
        if "error" in msg:
            raise AssertionError("DevTools %s: %s" % (method, msg["error"]))
        return msg["result"]

    def session_events(self, session):
        with self._lock:
            return [e for e in self.events if e.get("sessionId") == session]

    def close(self):
        try:
            self._run(self._ws.close(), 5)
        except Exception:
            pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


class Page:
    """One tab, attached with a flat session; console, log and exception events are enabled
    before the first navigation so none is missed."""

    def __init__(self, devtools):
        self.dt = devtools
        target = devtools.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = devtools.call("Target.attachToTarget",
                                     {"targetId": target, "flatten": True})["sessionId"]
        for method in ("Runtime.enable", "Log.enable", "Page.enable"):
            self.call(method)

    def call(self, method, params=None, timeout=15):
        return self.dt.call(method, params, self.session, timeout)

    def navigate(self, url):
        r = self.call("Page.navigate", {"url": url})
        if r.get("errorText"):
            raise AssertionError("navigating to %s: %s" % (url, r["errorText"]))

    def evaluate(self, expression):
        r = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                           "awaitPromise": True})
        if "exceptionDetails" in r:
            raise AssertionError("page script failed: %s" % json.dumps(r["exceptionDetails"]))
        return r["result"].get("value")

    def snapshot(self):
        return self.evaluate(SNAPSHOT_JS)

    def console_problems(self):
        """Every console call, uncaught exception, and browser log entry at warning or error
        level (failed loads, CSP, deprecations, ...), as readable strings with their source."""
        out = []
        for e in self.dt.session_events(self.session):
            m, p = e.get("method"), e.get("params", {})
            if m == "Runtime.consoleAPICalled":
                args = " ".join(str(a.get("value", a.get("description", ""))) for a in p["args"])
                out.append({"source": "console", "level": p["type"], "text": args})
            elif m == "Runtime.exceptionThrown":
                d = p["exceptionDetails"]
                out.append({"source": "exception", "level": "error",
                            "text": d.get("exception", {}).get("description", d.get("text"))})
            elif m == "Log.entryAdded" and p["entry"]["level"] in ("warning", "error"):
                entry = p["entry"]
                out.append({"source": entry["source"], "level": entry["level"],
                            "text": entry["text"], "url": entry.get("url", "")})
        return out


class Chromium(Proc):
    """Debian's Chromium, headless, with a private profile and the DevTools endpoint on an
    ephemeral loopback port (read from its 'DevTools listening on' line)."""

    def __init__(self, profile):
        argv = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--no-default-browser-check", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-extensions",
                "--disable-dev-shm-usage", "--password-store=basic", "--mute-audio",
                "--user-data-dir=" + os.path.join(profile, "profile"),
                "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
                "--window-size=1400,900", "about:blank"]
        # Its caches and crash reports stay in the test's directory too.
        env = dict(CLEAN_ENV, HOME=profile, XDG_CONFIG_HOME=os.path.join(profile, "config"),
                   XDG_CACHE_HOME=os.path.join(profile, "cache"))
        super().__init__("chromium", argv, env=env)
        m = self.expect_line(r"DevTools listening on (ws://127\.0\.0\.1:\d+/\S+)", timeout=30,
                             stream="err")
        try:
            self.devtools = DevTools(m.group(1))
        except BaseException:
            self.kill()
            raise

    devtools = None

    def kill(self):
        if self.devtools is not None:
            try:
                self.devtools.call("Browser.close", timeout=5)
            except Exception:
                pass
            self.devtools.close()
            self.devtools = None
            try:
                self.proc.wait(5)
            except Exception:
                pass
        super().kill()


# Two listeners; a local app that answers (readiness: true), one that does not (readiness:
# true, nothing listening) and an egress cluster that does not either (no readiness).
CONFIG = """admin: {{address: 127.0.0.1:0}}
workers: 1
drain: {{delay: 0s, budget: 10s}}
listeners:
  - name: ingress
    address: 127.0.0.1:0
    routes:
      - {{prefix: /local, cluster: local}}
      - {{prefix: /, cluster: app}}
  - name: egress
    address: 127.0.0.1:0
    drain: false
    cluster: payments
clusters:
  - name: app
    endpoints: [127.0.0.1:{app}]
    readiness: true
  - name: local
    endpoints: [127.0.0.1:{closed}]
    readiness: true
  - name: payments
    endpoints: [127.0.0.1:{closed}]
"""


def value(cell):
    return float(cell["value"])


class StatusPageTest(E2ETestCase):

    def setUp(self):
        if not os.access(CHROMIUM, os.X_OK):
            self.fail("%s is missing: this test renders the status page in Debian's headless "
                      "Chromium. `make deps` installs it (Debian package chromium)." % CHROMIUM)
        super().setUp()
        self._exits_itself = []

    def _cleanup_procs(self):
        # A sluice that was drained within the test has exited by itself: keep the harness
        # from asking it to stop again (and kill it should it still be running).
        for s in self._exits_itself:
            s.kill()
            if s in self.procs:
                self.procs.remove(s)
        super()._cleanup_procs()

    def open_page(self, sluice):
        browser = self._track(Chromium(self.make_tmpdir()))
        page = Page(browser.devtools)
        page.navigate("http://127.0.0.1:%d/" % sluice.admin_port)
        return page

    def wait_page(self, page, what, predicate, timeout=10):
        """Reads the page every 100 ms until predicate(snapshot) holds; returns the snapshot."""
        deadline = time.monotonic() + timeout
        while True:
            snap = page.snapshot()
            try:
                if predicate(snap):
                    return snap
            except (KeyError, TypeError, ValueError):
                pass  # a row or figure not there yet
            if time.monotonic() > deadline:
                if snap is None:
                    self.fail("status page: no %s within %.0f s; the page is not loaded" % (
                        what, timeout))
                self.fail("status page: no %s within %.0f s; it shows:\n%s\n%s" % (
                    what, timeout, snap["text"], json.dumps(
                        {k: v for k, v in snap.items() if k != "text"}, indent=1)))
            time.sleep(0.1)

    def assertNoConsoleProblems(self, page):
        self.assertEqual([], page.console_problems(), "console messages on the status page")

    def stats(self, sluice):
        return json.loads(http(sluice.admin_port, "GET", "/stats").body)

    def test_shows_live_numbers_and_follows_them(self):
        up = self.start_aiohttp()
        s = self.start_sluice(upstream=up.port, workers=2)
        for _ in range(5):
            self.assertEqual(http(s.port, "GET", "/").status, 200)
        self.assertEqual(http(s.port, "GET", "/status/404").status, 404)
        self.assertEqual(http(s.port, "GET", "/status/503").status, 503)

        page = self.open_page(s)
        snap = self.wait_page(page, "2xx count of 5 on the listener", lambda p: (
            value(p["listeners"]["ingress"]["requests-2xx"]) == 5 and
            value(p["clusters"]["app"]["requests-total"]) == 7))
        first_polls = snap["polls"]
        listener = snap["listeners"]["ingress"]
        cluster = snap["clusters"]["app"]
        # What a person reads: the figures are displayed, with the text the raw value says.
        for cell in list(listener.values()) + list(cluster.values()):
            self.assertTrue(cell["shown"], cell)
        self.assertEqual(listener["requests-2xx"]["text"], "5")
        self.assertEqual(listener["requests-4xx"]["text"], "1")
        self.assertEqual(listener["requests-5xx"]["text"], "1")
        self.assertEqual(listener["address"]["text"], "127.0.0.1:%d" % s.port)
        self.assertEqual(value(listener["connections-total"]), 7)
        self.assertEqual(value(listener["connections-active"]), 0)
        self.assertRegex(listener["p99"]["text"], r"^≤ [\d.]+ m?s$")
        self.assertEqual(cluster["name"]["text"], "app")
        self.assertEqual(cluster["endpoints"]["text"], "127.0.0.1:%d" % up.port)
        self.assertEqual(cluster["load-balancing"]["text"], "round_robin")
        self.assertAlmostEqual(value(cluster["error-rate"]), 1 / 7, places=6)
        self.assertEqual(cluster["error-rate"]["text"], "14.3%")
        self.assertGreaterEqual(value(cluster["connections-created"]), 1)
        self.assertIn("127.0.0.1:%d" % s.port, snap["text"])
        self.assertIn("app", snap["text"])
        head = snap["header"]
        stats = self.stats(s)
        readiness = stats["readiness"].get("app")
        self.assertEqual(cluster["readiness"]["text"], {True: "ready", False: "not ready",
                                                        None: "not checked"}[readiness])
        self.assertEqual(head["version"]["text"], stats["version"])
        self.assertEqual(head["workers"]["text"], "2")
        self.assertEqual(head["state"]["text"], "serving")
        self.assertEqual(head["ready"]["text"], "yes" if readiness in (True, None) else "no (app)")
        self.assertEqual(snap["state"], "serving")
        self.assertIsNone(snap["drain"])
        self.assertIsNone(snap["offline"])

        # More traffic on one kept-alive connection: the same page (no reload) follows it.
        page.evaluate("window.sameDocument = true")
        c = RawClient(s.port)
        for _ in range(20):
            c.send(request_bytes("GET", "/"))
            self.assertEqual(c.read_response().status, 200)
        c.close()
        snap = self.wait_page(page, "2xx count of 25 and a request rate", lambda p: (
            value(p["listeners"]["ingress"]["requests-2xx"]) == 25 and
            value(p["listeners"]["ingress"]["rps"]) > 0 and
            value(p["clusters"]["app"]["rps"]) > 0))
        self.assertTrue(page.evaluate("window.sameDocument === true"), "the page reloaded")
        self.assertGreater(snap["polls"], first_polls)
        self.assertEqual(snap["listeners"]["ingress"]["requests-2xx"]["text"], "25")
        self.assertEqual(value(snap["listeners"]["ingress"]["connections-total"]), 8)
        self.assertEqual(value(snap["clusters"]["app"]["requests-total"]), 27)
        self.assertEqual(snap["clusters"]["app"]["error-rate"]["text"], "3.7%")  # 1 of 27
        self.assertNotEqual(snap["header"]["uptime"]["value"], head["uptime"]["value"])

        # Once traffic stops, every counter on the page is the one /stats reports.
        stats = self.stats(s)
        polls = page.snapshot()["polls"]
        snap = self.wait_page(page, "poll after the /stats read", lambda p: p["polls"] > polls)
        jl = stats["listeners"][0]
        row = snap["listeners"][jl["name"]]
        for cls in ("1xx", "2xx", "3xx", "4xx", "5xx"):
            self.assertEqual(value(row["requests-" + cls]), jl["requests"][cls], cls)
        self.assertEqual(value(row["connections-total"]), jl["connections_total"])
        self.assertEqual(value(row["p50"]), jl["latency"]["p50_ms_at_most"])
        self.assertEqual(value(row["p99"]), jl["latency"]["p99_ms_at_most"])
        jc = stats["clusters"][0]
        row = snap["clusters"][jc["name"]]
        for metric, key in (("connections-created", "connections_created"),
                            ("retries", "retries"), ("connect-failures", "connect_failures"),
                            ("timeouts", "timeouts"), ("ejections", "ejections")):
            self.assertEqual(value(row[metric]), jc[key], metric)
        self.assertEqual(value(row["requests-5xx"]), jc["requests"]["5xx"])
        self.assertNoConsoleProblems(page)

    def test_listeners_clusters_readiness_and_websocket_sessions(self):
        ws_up = self._track(WsUpstream())
        closed_port = reserve_port()  # nothing listens there
        cfg = os.path.join(self.make_tmpdir(), "sluice.yaml")
        with open(cfg, "w") as f:
            f.write(CONFIG.format(app=ws_up.port, closed=closed_port))
        s = self.start_sluice("--config", cfg, defaults=False, workers=None)
        egress = [l["address"] for l in self.stats(s)["listeners"] if l["name"] == "egress"][0]
        egress_port = int(egress.rsplit(":", 1)[1])
        self.assertEqual(http(s.port, "GET", "/").status, 200)
        self.assertEqual(http(egress_port, "GET", "/charge").status, 502)
        ws, _ = raw_ws_handshake(s.port)
        ws.send(ws_frame(0x1, b"hello"))
        self.assertEqual(read_ws_frame(ws)[3], b"hello")

        page = self.open_page(s)
        snap = self.wait_page(page, "both listeners, three clusters, readiness and a session",
                              lambda p: (
                                  value(p["listeners"]["ingress"]["ws-active"]) == 1 and
                                  p["clusters"]["app"]["readiness"]["text"] == "ready" and
                                  value(p["clusters"]["payments"]["connect-failures"]) >= 1))
        self.assertEqual(list(snap["listeners"]), ["ingress", "egress"])
        self.assertEqual(list(snap["clusters"]), ["app", "local", "payments"])
        self.assertEqual(snap["listeners"]["egress"]["address"]["text"], egress)
        self.assertEqual(snap["listeners"]["egress"]["requests-5xx"]["text"], "1")
        self.assertEqual(snap["clusters"]["local"]["readiness"]["text"], "not ready")
        self.assertEqual(snap["clusters"]["payments"]["readiness"]["text"], "not checked")
        self.assertEqual(snap["header"]["ready"]["text"], "no (local)")
        self.assertEqual(snap["clusters"]["payments"]["endpoints"]["text"],
                         "127.0.0.1:%d" % closed_port)
        self.assertEqual(value(snap["listeners"]["ingress"]["ws-closed"]), 0)

        # The client goes away: the page moves the session to "closed", by reason. (No Close
        # handshake: after one, sluice counts the side whose TCP connection ends first, which
        # is a race between the two peers.)
        ws.close()
        snap = self.wait_page(page, "the session closed by the client", lambda p: (
            value(p["listeners"]["ingress"]["ws-active"]) == 0 and
            value(p["listeners"]["ingress"]["ws-closed"]) == 1))
        self.assertEqual(snap["listeners"]["ingress"]["ws-closed"]["text"], "1 (client 1)")
        self.assertNoConsoleProblems(page)

    def test_busiest_rate_limit_rules_and_bans(self):
        up = self.start_aiohttp()
        cfg = os.path.join(self.make_tmpdir(), "sluice.yaml")
        with open(cfg, "w") as f:
            f.write("admin: {address: 127.0.0.1:0}\ndrain: {delay: 0s}\n"
                    "listeners: [{name: ingress, address: 127.0.0.1:0, cluster: app}]\n"
                    "clusters: [{name: app, endpoints: [127.0.0.1:%d]}]\n"
                    "rate_limits:\n"
                    "  - {name: quiet, prefix: /never, rate: 1/h}\n"
                    "  - {name: busy, rate: 1/h, burst: 2}\n"
                    "  - {name: trial, prefix: /echo, rate: 1/h, dry_run: true}\n" % up.port)
        s = self.start_sluice("--config", cfg, defaults=False, workers=1)
        statuses = [http(s.port, "GET", "/").status for _ in range(5)]
        self.assertEqual(statuses, [200, 200, 429, 429, 429])
        self.assertEqual(http(s.port, "POST", "/bans", body=b"").status, 429)
        r = http(s.admin_port, "POST", "/bans", headers=[("Content-Type", "application/json")],
                 body=b'{"address": "192.0.2.0/24", "duration": "1h"}')
        self.assertEqual(r.status, 201)
        page = self.open_page(s)
        snap = self.wait_page(page, "the rules, the busiest first", lambda p: (
            value(p["ratelimits"]["busy@ingress"]["limited"]) == 4))
        # Ties keep the configuration's order.
        self.assertEqual(snap["ratelimit_order"],
                         ["busy@ingress", "quiet@ingress", "trial@ingress"])
        self.assertEqual(snap["ratelimits"]["trial@ingress"]["rule"]["text"], "trial (dry run)")
        self.assertEqual(snap["ratelimits"]["busy@ingress"]["allowed"]["text"], "2")
        self.assertEqual(snap["ratelimits"]["quiet@ingress"]["allowed"]["text"], "0")
        self.assertIn("bans in force 1", snap["text"])
        self.assertIn("keys 1,", snap["text"])
        self.assertNoConsoleProblems(page)

    def test_drain_progress_then_not_answering_then_back(self):
        up = self.start_aiohttp()
        s = self.start_sluice("--drain-delay", "3s", "--drain-budget", "20s", upstream=up.port)
        self._exits_itself.append(s)
        admin_port = s.admin_port
        page = self.open_page(s)
        snap = self.wait_page(page, "serving state", lambda p: p["state"] == "serving")
        self.assertIsNone(snap["drain"])

        # A slow request is in flight across the drain: the page counts it as what is left.
        slow = RawClient(s.port, timeout=30)
        slow.send(request_bytes("GET", "/sleep/8000"))
        self.wait_page(page, "the slow request's connection",
                       lambda p: value(p["listeners"]["ingress"]["connections-active"]) == 1)
        c = RawClient(admin_port)
        c.send(request_bytes("POST", "/drain", [("Content-Length", "0")]))
        self.assertEqual(c.read_response().status, 202)
        c.close()

        snap = self.wait_page(page, "drain delay", lambda p: p["phase"] == "delay")
        self.assertEqual(snap["state"], "draining")
        self.assertEqual(snap["header"]["state"]["text"], "draining (delay)")
        self.assertEqual(snap["header"]["ready"]["text"], "no (draining)")
        drain = snap["drain"]
        self.assertEqual(drain["drain-phase"]["text"], "delay")
        self.assertEqual(value(drain["drain-budget"]), 20)
        self.assertEqual(drain["drain-budget"]["text"], "20.0 s")
        self.assertEqual(drain["valuemax"], 20)
        self.assertEqual(value(drain["drain-in-flight"]), 1)
        self.assertEqual(value(drain["drain-connections"]), 1)
        self.assertGreater(drain["bar_px"], 100)

        snap = self.wait_page(page, "draining phase with the request still in flight",
                              lambda p: p["phase"] == "draining" and
                              value(p["drain"]["drain-in-flight"]) == 1 and
                              p["drain"]["fill_px"] > 0)
        drain = snap["drain"]
        self.assertEqual(snap["header"]["state"]["text"], "draining")
        self.assertEqual(value(drain["drain-connections"]), 1)
        self.assertEqual(value(drain["drain-websockets"]), 0)
        self.assertEqual(value(drain["drain-grpc-calls"]), 0)
        self.assertEqual(value(drain["drain-forced"]), 0)
        elapsed = value(drain["drain-elapsed"])
        self.assertGreaterEqual(elapsed, 3.0)  # the delay is behind it
        self.assertAlmostEqual(drain["fraction"], elapsed / 20, places=2)
        self.assertAlmostEqual(drain["valuenow"], elapsed, places=3)
        self.assertRegex(drain["drain-elapsed"]["text"], r"^\d+\.\d s$")
        self.assertIn("of a 20.0 s budget", snap["text"])
        later = self.wait_page(page, "the bar moving",
                               lambda p: p["drain"]["fraction"] > drain["fraction"])
        self.assertGreater(value(later["drain"]["drain-elapsed"]), elapsed)
        # Everything so far was sluice answering: nothing on the console.
        self.assertNoConsoleProblems(page)

        r = slow.read_response()
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, b"slept 8000\n")
        slow.close()
        # An admin-API drain leaves sluice running until its own signal (or POST /resume).
        s.wait_line("drain done; waiting for SIGTERM", timeout=15)
        s.proc.send_signal(signal.SIGTERM)
        self.assertEqual(s.proc.wait(15), 0, s.log())

        snap = self.wait_page(page, "'not answering' after sluice exited",
                              lambda p: p["state"] == "unreachable" and p["offline"])
        self.assertIn("sluice is not answering", snap["offline"])
        self.assertEqual(snap["header"]["state"]["text"], "not answering")
        self.wait_page(page, "retries", lambda p: int(
            re.search(r"(\d+) attempts?", p["offline"]).group(1)) >= 3)
        # The only console entries since are the browser's own failed loads of /stats, and
        # there are some: the capture of console entries works.
        problems = page.console_problems()
        self.assertTrue(problems, "no failed load of /stats reached the console capture")
        for problem in problems:
            self.assertEqual((problem["source"], problem["level"], problem["url"]),
                             ("network", "error", "http://127.0.0.1:%d/stats" % admin_port),
                             problem)

        # sluice is back on the same admin port: the page picks it up without a reload.
        back = self.start_sluice("--listen", "127.0.0.1:0", "--admin", "127.0.0.1:%d" % admin_port,
                                 "--drain-delay", "0s", upstream=up.port, defaults=False)
        self.assertEqual(http(back.port, "GET", "/").status, 200)
        snap = self.wait_page(page, "serving again, with the new sluice's numbers", lambda p: (
            p["state"] == "serving" and p["offline"] is None and
            p["listeners"]["ingress"]["address"]["text"] == "127.0.0.1:%d" % back.port and
            value(p["listeners"]["ingress"]["requests-2xx"]) == 1))
        self.assertIsNone(snap["drain"])
        self.assertEqual(snap["header"]["ready"]["text"], "yes")


if __name__ == "__main__":
    unittest.main()
