#!/usr/bin/python3
"""sluice's /metrics against Debian's Prometheus: `promtool check metrics` passes with nothing
to say, every series is unique, and a real Prometheus server started here scrapes the admin
listener every second: `up` is 1, the target has no scrape error, Prometheus's own duplicate /
out-of-order counters stay at zero and it logs no warning, and its query API returns
sluice_downstream_requests_total (and the upstream and histogram series) with the counts the
test sent, following them as more requests go through.

Run: SLUICE_BIN=/abs/build/sluice /usr/bin/python3 test_prometheus.py -v
"""
import json
import math
import os
import re
import signal
import subprocess
import time
import unittest
import urllib.parse

from harness import CLEAN_ENV, E2ETestCase, Proc, free_port, http

PROMETHEUS = "/usr/bin/prometheus"
PROMTOOL = "/usr/bin/promtool"
JOB = "sluice"

PROMETHEUS_YML = """global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: {job}
    metrics_path: /metrics
    static_configs:
      - targets: ['127.0.0.1:{admin_port}']
"""

# name{labels} value [timestamp]
SAMPLE_RX = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)(?:\s+-?\d+)?$")


class Prometheus(Proc):
    """Debian's Prometheus on 127.0.0.1, its config and TSDB in a directory of the test's."""

    def __init__(self, tmp, admin_port):
        config = os.path.join(tmp, "prometheus.yml")
        with open(config, "w") as f:
            f.write(PROMETHEUS_YML.format(job=JOB, admin_port=admin_port))
        last = None
        for attempt in range(5):  # the port was free a moment ago; another may have taken it
            self.port = free_port()
            argv = [PROMETHEUS, "--config.file=" + config,
                    "--storage.tsdb.path=" + os.path.join(tmp, "data-%d" % attempt),
                    "--web.listen-address=127.0.0.1:%d" % self.port]
            super().__init__("prometheus", argv, env=CLEAN_ENV, cwd=tmp)
            try:
                self.wait_line(r"Server is ready to receive web requests", timeout=30,
                               stream="err")
                return
            except AssertionError:
                last = self.log()
                self.kill()
        raise AssertionError("prometheus did not start:\n%s" % last)

    def kill(self):
        """SIGTERM first: Prometheus closes its TSDB cleanly."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        super().kill()

    def api(self, path, **params):
        r = http(self.port, "GET", path + "?" + urllib.parse.urlencode(params))
        body = json.loads(r.body)
        if r.status != 200 or body.get("status") != "success":
            raise AssertionError("prometheus %s %r: %d %s" % (path, params, r.status, r.body))
        return body["data"]

    def query(self, promql):
        """The instant vector as [(labels, float value)]."""
        data = self.api("/api/v1/query", query=promql)
        assert data["resultType"] == "vector", data
        return [(s["metric"], float(s["value"][1])) for s in data["result"]]

    def own_metric(self, name):
        """A sample of Prometheus's own /metrics (not scraped: read directly)."""
        for line in http(self.port, "GET", "/metrics").body.decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        raise AssertionError("prometheus exposes no %s" % name)


def parse_exposition(text):
    """[(name, labels text, value)] of a text exposition, checking what promtool does not:
    every sample line parses, belongs to a family with HELP and TYPE, and is unique."""
    helps, types, samples, seen = set(), {}, [], set()
    for line in text.splitlines():
        if not line:
            continue
        if line.startswith("# HELP "):
            helps.add(line.split()[2])
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            types[name] = kind
            continue
        if line.startswith("#"):
            continue
        m = SAMPLE_RX.match(line)
        if not m:
            raise AssertionError("unparsable sample line: %r" % line)
        name, labels, value = m.group(1), m.group(2) or "", m.group(3)
        family = name
        if family not in types:
            family = re.sub(r"_(bucket|sum|count)$", "", name)
        if family not in types or family not in helps:
            raise AssertionError("%s has no HELP or TYPE" % name)
        key = (name, labels)
        if key in seen:
            raise AssertionError("duplicate series %s%s" % key)
        seen.add(key)
        samples.append((name, labels, float(value)))
    return samples


