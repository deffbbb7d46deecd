#!/usr/bin/python3
"""The status page's maintenance and circuit breaker section (issue 17), rendered by Debian's
headless Chromium (the machinery of test_status_page.py): a listener switched to read-only by
the admin API shows its mode, who set it, Retry-After and the requests it refused; a cluster
whose breaker opened on connect errors shows it open with its time left and its transitions, a
cluster without a breaker shows none; no console problems."""
import json
import os
import time
import unittest

import test_status_page as sp
from harness import E2ETestCase, http, reserve_port

# Every row of the two tables: {name: {metric: text}}.
PROTECTION_JS = r"""(() => {
  const rows = (sel, attr) => {
    const o = {};
    for (const r of document.querySelectorAll(sel)) {
      const m = {};
      for (const e of r.querySelectorAll('[data-metric]')) m[e.dataset.metric] = e.textContent.trim();
      o[r.dataset[attr]] = m;
    }
    return o;
  };
  return {maintenance: rows('#maintenance tbody tr', 'listener'),
          breakers: rows('#breakers tbody tr', 'cluster')};
})()"""


class StatusProtectionTest(E2ETestCase):

    def setUp(self):
        if not os.access(sp.CHROMIUM, os.X_OK):
            self.fail("%s is missing: this test renders the status page in Debian's headless "
                      "Chromium. `make deps` installs it (Debian package chromium)." % sp.CHROMIUM)
        super().setUp()

    def test_modes_breakers_and_caps_on_the_page(self):
        dead = reserve_port()  # bound, never listening: connects are refused
        app = self.start_aiohttp()
        cfg = os.path.join(self.make_tmpdir(), "sluice.yaml")
        with open(cfg, "w") as f:
            f.write("admin: {address: 127.0.0.1:0}\nworkers: 1\ndrain: {delay: 0s, budget: 10s}\n"
                    "listeners:\n  - name: ingress\n    address: 127.0.0.1:0\n"
                    "    routes: [{prefix: /pay, cluster: payments}, {prefix: /, cluster: app}]\n"
                    "clusters:\n"
                    "  - name: payments\n    endpoints: [127.0.0.1:%d]\n"
                    "    circuit_breaker: {min_requests: 1, failure_ratio: 1, open_for: 10m}\n"
                    "  - name: app\n    endpoints: [127.0.0.1:%d]\n"
                    % (dead, app.port))
        s = self.start_sluice("--config", cfg, defaults=False, workers=None)
        self.assertEqual(http(s.port, "GET", "/pay/charge").status, 502)
        self.assertEqual(http(s.port, "GET", "/pay/charge").header("X-Sluice-Circuit"), "open")
        r = http(s.admin_port, "POST", "/maintenance", [("Content-Type", "application/json")],
                 json.dumps({"mode": "read-only", "retry_after": "45s"}).encode())
        self.assertEqual(r.status, 200, r)
        self.assertEqual(http(s.port, "POST", "/", body=b"x").status, 503)

        browser = self._track(sp.Chromium(self.make_tmpdir()))
        page = sp.Page(browser.devtools)
        page.navigate("http://127.0.0.1:%d/" % s.admin_port)
        deadline = time.monotonic() + 15
        while True:
            snap = page.evaluate(PROTECTION_JS)
            m = (snap or {}).get("maintenance", {}).get("ingress", {})
            b = (snap or {}).get("breakers", {}).get("payments", {})
            if m.get("refused") == "1" and b.get("circuit", "").startswith("open"):
                break
            if time.monotonic() > deadline:
                self.fail("status page: no maintenance row and open breaker: %r" % snap)
            time.sleep(0.1)
        self.assertEqual(m, {"name": "ingress", "maintenance": "read-only", "source": "api",
                             "retry-after": "45 s", "refused": "1"})
        self.assertRegex(b["circuit"], r"^open \(\d+ s\)$")
        self.assertEqual(b["transitions"], "open 1")
        self.assertEqual(snap["breakers"]["app"]["circuit"], "none")
        self.assertEqual(page.console_problems(), [], "console messages on the status page")


if __name__ == "__main__":
    unittest.main()
