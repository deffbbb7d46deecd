#!/usr/bin/python3
"""The pod lifecycle around the drain (issue #18), against the real binary:

- a drain the admin API started (the app's preStop hook, which the kubelet also runs before a
  liveness or startup-probe kill) leaves sluice running until its own signal, with or without a
  `drain: false` listener, and POST /resume (`sluice-drain --resume`, the app's postStart hook)
  undoes it: the listeners accept again and /readyz follows the app;
- a resume asked for during a drain applies when the drain ends; after a signal it is refused
  (409 "stopping"), which the hook client does not count as a failure;
- after a signalled drain, a `drain: false` listener keeps serving until the app of the
  `readiness: true` cluster stops accepting connections (sluice as a plain container gets its
  SIGTERM together with the app), then sluice exits 0;
- sluice-drain is a static executable, and tells "nothing listens" from a refused drain.

Run: SLUICE_BIN=/abs/build/sluice /usr/bin/python3 test_lifecycle.py -v
"""
import json
import os
import re
import signal
import subprocess
import threading
import time
import unittest

from harness import (CLEAN_ENV, SLUICE_BIN, E2ETestCase, RawClient, free_port, http,
                     request_bytes, wait_until)

SLUICE_DRAIN = os.environ.get("SLUICE_DRAIN_BIN") or os.path.join(
    os.path.dirname(os.path.abspath(SLUICE_BIN)), "sluice-drain")


