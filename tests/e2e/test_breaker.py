#!/usr/bin/python3
"""Circuit breakers, concurrency caps and retry budgets per cluster (issue 17), against real
aiohttp upstreams: a breaker's whole cycle against an API that fails and then recovers (closed →
open: fail fast with Retry-After and X-Sluice-Circuit → half-open trials → open again while it
still fails → closed once it recovers), a breaker opened by connect errors, requests refused at
max_requests and max_pending with a slow upstream, and retries refused by a spent retry budget.
The breaker is shared by the workers: the files run two."""
import json
import os
import re
import threading
import time
import unittest

from harness import (E2ETestCase, HERE, PYTHON, Proc, http, reserve_port, wait_until)


class FlakyApp(Proc):
    def __init__(self):
        super().__init__("flaky-app", [PYTHON, os.path.join(HERE, "flaky_app.py"), "--port", "0"])
        self.port = int(self.expect_line(r"^PORT (\d+)", stream="out").group(1))

    def control(self, fail, status=503):
        body = json.dumps({"fail": fail, "status": status}).encode()
        r = http(self.port, "POST", "/control", [("Content-Type", "application/json")], body)
        assert r.status == 200, r

    def stats(self):
        return json.loads(http(self.port, "GET", "/control/stats").body)


def metric(s, name, labels):
    """The value of one sample of /metrics (labels as Prometheus writes them, in order)."""
    text = http(s.admin_port, "GET", "/metrics").body.decode()
    m = re.search(r"^%s\{%s\} (\S+)$" % (re.escape(name), re.escape(labels)), text, re.M)
    return float(m.group(1)) if m else None


