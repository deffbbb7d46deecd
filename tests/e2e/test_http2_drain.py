#!/usr/bin/python3
"""Draining HTTP/2 (issue #15, RFC 9113 §6.8) under load, with a drain delay.

- Many concurrent streams (Node's http2 module, tests/e2e/h2_node_drain_client.js: 4 sessions
  of 16 streams each, a client that moves to a new connection on GOAWAY) through `POST /drain`
  with a 6 s drain delay: the shutdown notice (last stream id 2^31-1) reaches every HTTP/2
  connection at the start of the drain, while the delay still runs (readiness fails, the
  listener still accepts), and the final GOAWAY follows; no stream fails. While the streams run,
  GET /drain and /stats count the HTTP/2 connections and streams; after the delay the listener
  closes, the client's connects are refused, and the drain ends with nothing forced.
- A stream still open at the drain budget is reset with its connection and counted
  (`forced_http2_streams`, the exit status 2).

Node comes from `make deps` (Debian package nodejs); missing, the test fails.

Run: SLUICE_BIN=/abs/build/sluice /usr/bin/python3 test_http2_drain.py -v
"""
import json
import os
import subprocess
import time
import unittest

from harness import CLEAN_ENV, HERE, E2ETestCase, curl, http, wait_until

NODE = "/usr/bin/node"


class Http2DrainTest(E2ETestCase):

    def drain_state(self, s):
        return json.loads(http(s.admin_port, "GET", "/drain").body)

    def test_streams_under_load_through_a_drain_with_a_delay_never_fail(self):
        self.assertTrue(os.access(NODE, os.X_OK),
                        "%s missing: `make deps` installs Node.js (Debian package nodejs)" % NODE)
        up = self.start_aiohttp()
        s = self.start_sluice("--drain-delay", "6s", "--drain-budget", "30s", upstream=up.port)
        client = self.start_proc("node-drain-client", [
            NODE, os.path.join(HERE, "h2_node_drain_client.js"), s.url(""), "4", "16",
            "/sleep/50"])
        client.wait_line(r"^progress 300$", timeout=60, stream="out")  # the load runs
        self.assertNotIn("goaway", client.text("out"))  # nothing before the drain

        r = http(s.admin_port, "POST", "/drain", body=b"")
        self.assertEqual(r.status, 202)
        # The notice reaches the connections at the start of the drain: while the delay runs
        # (the listener accepts, the client reconnects and keeps its streams going).
        client.wait_line(r"^goaway 2147483647 0$", timeout=15, stream="out")
        st = self.drain_state(s)
        self.assertEqual(st["phase"], "delay", st)
        # The drain's progress and /stats count the HTTP/2 connections and their streams.
        seen = {}

        def counted():
            d = self.drain_state(s)
            stats = json.loads(http(s.admin_port, "GET", "/stats").body)
            seen.update(d=d, stats=stats)
            return (d["http2_connections"] > 0 and d["http2_streams"] > 0 and
                    stats["http2"]["streams_active"] > 0)
        wait_until(counted, 5, "HTTP/2 streams counted while the load runs through the delay")
        self.assertLessEqual(seen["d"]["http2_streams"], seen["d"]["in_flight"] + 4 * 16)
        # The final GOAWAY names a real stream: the last the connection took.
        client.wait_line(r"^goaway (?!2147483647)\d+ 0$", timeout=15, stream="out")

        # After the delay the listener closes; the client's next connects are refused, its
        # streams in flight have all finished: it ends and reports.
        line = client.wait_line(r"^\{.*\}$", timeout=90, stream="out")
        summary = json.loads(line.group(0))
        self.assertEqual(summary["failed"], 0, summary)
        self.assertGreater(summary["ok"], 300, summary)
        self.assertGreater(summary["sessions"], 4, summary)  # moved to new connections
        notices = [g for g in summary["goaways"] if g[0] == 2 ** 31 - 1]
        finals = [g for g in summary["goaways"] if g[0] != 2 ** 31 - 1]
        self.assertGreaterEqual(len(notices), 4, summary["goaways"][:20])
        self.assertTrue(finals, summary["goaways"][:20])
        self.assertTrue(all(code == 0 for _, code in summary["goaways"]), summary["goaways"][:20])

        s.wait_line(r"drain: closing listeners; \d+ connections \(\d+ HTTP/2\), \d+ requests in "
                    r"flight \(\d+ HTTP/2 streams\)", timeout=30, stream="err")
        s.wait_line("drain done", timeout=60)
        st = self.drain_state(s)
        self.assertEqual((st["phase"], st["forced"], st["forced_http2_streams"]), ("done", 0, 0))
        self.assertEqual(s.terminate(), 0)
        self.procs.remove(s)

    def test_a_stream_open_at_the_budget_is_reset_and_counted(self):
        up = self.start_aiohttp()
        s = self.start_sluice("--drain-delay", "0s", "--drain-budget", "2s", upstream=up.port)
        base = up.stats()["requests"]
        p = subprocess.Popen(["/usr/bin/curl", "-sS", "--noproxy", "*", "--http2-prior-knowledge",
                              s.url("/sleep/30000")],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=CLEAN_ENV)
        self.addCleanup(p.kill)
        calls = [0]

        def reached():  # each stats() counts itself, the first one (base) included
            calls[0] += 1
            return up.stats()["requests"] - base - calls[0] >= 1
        wait_until(reached, 15, "the slow request to reach the app")
        r = http(s.admin_port, "POST", "/drain", body=b"")
        self.assertEqual(r.status, 202)
        s.wait_line(r"drain budget of 2s reached: closing 1 connections \(0 WebSocket sessions, "
                    r"1 HTTP/2 connections with 1 streams open\)", timeout=30, stream="err")
        s.wait_line(r"drain done in [\d.]+ s; 1 connections force-closed \(1 HTTP/2 streams "
                    r"reset\)", timeout=30, stream="err")
        out, err = p.communicate(timeout=30)
        self.assertNotEqual(p.returncode, 0, out)  # curl saw its stream cut
        st = self.drain_state(s)
        self.assertEqual((st["forced"], st["forced_http2_streams"]), (1, 1), st)
        self.assertEqual(s.terminate(), 2)
        self.procs.remove(s)


if __name__ == "__main__":
    unittest.main()
