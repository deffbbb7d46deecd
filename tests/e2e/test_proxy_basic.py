#!/usr/bin/python3
"""Basic proxying: methods, keep-alive, HTTP/1.0, bodiless responses, header rewriting,
admin endpoints, command line and environment."""
import hashlib
import json
import os
import re
import subprocess
import time
import unittest

from harness import (wait_until, SLUICE_BIN, CLEAN_ENV, E2ETestCase, RawClient, curl_status, reserve_port,
                     http, request_bytes)


def names_lower(headers):
    return [k.lower() for k, _ in headers]


def values(headers, name):
    return [v for k, v in headers if k.lower() == name.lower()]


class ProxyBasicTest(E2ETestCase):

    # ---- methods against both upstreams ----------------------------------------------------

    def test_get_and_post_to_aiohttp(self):
        up = self.start_aiohttp()
        s = self.start_sluice(upstream=up.port)

        code, body, rc = curl_status(s.url("/"))
        self.assertEqual((rc, code, body), (0, 200, b"hello from aiohttp\n"))

        payload = os.urandom(200000)
        path = os.path.join(self.make_tmpdir(), "payload")
        with open(path, "wb") as f:
            f.write(payload)
        code, body, rc = curl_status(s.url("/echo?x=1"), "--data-binary", "@" + path,
                                     "-H", "Content-Type: application/octet-stream",
                                     "-H", "Expect:")
        self.assertEqual((rc, code), (0, 200))
        doc = json.loads(body)
        self.assertEqual(doc["method"], "POST")
        self.assertEqual(doc["path"], "/echo")
        self.assertEqual(doc["query"], "x=1")
        self.assertEqual(doc["body_len"], len(payload))
        self.assertEqual(doc["sha256"], hashlib.sha256(payload).hexdigest())

        for method in ("PUT", "DELETE", "PATCH", "OPTIONS"):
            r = http(s.port, method, "/echo", body=b"abc")
            self.assertEqual(r.status, 200, method)
            self.assertEqual(r.json()["method"], method)
            self.assertEqual(r.json()["body"], "abc")

        r = http(s.port, "GET", "/status/404")
        self.assertEqual((r.status, r.body), (404, b"status 404\n"))
        r = http(s.port, "GET", "/status/500")
        self.assertEqual((r.status, r.body), (500, b"status 500\n"))

    def test_get_and_post_to_nginx(self):
        ng = self.start_nginx()
        s = self.start_sluice(upstream=ng.port)
        code, body, rc = curl_status(s.url("/"))
        self.assertEqual((rc, code, body), (0, 200, b"hello from nginx\n"))
        code, body, rc = curl_status(s.url("/post"), "--data-binary", "x" * 5000, "-H", "Expect:")
        self.assertEqual((rc, code, body), (0, 200, b"nginx got POST len=5000\n"))
        r = http(s.port, "POST", "/post", body=b"hello")
        self.assertEqual((r.status, r.body), (200, b"nginx got POST len=5\n"))
        # nginx logs a request once its response is sent: wait for the third line.
        log = wait_until(lambda: (lambda l: l if len(l) >= 3 else None)(ng.access_log()), 30,
                         "three lines in nginx's access log")
        self.assertEqual([(e["method"], e["uri"], e["status"]) for e in log],
                         [("GET", "/", 200), ("POST", "/post", 200), ("POST", "/post", 200)])

    # ---- downstream keep-alive and HTTP/1.0 -------------------------------------------------

    def test_downstream_keepalive_reuses_one_socket(self):
        up = self.start_aiohttp()
        s = self.start_sluice(upstream=up.port)
        c = RawClient(s.port)
        upstream_conns = set()
        for i in range(6):
            if i % 2:
                c.send(request_bytes("POST", "/echo?i=%d" % i, body=b"body-%d" % i))
            else:
                c.send(request_bytes("GET", "/echo?i=%d" % i))
            r = c.read_response()
            self.assertEqual(r.status, 200)
            doc = r.json()
            self.assertEqual(doc["query"], "i=%d" % i)
            self.assertEqual(doc["body"], "body-%d" % i if i % 2 else "")
            upstream_conns.add(doc["conn"])
            self.assertNotIn("close", (r.header("Connection") or "").lower())
        self.assertTrue(c.is_open(), "sluice closed a keep-alive client connection")
        self.assertEqual(len(upstream_conns), 1, "sequential requests used several upstream "
                         "connections: %r" % upstream_conns)
        c.close()

    def test_http10_client_without_keepalive_is_closed(self):
        up = self.start_aiohttp()
        s = self.start_sluice(upstream=up.port)
        c = RawClient(s.port)
        c.send(b"GET / HTTP/1.0\r\n\r\n")
        r = c.read_response()
        self.assertEqual((r.status, r.body), (200, b"hello from aiohttp\n"))
        self.assertTrue(c.closed_within(30), "HTTP/1.0 connection without keep-alive stayed open")
        c.close()

    def test_http10_client_with_keepalive_is_kept(self):
        up = self.start_aiohttp()
        s = self.start_sluice(upstream=up.port)
        c = RawClient(s.port)
        for i in range(3):
            c.send(b"GET /echo?i=%d HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" % i)
            r = c.read_response()
            self.assertEqual(r.status, 200)
            self.assertEqual(r.json()["query"], "i=%d" % i)
            self.assertNotEqual(r.framing, "chunked", "chunked sent to an HTTP/1.0 client")
            self.assertNotEqual(r.framing, "close", "keep-alive asked but close-delimited")
        time.sleep(0.2)
        self.assertTrue(c.is_open(), "HTTP/1.0 keep-alive connection was closed")
        c.send(b"GET / HTTP/1.0\r\n\r\n")  # no keep-alive this time: closed after it
        r = c.read_response()
        self.assertEqual((r.status, r.body), (200, b"hello from aiohttp\n"))
        self.assertTrue(c.closed_within(30))
        c.close()

    def test_http10_client_gets_chunked_upstream_body_unchunked(self):
        up = self.start_aiohttp()
        s = self.start_sluice(upstream=up.port)
        c = RawClient(s.port)
        c.send(b"GET /bytes/100000?chunked=1 HTTP/1.0\r\n\r\n")
        r = c.read_response()
        self.assertEqual(r.status, 200)
        self.assertNotEqual(r.framing, "chunked", "chunked sent to an HTTP/1.0 client")
        self.assertEqual(r.body_len, 100000)
        self.assertEqual(r.body, (bytes(range(256)) * 400)[:100000])
        c.close()

    # ---- responses without a body ----------------------------------------------------------

    def test_head_keeps_content_length_and_sends_no_body(self):
        up = self.start_aiohttp()
        ng = self.start_nginx(files={"f.bin": 54321})
        for port, path, length in ((up.port, "/bytes/12345", "12345"),
                                   (ng.port, "/files/f.bin", "54321")):
            s = self.start_sluice(upstream=port)
            c = RawClient(s.port)
            for _ in range(2):
                c.send(request_bytes("HEAD", path))
                r = c.read_response(method="HEAD")
                self.assertEqual(r.status, 200)
                self.assertEqual(r.header("Content-Length"), length)
                self.assertIsNone(r.header("Transfer-Encoding"))
            # If any body byte had leaked, this response would not parse.
            c.send(request_bytes("GET", path))
            r = c.read_response()
            self.assertEqual((r.status, r.body_len), (200, int(length)))
            time.sleep(0.2)
            self.assertEqual(c.peek(), b"", "bytes after the response")
            self.assertTrue(c.is_open())
            c.close()

    def test_204_and_304_have_no_body(self):
        up = self.start_aiohttp()
        s = self.start_sluice(upstream=up.port)
        c = RawClient(s.port)
        for code in (204, 304, 204):
            c.send(request_bytes("GET", "/status/%d" % code))
            r = c.read_response()
            self.assertEqual(r.status, code)
            self.assertIsNone(r.header("Transfer-Encoding"), "%d with Transfer-Encoding" % code)
        c.send(request_bytes("GET", "/"))
        r = c.read_response()
        self.assertEqual((r.status, r.body), (200, b"hello from aiohttp\n"))
        time.sleep(0.2)
        self.assertEqual(c.peek(), b"", "bytes after a bodiless response")
        c.close()

    def test_1xx_from_upstream_has_no_body(self):
        up = self.start_fault("ok")
        s = self.start_sluice(upstream=up.port)
        c = RawClient(s.port)
        c.send(request_bytes("GET", "/early-hints"))
        r = c.read_response()
        self.assertEqual(r.status, 200)
        self.assertTrue(r.body.startswith(b"ok conn="), r.body)
        self.assertIn([x.status for x in r.informational], ([], [103]))
        c.send(request_bytes("GET", "/"))
        r = c.read_response()
        self.assertEqual(r.status, 200)
        self.assertTrue(r.body.startswith(b"ok conn="), r.body)
        c.close()

    # ---- header rewriting ------------------------------------------------------------------

    def test_hop_by_hop_request_headers_removed(self):
        up = self.start_aiohttp()
        s = self.start_sluice(upstream=up.port)
        c = RawClient(s.port)
        c.send(request_bytes("GET", "/echo", [
            ("Connection", "keep-alive, X-Hop-A, x-hop-b"),
            ("X-Hop-A", "1"),
            ("X-Hop-B", "2"),
            ("Keep-Alive", "timeout=5"),
            ("Proxy-Connection", "keep-alive"),
            ("TE", "trailers"),
            ("Upgrade", "foo/1"),
            ("X-Keep", "yes"),
        ]))
        r = c.read_response()
        self.assertEqual(r.status, 200)
        hdrs = r.json()["headers"]
        names = names_lower(hdrs)
        for hop in ("x-hop-a", "x-hop-b", "keep-alive", "proxy-connection", "te", "upgrade"):
            self.assertNotIn(hop, names, "hop-by-hop %s reached the upstream: %r" % (hop, hdrs))
        for v in values(hdrs, "Connection"):
            self.assertNotIn("x-hop", v.lower(), hdrs)
        self.assertEqual(values(hdrs, "X-Keep"), ["yes"])
        c.close()

    def test_hop_by_hop_response_headers_removed(self):
        up = self.start_fault("ok")
        s = self.start_sluice(upstream=up.port)
        c = RawClient(s.port)
        c.send(request_bytes("GET", "/hop"))
        r = c.read_response()
        self.assertEqual(r.status, 200)
        names = names_lower(r.headers)
        for hop in ("x-resp-hop", "keep-alive", "proxy-connection", "upgrade"):
            self.assertNotIn(hop, names, "hop-by-hop %s reached the client: %r" % (hop, r.headers))
        for v in r.header_all("Connection"):
            self.assertNotIn("x-resp-hop", v.lower())
        self.assertEqual(r.header("X-End-To-End"), "kept")
        self.assertTrue(r.body.startswith(b"ok conn="))
        c.close()

    def test_forwarded_headers_host_and_request_id(self):
        up = self.start_aiohttp()
        s = self.start_sluice(upstream=up.port)

        def echo(headers):
            c = RawClient(s.port)
            c.send(request_bytes("GET", "/echo", headers, host=None))
            r = c.read_response()
            c.close()
            self.assertEqual(r.status, 200)
            return r.json()["headers"]

        def xff(hdrs):
            return [p.strip() for v in values(hdrs, "X-Forwarded-For") for p in v.split(",")]

        hdrs = echo([("Host", "app.example.test:8443"), ("X-Forwarded-For", "203.0.113.7")])
        self.assertEqual(xff(hdrs), ["203.0.113.7", "127.0.0.1"], hdrs)
        self.assertEqual(values(hdrs, "X-Forwarded-Proto"), ["http"], hdrs)
        self.assertEqual(values(hdrs, "Host"), ["app.example.test:8443"], hdrs)
        rid1 = values(hdrs, "X-Request-Id")
        self.assertEqual(len(rid1), 1, hdrs)
        self.assertTrue(rid1[0].strip(), hdrs)

        hdrs = echo([("Host", "other.test")])
        self.assertEqual(xff(hdrs), ["127.0.0.1"], hdrs)
        self.assertEqual(values(hdrs, "Host"), ["other.test"], hdrs)
        rid2 = values(hdrs, "X-Request-Id")
        self.assertEqual(len(rid2), 1, hdrs)
        self.assertNotEqual(rid1, rid2, "two requests got the same X-Request-Id")

        hdrs = echo([("Host", "other.test"), ("X-Request-Id", "client-chosen-id-42")])
        self.assertEqual(values(hdrs, "X-Request-Id"), ["client-chosen-id-42"], hdrs)

        hdrs = echo([("Host", "other.test"), ("X-Forwarded-For", "198.51.100.1, 198.51.100.2")])
        self.assertEqual(xff(hdrs), ["198.51.100.1", "198.51.100.2", "127.0.0.1"], hdrs)

    def test_forwarded_headers_reach_nginx(self):
        ng = self.start_nginx()
        s = self.start_sluice(upstream=ng.port)
        r = http(s.port, "GET", "/headers", [("X-Forwarded-For", "203.0.113.9")])
        self.assertEqual(r.status, 200)
        m = re.match(rb"host=test\.local xff=203\.0\.113\.9, 127\.0\.0\.1 proto=http rid=(\S+)\n$",
                     r.body)
        self.assertIsNotNone(m, r.body)

    # ---- admin, command line, environment --------------------------------------------------

    def test_admin_endpoints(self):
        up = self.start_aiohttp()
        s = self.start_sluice(upstream=up.port)
        admin = "http://127.0.0.1:%d" % s.admin_port
        self.assertEqual(curl_status(admin + "/healthz")[0], 200)
        self.assertEqual(curl_status(admin + "/readyz")[0], 200)
        self.assertEqual(curl_status(admin + "/no-such-thing")[0], 404)
        self.assertEqual(http(s.admin_port, "GET", "/healthz").status, 200)

    def test_version_and_help(self):
        cp = subprocess.run([SLUICE_BIN, "--version"], capture_output=True, timeout=10,
                            env=CLEAN_ENV)
        self.assertEqual(cp.returncode, 0, cp)
        self.assertRegex((cp.stdout + cp.stderr).decode(), r"\d+\.\d+\.\d+")
        cp = subprocess.run([SLUICE_BIN, "--help"], capture_output=True, timeout=10,
                            env=CLEAN_ENV)
        self.assertEqual(cp.returncode, 0, cp)
        out = (cp.stdout + cp.stderr).decode()
        for flag in ("--listen", "--upstream", "--admin", "--workers", "--pool-max-idle"):
            self.assertIn(flag, out)

    def test_env_upstream(self):
        up = self.start_aiohttp()
        s = self.start_sluice(env={"SLUICE_UPSTREAM": "127.0.0.1:%d" % up.port})
        self.assertEqual(s.upstream, "127.0.0.1:%d" % up.port)
        r = http(s.port, "GET", "/")
        self.assertEqual((r.status, r.body), (200, b"hello from aiohttp\n"))

    def test_flag_wins_over_env(self):
        up = self.start_aiohttp()
        dead = reserve_port()
        s = self.start_sluice(upstream=up.port, env={"SLUICE_UPSTREAM": "127.0.0.1:%d" % dead})
        self.assertEqual(s.upstream, "127.0.0.1:%d" % up.port)
        r = http(s.port, "GET", "/")
        self.assertEqual((r.status, r.body), (200, b"hello from aiohttp\n"))

    def test_env_for_other_flags(self):
        up = self.start_aiohttp()
        s = self.start_sluice(upstream=up.port, workers=None,
                              env={"SLUICE_WORKERS": "2", "SLUICE_MAX_HEADER_BYTES": "1KiB"})
        self.assertEqual(s.workers, 2)
        r = http(s.port, "GET", "/", [("X-Big", "a" * 2048)])
        self.assertEqual(r.status, 431)
        r = http(s.port, "GET", "/", [("X-Small", "a" * 100)])
        self.assertEqual(r.status, 200)

    def test_demo_app_and_demo(self):
        app = self.start_proc("demo-app", [SLUICE_BIN, "demo-app", "--listen", "127.0.0.1:0"])
        port = int(app.expect_line(r"sluice demo-app: listening on 127\.0\.0\.1:(\d+)",
                                   stream="err").group(1))
        r = http(port, "GET", "/")
        self.assertEqual((r.status, r.body), (200, b"Hello from the sluice demo app\n"))
        s = self.start_sluice(upstream=port)
        r = http(s.port, "GET", "/")
        self.assertEqual((r.status, r.body), (200, b"Hello from the sluice demo app\n"))
        r = http(s.port, "GET", "/bytes/70000")
        self.assertEqual((r.status, r.body_len), (200, 70000))
        r = http(s.port, "POST", "/echo", body=b"demo echo body")
        self.assertEqual((r.status, r.body), (200, b"demo echo body"))
        r = http(s.port, "GET", "/status/418")
        self.assertEqual(r.status, 418)

        demo = self.start_sluice(subcommand="demo")
        r = http(demo.port, "GET", "/")
        self.assertEqual((r.status, r.body), (200, b"Hello from the sluice demo app\n"))


if __name__ == "__main__":
    unittest.main()
