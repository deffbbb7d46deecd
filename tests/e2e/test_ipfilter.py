#!/usr/bin/python3
"""IP rules and runtime bans (issue #17). The test client is always 127.0.0.1, so lists name
127.0.0.1 (or, behind a trusted proxy, the X-Forwarded-For client). Covered: a deny list
answering 403 at accept, one closing without an answer, an allow list, rules on the client IP
of a trusted proxy; bans through the admin API (POST, GET, DELETE /bans and /bans/ADDRESS) with
an open keep-alive connection (refused at its next request, and the connection closes) and new
ones refused at accept, a ban's expiry, a reload keeping bans, and the admin API's errors."""
import json
import os
import signal
import time
import unittest

from harness import (E2ETestCase, RawClient, curl_status, http, request_bytes, stderr_lines,
                     wait_until)


def admin(s, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    headers = [("Content-Type", "application/json")] if data is not None else []
    return http(s.admin_port, method, path, headers=headers, body=data)


def denied(s, listener="ingress"):
    return json.loads(http(s.admin_port, "GET", "/stats").body)["client_guard"]["access_denied"][listener]


def refused_without_answer(port):
    """A new connection that sluice closes without answering (a reset counts too)."""
    c = RawClient(port)
    try:
        try:
            c.send(request_bytes("GET", "/"))
            data = c.read_until_close(timeout=10)
        except (ConnectionResetError, BrokenPipeError):
            data = b""
        return data == b""
    finally:
        c.close()


class IpFilterTest(E2ETestCase):

    def start_with(self, up, listener_extra="", extra=""):
        self.cfg = os.path.join(self.make_tmpdir(), "sluice.yaml")
        self.write(up, listener_extra, extra)
        return self.start_sluice("--config", self.cfg, defaults=False, workers=2)

    def write(self, up, listener_extra="", extra=""):
        with open(self.cfg, "w") as f:
            f.write("admin: {address: 127.0.0.1:0}\nworkers: 2\ndrain: {delay: 0s}\n"
                    "listeners:\n  - {name: ingress, address: 127.0.0.1:0, cluster: app%s}\n"
                    "clusters:\n  - {name: app, endpoints: [127.0.0.1:%d]}\n%s"
                    % (listener_extra, up.port, extra))

    def reload(self, s):
        n = len(stderr_lines(s))
        os.kill(s.pid, signal.SIGHUP)
        wait_until(lambda: any("reload: applied" in l or "rejected" in l
                               for l in stderr_lines(s)[n:]), 30, "a reload outcome")
        self.assertTrue(any("reload: applied" in l for l in stderr_lines(s)[n:]), s.log())

    # ---- lists ------------------------------------------------------------------------------

    def test_deny_list_answers_403_at_accept(self):
        up = self.start_aiohttp()
        s = self.start_with(up, ", ip_rules: {deny: [127.0.0.0/8]}")
        code, body, _ = curl_status(s.url("/"))
        self.assertEqual(code, 403)
        self.assertIn(b"403 Forbidden: denied by the listener's IP rules", body)
        self.assertEqual(denied(s)["deny"], 1)
        self.assertEqual(up.stats()["requests"], 1)  # only the /stats request itself

    def test_deny_list_closes_silently(self):
        up = self.start_aiohttp()
        s = self.start_with(up, ", ip_rules: {deny: [127.0.0.1], action: close}")
        self.assertTrue(refused_without_answer(s.port))
        wait_until(lambda: denied(s)["deny"] == 1, 10, "the refusal counted")

    def test_allow_list(self):
        up = self.start_aiohttp()
        s = self.start_with(up, ", ip_rules: {allow: [10.0.0.0/8, '::1']}")
        self.assertEqual(curl_status(s.url("/"))[0], 403)
        self.assertEqual(denied(s)["allow"], 1)
        self.write(up, ", ip_rules: {allow: [10.0.0.0/8, 127.0.0.1]}")
        self.reload(s)
        self.assertEqual(curl_status(s.url("/"))[0], 200)

    def test_rules_on_the_client_ip_behind_a_trusted_proxy(self):
        up = self.start_aiohttp()
        s = self.start_with(up, ", trusted_proxies: [127.0.0.1/32],"
                                " ip_rules: {deny: [198.51.100.0/24], match: client}")
        c = RawClient(s.port)
        c.send(request_bytes("GET", "/", [("X-Forwarded-For", "203.0.113.1")]))
        self.assertEqual(c.read_response().status, 200)
        c.send(request_bytes("GET", "/", [("X-Forwarded-For", "198.51.100.7")]))
        r = c.read_response()
        self.assertEqual(r.status, 403)
        # A 403 for a listed client leaves the proxy's connection usable for other clients.
        c.send(request_bytes("GET", "/", [("X-Forwarded-For", "203.0.113.2")]))
        self.assertEqual(c.read_response().status, 200)
        c.close()
        self.assertEqual(denied(s)["deny"], 1)

    # ---- bans -------------------------------------------------------------------------------

    def test_ban_with_open_keep_alive_connections_then_lift_it(self):
        up = self.start_aiohttp()
        s = self.start_with(up)
        kept = RawClient(s.port)
        kept.send(request_bytes("GET", "/"))
        self.assertEqual(kept.read_response().status, 200)

        r = admin(s, "POST", "/bans", {"address": "127.0.0.1", "duration": "10m"})
        self.assertEqual(r.status, 201, r)
        self.assertEqual(r.json()["address"], "127.0.0.1")
        self.assertFalse(r.json()["replaced"])
        listed = admin(s, "GET", "/bans").json()["bans"]
        self.assertEqual([b["address"] for b in listed], ["127.0.0.1"])
        # 600 s less the time between the POST and the GET (generous for a busy machine).
        self.assertTrue(540 <= listed[0]["expires_in_seconds"] <= 600, listed)

        # New connections are closed at accept, without an answer.
        self.assertTrue(refused_without_answer(s.port))
        # The open connection's next request gets 403 and the connection closes.
        kept.send(request_bytes("GET", "/"))
        r = kept.read_response()
        self.assertEqual(r.status, 403)
        self.assertIn(b"banned", r.body)
        self.assertTrue(kept.closed_within(10))
        kept.close()
        st = denied(s)
        self.assertEqual(st["ban"], 2)
        metrics = http(s.admin_port, "GET", "/metrics").body.decode()
        self.assertIn("sluice_bans_active 1\n", metrics)
        self.assertIn('sluice_access_denied_total{listener="ingress",list="ban"} 2', metrics)

        # DELETE /bans/ADDRESS lifts it.
        r = admin(s, "DELETE", "/bans/127.0.0.1")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(curl_status(s.url("/"))[0], 200)
        self.assertEqual(admin(s, "GET", "/bans").json()["bans"], [])
        self.assertEqual(admin(s, "DELETE", "/bans/127.0.0.1").status, 404)

    def test_a_network_ban_lifted_by_delete_with_a_body(self):
        up = self.start_aiohttp()
        s = self.start_with(up)
        self.assertEqual(admin(s, "POST", "/bans",
                               {"address": "127.0.0.0/24", "duration": "1h"}).status, 201)
        self.assertEqual(curl_status(s.url("/"))[0], 0)  # curl: empty reply
        r = admin(s, "POST", "/bans", {"address": "127.0.0.0/24", "duration": "2h"})
        self.assertEqual(r.status, 200)
        self.assertTrue(r.json()["replaced"])
        self.assertEqual(admin(s, "DELETE", "/bans", {"address": "127.0.0.0/24"}).status, 200)
        self.assertEqual(curl_status(s.url("/"))[0], 200)

    def test_bans_expire(self):
        up = self.start_aiohttp()
        s = self.start_with(up)
        t0 = time.monotonic()
        self.assertEqual(admin(s, "POST", "/bans",
                               {"address": "127.0.0.1", "duration": "2s"}).status, 201)
        refused = refused_without_answer(s.port)
        if time.monotonic() - t0 < 1.5:  # unless this machine took the whole ban to get here
            self.assertTrue(refused)
        wait_until(lambda: curl_status(s.url("/"))[0] == 200, 30, "the ban to expire")
        self.assertGreaterEqual(time.monotonic() - t0, 2.0)
        self.assertEqual(admin(s, "GET", "/bans").json()["bans"], [])
        self.assertIn("sluice_bans_active 0\n", http(s.admin_port, "GET", "/metrics").body.decode())

    def test_reload_keeps_bans(self):
        up = self.start_aiohttp()
        s = self.start_with(up)
        self.assertEqual(admin(s, "POST", "/bans",
                               {"address": "127.0.0.1", "duration": "10m"}).status, 201)
        self.write(up, ", max_connections: 100")
        self.reload(s)
        self.assertTrue(refused_without_answer(s.port))
        self.assertEqual(len(admin(s, "GET", "/bans").json()["bans"]), 1)

    def test_admin_errors(self):
        up = self.start_aiohttp()
        s = self.start_with(up)
        cases = [
            ({"address": "10.0.0.1/8", "duration": "1m"}, "did you mean 10.0.0.0/8?"),
            ({"address": "example.com", "duration": "1m"}, "not an IP address"),
            ({"address": "10.0.0.1"}, "'duration' is required"),
            ({"address": "10.0.0.1", "duration": "soon"}, "expected a duration"),
            ({"address": "10.0.0.1", "duration": "0s"}, "above 0"),
            ({"duration": "1m"}, "'address' is required"),
            ({"address": "10.0.0.1", "duration": "1m", "why": "x"}, "unknown key 'why'"),
        ]
        for body, text in cases:
            r = admin(s, "POST", "/bans", body)
            self.assertEqual(r.status, 400, (body, r))
            self.assertIn(text, r.json()["error"], body)
        r = http(s.admin_port, "POST", "/bans", body=b"not json")
        self.assertEqual(r.status, 400)
        self.assertEqual(admin(s, "DELETE", "/bans/nonsense").status, 400)
        self.assertEqual(http(s.admin_port, "PUT", "/bans").status, 405)
        self.assertEqual(admin(s, "GET", "/bans").json()["bans"], [])


if __name__ == "__main__":
    unittest.main()
