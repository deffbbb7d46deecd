#!/usr/bin/python3
"""Hostile and greedy clients: connection limits per listener and per worker (refused with a
503 and counted), a flood beyond the descriptor limit (sluice refuses connections beyond each
worker's share of RLIMIT_NOFILE, counts and logs once, and its loop does not spin; libuv's
reserve descriptor sheds what comes in if the limit is reached anyway) and slowloris (trickling
heads are cut at the header timeout while other clients are served)."""
import json
import os
import re
import resource
import socket
import subprocess
import time
import unittest

from harness import (CLEAN_ENV, SLUICE_BIN, E2ETestCase, RawClient, free_port, http,
                     request_bytes, timed)


def refused(s, reason, listener="ingress"):
    st = json.loads(http(s.admin_port, "GET", "/stats").body)
    for l in st["listeners"]:
        if l["name"] == listener:
            return l["connections_refused"][reason]
    raise AssertionError("no listener %s in /stats" % listener)


class LimitsTest(E2ETestCase):

    def write_config(self, text):
        path = os.path.join(self.make_tmpdir(), "sluice.yaml")
        with open(path, "w") as f:
            f.write(text)
        return path

    def open_kept(self, port, n):
        clients = []
        for _ in range(n):
            c = RawClient(port)
            c.send(request_bytes("GET", "/"))
            self.assertEqual(c.read_response().status, 200)
            clients.append(c)
        return clients

    def test_listener_limit_refuses_with_503_and_frees_up(self):
        up = self.start_aiohttp()
        cfg = self.write_config(
            "admin: {address: 127.0.0.1:0}\nworkers: 2\ndrain: {delay: 0s}\n"
            "listeners:\n  - {name: ingress, address: 127.0.0.1:0, cluster: app,"
            " max_connections: 3}\n"
            "clusters:\n  - {name: app, endpoints: [127.0.0.1:%d]}\n" % up.port)
        s = self.start_sluice("--config", cfg, defaults=False, workers=None)
        kept = self.open_kept(s.port, 3)  # across both workers: the limit is the listener's
        c = RawClient(s.port)
        c.send(request_bytes("GET", "/"))
        r = c.read_response()
        self.assertEqual(r.status, 503)
        self.assertIn(b"connection limit reached (listener_limit)", r.body)
        self.assertTrue(c.closed_within(3))
        c.close()
        self.assertEqual(refused(s, "listener_limit"), 1)
        kept.pop().close()
        deadline = time.monotonic() + 3
        while True:  # the slot frees once sluice has seen the close
            r = http(s.port, "GET", "/")
            if r.status == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        self.assertEqual(r.status, 200)
        for k in kept:
            k.send(request_bytes("GET", "/"))
            self.assertEqual(k.read_response().status, 200)  # the kept ones never noticed

    def test_worker_limit(self):
        up = self.start_aiohttp()
        cfg = self.write_config(
            "admin: {address: 127.0.0.1:0}\nworkers: 1\ndrain: {delay: 0s}\n"
            "limits: {max_connections_per_worker: 2}\n"
            "listeners:\n  - {name: ingress, address: 127.0.0.1:0, cluster: app}\n"
            "clusters:\n  - {name: app, endpoints: [127.0.0.1:%d]}\n" % up.port)
        s = self.start_sluice("--config", cfg, defaults=False, workers=None)
        kept = self.open_kept(s.port, 2)
        r = http(s.port, "GET", "/")
        self.assertEqual(r.status, 503)
        self.assertIn(b"(worker_limit)", r.body)
        self.assertEqual(refused(s, "worker_limit"), 1)
        text = http(s.admin_port, "GET", "/metrics").body.decode()
        self.assertIn('sluice_downstream_connections_refused_total{listener="ingress",'
                      'reason="worker_limit"} 1', text)
        del kept

    def test_descriptor_exhaustion_sheds_connections_without_spinning(self):
        up = self.start_aiohttp()
        admin = free_port()

        def low_fd_limit():
            resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))

        proc = subprocess.Popen(
            [SLUICE_BIN, "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:%d" % admin,
             "--workers", "1", "--drain-delay", "0s", "--upstream", "127.0.0.1:%d" % up.port],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            env=CLEAN_ENV, preexec_fn=low_fd_limit)
        try:
            port = int(re.search(r"listening on 127\.0\.0\.1:(\d+)",
                                 proc.stderr.readline().decode()).group(1))
            socks = []
            for _ in range(120):  # far beyond 64 descriptors
                s = socket.create_connection(("127.0.0.1", port), timeout=5)
                socks.append(s)
            time.sleep(0.5)
            # The loop is not spinning on the readable listening socket: little CPU while the
            # surplus connections wait.
            stat = lambda: sum(int(x) for x in open("/proc/%d/stat" % proc.pid).read()
                               .rsplit(")", 1)[1].split()[11:13])
            before = stat()
            time.sleep(1.0)
            used = (stat() - before) / os.sysconf("SC_CLK_TCK")
            self.assertLess(used, 0.3, "sluice used %.2f s of CPU in 1 s while out of "
                                       "descriptors" % used)
            for s in socks:
                s.close()
            time.sleep(0.5)
            # It recovers: requests are served again, and the shedding was counted and logged.
            r = http(port, "GET", "/")
            self.assertEqual(r.status, 200)
            st = json.loads(http(admin, "GET", "/stats").body)
            self.assertGreater(st["listeners"][0]["connections_refused"]["fd_limit"], 0)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
            err = proc.stderr.read().decode()
            proc.stderr.close()
        # Logged once for the whole flood.
        self.assertEqual(err.count("share of the descriptor limit"), 1, err)

    def test_slowloris_is_cut_at_the_header_timeout_and_others_are_served(self):
        up = self.start_aiohttp()
        s = self.start_sluice("--header-timeout", "2s", upstream=up.port)
        n = 1000
        slow = []
        for i in range(n):
            c = socket.create_connection(("127.0.0.1", s.port), timeout=5)
            c.setblocking(False)
            c.send(b"G")
            slow.append(c)
        head = b"ET / HTTP/1.1\r\nHost: x\r\n"
        t0 = time.monotonic()
        latencies = []
        sent = 0
        # Trickle one byte per connection every 0.4 s; meanwhile time normal requests.
        while time.monotonic() - t0 < 3.5:
            for c in slow:
                try:
                    c.send(head[sent % len(head):sent % len(head) + 1])
                except (BlockingIOError, OSError):
                    pass
            sent += 1
            r, dt = timed(lambda: http(s.port, "GET", "/"))
            self.assertEqual(r.status, 200)
            latencies.append(dt)
            time.sleep(0.4)
        time.sleep(0.5)
        cut = 0
        for c in slow:
            try:
                data = c.recv(4096)
                cut += data == b""  # closed by sluice
            except BlockingIOError:
                pass
            except OSError:
                cut += 1
            c.close()
        self.assertEqual(cut, n, "only %d of %d trickling connections were cut" % (cut, n))
        self.assertLess(max(latencies), 0.5, "normal requests took up to %.3f s" % max(latencies))
        s.wait_line("request head not received within the header timeout", timeout=3, stream="err")


if __name__ == "__main__":
    unittest.main()
