#!/usr/bin/python3
"""Errors and limits: 400/431/413 from sluice, 502/503/504 for upstream failures, truncated
upstream bodies, request smuggling shapes, header and idle timeouts."""
import socket
import time
import unittest

from harness import (E2ETestCase, IncompleteResponse, RawClient, curl, curl_status, reserve_port,
                     http, request_bytes, stderr_lines, timed, wait_new_stderr_line)


class ErrorsTest(E2ETestCase):

    def assertSluiceAnswer(self, s, port_client, code, raw, close=True):
        """Sends raw bytes on a new connection; expects `code` from sluice itself, a short body,
        one new stderr log line, and (if close) the connection closed afterwards."""
        before = len(stderr_lines(s))
        c = RawClient(port_client, timeout=10)
        c.send(raw)
        r = c.read_response()
        self.assertEqual(r.status, code, "expected %d for %r, got %r %r" % (code, raw[:120],
                                                                            r, r.body))
        self.assertTrue(r.body, "error response without a body")
        if close:
            self.assertTrue(c.closed_within(30), "connection left open after %d" % code)
        c.close()
        self.assertTrue(wait_new_stderr_line(s, before), "no log line for the %d" % code)
        return r

    # ---- 400 / 431 / 413 -------------------------------------------------------------------

    def test_malformed_request_400_and_close(self):
        up = self.start_fault("ok")
        s = self.start_sluice(upstream=up.port)
        for raw in (b"THIS IS NOT HTTP\r\n\r\n",
                    b"GET / HTTP/1.1\r\nHost: t\r\nBad Header Line\r\n\r\n",
                    b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: abc\r\n\r\n",
                    b"GET /a b c HTTP/1.1\r\nHost: t\r\n\r\n",
                    b"GET / HTTP/1.1\r\nHost: t\r\nX-Ctl: a\x00b\r\n\r\n"):
            self.assertSluiceAnswer(s, s.port, 400, raw)
        st = up.stats()
        self.assertEqual(st["requests"], [], "a malformed request reached the upstream")
        # The proxy still works.
        self.assertEqual(http(s.port, "GET", "/").status, 200)

    def test_malformed_chunked_body_400_and_close(self):
        up = self.start_aiohttp()
        s = self.start_sluice(upstream=up.port)
        self.assertSluiceAnswer(s, s.port, 400, b"POST /echo HTTP/1.1\r\nHost: t\r\n"
                                b"Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n")

    def test_head_over_limit_431(self):
        up = self.start_aiohttp()
        s = self.start_sluice("--max-header-bytes", "2KiB", upstream=up.port)
        self.assertSluiceAnswer(s, s.port, 431,
                                request_bytes("GET", "/", [("X-Big", "a" * 3000)]))
        self.assertSluiceAnswer(s, s.port, 431, request_bytes(
            "GET", "/", [("X-Many-%d" % i, "v" * 20) for i in range(150)]))
        r = http(s.port, "GET", "/", [("X-Fits", "a" * 1000)])
        self.assertEqual(r.status, 200)

    def test_head_over_default_limit_431(self):
        up = self.start_aiohttp()
        s = self.start_sluice(upstream=up.port)
        r = http(s.port, "GET", "/", [("X-Fits", "a" * 30000)])
        self.assertEqual(r.status, 200)
        self.assertSluiceAnswer(s, s.port, 431,
                                request_bytes("GET", "/", [("X-Big", "a" * (70 * 1024))]))

    def test_body_over_limit_413(self):
        up = self.start_aiohttp()
        s = self.start_sluice("--max-body-bytes", "1KiB", upstream=up.port)
        r = http(s.port, "POST", "/echo", body=b"x" * 1024)
        self.assertEqual((r.status, r.json()["body_len"]), (200, 1024))
        self.assertSluiceAnswer(s, s.port, 413,
                                request_bytes("POST", "/echo", body=b"x" * 2048))
        chunked = b"".join(b"3e8\r\n" + b"c" * 1000 + b"\r\n" for _ in range(4)) + b"0\r\n\r\n"
        self.assertSluiceAnswer(s, s.port, 413, request_bytes(
            "POST", "/echo", [("Transfer-Encoding", "chunked")], body=chunked))
        code, _, rc = curl_status(s.url("/echo"), "--data-binary", "y" * 5000, "-H", "Expect:")
        self.assertEqual(code, 413)

    # ---- upstream failures -----------------------------------------------------------------

    def test_upstream_refused_502(self):
        s = self.start_sluice(upstream=reserve_port())
        self.assertSluiceAnswer(s, s.port, 502, request_bytes("GET", "/"), close=False)
        code, body, rc = curl_status(s.url("/x"))
        self.assertEqual((rc, code), (0, 502))
        self.assertTrue(body)

    def test_connect_timeout_503(self):
        # A loopback listener that never accepts, its accept queue (backlog 0) filled first:
        # further SYNs are dropped, so connecting to it hangs.
        ls = socket.socket()
        ls.bind(("127.0.0.1", 0))
        ls.listen(0)
        self.addCleanup(ls.close)
        port = ls.getsockname()[1]
        for _ in range(3):
            f = socket.socket()
            f.setblocking(False)
            f.connect_ex(("127.0.0.1", port))
            self.addCleanup(f.close)
            time.sleep(0.05)
        probe = socket.socket()
        probe.settimeout(0.5)
        self.assertRaises(OSError, probe.connect, ("127.0.0.1", port))  # the trick works here
        probe.close()

        s = self.start_sluice("--connect-timeout", "300ms", upstream=port)
        r, elapsed = timed(lambda: http(s.port, "GET", "/", timeout=60))
        self.assertNotIsInstance(r, BaseException, r)
        self.assertEqual(r.status, 503)
        # Not before the timeout; and from it, not from the kernel giving up on the SYNs
        # (over a minute) nor the 30 s response timeout.
        self.assertGreater(elapsed, 0.25)
        self.assertLess(elapsed, 15, "connect timeout of 300ms took %.2fs" % elapsed)

    def test_response_timeout_504(self):
        up = self.start_aiohttp()
        s = self.start_sluice("--response-timeout", "500ms", upstream=up.port)
        r, elapsed = timed(lambda: http(s.port, "GET", "/sleep/10000", timeout=60))
        self.assertNotIsInstance(r, BaseException, r)
        self.assertEqual(r.status, 504)
        # At the timeout: not before, and before the upstream's answer (10 s) would come.
        self.assertGreater(elapsed, 0.45)
        self.assertLess(elapsed, 9)
        # The late upstream connection is not reused for the next request.
        r = http(s.port, "GET", "/echo?after=1")
        self.assertEqual((r.status, r.json()["query"]), (200, "after=1"))

    def test_response_timeout_does_not_cut_a_streaming_body(self):
        # The timeout is for the response head (CONTRACT.md: "504 no response head within the
        # response timeout"); /slow-body sends its head at once and a chunk every 100 ms
        # for ~1 s, so it must arrive whole with a 500 ms response timeout.
        up = self.start_aiohttp()
        s = self.start_sluice("--response-timeout", "500ms", upstream=up.port)
        code, body, rc = curl_status(s.url("/slow-body"))
        self.assertEqual((rc, code, body), (0, 200, b"".join(b"chunk-%d\n" % i
                                                              for i in range(10))))

    def test_no_answer_504(self):
        up = self.start_fault("no-answer")
        s = self.start_sluice("--response-timeout", "500ms", upstream=up.port)
        self.assertSluiceAnswer(s, s.port, 504, request_bytes("GET", "/"), close=False)

    def test_upstream_closes_before_head_502(self):
        up = self.start_fault("close-before-head")
        s = self.start_sluice(upstream=up.port)
        self.assertSluiceAnswer(s, s.port, 502, request_bytes("GET", "/"), close=False)
        self.assertSluiceAnswer(s, s.port, 502, request_bytes("POST", "/", body=b"abc"),
                                close=False)

    def test_garbage_from_upstream_502(self):
        up = self.start_fault("garbage")
        s = self.start_sluice(upstream=up.port)
        self.assertSluiceAnswer(s, s.port, 502, request_bytes("GET", "/"), close=False)

    def test_truncated_upstream_body_never_looks_complete(self):
        up = self.start_fault("truncate")
        s = self.start_sluice(upstream=up.port)
        for _ in range(3):
            c = RawClient(s.port)
            c.send(request_bytes("GET", "/"))
            try:
                r = c.read_response()
            except IncompleteResponse as e:
                partial = e.partial
                if partial is not None:
                    self.assertEqual(partial.status, 200)
                    self.assertLess(partial.body_len, 100000)
                self.assertTrue(c.eof)
            else:
                # Only acceptable if sluice answered an error before forwarding the head.
                self.assertEqual(r.status, 502, "truncated body looked complete: %r" % r)
            c.close()
        cp = curl("-o", "/dev/null", "-w", "%{http_code} %{size_download}", s.url("/"))
        code, size = cp.stdout.decode().split()
        if code == "200":
            self.assertNotEqual(cp.returncode, 0, "curl saw a complete body")
            self.assertLess(int(size), 100000)
        else:
            self.assertEqual(code, "502")

    # ---- request smuggling -----------------------------------------------------------------

    SMUGGLING = [
        ("CL+TE", b"POST /a HTTP/1.1\r\nHost: t\r\nContent-Length: 6\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nX"),
        ("TE+CL", b"POST /a HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
                  b"Content-Length: 40\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n"),
        ("two CL", b"POST /a HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
                   b"Content-Length: 6\r\n\r\nhello!"),
        ("CL list", b"POST /a HTTP/1.1\r\nHost: t\r\nContent-Length: 5, 6\r\n\r\nhello!"),
        ("TE xchunked", b"POST /a HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: xchunked\r\n\r\n"
                        b"5\r\nhello\r\n0\r\n\r\n"),
        ("TE chunked, identity", b"POST /a HTTP/1.1\r\nHost: t\r\n"
                                 b"Transfer-Encoding: chunked, identity\r\n\r\n"
                                 b"5\r\nhello\r\n0\r\n\r\n"),
        ("TE twice, chunked not last", b"POST /a HTTP/1.1\r\nHost: t\r\n"
                                       b"Transfer-Encoding: chunked\r\n"
                                       b"Transfer-Encoding: identity\r\n\r\n"
                                       b"5\r\nhello\r\n0\r\n\r\n"),
        ("space before colon", b"POST /a HTTP/1.1\r\nHost: t\r\nTransfer-Encoding : chunked\r\n"
                               b"\r\n5\r\nhello\r\n0\r\n\r\n"),
        ("space inside a name", b"POST /a HTTP/1.1\r\nHost: t\r\nTransfer Encoding: chunked\r\n"
                                b"\r\n5\r\nhello\r\n0\r\n\r\n"),
        ("empty name", b"GET /a HTTP/1.1\r\nHost: t\r\n: x\r\n\r\n"),
        ("obs-fold", b"GET /a HTTP/1.1\r\nHost: t\r\nX-A: 1\r\n 2\r\n\r\n"),
        ("obs-fold after an empty value", b"POST /a HTTP/1.1\r\nHost: t\r\nX-A:\r\n"
                                          b" Transfer-Encoding: chunked\r\n\r\n"
                                          b"5\r\nhello\r\n0\r\n\r\n"),
        ("bare CR after an empty value", b"POST /a HTTP/1.1\r\nHost: t\r\nX-A: \r"
                                         b"Content-Length: 5\r\n\r\nhello"),
        ("TE empty", b"POST /a HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: \r\n\r\n"
                     b"GET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n"),
        ("TE not chunked on an upgrade", b"POST /a HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\n"
                                         b"Upgrade: websocket\r\nTransfer-Encoding: gzip\r\n\r\n"
                                         b"GET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n"),
        ("NUL in a value", b"GET /a HTTP/1.1\r\nHost: t\r\nX-A: a\x00b\r\n\r\n"),
        ("control byte in a value", b"GET /a HTTP/1.1\r\nHost: t\r\nX-A: a\x01b\r\n\r\n"),
        ("control byte in the target", b"GET /a\x01 HTTP/1.1\r\nHost: t\r\n\r\n"),
        ("HTTP/1.1 without Host", b"GET /a HTTP/1.1\r\nX-A: 1\r\n\r\n"),
        ("two Hosts", b"GET /a HTTP/1.1\r\nHost: t\r\nHost: u\r\n\r\n"),
        ("two Hosts in HTTP/1.0", b"GET /a HTTP/1.0\r\nHost: t\r\nHost: u\r\n\r\n"),
        ("HTTP/0.9 request line", b"GET /a\r\nHost: t\r\n\r\n"),
    ]

    def test_http2_request_line_gets_505(self):
        up = self.start_fault("ok")
        s = self.start_sluice(upstream=up.port)
        r = self.assertSluiceAnswer(s, s.port, 505, b"GET /a HTTP/2.0\r\nHost: t\r\n\r\n")
        self.assertEqual(r.reason, "HTTP Version Not Supported")
        self.assertEqual(up.stats()["requests"], [])

    def test_request_smuggling_shapes_rejected_not_forwarded(self):
        up = self.start_fault("ok")
        s = self.start_sluice(upstream=up.port)
        for name, raw in self.SMUGGLING:
            with self.subTest(shape=name):
                self.assertSluiceAnswer(s, s.port, 400, raw)
        st = up.stats()
        self.assertEqual((st["bytes"], st["requests"]), (0, []),
                         "a smuggling shape reached the upstream")
        r = http(s.port, "GET", "/after")
        self.assertEqual(r.status, 200)
        st = up.stats()
        self.assertEqual([q["head"].split("\r\n")[0] for q in st["requests"]],
                         ["GET /after HTTP/1.1"])

    def test_transfer_encoding_in_http10_is_served_then_the_connection_closes(self):
        # RFC 9112 §6.1: faulty framing in HTTP/1.0, even with keep-alive asked for.
        up = self.start_fault("ok")
        s = self.start_sluice(upstream=up.port)
        c = RawClient(s.port)
        c.send(b"POST /te10 HTTP/1.0\r\nTransfer-Encoding: chunked\r\n"
               b"Connection: keep-alive\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
        r = c.read_response()
        self.assertEqual(r.status, 200)
        self.assertTrue(c.closed_within(30), "kept alive after Transfer-Encoding in HTTP/1.0")
        c.close()
        st = up.stats()
        self.assertEqual([q["head"].split("\r\n")[0] for q in st["requests"]],
                         ["POST /te10 HTTP/1.1"])

    def test_smuggling_after_a_good_request_on_same_connection(self):
        up = self.start_fault("ok")
        s = self.start_sluice(upstream=up.port)
        c = RawClient(s.port)
        c.send(request_bytes("GET", "/first"))
        self.assertEqual(c.read_response().status, 200)
        c.send(self.SMUGGLING[0][1])
        r = c.read_response()
        self.assertEqual(r.status, 400)
        self.assertTrue(c.closed_within(30))
        c.close()
        st = up.stats()
        self.assertEqual([q["head"].split("\r\n")[0] for q in st["requests"]],
                         ["GET /first HTTP/1.1"])

    # ---- client timeouts -------------------------------------------------------------------

    def test_header_timeout_cuts_half_head(self):
        up = self.start_aiohttp()
        s = self.start_sluice("--header-timeout", "500ms", upstream=up.port)
        c = RawClient(s.port)
        t0 = time.monotonic()
        c.send(b"GET / HTTP/1.1\r\nHost: t\r\n")
        # At the timeout: not before, and long before the 10 s default.
        self.assertTrue(c.closed_within(30), "half a head was not cut")
        elapsed = time.monotonic() - t0
        self.assertGreater(elapsed, 0.45)
        self.assertLess(elapsed, 9)
        c.close()
        self.assertEqual(up.stats()["requests"], 1)  # only this /stats request

    def test_stalled_request_body_is_cut_at_the_idle_timeout(self):
        up = self.start_aiohttp()
        s = self.start_sluice("--idle-timeout", "800ms", upstream=up.port)
        c = RawClient(s.port)
        t0 = time.monotonic()
        c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n" + b"x" * 10)
        # Cut at the idle timeout: not before it, and long before the 75 s default would.
        self.assertTrue(c.closed_within(30), "a stalled body held the connection")
        elapsed = time.monotonic() - t0
        self.assertGreater(elapsed, 0.75)
        c.close()
        # The log is read by another thread: wait for the line rather than look once.
        self.assertTrue(s.wait_line("request body stalled", timeout=10, stream="err"),
                        "no log line for the stalled body")

    def test_slow_steady_upload_is_not_cut(self):
        up = self.start_aiohttp()
        # Pauses of a quarter of the idle timeout (slack for a loaded machine), six of them:
        # longer in all than the timeout.
        s = self.start_sluice("--idle-timeout", "2s", upstream=up.port)
        c = RawClient(s.port, timeout=30)
        c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 12\r\n\r\n")
        for _ in range(6):  # 3 s in all, never a pause as long as the idle timeout
            time.sleep(0.5)  # the client's pace, not a synchronisation
            c.send(b"ab")
        r = c.read_response()
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json()["body_len"], 12)
        c.close()

    def test_header_timeout_cuts_slowloris(self):
        up = self.start_aiohttp()
        s = self.start_sluice("--header-timeout", "500ms", upstream=up.port)
        c = RawClient(s.port)
        t0 = time.monotonic()
        head = b"GET / HTTP/1.1\r\nHost: t\r\n" + b"X-Slow: " + b"a" * 200
        cut = None
        for i in range(len(head)):  # one byte every 100 ms for 23 s: never a whole head
            try:
                c.send(head[i:i + 1])
            except OSError:
                cut = time.monotonic() - t0
                break
            if c.closed_within(0.1):
                cut = time.monotonic() - t0
                break
        # A timeout restarted by every byte would never cut it; one that counts from the
        # first byte cuts it after 0.5 s (the bound leaves room for a loaded machine).
        self.assertIsNotNone(cut, "a client trickling its head was never cut")
        self.assertGreater(cut, 0.45)
        self.assertLess(cut, 10, "the header timeout restarts with every byte")
        c.close()

    def test_idle_timeout_closes_idle_keepalive_client(self):
        up = self.start_aiohttp()
        idle_timeout = 2.0
        s = self.start_sluice("--idle-timeout", "2s", upstream=up.port)
        c = RawClient(s.port, timeout=30)
        # Activity keeps the connection: 5 requests 0.5 s apart (a quarter of the timeout,
        # slack for a loaded machine; 2.5 s in all, more than the timeout).
        for i in range(5):
            c.send(request_bytes("GET", "/echo?i=%d" % i))
            self.assertEqual(c.read_response().json()["query"], "i=%d" % i)
            time.sleep(0.5)  # the client's pace, not a synchronisation
        # A request slower than the idle timeout is not cut: it is not idle.
        c.send(request_bytes("GET", "/sleep/3000"))
        r = c.read_response()
        self.assertEqual((r.status, r.body), (200, b"slept 3000\n"))
        t0 = time.monotonic()
        # Closed once idle for the timeout: not before (sluice's clock starts before t0, by
        # less than the response's way here), and long before the 75 s default.
        self.assertTrue(c.closed_within(30), "idle keep-alive connection was not closed")
        elapsed = time.monotonic() - t0
        self.assertGreater(elapsed, idle_timeout * 0.75)
        c.close()


if __name__ == "__main__":
    unittest.main()
