#!/usr/bin/python3
"""Routes, clusters and reload from a configuration file: prefix and host routes to aiohttp
upstreams, absolute-form (HTTP_PROXY) requests, round robin and least-request, passive outlier
detection, a response timeout, a DNS name as an endpoint, SIGHUP and POST /reload (a route
switch under a kept-alive client, an invalid file, pools kept, requests in flight), and a
`drain: false` listener."""
import json
import os
import signal
import socket
import subprocess
import time
import unittest

from harness import (CURL_BIN, E2ETestCase, IncompleteResponse, RawClient, reserve_port, http, request_bytes,
                     stderr_lines, wait_until)


def name_of(r):
    return r.header("X-Upstream-Name")


def cluster_yaml(name, ports, extra=""):
    endpoints = ", ".join("127.0.0.1:%d" % p if isinstance(p, int) else p for p in ports)
    return ("  - name: %s\n    endpoints: [%s]\n%s" % (name, endpoints, extra))


class RoutingTest(E2ETestCase):

    def write_config(self, text, path=None):
        if path is None:
            path = os.path.join(self.make_tmpdir(), "sluice.yaml")
        with open(path + ".tmp", "w") as f:
            f.write(text)
        os.replace(path + ".tmp", path)  # as a ConfigMap update does: never half a file
        return path

    def base(self, listeners, clusters, extra=""):
        return ("admin: {address: 127.0.0.1:0}\nworkers: 1\ndrain: {delay: 0s, budget: 10s}\n"
                "listeners:\n%sclusters:\n%s%s" % (listeners, clusters, extra))

    def start_with(self, config_path, workers=None):
        return self.start_sluice("--config", config_path, defaults=False, workers=workers)

    def reload(self, s, before=None):
        """SIGHUP, then waits for the reload's outcome line; returns the new stderr lines."""
        n = len(stderr_lines(s)) if before is None else before
        os.kill(s.pid, signal.SIGHUP)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            new = stderr_lines(s)[n:]
            if any("reload: applied" in l or "rejected" in l for l in new):
                return new
            time.sleep(0.02)
        self.fail("no reload outcome logged:\n" + s.log())

    def admin_post(self, s, path):
        c = RawClient(s.admin_port)
        c.send(request_bytes("POST", path, [("Connection", "close"), ("Content-Length", "0")]))
        r = c.read_response()
        c.close()
        return r

    # ---- routes -----------------------------------------------------------------------------

    def test_prefix_and_host_routes_pick_the_cluster(self):
        api = self.start_aiohttp(name="api")
        app = self.start_aiohttp(name="app")
        office = self.start_aiohttp(name="backoffice")
        cfg = self.write_config(self.base(
            "  - name: ingress\n    address: 127.0.0.1:0\n    routes:\n"
            "      - {prefix: /api, cluster: api}\n"
            "      - {host: admin.example.com, cluster: backoffice}\n"
            "      - {host: '*.example.com', prefix: /, cluster: app}\n",
            cluster_yaml("api", [api.port]) + cluster_yaml("backoffice", [office.port]) +
            cluster_yaml("app", [app.port])))
        s = self.start_with(cfg)

        def get(path, host):
            return http(s.port, "GET", path, headers=[("Host", host)])

        self.assertEqual(name_of(get("/api/users", "www.example.com")), "api")
        self.assertEqual(name_of(get("/api", "admin.example.com")), "api")  # first match wins
        self.assertEqual(name_of(get("/", "admin.example.com")), "backoffice")
        self.assertEqual(name_of(get("/", "ADMIN.Example.com:8080")), "backoffice")
        self.assertEqual(name_of(get("/echo", "www.example.com")), "app")
        self.assertEqual(name_of(get("/echo", "a.b.example.com")), "app")
        r = get("/", "example.org")
        self.assertEqual(r.status, 404)
        self.assertIn(b"no route for host 'example.org'", r.body)
        self.assertEqual(get("/", "example.com").status, 404)  # *.example.com needs a label
        # The upstream sees the request as sent, with its own Host.
        body = get("/echo?q=1", "www.example.com").json()
        self.assertEqual(body["path"], "/echo")
        self.assertIn(["Host", "www.example.com"], body["headers"])

    def test_absolute_form_routes_by_target_host_and_is_no_open_proxy(self):
        stripe = self.start_aiohttp(name="stripe")
        google = self.start_aiohttp(name="google")
        cfg = self.write_config(self.base(
            "  - name: egress\n    address: 127.0.0.1:0\n    drain: false\n    routes:\n"
            "      - {host: api.stripe.test, cluster: stripe}\n"
            "      - {host: '*.googleapis.test', cluster: google}\n",
            cluster_yaml("stripe", [stripe.port]) + cluster_yaml("google", [google.port])))
        s = self.start_with(cfg)
        c = RawClient(s.port)
        c.send(b"GET http://api.stripe.test:8080/echo?x=1 HTTP/1.1\r\nHost: wrong.test\r\n\r\n")
        r = c.read_response()
        self.assertEqual(name_of(r), "stripe")
        body = r.json()
        self.assertEqual(body["path"], "/echo")
        self.assertEqual(body["query"], "x=1")
        hosts = [v for k, v in body["headers"] if k.lower() == "host"]
        self.assertEqual(hosts, ["api.stripe.test:8080"])  # the target's authority, once
        # The same connection, a client using HTTP_PROXY: curl -x.
        c.send(b"GET http://storage.googleapis.test/echo HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(name_of(c.read_response()), "google")
        c.close()
        cp = subprocess.run([CURL_BIN, "-sS", "--max-time", "10", "-x",
                             "http://127.0.0.1:%d" % s.port, "http://api.stripe.test/echo"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=20)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertEqual(json.loads(cp.stdout)["path"], "/echo")
        # Anything else is refused, never forwarded anywhere.
        for target in (b"http://example.com/", b"http://127.0.0.1:%d/" % stripe.port):
            c = RawClient(s.port)
            c.send(b"GET " + target + b" HTTP/1.1\r\nHost: api.stripe.test\r\n\r\n")
            r = c.read_response()
            self.assertEqual(r.status, 404, target)
            c.close()
        r = http(s.port, "GET", "/", headers=[("Host", "example.com")])
        self.assertEqual(r.status, 404)
        c = RawClient(s.port)
        c.send(b"GET https://api.stripe.test/ HTTP/1.1\r\nHost: api.stripe.test\r\n\r\n")
        self.assertEqual(c.read_response().status, 400)
        c.close()

    # ---- load balancing and endpoints ---------------------------------------------------------

    def test_round_robin_reaches_every_endpoint_in_turn(self):
        a = self.start_aiohttp(name="a")
        b = self.start_aiohttp(name="b")
        cfg = self.write_config(self.base(
            "  - name: ingress\n    address: 127.0.0.1:0\n    cluster: app\n",
            cluster_yaml("app", [a.port, b.port], "    load_balancing: round_robin\n")))
        s = self.start_with(cfg)
        names = [name_of(http(s.port, "GET", "/")) for _ in range(20)]
        self.assertEqual(names.count("a"), 10, names)
        self.assertEqual(names.count("b"), 10, names)
        self.assertTrue(all(names[i] != names[i + 1] for i in range(19)), names)

    def test_least_request_prefers_the_less_busy_endpoint(self):
        a = self.start_aiohttp(name="a")
        b = self.start_aiohttp(name="b")
        cfg = self.write_config(self.base(
            "  - name: ingress\n    address: 127.0.0.1:0\n    cluster: app\n",
            cluster_yaml("app", [a.port, b.port], "    load_balancing: least_request\n")))
        s = self.start_with(cfg)
        # One request held at one endpoint (the busy one); then every request goes to the
        # other, idle one: with two addresses the two random choices are both, and the one
        # with fewer requests on it wins. Round robin would send half of them to the busy one.
        busy_client = RawClient(s.port, timeout=120)
        busy_client.send(request_bytes("GET", "/sleep/60000"))
        busy = wait_until(lambda: next((u for u in (a, b) if u.stats()["open"] >= 2), None), 30,
                          "the slow request at an endpoint")  # its own /stats connection + 1
        idle = "b" if busy is a else "a"
        names = [name_of(http(s.port, "GET", "/")) for _ in range(12)]
        self.assertEqual(names, [idle] * 12,
                         "requests sent to the endpoint with one in flight")
        busy.kill()  # ends the slow request (sluice answers it 502) rather than waiting
        try:
            busy_client.read_response()
        except IncompleteResponse:
            pass
        busy_client.close()

    def test_dead_endpoint_is_ejected_and_no_request_fails(self):
        live = self.start_aiohttp(name="live")
        dead = reserve_port()  # nothing listens there: connections are refused
        cfg = self.write_config(self.base(
            "  - name: ingress\n    address: 127.0.0.1:0\n    cluster: app\n",
            cluster_yaml("app", [dead, live.port],
                         "    outlier: {consecutive_failures: 2, base_ejection: 30s}\n")))
        s = self.start_with(cfg)
        for i in range(30):
            r = http(s.port, "GET", "/")
            self.assertEqual((r.status, name_of(r)), (200, "live"), "request %d" % i)
        s.wait_line("ejected for 30s after 2 connect failures", timeout=30, stream="err")
        log = s.log()
        # Ejected after two refusals: later requests do not try it any more. Connect failures
        # are logged once a second at most (the second is counted, not logged).
        m = http(s.admin_port, "GET", "/metrics").body.decode()
        self.assertIn('sluice_upstream_connect_failures_total{cluster="app"} 2', m)
        self.assertEqual(log.count("upstream 127.0.0.1:%d: connect failed" % dead), 1, log)

    def test_ejected_endpoint_comes_back_on_its_own(self):
        live = self.start_aiohttp(name="live")
        port = reserve_port()
        cfg = self.write_config(self.base(
            "  - name: ingress\n    address: 127.0.0.1:0\n    cluster: app\n",
            cluster_yaml("app", [port, live.port],
                         "    outlier: {consecutive_failures: 1, base_ejection: 300ms}\n")))
        s = self.start_with(cfg)
        for _ in range(4):
            self.assertEqual(http(s.port, "GET", "/").status, 200)
        s.wait_line("ejected for 300ms", timeout=30, stream="err")
        back = self.start_aiohttp(name="back", port=port)
        # Once its ejection ends, a request tries it again and it is back in rotation.
        names = set()
        wait_until(lambda: names.update(name_of(http(s.port, "GET", "/")) for _ in range(2))
                   or "back" in names, 30, "the endpoint back in rotation")
        self.assertEqual(names, {"live", "back"})
        # The log line is read by another thread: wait for it rather than look once.
        s.wait_line("connected again, back in rotation", timeout=30, stream="err")
        del back

    def test_dns_name_as_endpoint(self):
        up = self.start_aiohttp(name="app")
        cfg = self.write_config(self.base(
            "  - name: ingress\n    address: 127.0.0.1:0\n    cluster: app\n",
            cluster_yaml("app", ["localhost:%d" % up.port], "    dns_refresh: 1s\n")))
        s = self.start_with(cfg)
        # localhost may also resolve to ::1, where nothing listens: a refused connect tries the
        # other address, so no request fails.
        for i in range(20):
            r = http(s.port, "GET", "/echo")
            self.assertEqual((r.status, name_of(r)), (200, "app"), "request %d" % i)
        # Re-resolution every second keeps the same addresses and the same pooled connection.
        c = RawClient(s.port)
        c.send(request_bytes("GET", "/conn"))
        first = c.read_response().json()["conn"]
        time.sleep(2.2)
        c.send(request_bytes("GET", "/conn"))
        self.assertEqual(c.read_response().json()["conn"], first)
        c.close()

    def test_unresolvable_name_answers_503_and_keeps_running(self):
        cfg = self.write_config(self.base(
            "  - name: ingress\n    address: 127.0.0.1:0\n    cluster: app\n",
            cluster_yaml("app", ["no-such-host.invalid:80"], "    dns_refresh: 1s\n")))
        s = self.start_with(cfg)
        r = http(s.port, "GET", "/")
        self.assertEqual(r.status, 503)
        self.assertIn(b"did not resolve", r.body)
        s.wait_line("DNS lookup of no-such-host.invalid failed", timeout=30, stream="err")

    def test_response_timeout_gives_504(self):
        up = self.start_aiohttp(name="app")
        cfg = self.write_config(self.base(
            "  - name: ingress\n    address: 127.0.0.1:0\n    cluster: app\n",
            cluster_yaml("app", [up.port], "    response_timeout: 300ms\n")))
        s = self.start_with(cfg)
        t0 = time.monotonic()
        r = http(s.port, "GET", "/sleep/10000", timeout=60)
        self.assertEqual(r.status, 504)
        self.assertLess(time.monotonic() - t0, 9)  # the 300 ms timeout, not the answer at 10 s
        self.assertEqual(http(s.port, "GET", "/sleep/10").status, 200)

    # ---- reload -------------------------------------------------------------------------------

    def two_cluster_config(self, a, b, target, extra_cluster=""):
        return self.base(
            "  - name: ingress\n    address: 127.0.0.1:0\n    routes:\n"
            "      - {prefix: /, cluster: %s}\n" % target,
            cluster_yaml("a", [a.port]) + cluster_yaml("b", [b.port]) + extra_cluster)

    def test_sighup_switches_a_route_under_a_kept_alive_client(self):
        a = self.start_aiohttp(name="a")
        b = self.start_aiohttp(name="b")
        cfg = self.write_config(self.two_cluster_config(a, b, "a"))
        s = self.start_with(cfg)
        c = RawClient(s.port)
        c.send(request_bytes("GET", "/"))
        self.assertEqual(name_of(c.read_response()), "a")
        self.write_config(self.two_cluster_config(a, b, "b"), cfg)
        self.reload(s)
        for _ in range(3):  # the same client connection, now routed to b
            c.send(request_bytes("GET", "/"))
            self.assertEqual(name_of(c.read_response()), "b")
        self.assertTrue(c.is_open())
        c.close()

    def test_reload_keeps_the_pool_of_an_unchanged_cluster(self):
        a = self.start_aiohttp(name="a")
        b = self.start_aiohttp(name="b")
        cfg = self.write_config(self.two_cluster_config(a, b, "a"))
        s = self.start_with(cfg)
        before = http(s.port, "GET", "/conn").json()["conn"]
        # Cluster a is untouched; b changes (a pool setting) and a cluster is added.
        self.write_config(self.base(
            "  - name: ingress\n    address: 127.0.0.1:0\n    routes:\n"
            "      - {prefix: /b, cluster: b}\n      - {prefix: /, cluster: a}\n",
            cluster_yaml("a", [a.port]) +
            cluster_yaml("b", [b.port], "    pool: {max_idle: 8}\n") +
            cluster_yaml("c", [b.port])), cfg)
        self.reload(s)
        self.assertEqual(http(s.port, "GET", "/conn").json()["conn"], before)
        self.assertEqual(a.stats()["accepted"], 1 + 1)  # + the /stats connection

    def test_request_in_flight_finishes_on_a_cluster_the_reload_removed(self):
        a = self.start_aiohttp(name="a")
        b = self.start_aiohttp(name="b")
        cfg = self.write_config(self.two_cluster_config(a, b, "a"))
        s = self.start_with(cfg)
        c = RawClient(s.port)
        c.send(request_bytes("GET", "/sleep/1500"))
        wait_until(lambda: a.stats()["open"] >= 2, 30, "the request at a")  # + its /stats
        self.write_config(self.base(
            "  - name: ingress\n    address: 127.0.0.1:0\n    cluster: b\n",
            cluster_yaml("b", [b.port])), cfg)
        self.reload(s)
        self.assertEqual(name_of(http(s.port, "GET", "/")), "b")
        r = c.read_response()
        self.assertEqual((r.status, name_of(r), r.body), (200, "a", b"slept 1500\n"))
        c.close()
        # Its connection to a closes once the request is done (the cluster is gone).
        wait_until(lambda: a.stats()["open"] == 1, 30,  # only the /stats connection
                   "the removed cluster's connection closed")

    def test_a_reload_does_not_change_the_limits_of_a_request_in_flight(self):
        """Each request keeps the configuration it started with: an upload under way finishes
        although a reload lowered max_body_bytes below its size; the next one gets 413."""
        up = self.start_aiohttp(name="a")

        def config(limit):
            return self.base("  - name: ingress\n    address: 127.0.0.1:0\n    cluster: a\n",
                             cluster_yaml("a", [up.port]),
                             "limits: {max_body_bytes: %s}\n" % limit)
        cfg = self.write_config(config("8MiB"))
        s = self.start_with(cfg)
        piece = b"x" * (256 * 1024)

        def chunk(data):
            return b"%x\r\n%s\r\n" % (len(data), data)
        head = request_bytes("POST", "/discard", [("Transfer-Encoding", "chunked")])
        c = RawClient(s.port)
        before = up.stats()["requests"]
        c.send(head + chunk(piece))
        # The upload reached the upstream: its head was taken under the first configuration.
        wait_until(lambda: up.stats()["requests"] >= before + 2, 30, "the upload at the upstream")
        self.assertGreaterEqual(up.stats()["requests"], before + 2, "the upload never started")
        self.write_config(config("1MiB"), cfg)
        self.assertTrue(any("reload: applied" in l for l in self.reload(s)))
        for _ in range(7):  # 2 MiB in all, twice the new limit
            c.send(chunk(piece))
        c.send(b"0\r\n\r\n")
        r = c.read_response()
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(r.json()["received"], 8 * len(piece))
        c.close()
        # A new upload runs under the new limit.
        c = RawClient(s.port)
        c.send(head + b"".join(chunk(piece) for _ in range(8)) + b"0\r\n\r\n")
        self.assertEqual(c.read_response().status, 413)
        c.close()

    def test_invalid_reload_is_rejected_and_the_proxy_keeps_serving(self):
        a = self.start_aiohttp(name="a")
        b = self.start_aiohttp(name="b")
        cfg = self.write_config(self.two_cluster_config(a, b, "a"))
        s = self.start_with(cfg)
        c = RawClient(s.port)
        c.send(request_bytes("GET", "/"))
        self.assertEqual(name_of(c.read_response()), "a")
        self.write_config(self.base(
            "  - name: ingress\n    address: 127.0.0.1:0\n    routes:\n"
            "      - {prefix: /, cluster: nowhere}\n",
            cluster_yaml("a", [a.port], "    connect_timeout: soon\n")), cfg)
        new = self.reload(s)
        text = "\n".join(new)
        self.assertIn("rejected", text)
        self.assertRegex(text, r"%s:\d+:\d+: .*nowhere" % os.path.basename(cfg))
        self.assertRegex(text, r"%s:\d+:\d+: .*soon" % os.path.basename(cfg))
        c.send(request_bytes("GET", "/"))
        self.assertEqual(name_of(c.read_response()), "a")
        c.close()
        # The admin API says the same, with the errors as JSON.
        r = self.admin_post(s, "/reload")
        self.assertEqual(r.status, 400)
        body = r.json()
        self.assertEqual(body["result"], "invalid")
        self.assertEqual(len(body["errors"]), 2, body)
        # Fixed file: POST /reload applies it.
        self.write_config(self.two_cluster_config(a, b, "b"), cfg)
        r = self.admin_post(s, "/reload")
        self.assertEqual((r.status, r.json()["result"]), (200, "applied"))
        self.assertEqual(name_of(http(s.port, "GET", "/")), "b")

    def wait_for_line(self, s, n, needle, seconds=30):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            new = stderr_lines(s)[n:]
            if any(needle in l for l in new):
                return new
            time.sleep(0.02)
        self.fail("no %r logged:\n%s" % (needle, s.log()))

    def test_reload_watch_reloads_when_the_file_changes(self):
        # The dev proxy (reload: {watch: true}): saving the file is enough, no SIGHUP.
        a = self.start_aiohttp(name="a")
        b = self.start_aiohttp(name="b")
        watch = "reload: {watch: true}\n"
        cfg = self.write_config(self.two_cluster_config(a, b, "a") + watch)
        s = self.start_with(cfg)
        self.wait_for_line(s, 0, "reload.watch: reloading when")
        c = RawClient(s.port)
        c.send(request_bytes("GET", "/"))
        self.assertEqual(name_of(c.read_response()), "a")
        n = len(stderr_lines(s))
        self.write_config(self.two_cluster_config(a, b, "b") + watch, cfg)  # renamed over it
        self.wait_for_line(s, n, "reload: applied")
        c.send(request_bytes("GET", "/"))  # the same kept-alive client
        self.assertEqual(name_of(c.read_response()), "b")
        # A broken save is rejected with its errors; the running configuration stays.
        n = len(stderr_lines(s))
        self.write_config(self.two_cluster_config(a, b, "nowhere") + watch, cfg)
        text = "\n".join(self.wait_for_line(s, n, "rejected"))
        self.assertRegex(text, r"%s:\d+:\d+: .*nowhere" % os.path.basename(cfg))
        c.send(request_bytes("GET", "/"))
        self.assertEqual(name_of(c.read_response()), "b")
        # Writing the file in place (not renamed) is seen too.
        n = len(stderr_lines(s))
        with open(cfg, "w") as f:
            f.write(self.two_cluster_config(a, b, "a") + watch)
        self.wait_for_line(s, n, "reload: applied")
        c.send(request_bytes("GET", "/"))
        self.assertEqual(name_of(c.read_response()), "a")
        # Touching it without a change reloads nothing; turning the watch off stops it.
        n = len(stderr_lines(s))
        os.utime(cfg)
        self.write_config(self.two_cluster_config(a, b, "b"), cfg)
        self.wait_for_line(s, n, "no longer watching")
        # That reload logs "applied" after "no longer watching": counted from after it, or the
        # stderr reader may hand it over late and it would look like a reload of the next save.
        self.wait_for_line(s, n, "reload: applied")
        n = len(stderr_lines(s))
        self.write_config(self.two_cluster_config(a, b, "a"), cfg)
        time.sleep(1.0)
        self.assertFalse(any("reload" in l for l in stderr_lines(s)[n:]), s.log())
        c.send(request_bytes("GET", "/"))
        self.assertEqual(name_of(c.read_response()), "b")
        self.assertTrue(c.is_open())
        c.close()
        m = http(s.admin_port, "GET", "/metrics").body.decode()
        self.assertIn('sluice_config_reloads_total{result="success"} 3', m)
        self.assertIn('sluice_config_reloads_total{result="failure"} 1', m)

    def test_restart_only_changes_are_reported(self):
        a = self.start_aiohttp(name="a")
        b = self.start_aiohttp(name="b")
        port = reserve_port()
        text = self.two_cluster_config(a, b, "a").replace("127.0.0.1:0\n    routes",
                                                          "127.0.0.1:%d\n    routes" % port)
        cfg = self.write_config(text)
        s = self.start_with(cfg)
        other = reserve_port()
        self.write_config(text.replace(":%d\n" % port, ":%d\n" % other)
                          .replace("workers: 1", "workers: 3").replace("cluster: a}", "cluster: b}"),
                          cfg)
        r = self.admin_post(s, "/reload")
        self.assertEqual(r.status, 200)
        warnings = "\n".join(r.json()["warnings"])
        self.assertIn("workers: 3 needs a restart", warnings)
        self.assertIn("listener ingress: address 127.0.0.1:%d needs a restart" % other, warnings)
        self.assertEqual(name_of(http(s.port, "GET", "/")), "b")  # the rest applied
        self.assertEqual(s.port, port)

    def test_reload_without_a_file_is_refused(self):
        up = self.start_aiohttp()
        s = self.start_sluice(upstream=up.port)
        r = self.admin_post(s, "/reload")
        self.assertEqual(r.status, 409)
        self.assertIn("without --config", r.json()["errors"][0])
        os.kill(s.pid, signal.SIGHUP)  # logged, and nothing else happens
        time.sleep(0.2)
        self.assertEqual(http(s.port, "GET", "/").status, 200)

    # ---- drain: false -------------------------------------------------------------------------

    def test_drain_false_listener_stays_open_through_a_drain(self):
        app = self.start_aiohttp(name="app")
        api = self.start_aiohttp(name="api")
        egress_port = reserve_port()
        cfg = self.write_config(
            "admin: {address: 127.0.0.1:0}\nworkers: 1\ndrain: {delay: 0s, budget: 10s}\n"
            "listeners:\n"
            "  - {name: ingress, address: 127.0.0.1:0, cluster: app}\n"
            "  - {name: egress, address: 127.0.0.1:%d, drain: false, cluster: api}\n"
            "clusters:\n%s%s" % (egress_port, cluster_yaml("app", [app.port]),
                                 cluster_yaml("api", [api.port])))
        s = self.start_with(cfg)
        kept = RawClient(egress_port)  # the app's pooled egress connection
        kept.send(request_bytes("GET", "/"))
        self.assertEqual(name_of(kept.read_response()), "api")
        slow = RawClient(s.port)  # keeps the drain going for a while
        slow.send(request_bytes("GET", "/sleep/1500"))
        wait_until(lambda: app.stats()["open"] >= 2, 30, "the slow request at the app")
        r = self.admin_post(s, "/drain")
        self.assertEqual(r.status, 202)

        def refused():
            try:
                socket.create_connection(("127.0.0.1", s.port), timeout=10).close()
                return False
            except ConnectionRefusedError:
                return True

        wait_until(refused, 30, "ingress closed by the drain")  # ingress is closed...
        # ...egress still takes new connections, and the kept one keeps working, kept alive.
        r = http(egress_port, "GET", "/")
        self.assertEqual((r.status, name_of(r)), (200, "api"))
        kept.send(request_bytes("GET", "/"))
        r = kept.read_response()
        self.assertEqual(r.status, 200)
        self.assertFalse(r.has_header("Connection") and r.header("Connection") == "close")
        self.assertEqual(slow.read_response().status, 200)
        # The drain ends when ingress is done; the egress connection does not hold it up. A
        # drain the admin API started (the app's preStop hook) leaves sluice running for the
        # app's outbound calls until its own signal, which comes after the app has exited.
        r = RawClient(s.admin_port)
        r.send(request_bytes("GET", "/drain/wait", [("Connection", "close")]))
        self.assertEqual(r.read_response().json()["phase"], "done")
        r.close()
        time.sleep(0.3)
        self.assertIsNone(s.proc.poll(), "sluice exited with an egress listener to serve")
        r = http(egress_port, "GET", "/")
        self.assertEqual((r.status, name_of(r)), (200, "api"))
        kept.send(request_bytes("GET", "/"))
        self.assertEqual(kept.read_response().status, 200)
        # Native sidecar: the SIGTERM comes after the app has exited.
        app.kill()
        t0 = time.monotonic()
        os.kill(s.pid, signal.SIGTERM)
        self.assertEqual(s.proc.wait(timeout=30), 0)
        self.assertLess(time.monotonic() - t0, 10.0, "slow to stop after the drain")
        self.procs.remove(s)  # it exited: no SIGTERM at clean-up

    def test_sigterm_during_an_admin_drain_lets_it_finish(self):
        # sluice as a plain container: the kubelet sends SIGTERM while the app's preStop hook
        # (GET /drain/wait) is draining. That signal must not cut the drain short.
        app = self.start_aiohttp(name="app")
        cfg = self.write_config(self.base(
            "  - name: ingress\n    address: 127.0.0.1:0\n    cluster: app\n",
            cluster_yaml("app", [app.port])).replace("delay: 0s", "delay: 1s"))
        s = self.start_with(cfg)
        slow = RawClient(s.port, timeout=30)
        slow.send(request_bytes("GET", "/sleep/1500"))
        wait_until(lambda: app.stats()["open"] >= 2, 30, "the slow request at the app")
        self.assertEqual(self.admin_post(s, "/drain").status, 202)
        os.kill(s.pid, signal.SIGTERM)
        # A SIGTERM that cut the drain short would force the request (no response) and exit 2.
        self.assertEqual(slow.read_response().status, 200)  # in flight, finished
        self.assertEqual(s.proc.wait(timeout=30), 0)  # and then it exits, drained
        self.procs.remove(s)


if __name__ == "__main__":
    unittest.main()
