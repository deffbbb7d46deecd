#!/usr/bin/python3
"""The configuration file (issue #4), end to end: check-config over every example in config/,
a broken file listing all its problems as FILE:LINE:COL, --print-config output that is itself
a valid file, environment over the file and flags over the environment, sluice started with
--config proxying to aiohttp and to its demo app, an invalid file refusing to start, and the TLS
settings (file names checked and printed, never the files' content).

Run: SLUICE_BIN=/abs/build/sluice /usr/bin/python3 test_config.py -v
"""
import glob
import json
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

    def test_check_config_guard_settings(self):
        # Issue #17's keys: every problem at its position, and a good file prints back.
        path = self.write(
            "trusted_proxies: [10.0.0.1/8]\n"
            "listeners:\n"
            "  - {name: ingress, address: 127.0.0.1:0, cluster: app, ip_rules: {action: drop}}\n"
            "clusters: [{name: app, endpoints: ['127.0.0.1:4000']}]\n"
            "rate_limits:\n"
            "  - {name: a, rate: 10/x, listener: nope}\n")
        cp = run("check-config", path)
        self.assertEqual(cp.returncode, 1, cp)
        self.assertIn("%s:1:19: trusted_proxies[0]: invalid value '10.0.0.1/8': host bits are "
                      "set: did you mean 10.0.0.0/8?" % path, cp.stderr)
        self.assertIn("%s:3:76: listeners[ingress].ip_rules.action: invalid value 'drop'" % path,
                      cp.stderr)
        self.assertIn("%s:6:21: rate_limits[a].rate: invalid value '10/x'" % path, cp.stderr)
        self.assertIn("%s:6:37: rate_limits[a].listener: invalid value 'nope': no such listener"
                      % path, cp.stderr)
        self.assertIn("%s: 4 errors" % path, cp.stderr)
        good = self.write(
            "trusted_proxies: [10.0.0.0/8, 'fd00::/8']\n"
            "listeners:\n"
            "  - {name: ingress, address: 127.0.0.1:0, cluster: app,\n"
            "     ip_rules: {deny: [192.0.2.0/24], action: close, match: client}}\n"
            "clusters: [{name: app, endpoints: ['127.0.0.1:4000']}]\n"
            "rate_limits:\n"
            "  - {name: login, prefix: /login, methods: [POST], rate: 5/m, burst: 5}\n"
            "  - {name: keys, key: header, header: X-Api-Key, rate: 100/10s, dry_run: true}\n",
            "good.yaml")
        cp = run("check-config", good)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        printed = run("--config", good, "--print-config")
        self.assertEqual(printed.returncode, 0, printed.stderr)
        c = yaml.safe_load(printed.stdout)
        self.assertEqual(c["trusted_proxies"], ["10.0.0.0/8", "fd00::/8"])
        self.assertEqual(c["listeners"][0]["ip_rules"],
                         {"allow": [], "deny": ["192.0.2.0/24"], "action": "close",
                          "match": "client"})
        self.assertEqual(c["rate_limits"][1], {"name": "keys", "key": "header",
                                               "header": "x-api-key", "rate": "100/10s",
                                               "max_keys": 100000, "dry_run": True})
        again = run("--config", self.write(printed.stdout, "printed.yaml"), "--print-config")
        self.assertEqual(again.stdout, printed.stdout)

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
                                           "drain": True, "max_connections": 0,
                                           "upgrades": ["websocket"],
                                           "http2": {"enabled": True,
                                                     "max_concurrent_streams": 100,
                                                     "initial_stream_window": "64KiB",
                                                     "connection_window": "1MiB",
                                                     "max_stream_errors": 100,
                                                     "alpn": ["h2", "http/1.1"]},
                                           "routes": [{"cluster": "app"}]}])
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

    # ---- TLS settings ------------------------------------------------------------------------

    def pem_files(self):
        """Stand-ins for a certificate, its key and a CA bundle: the loader only checks that
        they can be read (the TLS layer parses them when it builds its contexts)."""
        d = self.make_tmpdir()
        paths = {}
        for name, text in (("cert", "CERTIFICATE\n"), ("key", "KEY-MATERIAL-NEVER-PRINTED\n"),
                           ("ca", "CA\n")):
            paths[name] = os.path.join(d, name + ".pem")
            with open(paths[name], "w") as f:
                f.write(text)
        return paths

    def test_tls_settings_check_and_print(self):
        pem = self.pem_files()
        path = self.write(
            "listeners:\n"
            "  - name: one\n"
            "    address: 127.0.0.1:8443\n"
            "    cluster: api\n"
            "    tls: {cert: %(cert)s, key: %(key)s, min_version: 1.3}\n"
            "  - name: several\n"
            "    address: 127.0.0.1:9443\n"
            "    cluster: api\n"
            "    tls:\n"
            "      certificates:\n"
            "        - {cert: %(cert)s, key: %(key)s}\n"
            "        - {cert: %(ca)s, key: %(key)s}\n"
            "      client_ca: %(ca)s\n"
            "clusters:\n"
            "  - name: api\n"
            "    endpoints: [api.example.com:443]\n"
            "    tls: {ca: %(ca)s, sni: api.example.com, cert: %(cert)s, key: %(key)s}\n" % pem)
        cp = run("check-config", path)
        self.assertEqual((cp.returncode, cp.stderr), (0, ""), cp)
        cp = run("--config", path, "--print-config")
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertNotIn("KEY-MATERIAL", cp.stdout)
        c = yaml.safe_load(cp.stdout)
        # Versions stay strings for a YAML 1.1 reader such as PyYAML.
        self.assertEqual(c["listeners"][0]["tls"],
                         {"cert": pem["cert"], "key": pem["key"], "client_ca": "",
                          "handshake_timeout": "10s", "min_version": "1.3", "ciphers": ""})
        self.assertEqual(c["listeners"][1]["tls"]["certificates"],
                         [{"cert": pem["cert"], "key": pem["key"]},
                          {"cert": pem["ca"], "key": pem["key"]}])
        self.assertEqual(c["clusters"][0]["tls"],
                         {"verify": True, "ca": pem["ca"], "sni": "api.example.com",
                          "cert": pem["cert"], "key": pem["key"], "min_version": "1.2"})
        printed = self.write(cp.stdout, "printed.yaml")
        again = run("--config", printed, "--print-config")
        self.assertEqual((again.returncode, again.stdout), (0, cp.stdout), again.stderr)

    def test_tls_problems_with_their_positions(self):
        pem = self.pem_files()
        missing = os.path.join(self.make_tmpdir(), "missing.key")
        path = self.write(
            "listeners:\n"
            "  - name: in\n"
            "    address: 127.0.0.1:8443\n"
            "    cluster: app\n"
            "    tls:\n"
            "      cert: %s\n"
            "      key: %s\n"
            "      min_version: 1.1\n"
            "clusters:\n"
            "  - name: app\n"
            "    endpoints: [10.0.0.1:443]\n"
            "    tls: {sni: 10.0.0.1, cert: %s, verfy: false}\n" % (pem["cert"], missing,
                                                                    pem["cert"]))
        cp = run("check-config", path)
        self.assertEqual(cp.returncode, 1, cp)
        lines = [l[len(path) + 1:] for l in cp.stderr.splitlines() if l.startswith(path + ":")]
        self.assertEqual(lines[:3], [
            "7:12: listeners[in].tls.key: '%s': cannot read it: No such file or directory"
            % missing,
            "8:20: listeners[in].tls.min_version: invalid value '1.1': TLS 1.0 and 1.1 are not "
            "supported (RFC 8996 deprecates them); sluice speaks TLS 1.2 and 1.3 (expected '1.2' "
            "or '1.3')",
            "12:16: clusters[app].tls.sni: invalid value '10.0.0.1': SNI carries a host name, "
            "never an IP address (RFC 6066) (expected a host name such as 'api.example.com')"],
            cp.stderr)
        self.assertIn("clusters[app].tls: 'cert' needs its 'key'", lines[3])
        self.assertIn("unknown key 'verfy' in clusters[app].tls (did you mean 'verify'?)",
                      lines[4])
        self.assertIn("%s: 5 errors" % path, cp.stderr)

    def test_tls_verification_off_is_a_warning(self):
        line = "clusters: [{name: app, endpoints: [127.0.0.1:443], tls: {verify: false}}]"
        path = self.write(line + "\n")
        cp = run("check-config", path)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertRegex(cp.stderr, r"^%s:1:%d: warning: cluster 'app': TLS verification is off"
                         % (re.escape(path), line.index("false") + 1))

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

    def test_get_config_shows_the_tls_settings(self):
        up = self.start_aiohttp()
        path = self.write(
            "admin: {address: 127.0.0.1:0}\n"
            "workers: 1\n"
            "listeners:\n"
            "  - {name: ingress, address: 127.0.0.1:0, cluster: app}\n"
            "clusters:\n"
            "  - {name: app, endpoints: [127.0.0.1:%d]}\n"
            "  - {name: api, endpoints: [127.0.0.1:1], tls: {sni: api.example.com}}\n"
            "drain: {delay: 0s, budget: 5s, ws_close_spread: 1s}\n" % up.port)
        s = self.start_sluice("--config", path, defaults=False, workers=None)
        r = http(s.admin_port, "GET", "/config")
        self.assertEqual(r.status, 200)
        clusters = json.loads(r.body)["clusters"]
        self.assertNotIn("tls", clusters[0])
        self.assertEqual(clusters[1]["tls"], {"verify": True, "ca": "", "sni": "api.example.com",
                                              "cert": "", "key": "", "min_version": "1.2"})

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