class LifecycleTest(E2ETestCase):

    def config(self, app_port, egress=True, delay="300ms", budget="10s", wait_for_app=False):
        api = self.start_aiohttp(name="api") if egress else None
        text = ("admin: {address: 127.0.0.1:0}\nworkers: 2\n"
                "drain: {delay: %s, budget: %s, ws_close_spread: 100ms, wait_for_app: %s}\n"
                "listeners:\n  - {name: ingress, address: 127.0.0.1:0, cluster: app}\n"
                % (delay, budget, "true" if wait_for_app else "false"))
        if egress:
            text += "  - {name: egress, address: 127.0.0.1:0, drain: false, cluster: api}\n"
        text += ("clusters:\n  - {name: app, endpoints: [\"127.0.0.1:%d\"], readiness: true}\n"
                 % app_port)
        if egress:
            text += "  - {name: api, endpoints: [\"127.0.0.1:%d\"]}\n" % api.port
        path = os.path.join(self.make_tmpdir(), "sluice.yaml")
        with open(path, "w") as f:
            f.write(text)
        return path

    def start(self, app_port, **kw):
        s = self.start_sluice("--config", self.config(app_port, **kw), defaults=False,
                              workers=None)
        m = re.search(r"listening on 127\.0\.0\.1:\d+, 127\.0\.0\.1:(\d+) ", s.text())
        s.egress_port = int(m.group(1)) if m else None
        return s

    def admin(self, s, method, path, timeout=15):
        return http(s.admin_port, method, path, body=b"" if method == "POST" else None,
                    timeout=timeout)

    def readyz(self, s):
        return self.admin(s, "GET", "/readyz").status

    def phase(self, s):
        return self.admin(s, "GET", "/drain").json()["phase"]

    def hook(self, *args, timeout=30):
        return subprocess.run([SLUICE_DRAIN] + list(args), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=CLEAN_ENV, timeout=timeout)

    def serves(self, port):
        try:
            return http(port, "GET", "/", timeout=5).status == 200
        except OSError:
            return False

    def refused(self, port):
        try:
            http(port, "GET", "/", timeout=5)
            return False
        except OSError:
            return True

    def stop_by_signal(self, s, within=3.0):
        t0 = time.monotonic()
        s.proc.send_signal(signal.SIGTERM)
        rc = s.proc.wait(timeout=within + 10)
        took = time.monotonic() - t0
        self.procs.remove(s)
        self.assertEqual(rc, 0, s.log())
        self.assertLess(took, within, "sluice took %.2f s to stop after SIGTERM" % took)

    def restart_app(self, app):
        """The app container's restart: the process goes away, a new one listens on the port."""
        port = app.port
        app.kill()
        self.procs.remove(app)
        return self.start_aiohttp(name="app2", port=port)

    # ---- hole 1: a liveness kill must not wedge the pod -------------------------------------

    def check_liveness_kill_is_undone(self, egress):
        app = self.start_aiohttp(name="app")
        s = self.start(app.port, egress=egress)
        wait_until(lambda: self.readyz(s) == 200, 5, "ready at start")
        # The kubelet's order for a probe kill: preStop (waits for the drain), the app stops,
        # the app starts again, postStart.
        cp = self.hook("--admin", "127.0.0.1:%d" % s.admin_port, "--wait")
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertEqual(json.loads(cp.stdout)["phase"], "done")
        self.assertEqual(self.readyz(s), 503)
        wait_until(lambda: self.refused(s.port), 5, "ingress closed after the drain")
        app = self.restart_app(app)
        t0 = time.monotonic()
        cp = self.hook("--admin", "127.0.0.1:%d" % s.admin_port, "--resume")
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertIn("resumed", cp.stderr)
        wait_until(lambda: self.readyz(s) == 200, 5, "/readyz 200 after the resume")
        wait_until(lambda: self.serves(s.port), 5, "ingress serves after the resume")
        self.assertLess(time.monotonic() - t0, 5.0)
        self.assertEqual(self.phase(s), "serving")
        c = RawClient(s.port)  # keep-alive: not draining any more, so no Connection: close
        for _ in range(2):
            c.send(request_bytes("GET", "/"))
            r = c.read_response()
            self.assertEqual((r.status, r.header("X-Upstream-Name")), (200, "app2"))
            self.assertFalse(r.has_header("Connection") and r.header("Connection") == "close",
                             "Connection: close after the resume")
        c.close()
        # The next drain works as the first did: a second probe kill, then the pod's deletion.
        cp = self.hook("--admin", "127.0.0.1:%d" % s.admin_port, "--wait")
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertEqual(self.readyz(s), 503)
        wait_until(lambda: self.refused(s.port), 5, "ingress closed after the second drain")
        app.kill()
        self.stop_by_signal(s)

    def test_liveness_kill_with_egress_is_undone_by_resume(self):
        self.check_liveness_kill_is_undone(egress=True)

    def test_liveness_kill_without_egress_is_undone_by_resume(self):
        self.check_liveness_kill_is_undone(egress=False)

    def test_resume_during_a_drain_applies_when_it_ends(self):
        app = self.start_aiohttp(name="app")
        s = self.start(app.port, egress=False, delay="0s")
        wait_until(lambda: self.readyz(s) == 200, 5, "ready at start")
        slow = RawClient(s.port)
        slow.send(request_bytes("GET", "/sleep/1000"))
        wait_until(lambda: self.admin(s, "GET", "/drain").json()["in_flight"] == 1, 5,
                 "the slow request in flight")
        self.assertEqual(self.admin(s, "POST", "/drain").status, 202)
        r = self.admin(s, "POST", "/resume")
        self.assertEqual((r.status, r.json()["result"]), (202, "resuming when the drain ends"))
        self.assertEqual(slow.read_response().status, 200)
        wait_until(lambda: self.phase(s) == "serving", 5, "serving once the drain ended")
        wait_until(lambda: self.readyz(s) == 200, 5, "/readyz 200 after the resume")
        wait_until(lambda: self.serves(s.port), 5, "ingress serves after the resume")
        self.assertEqual((self.admin(s, "POST", "/resume").json()["result"]), "serving")
        self.assertEqual(self.admin(s, "GET", "/resume").status, 405)

    def test_resume_after_a_signal_is_refused_and_the_hook_does_not_fail(self):
        app = self.start_aiohttp(name="app")
        s = self.start(app.port, egress=False, delay="0s")
        slow = RawClient(s.port)
        slow.send(request_bytes("GET", "/sleep/1500"))
        wait_until(lambda: self.admin(s, "GET", "/drain").json()["in_flight"] == 1, 5,
                 "the slow request in flight")
        s.proc.send_signal(signal.SIGTERM)
        wait_until(lambda: self.phase(s) != "serving", 5, "the drain started")
        r = self.admin(s, "POST", "/resume")
        self.assertEqual((r.status, r.json()["result"]), (409, "stopping"))
        cp = self.hook("--admin", "127.0.0.1:%d" % s.admin_port, "--resume")
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertEqual(slow.read_response().status, 200)
        self.assertEqual(s.proc.wait(timeout=10), 0)
        self.procs.remove(s)

    # ---- hole 3: the sidecar outlives the app ------------------------------------------------

    def test_native_mode_without_egress_stays_until_sigterm(self):
        # Native sidecar: the app's preStop drains; sluice's SIGTERM comes only after the app
        # has exited. Before, sluice exited 50 ms after such a drain.
        app = self.start_aiohttp(name="app")
        s = self.start(app.port, egress=False)
        cp = self.hook("--admin", "127.0.0.1:%d" % s.admin_port, "--wait")
        self.assertEqual(cp.returncode, 0, cp.stderr)
        s.wait_line(r"drain done; waiting for SIGTERM", timeout=5)
        # Still there, and answering, a while later (the old exit came 50 ms after the drain).
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            self.assertIsNone(s.proc.poll(), "sluice exited after the admin-API drain")
            self.assertEqual(self.readyz(s), 503)
            time.sleep(0.05)
        app.kill()
        self.stop_by_signal(s)

    def test_plain_mode_egress_serves_until_the_app_is_gone(self):
        # Plain container: sluice's SIGTERM comes with the app's preStop; the app shuts down
        # after the drain and may still call out on its way.
        app = self.start_aiohttp(name="app")
        s = self.start(app.port, egress=True, wait_for_app=True)
        wait_until(lambda: self.readyz(s) == 200, 5, "ready at start")
        kept = RawClient(s.egress_port)  # the app's pooled egress connection
        kept.send(request_bytes("GET", "/"))
        self.assertEqual(kept.read_response().status, 200)
        s.proc.send_signal(signal.SIGTERM)
        s.wait_line(r"drain done in", timeout=10)
        s.wait_line(r"the app still accepts connections", timeout=5)
        # The app's shutdown calls out, on its kept connection and on new ones.
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            self.assertIsNone(s.proc.poll(), "sluice exited while the app still runs")
            self.assertEqual(http(s.egress_port, "GET", "/").status, 200)
            kept.send(request_bytes("GET", "/"))
            self.assertEqual(kept.read_response().status, 200)
        wait_until(lambda: self.refused(s.port), 5, "ingress closed")
        t0 = time.monotonic()
        app.kill()
        rc = s.proc.wait(timeout=10)
        took = time.monotonic() - t0
        self.procs.remove(s)
        self.assertEqual(rc, 0, s.log())
        # Wrong would be staying until the drain budget or the next signal: the bound is generous.
        self.assertLess(took, 8.0, "sluice took %.2f s to stop after the app had gone" % took)
        s.wait_line("the app has gone: stopping", timeout=10)  # stderr is read by a thread

    def test_a_forced_drain_leaves_the_egress_connections_alone(self):
        # The budget runs out with an ingress request still in flight: what is left on the
        # ingress side is closed, but `drain: false` listeners stay through all of it, their
        # kept-alive connections included.
        app = self.start_aiohttp(name="app")
        s = self.start(app.port, egress=True, budget="1s")
        kept = RawClient(s.egress_port)
        kept.send(request_bytes("GET", "/"))
        self.assertEqual(kept.read_response().status, 200)
        slow = RawClient(s.port)
        slow.send(request_bytes("GET", "/sleep/20000"))
        wait_until(lambda: self.admin(s, "GET", "/drain").json()["in_flight"] == 1, 5,
                   "the slow request in flight")
        self.assertEqual(self.admin(s, "POST", "/drain").status, 202)
        wait_until(lambda: self.phase(s) == "done", 10, "the drain done")
        self.assertEqual(self.admin(s, "GET", "/drain").json()["forced"], 1)
        with self.assertRaises(Exception):  # the ingress request was cut: no response
            slow.read_response()
        for _ in range(3):
            kept.send(request_bytes("GET", "/"))
            self.assertEqual(kept.read_response().status, 200)
        self.assertEqual(http(s.egress_port, "GET", "/").status, 200)
        # Its SIGTERM ends it at once, with the drain's status: 2, something was forced.
        s.proc.send_signal(signal.SIGTERM)
        self.assertEqual(s.proc.wait(timeout=15), 2, s.log())
        self.procs.remove(s)

    def test_plain_mode_second_signal_stops_at_once(self):
        app = self.start_aiohttp(name="app")
        s = self.start(app.port, egress=True, wait_for_app=True)
        wait_until(lambda: self.readyz(s) == 200, 5, "ready at start")
        s.proc.send_signal(signal.SIGTERM)
        s.wait_line(r"the app still accepts connections", timeout=10)
        self.stop_by_signal(s)

    def test_without_wait_for_app_a_signal_drain_exits_at_its_end(self):
        # Outside a pod's plain-container mode (the chart sets drain.wait_for_app there),
        # SIGTERM still means: drain, then exit, whatever the app does.
        app = self.start_aiohttp(name="app")
        s = self.start(app.port, egress=True)
        wait_until(lambda: self.readyz(s) == 200, 5, "ready at start")
        t0 = time.monotonic()
        s.proc.send_signal(signal.SIGTERM)
        self.assertEqual(s.proc.wait(timeout=10), 0, s.log())
        self.procs.remove(s)
        self.assertLess(time.monotonic() - t0, 3.0)
        self.assertNotIn("the app still accepts connections", s.text())

    # ---- hole 2: the hook client ---------------------------------------------------------------

    def test_sluice_drain_is_static_and_reports_failures(self):
        if os.environ.get("SLUICE_DRAIN_STATIC", "1") == "1":
            out = subprocess.run(["ldd", SLUICE_DRAIN], stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True).stdout
            self.assertIn("not a dynamic executable", out)
        port = free_port()  # nothing listens there
        cp = self.hook("--admin", "127.0.0.1:%d" % port, "--wait")
        self.assertEqual(cp.returncode, 1, "a drain that could not start must fail the hook")
        self.assertIn("cannot reach", cp.stderr)
        cp = self.hook("--admin", "127.0.0.1:%d" % port, "--resume")
        self.assertEqual(cp.returncode, 0, "no sluice: nothing to resume")
        self.assertIn("nothing to resume", cp.stderr)
        cp = self.hook("--admin", "sluice.example:9901")
        self.assertEqual(cp.returncode, 64)
        cp = self.hook("--admin", "[::1]", "--resume")
        self.assertEqual(cp.returncode, 64)
        # The main binary's subcommand does the same.
        cp = subprocess.run([SLUICE_BIN, "resume", "--admin", "127.0.0.1:%d" % port],
                            stderr=subprocess.PIPE, text=True, env=CLEAN_ENV, timeout=30)
        self.assertEqual(cp.returncode, 0, cp.stderr)


if __name__ == "__main__":
    unittest.main()
