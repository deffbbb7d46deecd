#!/usr/bin/python3
"""Upstream keep-alive pools: reuse across client connections, LIFO, the stale-connection
retry, idle timeouts on both sides, max requests / max idle / max connections with the queue,
non-reuse rules, and several workers."""
import json
import random
import socket
import struct
import threading
import time
import unittest

from harness import (E2ETestCase, IncompleteResponse, RawClient, curl_status, http,
                     request_bytes, run_parallel, tcp_sockets, wait_until)


def conn_of(r):
    return int(r.header("X-Upstream-Conn"))


def fault_conn(r):
    """fault_upstream bodies are `ok conn=ID\\n`."""
    assert r.body.startswith(b"ok conn="), r.body
    return int(r.body.split(b"=")[1])


class PoolTest(E2ETestCase):

    def upstream_open(self, up):
        """Open connections at the aiohttp upstream, not counting the /stats request's own."""
        return up.stats()["open"] - 1

    def queued(self, s):
        """Requests sluice holds beyond the first (GET /drain's in_flight counts requests read
        and not yet answered, waiting for a connection included)."""
        return http(s.admin_port, "GET", "/drain").json()["in_flight"] - 1

    def wait_upstream_open(self, up, want, timeout=30.0):
        deadline = time.monotonic() + timeout
        while True:
            n = self.upstream_open(up)
            if n == want or time.monotonic() > deadline:
                return n
            time.sleep(0.05)

    # ---- reuse -----------------------------------------------------------------------------

    def test_1000_new_client_connections_reuse_few_upstream_connections(self):
        up = self.start_aiohttp()
        s = self.start_sluice(upstream=up.port)
        conns = set()
        for i in range(1000):
            r = http(s.port, "GET", "/conn")  # a new client connection, Connection: close
            self.assertEqual(r.status, 200, "request %d" % i)
            conns.add(r.json()["conn"])
        self.assertLessEqual(len(conns), 4, "1000 requests used %d upstream connections"
                             % len(conns))
        self.assertLessEqual(up.stats()["accepted"], 4 + 1)  # + the /stats connection

    def test_new_client_connections_reuse_nginx_connections(self):
        ng = self.start_nginx()
        s = self.start_sluice(upstream=ng.port)
        for i in range(300):
            code, body, rc = curl_status(s.url("/")) if i % 50 == 0 else (None, None, None)
            if code is None:
                r = http(s.port, "GET", "/")
                code, body = r.status, r.body
            self.assertEqual((code, body), (200, b"hello from nginx\n"), "request %d" % i)
        # nginx logs a request once its response is sent: wait for the 300th line.
        log = wait_until(lambda: (lambda l: l if len(l) >= 300 else None)(ng.access_log()),
                         30, "300 lines in nginx's access log")
        self.assertEqual(len(log), 300)
        conns = {e["conn"] for e in log}
        self.assertLessEqual(len(conns), 4, "300 requests used %d nginx connections"
                             % len(conns))
        self.assertGreater(max(e["conn_requests"] for e in log), 50)

    def test_idle_connections_are_reused_lifo(self):
        up = self.start_aiohttp()
        s = self.start_sluice(upstream=up.port)
        # Three concurrent requests leave three idle upstream connections.
        rs = run_parallel([lambda: http(s.port, "GET", "/sleep/300") for _ in range(3)])
        self.assertEqual([r.status for r in rs], [200, 200, 200], rs)
        self.assertEqual(len({conn_of(r) for r in rs}), 3)
        self.assertEqual(self.wait_upstream_open(up, 3), 3)
        # Sequential requests then keep using the most recently returned one.
        seq = [conn_of(http(s.port, "GET", "/")) for _ in range(20)]
        self.assertEqual(len(set(seq)), 1, "idle connections not reused LIFO: %r" % seq)

    # ---- stale connections -----------------------------------------------------------------

    def test_upstream_dropping_second_request_gives_only_200s(self):
        up = self.start_fault("drop-second")
        s = self.start_sluice(upstream=up.port)
        statuses = []
        for i in range(100):  # each on a new client connection
            try:
                statuses.append(http(s.port, "GET", "/new/%d" % i).status)
            except IncompleteResponse as e:
                statuses.append("closed: %s" % e)
        c = RawClient(s.port)
        for i in range(100):  # all on one kept-alive client connection
            c.send(request_bytes("GET", "/kept/%d" % i))
            try:
                statuses.append(c.read_response().status)
            except IncompleteResponse as e:
                statuses.append("closed: %s" % e)
                c.close()
                c = RawClient(s.port)
        c.close()
        bad = [(i, st) for i, st in enumerate(statuses) if st != 200]
        self.assertEqual(bad, [], "non-200 answers with a stale-dropping upstream")
        # The retries really happened: the upstream dropped ~one request per connection.
        st = up.stats()
        self.assertGreaterEqual(st["connections"], 150)

    def test_non_idempotent_request_never_sent_twice(self):
        up = self.start_fault("drop-second")
        s = self.start_sluice(upstream=up.port)
        r = http(s.port, "POST", "/first", body=b"first")
        self.assertEqual(r.status, 200)
        # The pooled connection is clean; the upstream reads this POST, then drops it.
        try:
            r = http(s.port, "POST", "/second", body=b"second-post-body")
            status = r.status
        except IncompleteResponse:
            status = "closed"
        st = up.stats()
        seen = [q for q in st["requests"] if q["head"].startswith("POST /second ")]
        self.assertEqual(len(seen), 1, "POST /second reached the upstream %d times" % len(seen))
        if status == 200:
            # Only fine if it went straight to a fresh connection (never retried).
            first_on_conn = [q for q in st["requests"] if q["conn"] == seen[0]["conn"]]
            self.assertEqual(first_on_conn[0]["head"].split("\r\n")[0], "POST /second HTTP/1.1")
        else:
            self.assertEqual(status, 502)

    def test_idempotent_request_with_small_body_is_retried(self):
        up = self.start_fault("drop-second")
        s = self.start_sluice(upstream=up.port)
        statuses = []
        for i in range(30):
            try:
                statuses.append(http(s.port, "PUT", "/put/%d" % i, body=b"put-body-%d" % i).status)
            except IncompleteResponse as e:
                statuses.append("closed: %s" % e)
        self.assertEqual(statuses, [200] * 30)
        reqs = up.stats()["requests"]
        for i in range(30):
            copies = [q for q in reqs if q["head"].startswith("PUT /put/%d " % i)]
            self.assertIn(len(copies), (1, 2), "PUT /put/%d sent %d times" % (i, len(copies)))
            for q in copies:  # the replayed body is whole
                self.assertEqual(q["body_start"], "put-body-%d" % i)
        self.assertGreaterEqual(len(reqs), 50, "the stale-connection path was not exercised")

    def test_retried_at_most_once(self):
        up = self.start_fault("answer-once")
        s = self.start_sluice(upstream=up.port)
        self.assertEqual(http(s.port, "GET", "/one").status, 200)
        # The pooled connection is dropped on reuse, and so is the fresh retry: 502.
        statuses = []
        for i in range(3):
            try:
                statuses.append(http(s.port, "GET", "/again/%d" % i).status)
            except IncompleteResponse as e:
                statuses.append("closed: %s" % e)
        self.assertEqual(statuses, [502] * 3)
        reqs = up.stats()["requests"]
        for i in range(3):
            n = len([q for q in reqs if q["head"].startswith("GET /again/%d " % i)])
            self.assertIn(n, (1, 2), "GET /again/%d reached the upstream %d times" % (i, n))

    def test_upstream_idle_close_invisible_aiohttp(self):
        up = self.start_aiohttp(idle_close=0.2)
        s = self.start_sluice(upstream=up.port)
        rnd = random.Random(3)
        statuses = []
        c = RawClient(s.port)
        for i in range(16):  # gaps around the upstream's 0.2 s idle close
            c.send(request_bytes("GET", "/echo?i=%d" % i))
            statuses.append(c.read_response().status)
            statuses.append(http(s.port, "GET", "/").status)
            time.sleep(rnd.uniform(0.15, 0.3))
        c.close()
        self.assertEqual(statuses, [200] * 32)
        self.assertGreaterEqual(up.stats()["accepted"], 5)  # the upstream really closed them

    def test_upstream_idle_close_invisible_nginx(self):
        ng = self.start_nginx(keepalive_timeout="1s")
        s = self.start_sluice(upstream=ng.port)
        statuses = []
        # Each time nginx has closed the pooled connection (its 1 s keep-alive timeout; sluice's
        # socket to it left ESTABLISHED), the next request is still a 200, on a new connection.
        for i in range(4):
            statuses.append(http(s.port, "GET", "/").status)
            wait_until(lambda: "ESTABLISHED" not in tcp_sockets(ng.port), 30,
                       "nginx closing the idle connection")
        # Requests arriving about when nginx closes (gaps around its timeout: the race with
        # the close, which sluice must hide by sending the request again).
        for gap in (0.95, 1.0, 1.05):
            statuses.append(http(s.port, "GET", "/").status)
            time.sleep(gap)  # the stimulus, not a synchronisation
        statuses.append(http(s.port, "GET", "/").status)
        self.assertEqual(statuses, [200] * 8)
        conns = wait_until(lambda: (lambda c: c if len(c) >= 5 else None)(
            {e["conn"] for e in ng.access_log()}), 30, "5 nginx connections in its log")
        self.assertGreaterEqual(len(conns), 5)

    def test_idle_pooled_connection_closed_by_upstream_leaves_pool(self):
        up = self.start_aiohttp(idle_close=0.3)
        s = self.start_sluice(upstream=up.port)
        r1 = http(s.port, "GET", "/")
        # aiohttp closes it; sluice must notice and close its end (no CLOSE_WAIT left).
        self.assertEqual(self.wait_upstream_open(up, 0), 0)
        wait_until(lambda: not {"ESTABLISHED", "CLOSE_WAIT"} & set(tcp_sockets(up.port)), 30,
                   "sluice closing its end of the connection the upstream closed")
        r2 = http(s.port, "GET", "/")
        self.assertEqual((r1.status, r2.status), (200, 200))
        self.assertNotEqual(conn_of(r1), conn_of(r2))

    # ---- pool limits -----------------------------------------------------------------------

    def test_pool_idle_timeout(self):
        # aiohttp's own keep-alive timeout is 75 s: only sluice closes within this test.
        idle_timeout = 2.0
        up = self.start_aiohttp()
        s = self.start_sluice("--pool-idle-timeout", "2s", upstream=up.port)
        a = conn_of(http(s.port, "GET", "/"))
        b = conn_of(http(s.port, "GET", "/"))
        last_use = time.monotonic()
        self.assertEqual(a, b, "connection not reused within the pool idle timeout")
        self.assertEqual(self.wait_upstream_open(up, 0), 0,
                         "sluice kept an idle upstream connection past --pool-idle-timeout")
        self.assertGreaterEqual(time.monotonic() - last_use, idle_timeout - 0.05,
                                "closed before the idle timeout")
        c = conn_of(http(s.port, "GET", "/"))
        self.assertNotEqual(b, c, "connection reused after --pool-idle-timeout")

    def test_pool_max_requests(self):
        up = self.start_aiohttp()
        s = self.start_sluice("--pool-max-requests", "3", upstream=up.port)
        per_conn = {}
        for i in range(30):
            r = http(s.port, "GET", "/")
            self.assertEqual(r.status, 200)
            per_conn[conn_of(r)] = int(r.header("X-Upstream-Conn-Requests"))
        self.assertLessEqual(max(per_conn.values()), 3)
        self.assertGreaterEqual(len(per_conn), 10)
        self.assertLessEqual(len(per_conn), 11)

    def test_pool_max_idle(self):
        up = self.start_aiohttp()
        s = self.start_sluice("--pool-max-idle", "1", upstream=up.port)
        rs = run_parallel([lambda: http(s.port, "GET", "/sleep/300") for _ in range(3)])
        self.assertEqual([r.status for r in rs], [200, 200, 200], rs)
        self.assertEqual(self.wait_upstream_open(up, 1), 1,
                         "more idle connections kept than --pool-max-idle 1")

    def test_pool_max_connections_queue_timeout_503(self):
        up = self.start_aiohttp()
        s = self.start_sluice("--pool-max-connections", "2", "--pool-queue-timeout", "300ms",
                              upstream=up.port)
        t0 = time.monotonic()

        def one():
            r = http(s.port, "GET", "/sleep/2000")
            return r.status, time.monotonic() - t0

        rs = run_parallel([one] * 5)
        self.assertTrue(all(isinstance(r, tuple) for r in rs), rs)
        statuses = sorted(st for st, _ in rs)
        self.assertEqual(statuses, [200, 200, 503, 503, 503], rs)
        # The queued ones are answered at their queue timeout, before the two served ones end
        # (2 s upstream sleeps): they did not wait for a connection.
        first_200 = min(t for st, t in rs if st == 200)
        for st, t in rs:
            if st == 503:
                self.assertLess(t, first_200, "503 after %.2f s, later than the first 200 "
                                "(%.2f s), with a 300ms queue timeout" % (t, first_200))
        self.assertLessEqual(up.stats()["accepted"], 2 + 1)

    def test_pool_max_connections_queue_serves_all(self):
        up = self.start_aiohttp()
        s = self.start_sluice("--pool-max-connections", "2", "--pool-queue-timeout", "10s",
                              upstream=up.port)
        rs = run_parallel([lambda: http(s.port, "GET", "/sleep/700") for _ in range(5)])
        self.assertEqual([getattr(r, "status", r) for r in rs], [200] * 5)
        self.assertLessEqual(len({conn_of(r) for r in rs}), 2)
        self.assertLessEqual(up.stats()["accepted"], 2 + 1)

    def test_pool_queue_full_503(self):
        up = self.start_aiohttp()
        s = self.start_sluice("--pool-max-connections", "1", "--pool-queue-size", "1",
                              "--pool-queue-timeout", "10s", upstream=up.port)
        t0 = time.monotonic()

        def one():
            r = http(s.port, "GET", "/sleep/1000")
            return r.status, time.monotonic() - t0

        # In use, queued, rejected: each started once the one before is where it should be.
        box = [None] * 3
        threads = []

        def start(i):
            t = threading.Thread(target=lambda: box.__setitem__(i, one()), daemon=True)
            t.start()
            threads.append(t)

        start(0)
        wait_until(lambda: up.stats()["open"] >= 2, 30, "the first request at the upstream")
        start(1)
        wait_until(lambda: self.queued(s) >= 1, 30, "the second request queued")
        start(2)
        for t in threads:
            t.join(60)
        rs = box
        self.assertTrue(all(isinstance(r, tuple) for r in rs), rs)
        self.assertEqual([st for st, _ in rs], [200, 200, 503], rs)
        # Ordering: the rejected one is answered before the one in use ends (at once), the
        # queued one only after it (it waited for the connection).
        self.assertLess(rs[2][1], rs[0][1], "a full queue should answer 503 at once")
        self.assertGreater(rs[1][1], rs[0][1], "the queued request did not wait for the "
                           "connection")

    def test_a_client_that_leaves_while_queued_is_taken_off_the_queue(self):
        """A request waiting for a pooled connection whose client resets its connection leaves
        the queue at once: sluice keeps serving (it crashed here: the exchange let go of its
        pool before leaving the queue) and the busy request completes."""
        up = self.start_aiohttp()
        s = self.start_sluice("--pool-max-connections", "1", "--pool-queue-timeout", "30s",
                              upstream=up.port)

        def in_flight():
            return json.loads(http(s.admin_port, "GET", "/drain").body)["in_flight"]

        busy = RawClient(s.port)
        busy.send(request_bytes("GET", "/sleep/3000"))
        leaver = RawClient(s.port)
        leaver.send(request_bytes("GET", "/"))
        wait_until(lambda: in_flight() >= 2, 30, "both requests in flight")
        self.assertEqual(in_flight(), 2, "the second request never waited in the queue")
        # A reset, not a FIN: a half-closed client is still answered; a reset one is gone.
        leaver.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        leaver.close()
        wait_until(lambda: in_flight() <= 1, 30, "the reset client's request gone")
        self.assertLessEqual(in_flight(), 1)
        self.assertTrue(s.alive(), s.log())
        self.assertEqual(busy.read_response().status, 200)
        busy.close()
        self.assertEqual(http(s.port, "GET", "/").status, 200)

    # ---- never reused after ... ------------------------------------------------------------

    def test_not_reused_after_connection_close_or_http10(self):
        up = self.start_fault("ok")
        s = self.start_sluice(upstream=up.port)
        a = fault_conn(http(s.port, "GET", "/"))
        b = fault_conn(http(s.port, "GET", "/"))
        self.assertEqual(a, b)
        c = fault_conn(http(s.port, "GET", "/close"))
        self.assertEqual(c, b)
        d = fault_conn(http(s.port, "GET", "/"))
        self.assertNotEqual(d, c, "reused after the upstream said Connection: close")
        e = fault_conn(http(s.port, "GET", "/http10"))
        self.assertEqual(e, d)
        f = fault_conn(http(s.port, "GET", "/"))
        self.assertNotEqual(f, e, "reused after an HTTP/1.0 response without keep-alive")

    def test_not_reused_after_unfinished_body(self):
        up = self.start_aiohttp()
        s = self.start_sluice(upstream=up.port)
        a = conn_of(http(s.port, "GET", "/"))
        # The client goes away in the middle of a large body: that upstream connection has
        # an unfinished response and must not come back to the pool.
        c = RawClient(s.port)
        c.send(request_bytes("GET", "/bytes/%d" % (50 * 1024 * 1024)))
        head = c.read_head()
        self.assertEqual(conn_of(head), a)
        c.close()
        # sluice closes that upstream connection once it sees the client gone.
        self.assertEqual(self.wait_upstream_open(up, 0), 0,
                         "the connection with an unfinished body was kept")
        rs = [http(s.port, "GET", "/echo?i=%d" % i) for i in range(3)]
        for i, r in enumerate(rs):
            self.assertEqual((r.status, r.json()["query"]), (200, "i=%d" % i))
            self.assertNotEqual(conn_of(r), a, "reused a connection with an unfinished body")

        fu = self.start_fault("close-delimited")
        s2 = self.start_sluice(upstream=fu.port)
        for _ in range(3):
            r = http(s2.port, "GET", "/bytes/1000")
            self.assertEqual((r.status, r.body), (200, b"y" * 1000))
        self.assertEqual(fu.stats()["connections"], 3)

    # ---- workers ---------------------------------------------------------------------------

    def test_two_workers(self):
        up = self.start_aiohttp()
        s = self.start_sluice(upstream=up.port, workers=2)
        self.assertEqual(s.workers, 2)
        conns = set()
        for i in range(200):
            r = http(s.port, "GET", "/conn")
            self.assertEqual(r.status, 200)
            conns.add(r.json()["conn"])
        # Each worker has its own pool: sequential requests spread over both workers by
        # SO_REUSEPORT show up as (at least) two upstream connections, but still only a few.
        self.assertGreaterEqual(len(conns), 2, "only one worker served 200 connections")
        self.assertLessEqual(len(conns), 8)
        rs = run_parallel([lambda: http(s.port, "GET", "/sleep/200") for _ in range(20)])
        self.assertEqual([getattr(r, "status", r) for r in rs], [200] * 20)


if __name__ == "__main__":
    unittest.main()