class BreakerTest(E2ETestCase):

    def config(self, clusters, workers=2):
        path = os.path.join(self.make_tmpdir(), "sluice.yaml")
        with open(path, "w") as f:
            f.write("admin: {address: 127.0.0.1:0}\nworkers: %d\ndrain: {delay: 0s, budget: 10s}\n"
                    "log: {format: json}\n"
                    "listeners:\n  - name: ingress\n    address: 127.0.0.1:0\n    cluster: api\n"
                    "clusters:\n%s" % (workers, clusters))
        return self.start_sluice("--config", path, defaults=False, workers=None)

    def state(self, s):
        return metric(s, "sluice_upstream_circuit_state", 'cluster="api"')

    def transitions(self, s, to):
        return metric(s, "sluice_upstream_circuit_transitions_total", 'cluster="api",to="%s"' % to)

    def assert_fails_fast(self, s, app, max_retry_after):
        before = app.stats()["api"]
        r = http(s.port, "GET", "/api/orders")
        self.assertEqual(r.status, 503, r)
        self.assertEqual(r.header("X-Sluice-Circuit"), "open", r)
        self.assertTrue(1 <= int(r.header("Retry-After")) <= max_retry_after, r)
        self.assertIn(b"circuit breaker open", r.body)
        self.assertEqual(app.stats()["api"], before, "a fail-fast request reached the app")
        return r

    def test_full_cycle_against_an_api_that_fails_then_recovers(self):
        app = self._track(FlakyApp())
        s = self.config("  - name: api\n    endpoints: [127.0.0.1:%d]\n"
                        "    circuit_breaker: {window: 30s, min_requests: 6, failure_ratio: 0.5,"
                        " open_for: 5s, trial_requests: 2}\n" % app.port)
        # Closed: the app answers.
        for _ in range(3):
            self.assertEqual(http(s.port, "GET", "/api/orders").status, 200)
        self.assertEqual(self.state(s), 0)
        # The app fails: the third failure makes 3 of 6 (the ratio, with min_requests reached).
        app.control(True)
        for i in range(3):
            r = http(s.port, "GET", "/api/orders")
            self.assertEqual((r.status, r.header("X-Sluice-Circuit")), (503, None), "failure %d" % i)
        self.assertEqual(self.state(s), 1)
        self.assertEqual(self.transitions(s, "open"), 1)
        # Open: sluice answers at once, the app sees nothing; every worker knows (two of them).
        # (open_for is 5 s so that these checks finish within it on a busy machine.)
        for _ in range(4):
            self.assert_fails_fast(s, app, 5)
        s.wait_line(r'"reason":\s*"circuit_open"', timeout=10, stream="out")
        s.wait_line("circuit breaker open", timeout=10, stream="err")
        # Half-open after open_for: a trial reaches the app, which still fails: open again.
        before = app.stats()["api"]
        r = wait_until(lambda: (lambda r: r if r.header("X-Sluice-Circuit") is None else None)(
            http(s.port, "GET", "/api/orders")), 30, "a trial request after open_for", 0.1)
        self.assertEqual(r.status, 503)  # the app's own 503, relayed
        self.assertEqual(app.stats()["api"], before + 1)
        self.assertEqual(self.transitions(s, "half_open"), 1)
        self.assertEqual(self.transitions(s, "open"), 2)
        self.assert_fails_fast(s, app, 5)
        # The app recovers: the next trials succeed and the breaker closes.
        app.control(False)
        wait_until(lambda: http(s.port, "GET", "/api/orders").status == 200, 30,
                   "a successful trial", 0.1)
        self.assertEqual(http(s.port, "GET", "/api/orders").status, 200)  # the second trial
        self.assertEqual(self.state(s), 0)
        self.assertEqual(self.transitions(s, "closed"), 1)
        self.assertEqual(self.transitions(s, "half_open"), 2)
        for _ in range(5):
            self.assertEqual(http(s.port, "GET", "/api/orders").status, 200)
        stats = json.loads(http(s.admin_port, "GET", "/stats").body)
        self.assertEqual(stats["guards"]["api"]["circuit"], "closed")
        api = [c for c in stats["clusters"] if c["name"] == "api"][0]
        self.assertEqual(api["circuit_state"], "closed")
        self.assertEqual(api["circuit_transitions"], {"closed": 1, "open": 2, "half_open": 2})

    def test_connect_errors_open_the_breaker(self):
        dead = reserve_port()  # bound, never listening: every connect is refused
        s = self.config("  - name: api\n    endpoints: [127.0.0.1:%d]\n"
                        "    circuit_breaker: {min_requests: 2, failure_ratio: 1, open_for: 1m}\n"
                        % dead, workers=1)
        for i in range(2):
            r = http(s.port, "GET", "/api/x")
            self.assertEqual(r.status, 502, r)
            self.assertIsNone(r.header("X-Sluice-Circuit"))
        r = http(s.port, "GET", "/api/x")
        self.assertEqual((r.status, r.header("X-Sluice-Circuit")), (503, "open"), r)
        self.assertTrue(55 <= int(r.header("Retry-After")) <= 60, r)
        self.assertEqual(self.state(s), 1)

    def test_max_requests_answers_503_at_once(self):
        app = self._track(FlakyApp())
        s = self.config("  - name: api\n    endpoints: [127.0.0.1:%d]\n"
                        "    limits: {max_requests: 2}\n" % app.port)
        slow = []
        # Long enough that the checks below run while both are in flight, on a busy machine too.
        threads = [threading.Thread(target=lambda: slow.append(http(s.port, "GET", "/slow/6000")))
                   for _ in range(2)]
        for t in threads:
            t.start()
        wait_until(lambda: app.stats()["in_flight"] == 2, 15, "two slow requests at the app")
        r = http(s.port, "GET", "/api/x")
        self.assertEqual(r.status, 503, r)
        self.assertIn(b"max_requests", r.body)
        self.assertEqual(metric(s, "sluice_upstream_overflow_total",
                                'cluster="api",limit="requests"'), 1)
        s.wait_line(r'"reason":\s*"overflow"', timeout=10, stream="out")
        for t in threads:
            t.join(30)
        self.assertEqual([r.status for r in slow], [200, 200])
        self.assertEqual(http(s.port, "GET", "/api/x").status, 200)
        self.assertEqual(app.stats()["max_in_flight"], 2)

    def test_max_pending_answers_503_beyond_the_waiting_requests(self):
        app = self._track(FlakyApp())
        s = self.config("  - name: api\n    endpoints: [127.0.0.1:%d]\n"
                        "    pool: {max_connections: 1, queue_timeout: 30s}\n"
                        "    limits: {max_pending: 1}\n" % app.port, workers=1)
        results = []
        first = threading.Thread(target=lambda: results.append(http(s.port, "GET", "/slow/6000")))
        first.start()
        wait_until(lambda: app.stats()["in_flight"] == 1, 15, "the slow request at the app")
        second = threading.Thread(target=lambda: results.append(http(s.port, "GET", "/api/x")))
        second.start()
        wait_until(lambda: json.loads(http(s.admin_port, "GET", "/stats").body)
                   ["guards"]["api"]["pending"] == 1, 15, "one request waiting for the connection")
        r = http(s.port, "GET", "/api/y")
        self.assertEqual(r.status, 503, r)
        self.assertIn(b"max_pending", r.body)
        self.assertEqual(metric(s, "sluice_upstream_overflow_total",
                                'cluster="api",limit="pending"'), 1)
        first.join(30)
        second.join(30)
        self.assertEqual(sorted(r.status for r in results), [200, 200])

    def test_a_spent_retry_budget_refuses_the_retry(self):
        app = self._track(FlakyApp())
        dead = reserve_port()
        # Two addresses, one refusing; outlier detection off, so it stays in rotation.
        clusters = ("  - name: api\n    endpoints: [127.0.0.1:%d, 127.0.0.1:%d]\n"
                    "    outlier: {consecutive_failures: 0}\n" % (dead, app.port))
        # The default budget (min_retries 3): a refused connect is retried on the other address.
        s = self.config(clusters, workers=1)
        for _ in range(6):
            self.assertEqual(http(s.port, "GET", "/api/x").status, 200)
        self.assertGreaterEqual(metric(s, "sluice_upstream_request_retries_total",
                                       'cluster="api",reason="connect_failed"'), 3)
        self.assertEqual(metric(s, "sluice_upstream_retry_budget_exhausted_total",
                                'cluster="api"'), 0)
        # No budget at all: the request that met the refusing address is answered 502.
        s2 = self.config(clusters + "    retry_budget: {percent: 0, min_retries: 0}\n", workers=1)
        statuses = [http(s2.port, "GET", "/api/x").status for _ in range(6)]
        self.assertEqual(sorted(statuses), [200, 200, 200, 502, 502, 502], statuses)
        self.assertEqual(metric(s2, "sluice_upstream_retry_budget_exhausted_total",
                                'cluster="api"'), 3)
        self.assertEqual(metric(s2, "sluice_upstream_request_retries_total",
                                'cluster="api",reason="connect_failed"'), 0)


if __name__ == "__main__":
    unittest.main()