class PrometheusTest(E2ETestCase):

    def setUp(self):
        for tool in (PROMETHEUS, PROMTOOL):
            if not os.access(tool, os.X_OK):
                self.fail("%s is missing: `make deps` installs it (Debian package prometheus)"
                          % tool)
        super().setUp()

    def metrics_text(self, s):
        r = http(s.admin_port, "GET", "/metrics")
        self.assertEqual(r.status, 200)
        self.assertTrue(r.header("Content-Type").startswith("text/plain; version=0.0.4"),
                        r.header("Content-Type"))
        return r.body.decode()

    def wait_stats(self, s, listener_codes, timeout=5):
        """Polls /stats until the listener's counts by class are listener_codes (the counters
        move when a response has been written, which can be after the client has read it)."""
        deadline = time.monotonic() + timeout
        while True:
            stats = json.loads(http(s.admin_port, "GET", "/stats").body)
            got = stats["listeners"][0]["requests"]
            if all(got[k] == v for k, v in listener_codes.items()):
                return stats
            if time.monotonic() > deadline:
                self.fail("sluice's /stats shows %r, expected %r" % (got, listener_codes))
            time.sleep(0.05)

    def traffic(self, s, ok, not_found=0, unavailable=0):
        for _ in range(ok):
            self.assertEqual(http(s.port, "GET", "/").status, 200)
        for _ in range(not_found):
            self.assertEqual(http(s.port, "GET", "/status/404").status, 404)
        for _ in range(unavailable):
            self.assertEqual(http(s.port, "GET", "/status/503").status, 503)

    def wait_query(self, prom, promql, predicate, what, timeout=20):
        """Polls the query API until predicate(result) holds; returns the result."""
        deadline = time.monotonic() + timeout
        while True:
            result = prom.query(promql)
            if predicate(result):
                return result
            if time.monotonic() > deadline:
                self.fail("prometheus: %s: %s returned %r" % (what, promql, result))
            time.sleep(0.2)

    def test_promtool_check_metrics_has_nothing_to_say(self):
        up = self.start_aiohttp()
        s = self.start_sluice(upstream=up.port, workers=2)
        self.traffic(s, ok=4, not_found=1, unavailable=1)
        self.wait_stats(s, {"2xx": 4, "4xx": 1, "5xx": 1})
        text = self.metrics_text(s)
        cp = subprocess.run([PROMTOOL, "check", "metrics"], input=text.encode(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=CLEAN_ENV,
                            timeout=30)
        self.assertEqual(cp.returncode, 0, cp.stdout + cp.stderr)
        self.assertEqual(cp.stdout + cp.stderr, b"", "promtool printed warnings")
        samples = parse_exposition(text)
        for name, labels, v in samples:
            self.assertFalse(math.isnan(v), "%s%s is NaN" % (name, labels))
        by_key = {(n, l): v for n, l, v in samples}
        self.assertEqual(by_key[("sluice_downstream_requests_total",
                                 '{listener="ingress",code="2xx"}')], 4)
        self.assertEqual(by_key[("sluice_downstream_request_duration_seconds_count",
                                 '{listener="ingress"}')], 6)
        self.assertEqual(by_key[("sluice_upstream_requests_total",
                                 '{cluster="app",code="5xx"}')], 1)
        # Each histogram's buckets are cumulative and end at +Inf with its count.
        for family in ("sluice_downstream_request_duration_seconds",
                       "sluice_upstream_request_duration_seconds"):
            buckets = [v for n, l, v in samples if n == family + "_bucket"]
            self.assertEqual(buckets, sorted(buckets), family)
            count = [v for n, l, v in samples if n == family + "_count"]
            self.assertEqual(buckets[-1], count[0], family)

    def test_prometheus_scrapes_sluice(self):
        up = self.start_aiohttp()
        s = self.start_sluice(upstream=up.port, workers=2)
        version = json.loads(http(s.admin_port, "GET", "/stats").body)["version"]
        self.traffic(s, ok=9, not_found=2, unavailable=1)
        self.wait_stats(s, {"2xx": 9, "4xx": 2, "5xx": 1})
        prom = self._track(Prometheus(self.make_tmpdir(), s.admin_port))
        instance = "127.0.0.1:%d" % s.admin_port

        self.wait_query(prom, 'up{job="%s"}' % JOB, lambda r: [v for _, v in r] == [1.0],
                        "up is 1")
        result = self.wait_query(
            prom, "sluice_downstream_requests_total",
            lambda r: any(m.get("code") == "2xx" and v == 9 for m, v in r),
            "2xx count of 9")
        by_code = {m["code"]: v for m, v in result}
        self.assertEqual(by_code, {"1xx": 0, "2xx": 9, "3xx": 0, "4xx": 2, "5xx": 1})
        for m, _ in result:
            self.assertEqual((m["job"], m["instance"], m["listener"]), (JOB, instance, "ingress"))

        # More requests: the next scrapes carry them.
        self.traffic(s, ok=6)
        self.wait_stats(s, {"2xx": 15})
        self.wait_query(prom, 'sluice_downstream_requests_total{code="2xx"}',
                        lambda r: [v for _, v in r] == [15.0], "2xx count of 15")
        self.wait_query(prom, 'sluice_upstream_requests_total{cluster="app",code="2xx"}',
                        lambda r: [v for _, v in r] == [15.0], "upstream 2xx count of 15")
        self.wait_query(prom, "sluice_downstream_request_duration_seconds_count",
                        lambda r: [v for _, v in r] == [18.0], "histogram count of 18")
        p99 = prom.query("histogram_quantile(0.99, "
                         "sluice_downstream_request_duration_seconds_bucket)")
        self.assertEqual(len(p99), 1, p99)
        self.assertTrue(0 < p99[0][1] <= 30, p99)
        build = prom.query("sluice_build_info")
        self.assertEqual([(m["version"], v) for m, v in build], [(version, 1.0)])
        self.assertEqual([v for _, v in prom.query("sluice_draining")], [0.0])
        self.assertEqual([v for _, v in prom.query("sluice_workers")], [2.0])
        self.assertEqual(len(prom.query("process_resident_memory_bytes > 0")), 1)

        targets = prom.api("/api/v1/targets", state="active")["activeTargets"]
        self.assertEqual([(t["scrapeUrl"], t["health"], t["lastError"]) for t in targets],
                         [("http://%s/metrics" % instance, "up", "")])
        for counter in ("prometheus_target_scrapes_sample_duplicate_timestamp_total",
                        "prometheus_target_scrapes_sample_out_of_order_total",
                        "prometheus_target_scrapes_sample_out_of_bounds_total",
                        "prometheus_target_scrapes_exceeded_sample_limit_total"):
            self.assertEqual(prom.own_metric(counter), 0, counter)
        complaints = [l for l in prom.text().splitlines() if re.search(r"level=(warn|error)", l)]
        self.assertEqual(complaints, [], "prometheus logged warnings or errors")


if __name__ == "__main__":
    unittest.main()
