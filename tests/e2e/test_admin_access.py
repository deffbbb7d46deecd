#!/usr/bin/python3
"""The admin API's state-changing endpoints (POST /drain, GET /drain/wait, POST /reload) refuse
requests that truly come from another host unless they carry the admin token. The other host
is a network namespace this test creates (`ip netns add`, a veth pair with addresses of its
own); nothing outside the machine is involved. Needs root (CI runs as root)."""
import os
import random
import signal
import re
import subprocess
import time
import unittest

from harness import CURL_BIN, E2ETestCase, http


def run(*argv, check=True):
    return subprocess.run(list(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30,
                          check=check)


class OtherHost:
    """A network namespace joined to this one by a veth pair: 10.213.N.1 here, .2 there."""

    def __init__(self):
        if os.geteuid() != 0:
            raise AssertionError("test_admin_access needs root to create a network namespace")
        n = random.randint(1, 250)
        self.ns = "sluice-e2e-%d-%d" % (os.getpid(), n)
        self.here_if, self.there_if = "slv%da" % n, "slv%db" % n
        self.here, self.there = "10.213.%d.1" % n, "10.213.%d.2" % n
        run("ip", "netns", "add", self.ns)
        try:
            run("ip", "link", "add", self.here_if, "type", "veth", "peer", "name", self.there_if)
            run("ip", "link", "set", self.there_if, "netns", self.ns)
            run("ip", "addr", "add", self.here + "/24", "dev", self.here_if)
            run("ip", "link", "set", self.here_if, "up")
            run("ip", "netns", "exec", self.ns, "ip", "addr", "add", self.there + "/24", "dev",
                self.there_if)
            run("ip", "netns", "exec", self.ns, "ip", "link", "set", self.there_if, "up")
            run("ip", "netns", "exec", self.ns, "ip", "link", "set", "lo", "up")
        except BaseException:
            self.close()
            raise

    def curl(self, method, url, *extra):
        """(status, body) of a request sent from the other host."""
        cp = run("ip", "netns", "exec", self.ns, CURL_BIN, "-sS", "--noproxy", "*",
                 "--max-time", "10", "-X", method, "-o", "-", "-w", "\n%{http_code}", *extra, url,
                 check=False)
        out = cp.stdout.decode()
        body, _, code = out.rpartition("\n")
        return int(code or 0), body

    def close(self):
        run("ip", "link", "del", self.here_if, check=False)
        run("ip", "netns", "del", self.ns, check=False)


class AdminAccessTest(E2ETestCase):

    def setUp(self):
        super().setUp()
        self.host = OtherHost()
        self.addCleanup(self.host.close)

    def start(self, *flags):
        up = self.start_aiohttp()
        return self.start_sluice("--admin", "%s:0" % self.host.here, "--listen",
                                 "127.0.0.1:0", "--drain-delay", "0s", *flags, upstream=up.port,
                                 defaults=False)

    def test_other_hosts_may_read_but_not_drain_or_reload(self):
        s = self.start()
        base = "http://%s:%d" % (self.host.here, s.admin_port)
        self.assertEqual(self.host.curl("GET", base + "/readyz"), (200, "ready\n"))
        self.assertEqual(self.host.curl("GET", base + "/healthz")[0], 200)
        self.assertEqual(self.host.curl("GET", base + "/metrics")[0], 200)
        for method, path in (("POST", "/drain"), ("GET", "/drain/wait"), ("POST", "/reload")):
            code, body = self.host.curl(method, base + path)
            self.assertEqual(code, 403, path)
            self.assertIn("loopback or admin token required", body)
        s.wait_line("admin: refused /drain from %s" % re.escape(self.host.there), timeout=30, stream="err")
        # Nothing changed: still serving.
        self.assertEqual(self.host.curl("GET", base + "/readyz")[0], 200)
        self.assertEqual(http(s.port, "GET", "/").status, 200)

    def test_the_admin_token_lets_another_host_drain(self):
        d = self.make_tmpdir()
        token_file = os.path.join(d, "token")
        with open(token_file, "w") as f:
            f.write("t0ken-%d\n" % random.randint(0, 1 << 30))
        token = open(token_file).read().strip()
        s = self.start("--admin-token-file", token_file)
        base = "http://%s:%d" % (self.host.here, s.admin_port)
        code, _ = self.host.curl("POST", base + "/drain", "-H", "X-Sluice-Admin-Token: wrong")
        self.assertEqual(code, 403)
        self.assertEqual(self.host.curl("GET", base + "/readyz")[0], 200)
        code, body = self.host.curl("POST", base + "/drain", "-H",
                                    "X-Sluice-Admin-Token: " + token)
        self.assertEqual(code, 202, body)
        # An admin-API drain leaves sluice running until its own signal (or POST /resume).
        s.wait_line(r"drain done; waiting for SIGTERM", timeout=10)
        self.assertTrue(s.alive())
        s.proc.send_signal(signal.SIGTERM)
        self.assertEqual(s.proc.wait(timeout=10), 0)
        self.procs.remove(s)


if __name__ == "__main__":
    unittest.main()
