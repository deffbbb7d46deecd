#!/usr/bin/python3
"""Bodies: uploads (Content-Length, chunked, trailers, 100-continue), response framings,
pipelining, and 200 MB transfers in both directions with bounded proxy memory."""
import hashlib
import json
import os
import subprocess
import time
import unittest

from harness import (CLEAN_ENV, CURL_BIN, E2ETestCase, MiB, RawClient, curl, curl_status,
                     pattern_bytes, pattern_sha256, request_bytes, write_mixed_file)

BIG = 200 * MiB
MEM_LIMIT = 64 * MiB


class BodiesTest(E2ETestCase):

    def write_file(self, data=None, size=None):
        path = os.path.join(self.make_tmpdir(), "upload.bin")
        with open(path, "wb") as f:
            if data is not None:
                f.write(data)
            else:
                f.truncate(size)  # sparse zeros, cheap to create and to read
        return path

    # ---- uploads ---------------------------------------------------------------------------

    def test_content_length_upload_curl(self):
        up = self.start_aiohttp()
        s = self.start_sluice(upstream=up.port)
        payload = os.urandom(3 * MiB)
        path = self.write_file(payload)
        code, body, rc = curl_status(s.url("/echo"), "--data-binary", "@" + path, "-H", "Expect:")
        self.assertEqual((rc, code), (0, 200))
        doc = json.loads(body)
        self.assertEqual(doc["body_len"], len(payload))
        self.assertEqual(doc["sha256"], hashlib.sha256(payload).hexdigest())

    def test_chunked_upload_curl(self):
        up = self.start_aiohttp()
        s = self.start_sluice(upstream=up.port)
        payload = os.urandom(700000)
        path = self.write_file(payload)
        code, body, rc = curl_status(s.url("/echo"), "--data-binary", "@" + path,
                                     "-H", "Transfer-Encoding: chunked", "-H", "Expect:")
        self.assertEqual((rc, code), (0, 200))
        doc = json.loads(body)
        self.assertEqual(doc["body_len"], len(payload))
        self.assertEqual(doc["sha256"], hashlib.sha256(payload).hexdigest())

    def test_chunked_upload_with_trailers_raw(self):
        up = self.start_aiohttp()
        s = self.start_sluice(upstream=up.port)
        c = RawClient(s.port)
        c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
               b"Trailer: X-Checksum\r\n\r\n"
               b"5\r\nhello\r\n6;ext=1\r\n world\r\n1a\r\n" + b"z" * 26 + b"\r\n"
               b"0\r\nX-Checksum: abc123\r\n\r\n")
        r = c.read_response()
        self.assertEqual(r.status, 200)
        doc = r.json()
        self.assertEqual(doc["body"], "hello world" + "z" * 26)
        self.assertEqual(doc["body_len"], 37)
        # The trailers were consumed exactly: the next request on the socket works.
        c.send(request_bytes("POST", "/echo?second=1", body=b"next"))
        r = c.read_response()
        self.assertEqual(r.status, 200)
        self.assertEqual((r.json()["query"], r.json()["body"]), ("second=1", "next"))
        c.close()

    def test_chunked_request_trailers_reach_the_upstream(self):
        up = self.start_fault("ok")
        s = self.start_sluice(upstream=up.port)
        c = RawClient(s.port)
        c.send(b"POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
               b"Trailer: X-Checksum\r\n\r\n"
               b"5\r\nhello\r\n0\r\nX-Checksum: abc123\r\n\r\n")
        r = c.read_response()
        self.assertEqual(r.status, 200)
        [req] = [q for q in up.stats()["requests"] if q["head"].startswith("POST /upload ")]
        self.assertTrue(req["body_end"].endswith("0\r\nX-Checksum: abc123\r\n\r\n"),
                        "request trailers at the upstream: %r" % req["body_end"])
        c.send(request_bytes("GET", "/"))  # consumed exactly: the connection carries on
        self.assertEqual(c.read_response().status, 200)
        c.close()

    # The upstream's trailer section reaches the client in sluice's last chunk (issue #15).
    def test_chunked_response_trailers_reach_the_client(self):
        up = self.start_fault("ok")
        s = self.start_sluice(upstream=up.port)
        c = RawClient(s.port)
        c.send(request_bytes("GET", "/trailers"))
        r = c.read_response()
        self.assertEqual((r.status, r.framing), (200, "chunked"))
        self.assertTrue(r.body.startswith(b"ok conn="), r.body)
        c.send(request_bytes("GET", "/"))  # consumed exactly: the connection carries on
        self.assertEqual(c.read_response().status, 200)
        c.close()
        self.assertEqual(r.trailers, [("X-Checksum", "sha-of-it"), ("X-Other", "2")])

    def test_chunked_upload_sent_slowly_in_pieces(self):
        up = self.start_aiohttp()
        s = self.start_sluice(upstream=up.port)
        c = RawClient(s.port)
        c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        expected = b""
        for i in range(5):
            piece = (b"piece-%d;" % i) * 100
            expected += piece
            data = b"%x\r\n%s\r\n" % (len(piece), piece)
            c.send(data[:7])
            time.sleep(0.05)
            c.send(data[7:])
        c.send(b"0\r\n\r\n")
        r = c.read_response()
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json()["body"], expected.decode())
        c.close()

    def test_expect_100_continue_raw(self):
        up = self.start_aiohttp()
        s = self.start_sluice(upstream=up.port)
        c = RawClient(s.port, timeout=5)
        body = b"the body after 100 continue"
        c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n"
               b"Content-Length: %d\r\n\r\n" % len(body))
        interim = c.read_response(return_1xx=True)  # times out if no 100 comes
        self.assertEqual(interim.status, 100)
        self.assertTrue(interim.version.startswith("HTTP/1.1"), interim.version)
        c.send(body)
        r = c.read_response()
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json()["body"], body.decode())
        # A second 100-continue exchange on the same connection.
        c.send(b"PUT /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n"
               b"Content-Length: 3\r\n\r\n")
        self.assertEqual(c.read_response(return_1xx=True).status, 100)
        c.send(b"abc")
        r = c.read_response()
        self.assertEqual((r.status, r.json()["method"], r.json()["body"]), (200, "PUT", "abc"))
        c.close()

    def test_expect_100_continue_curl(self):
        up = self.start_aiohttp()
        s = self.start_sluice(upstream=up.port)
        payload = os.urandom(2 * MiB)
        path = self.write_file(payload)
        t0 = time.monotonic()
        # curl waits up to --expect100-timeout for the 100 before sending anyway.
        code, body, rc = curl_status(s.url("/echo"), "--data-binary", "@" + path,
                                     "-H", "Expect: 100-continue", "--expect100-timeout", "30",
                                     timeout=60)
        elapsed = time.monotonic() - t0
        self.assertEqual((rc, code), (0, 200))
        self.assertEqual(json.loads(body)["sha256"], hashlib.sha256(payload).hexdigest())
        self.assertLess(elapsed, 20, "curl waited for a 100 Continue that never came")

    # ---- response framings -----------------------------------------------------------------

    def test_chunked_response_complete(self):
        up = self.start_aiohttp()
        s = self.start_sluice(upstream=up.port)
        c = RawClient(s.port)
        c.send(request_bytes("GET", "/bytes/1000000?chunked=1"))
        r = c.read_response()
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body_len, 1000000)
        self.assertEqual(r.body, pattern_bytes(1000000))
        c.send(request_bytes("GET", "/slow-body"))
        r = c.read_response()
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, b"".join(b"chunk-%d\n" % i for i in range(10)))
        c.close()
        code, body, rc = curl_status(s.url("/slow-body"))
        self.assertEqual((rc, code, body), (0, 200, b"".join(b"chunk-%d\n" % i for i in range(10))))

    def test_slow_body_streams_through(self):
        """The first chunk of /slow-body reaches the client long before the last is sent."""
        up = self.start_aiohttp()
        s = self.start_sluice(upstream=up.port)
        c = RawClient(s.port)
        t0 = time.monotonic()
        c.send(request_bytes("GET", "/slow-body"))
        arrivals = []
        r = c.read_response(on_data=lambda d: arrivals.append(time.monotonic() - t0))
        total = time.monotonic() - t0
        self.assertEqual(r.status, 200)
        self.assertGreater(total, 0.8)
        # The upstream sends its 10 chunks over 0.9 s: streamed, they arrive spread out too;
        # buffered, all at once at the end.
        self.assertGreater(arrivals[-1] - arrivals[0], 0.3,
                           "the body was buffered instead of streamed: %r" % arrivals)
        c.close()

    def test_close_delimited_response_complete(self):
        up = self.start_fault("close-delimited")
        s = self.start_sluice(upstream=up.port)
        for n in (1, 500000, 3 * MiB):
            c = RawClient(s.port)
            c.send(request_bytes("GET", "/bytes/%d" % n))
            r = c.read_response()
            self.assertEqual(r.status, 200)
            self.assertEqual(r.body_len, n)
            self.assertEqual(r.body, b"y" * n)
            c.close()
        cp = curl("-o", "/dev/null", "-w", "%{http_code} %{size_download}", s.url("/bytes/777777"))
        self.assertEqual((cp.returncode, cp.stdout), (0, b"200 777777"))

    # ---- pipelining ------------------------------------------------------------------------

    def test_pipelining_in_order(self):
        up = self.start_aiohttp()
        s = self.start_sluice(upstream=up.port)
        c = RawClient(s.port)
        c.send(request_bytes("GET", "/sleep/300")
               + request_bytes("GET", "/echo?i=1")
               + request_bytes("POST", "/echo?i=2", body=b"pipelined body")
               + request_bytes("GET", "/bytes/100000")
               + request_bytes("GET", "/status/204")
               + request_bytes("HEAD", "/bytes/777")
               + request_bytes("POST", "/echo?i=6", [("Transfer-Encoding", "chunked")],
                               body=b"3\r\nabc\r\n0\r\n\r\n")
               + request_bytes("GET", "/echo?i=7"))
        r = c.read_response()
        self.assertEqual((r.status, r.body), (200, b"slept 300\n"))
        r = c.read_response()
        self.assertEqual((r.status, r.json()["query"]), (200, "i=1"))
        r = c.read_response()
        self.assertEqual((r.status, r.json()["query"], r.json()["body"]),
                         (200, "i=2", "pipelined body"))
        r = c.read_response()
        self.assertEqual((r.status, r.body), (200, pattern_bytes(100000)))
        r = c.read_response()
        self.assertEqual(r.status, 204)
        r = c.read_response(method="HEAD")
        self.assertEqual((r.status, r.header("Content-Length")), (200, "777"))
        r = c.read_response()
        self.assertEqual((r.status, r.json()["query"], r.json()["body"]), (200, "i=6", "abc"))
        r = c.read_response()
        self.assertEqual((r.status, r.json()["query"]), (200, "i=7"))
        time.sleep(0.2)
        self.assertEqual(c.peek(), b"")
        c.close()

    def test_pipelining_many_small(self):
        up = self.start_aiohttp()
        s = self.start_sluice(upstream=up.port)
        c = RawClient(s.port)
        c.send(b"".join(request_bytes("GET", "/echo?n=%d" % i) for i in range(50)))
        for i in range(50):
            r = c.read_response()
            self.assertEqual((r.status, r.json()["query"]), (200, "n=%d" % i))
        c.close()

    # ---- large bodies and memory -----------------------------------------------------------

    def test_large_download_aiohttp_bounded_memory(self):
        up = self.start_aiohttp()
        s = self.start_sluice(upstream=up.port)
        c = RawClient(s.port, timeout=60)
        c.send(request_bytes("GET", "/bytes/%d" % BIG))
        got = hashlib.sha256()
        r = c.read_response(keep_body=False, on_data=got.update)
        self.assertEqual((r.status, r.body_len, got.hexdigest()), (200, BIG, pattern_sha256(BIG)))
        c.close()
        self.assertMemoryBounded(s, MEM_LIMIT)

    def test_large_download_nginx_bounded_memory(self):
        ng = self.start_nginx(files={"big.bin": ("mixed", BIG)})
        s = self.start_sluice(upstream=ng.port)
        # curl writes the body to a pipe, hashed here as it comes; the status on stderr.
        p = subprocess.Popen([CURL_BIN, "-sS", "--noproxy", "*", "--max-time", "120", "-o", "-",
                              "-w", "%{stderr}%{http_code} %{size_download}",
                              s.url("/files/big.bin")],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=CLEAN_ENV)
        got = hashlib.sha256()
        for chunk in iter(lambda: p.stdout.read(1 << 20), b""):
            got.update(chunk)
        err = p.stderr.read().decode()
        self.assertEqual(p.wait(60), 0, err)
        p.stdout.close()
        p.stderr.close()
        self.assertEqual((err, got.hexdigest()), ("200 %d" % BIG, ng.digests["big.bin"]))
        self.assertMemoryBounded(s, MEM_LIMIT)

    def test_large_upload_bounded_memory(self):
        up = self.start_aiohttp()
        s = self.start_sluice(upstream=up.port)
        path = os.path.join(self.make_tmpdir(), "upload.bin")
        digest = write_mixed_file(path, BIG)
        code, body, rc = curl_status(s.url("/discard"), "-X", "POST", "-T", path,
                                     "-H", "Expect:", timeout=120)
        self.assertEqual((rc, code), (0, 200))
        doc = json.loads(body)
        self.assertEqual((doc["received"], doc["sha256"]), (BIG, digest))
        self.assertMemoryBounded(s, MEM_LIMIT)

    def test_large_chunked_upload_bounded_memory(self):
        up = self.start_aiohttp()
        s = self.start_sluice(upstream=up.port)
        n = 100 * MiB
        path = os.path.join(self.make_tmpdir(), "upload.bin")
        digest = write_mixed_file(path, n)
        code, body, rc = curl_status(s.url("/discard"), "-X", "POST", "-T", path,
                                     "-H", "Transfer-Encoding: chunked", "-H", "Expect:",
                                     timeout=120)
        self.assertEqual((rc, code), (0, 200))
        doc = json.loads(body)
        self.assertEqual((doc["received"], doc["sha256"]), (n, digest))
        self.assertMemoryBounded(s, MEM_LIMIT)

    def test_slow_reader_bounded_memory(self):
        up = self.start_aiohttp()
        s = self.start_sluice(upstream=up.port)
        c = RawClient(s.port, timeout=60, rcvbuf=65536)
        c.send(request_bytes("GET", "/bytes/%d" % BIG))
        state = {"since_pause": 0, "bursts": 0, "max_rss": 0}
        got = hashlib.sha256()

        def slow(data):
            got.update(data)
            state["since_pause"] += len(data)
            if state["since_pause"] >= MiB:  # ~1 MiB bursts, 20 ms apart: ~40 MB/s
                state["since_pause"] = 0
                state["bursts"] += 1
                if state["bursts"] % 10 == 0:
                    state["max_rss"] = max(state["max_rss"], s.memory()["VmRSS"])
                time.sleep(0.02)

        r = c.read_response(keep_body=False, on_data=slow)
        self.assertEqual((r.status, r.body_len, got.hexdigest()), (200, BIG, pattern_sha256(BIG)))
        c.close()
        self.assertLess(state["max_rss"], MEM_LIMIT,
                        "RSS reached %.1f MiB during the slow read" % (state["max_rss"] / MiB))
        self.assertMemoryBounded(s, MEM_LIMIT)

    def test_slow_upstream_reader_bounded_memory(self):
        up = self.start_aiohttp()
        s = self.start_sluice(upstream=up.port)
        n = 100 * MiB
        path = os.path.join(self.make_tmpdir(), "upload.bin")
        digest = write_mixed_file(path, n)
        # The upstream reads ~1 MiB per 15 ms (about 60 MB/s); curl sends as fast as it can.
        code, body, rc = curl_status(s.url("/discard?ms_per_mib=15"), "-X", "POST", "-T", path,
                                     "-H", "Expect:", timeout=120)
        self.assertEqual((rc, code), (0, 200))
        doc = json.loads(body)
        self.assertEqual((doc["received"], doc["sha256"]), (n, digest))
        self.assertMemoryBounded(s, MEM_LIMIT)


if __name__ == "__main__":
    unittest.main()
