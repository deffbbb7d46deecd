#!/usr/bin/python3
"""Node's @grpc/grpc-js through sluice (issue 16): a generic client (makeGenericClientConstructor
with identity serializers, tests/grpc_node/grpc_node_client.js) against sluice's h2c listener,
tests/e2e/grpc_app.py behind it on an h2c cluster: unary, server streaming, client streaming and
bidirectional calls with their trailers, and an unrouted method answered UNIMPLEMENTED by sluice.

The npm package comes from `make deps` (npm ci in tests/grpc_node, with a lockfile stamp); when
it is missing or stale the test fails, it never installs anything.

Run: SLUICE_BIN=/abs/build/sluice /usr/bin/python3 test_grpc_node.py -v
"""
import hashlib
import json
import os
import sys
import unittest

from harness import HERE, E2ETestCase

NODE = "/usr/bin/node"
NODE_DIR = os.path.join(os.path.dirname(HERE), "grpc_node")


def check_node_modules():
    with open(os.path.join(NODE_DIR, "package-lock.json"), "rb") as f:
        want = hashlib.sha256(f.read()).hexdigest()
    stamp = os.path.join(NODE_DIR, "node_modules", ".sluice-lock-sha256")
    have = ""
    if os.path.exists(stamp):
        with open(stamp) as f:
            have = f.read().strip()
    if have != want:
        raise AssertionError("tests/grpc_node/node_modules is missing or older than "
                             "package-lock.json: run `make deps` (npm ci in tests/grpc_node)")


class GrpcNodeTest(E2ETestCase):

    def test_grpc_js_calls_of_every_kind_through_sluice(self):
        self.assertTrue(os.access(NODE, os.X_OK),
                        "%s missing: `make deps` installs Node.js (Debian package nodejs)" % NODE)
        check_node_modules()
        app = self.start_proc("grpc-app", [sys.executable, os.path.join(HERE, "grpc_app.py"),
                                           "--port", "0"])
        port = int(app.wait_line(r"^PORT (\d+)$", timeout=30, stream="out").group(1))
        cfg = os.path.join(self.make_tmpdir(), "sluice.yaml")
        with open(cfg, "w") as f:
            f.write("admin: {address: 127.0.0.1:0}\nworkers: 1\ndrain: {delay: 0s}\n"
                    "listeners:\n  - name: ingress\n    address: 127.0.0.1:0\n    routes:\n"
                    "      - {prefix: /sluice.test.Echo/, cluster: app}\n"
                    "clusters:\n  - {name: app, protocol: h2c, endpoints: [127.0.0.1:%d]}\n"
                    % port)
        s = self.start_sluice("--config", cfg, defaults=False, workers=None)
        client = self.start_proc("grpc-node-client", [
            NODE, os.path.join(NODE_DIR, "grpc_node_client.js"), "127.0.0.1:%d" % s.port])
        # The calls run one after the other; "Missing" is the last.
        client.wait_line(r'^\{"call":"Missing"', timeout=60, stream="out")
        calls = {}
        for line in client.text("out").splitlines():
            if line.startswith("{"):
                c = json.loads(line)
                calls[c["call"]] = c
        self.assertEqual(calls["Unary"]["messages"], ["hello from node"], calls)
        self.assertEqual(calls["Unary"]["trailer"], "done")
        self.assertEqual(calls["ServerStream"]["messages"],
                         [("msg-%d:" % i).ljust(32, ".") for i in range(5)], calls)
        self.assertTrue(calls["ServerStream"]["ok"])
        self.assertEqual(calls["ClientStream"]["messages"][0][:20], "count=3 bytes=6 sha2")
        self.assertEqual(calls["Bidi"]["messages"], ["x", "yy", "zzz"])
        self.assertEqual(calls["Missing"]["code"], 12, calls["Missing"])  # UNIMPLEMENTED
        self.assertIn("no route for host", calls["Missing"]["details"])


if __name__ == "__main__":
    unittest.main()
