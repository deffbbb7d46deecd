#!/usr/bin/python3
"""The configuration file (issue #4), end to end: check-config over every example in config/,
a broken file listing all its problems as FILE:LINE:COL, --print-config output that is itself
a valid file, environment over the file and flags over the environment, sluice started with
--config proxying to aiohttp and to its demo app, and an invalid file refusing to start.

Run: SLUICE_BIN=/abs/build/sluice /usr/bin/python3 test_config.py -v
"""
import glob
import os
import re
import subprocess
import unittest

import yaml

from harness import CLEAN_ENV, HERE, SLUICE_BIN, E2ETestCase, http

CONFIG_DIR = os.path.normpath(os.path.join(HERE, "..", "..", "config"))
POSITION_RX = r"^%s:(\d+):(\d+): (.+)$"

BROKEN = """\
workers: many
listeners:
  - name: ingress
    address: 0.0.0.0:8080
    routes:
      - {prefix: /, cluster: ap}
  - name: ingress
    address: 0.0.0.0:8080
    cluster: app
    routes: [{cluster: app}]
clusters:
  - name: app
    endpoints: [127.0.0.1:0]
    conect_timeout: 2s
drain: {delay: 5 seconds}
"""


def run(*args, env=None, timeout=20):
    """Runs sluice to completion; returns the CompletedProcess (text)."""
    full_env = dict(CLEAN_ENV)
    full_env.update(env or {})
    return subprocess.run([SLUICE_BIN] + list(args), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, env=full_env, timeout=timeout, text=True)


class ConfigTest(E2ETestCase):

    def write(self, text, name="sluice.yaml"):
        path = os.path.join(self.make_tmpdir(), name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def print_config(self, *args, env=None):
        cp = run(*(list(args) + ["--print-config"]), env=env)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        return yaml.safe_load(cp.stdout)

    def proxy_file(self, upstream_port):
        """A file with one loopback listener and admin on free ports in front of one endpoint."""
        return self.write(
            "admin: {address: 127.0.0.1:0}\n"
            "workers: 1\n"
            "listeners:\n"
            "  - {name: ingress, address: 127.0.0.1:0, cluster: app}\n"
            "clusters:\n"
            "  - name: app\n"
            "    endpoints: [127.0.0.1:%d]\n"
            "    pool: {max_idle: 4, idle_timeout: 2s}\n"
            "drain: {delay: 0s, budget: 5s, ws_close_spread: 1s}\n"
            "log: {level: info}\n" % upstream_port)

    # ---- check-config ------------------------------------------------------------------------

    def test_check_config_accepts_every_example(self):
        files = sorted(glob.glob(os.path.join(CONFIG_DIR, "*.yaml")))
        self.assertGreaterEqual(len(files), 3, CONFIG_DIR)
        for path in files:
            cp = run("check-config", path)
            self.assertEqual(cp.returncode, 0, "%s:\n%s" % (path, cp.stderr))
            self.assertEqual(cp.stdout, "%s: ok\n" % path)
            self.assertEqual(cp.stderr, "", "%s has warnings" % path)

    def test_check_config_lists_every_problem_with_its_position(self):
        path = self.write(BROKEN)
        cp = run("check-config", path)
        self.assertEqual(cp.returncode, 1, cp)
        self.assertEqual(cp.stdout, "")
        positioned = []
        for line in cp.stderr.splitlines():
            m = re.match(POSITION_RX % re.escape(path), line)
            if m:
                positioned.append((int(m.group(1)), int(m.group(2)), m.group(3)))
        self.assertEqual([(l, c) for l, c, _ in positioned],
                         [(1, 10), (6, 30), (7, 11), (8, 14), (9, 5), (13, 17), (14, 5), (15, 16)],
                         cp.stderr)
        messages = dict(((l, c), msg) for l, c, msg in positioned)
        self.assertIn("workers: invalid value 'many' (expected a whole number from 0 to 1024)",
                      messages[(1, 10)])
        self.assertIn("no cluster named 'ap' (did you mean 'app'?)", messages[(6, 30)])
        self.assertIn("the name 'ingress' is already used", messages[(7, 11)])
        self.assertIn("overlaps listener 'ingress' (0.0.0.0:8080, line 4)", messages[(8, 14)])
        self.assertIn("give either 'cluster'", messages[(9, 5)])
        self.assertIn("port 0 is only for listeners", messages[(13, 17)])
        self.assertIn("unknown key 'conect_timeout' in clusters[app] (did you mean "
                      "'connect_timeout'?)", messages[(14, 5)])
        self.assertIn("drain.delay: invalid value '5 seconds'", messages[(15, 16)])
        self.assertIn("%s: 8 errors" % path, cp.stderr)

    def test_check_config_syntax_error_and_missing_file(self):
        path = self.write("listeners:\n  - name: a\n\taddress: 127.0.0.1:80\n")
        cp = run("check-config", path)
        self.assertEqual(cp.returncode, 1)
        self.assertRegex(cp.stderr, r"(?m)^%s:3:1: YAML syntax error: .*tab" % re.escape(path))
        missing = os.path.join(self.make_tmpdir(), "missing.yaml")
        cp = run("check-config", missing)
        self.assertEqual(cp.returncode, 1)
        self.assertIn("%s: cannot read the configuration file: No such file or directory"
                      % missing, cp.stderr)

    # ---- --print-config ----------------------------------------------------------------------

    def test_print_config_output_passes_check_config(self):
        token = self.write("secret-admin-token\n", "token")
        cases = [[],
                 ["--config", os.path.join(CONFIG_DIR, "sidecar.yaml")],
                 ["--config", os.path.join(CONFIG_DIR, "egress.yaml"), "--workers", "3"],
                 ["--upstream", "127.0.0.1:4000,localhost:4001", "--admin-token-file", token]]
        for args in cases:
            cp = run(*(args + ["--print-config"]))
            self.assertEqual(cp.returncode, 0, "%s: %s" % (args, cp.stderr))
            self.assertNotIn("secret-admin-token", cp.stdout)
            dumped = self.write(cp.stdout, "printed.yaml")
            check = run("check-config", dumped)
            self.assertEqual(check.returncode, 0, "%s:\n%s\n%s" % (args, cp.stdout, check.stderr))
            # Printing the printed file gives the same text: nothing is lost on the way.
            again = run("--config", dumped, "--print-config")
            self.assertEqual(again.stdout, cp.stdout, args)

    def test_print_config_shows_defaults_and_the_file(self):
        c = self.print_config()
        self.assertEqual(c["listeners"], [{"name": "ingress", "address": "0.0.0.0:8080",
                                           "drain": True, "routes": [{"cluster": "app"}]}])
        self.assertEqual(c["clusters"][0]["endpoints"], ["127.0.0.1:4000"])
        self.assertEqual(c["clusters"][0]["pool"]["idle_timeout"], "4s")
        self.assertEqual(c["drain"]["delay"], "5s")
        cp = run("demo", "--print-config")
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertEqual(yaml.safe_load(cp.stdout)["drain"]["delay"], "0s")

        c = self.print_config("--config", os.path.join(CONFIG_DIR, "sidecar.yaml"))
        self.assertEqual([l["name"] for l in c["listeners"]], ["ingress", "egress"])
        self.assertIs(c["listeners"][1]["drain"], False)
        self.assertIs(c["clusters"][0]["readiness"], True)

    def test_print_config_with_errors_exits_1(self):
        cp = run("--print-config", "--workers", "5000")
        self.assertEqual(cp.returncode, 1)
        self.assertEqual(cp.stdout, "")
        self.assertIn("--workers: invalid value '5000' (expected a whole number from 0 to 1024)",
                      cp.stderr)
        cp = run("--print-config", env={"SLUICE_DRAIN_DELAY": "soon"})
        self.assertEqual(cp.returncode, 1)
        self.assertIn("--drain-delay (from SLUICE_DRAIN_DELAY): invalid value 'soon'", cp.stderr)

    # ---- precedence --------------------------------------------------------------------------

    def test_environment_beats_the_file_and_flags_beat_the_environment(self):
        path = self.write("workers: 2\n"
                          "drain: {delay: 3s, budget: 20s}\n"
                          "clusters: [{name: app, endpoints: [127.0.0.1:4000]}]\n")
        c = self.print_config("--config", path)
        self.assertEqual((c["workers"], c["drain"]["delay"]), (2, "3s"))

        env = {"SLUICE_WORKERS": "5", "SLUICE_DRAIN_DELAY": "1s"}
        c = self.print_config("--config", path, env=env)
        self.assertEqual((c["workers"], c["drain"]["delay"]), (5, "1s"))
        self.assertEqual(c["drain"]["budget"], "20s")  # not overridden: the file's value stays

        c = self.print_config("--config", path, "--workers", "7", "--drain-delay", "250ms",
                              env=env)
        self.assertEqual((c["workers"], c["drain"]["delay"]), (7, "250ms"))

        # The file itself may come from the environment.
        c = self.print_config(env={"SLUICE_CONFIG": path, "SLUICE_WORKERS": "4"})
        self.assertEqual((c["workers"], c["drain"]["budget"]), (4, "20s"))

    def test_cluster_flags_apply_to_every_cluster(self):
        c = self.print_config("--config", os.path.join(CONFIG_DIR, "egress.yaml"),
                              "--connect-timeout", "750ms", "--pool-max-idle", "3")
        self.assertEqual(len(c["clusters"]), 3)
        for cluster in c["clusters"]:
            self.assertEqual(cluster["connect_timeout"], "750ms")
            self.assertEqual(cluster["pool"]["max_idle"], 3)

    # ---- running -----------------------------------------------------------------------------

    def test_start_with_a_config_file_proxies_to_aiohttp(self):
        up = self.start_aiohttp()
        path = self.proxy_file(up.port)
        s = self.start_sluice("--config", path, defaults=False, workers=None)
        self.assertEqual((s.workers, s.upstream), (1, "127.0.0.1:%d" % up.port))
        for _ in range(3):
            r = http(s.port, "GET", "/")
            self.assertEqual((r.status, r.body), (200, b"hello from aiohttp\n"))

    def test_flags_override_the_file_when_running(self):
        up = self.start_aiohttp()
        path = self.proxy_file(1)  # port 1: nothing there; --upstream must win
        s = self.start_sluice("--config", path, "--upstream", "127.0.0.1:%d" % up.port,
                              defaults=False, workers=None, env={"SLUICE_WORKERS": "2"})
        self.assertEqual((s.workers, s.upstream), (2, "127.0.0.1:%d" % up.port))
        r = http(s.port, "GET", "/")
        self.assertEqual((r.status, r.body), (200, b"hello from aiohttp\n"))

    def test_demo_with_a_config_file(self):
        path = self.proxy_file(4000)
        s = self.start_sluice(defaults=False, workers=None, subcommand="demo",
                              env={"SLUICE_CONFIG": path})
        r = http(s.port, "GET", "/")
        self.assertEqual((r.status, r.body), (200, b"Hello from the sluice demo app\n"))

    def test_start_with_an_invalid_file_exits_1_with_the_list(self):
        path = self.write(BROKEN)
        check = run("check-config", path)
        cp = run("--config", path)
        self.assertEqual(cp.returncode, 1, cp)
        errors = [l for l in cp.stderr.splitlines() if l.startswith(path + ":")]
        expected = [l for l in check.stderr.splitlines() if re.match(POSITION_RX % re.escape(path), l)]
        self.assertEqual(errors, expected)
        self.assertEqual(len(errors), 8)
        self.assertIn("sluice: 8 errors in the configuration; not starting", cp.stderr)


if __name__ == "__main__":
    unittest.main()
