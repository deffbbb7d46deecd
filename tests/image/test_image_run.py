"""The image `make test-image` built (podman, over debootstrapped bases), run for real.

Containers cannot be started on these machines, so the image's root file system is mounted
(`podman image mount`) and its own binaries run under chroot as the image's user (uid 10001),
with the image's libraries and CA bundle, on the host's loopback:

- the image's metadata: USER 10001:10001, ENTRYPOINT /usr/local/bin/sluice;
- every library sluice needs resolves inside the image, and the CA bundle is there;
- the image's sluice (as its demo app, and as the proxy in front of it) serves requests;
- the image's static sluice-drain drains it; SIGTERM then stops it, exit 0, drained.

Run by `make test-image` after the build, or directly (as root):
    SLUICE_IMAGE=localhost/sluice:test /usr/bin/python3 tests/image/test_image_run.py -v
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "e2e"))
from harness import CLEAN_ENV, Proc, free_port, http  # noqa: E402

IMAGE = os.environ.get("SLUICE_IMAGE", "localhost/sluice:test")
USER = "10001:10001"


def wait_for(cond, timeout, what):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = cond()
        except OSError as e:
            last = e
        if last is True:
            return
        time.sleep(0.05)
    raise AssertionError("%s: not within %.1f s (last: %r)" % (what, timeout, last))


class ImageRunTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.root = subprocess.run(["podman", "image", "mount", IMAGE], capture_output=True,
                                  text=True, check=True).stdout.strip()
        cls.inspect = json.loads(subprocess.run(["podman", "image", "inspect", IMAGE],
                                                capture_output=True, text=True,
                                                check=True).stdout)[0]

    @classmethod
    def tearDownClass(cls):
        subprocess.run(["podman", "image", "unmount", IMAGE], capture_output=True)

    def setUp(self):
        self.procs = []

    def tearDown(self):
        for p in self.procs:
            p.kill()

    def chroot(self, *argv):
        """argv run inside the image as its user, with a clean environment."""
        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
        return ["/usr/bin/env", "-i"] + ["%s=%s" % kv for kv in env.items()] + [
            "/usr/sbin/chroot", "--userspec=" + USER, self.root] + list(argv)

    def start(self, name, *argv):
        p = Proc(name, self.chroot(*argv), env=CLEAN_ENV)
        self.procs.append(p)
        return p

    def test_metadata(self):
        config = self.inspect["Config"]
        self.assertEqual(config["User"], USER)
        self.assertEqual(config["Entrypoint"], ["/usr/local/bin/sluice"])

    def test_libraries_and_ca_bundle_are_the_images(self):
        out = subprocess.run(self.chroot("/usr/bin/ldd", "/usr/local/bin/sluice"),
                             capture_output=True, text=True, check=True).stdout
        self.assertNotIn("not found", out)
        self.assertRegex(out, r"libuv\.so\.1 => /\S+")
        bundle = os.path.join(self.root, "etc/ssl/certs/ca-certificates.crt")
        with open(bundle) as f:
            self.assertGreater(f.read().count("BEGIN CERTIFICATE"), 50)
        out = subprocess.run(self.chroot("/usr/bin/ldd", "/usr/local/bin/sluice-drain"),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True).stdout
        self.assertIn("not a dynamic executable", out)
        # The user exists in the image (runAsNonRoot wants a numeric one anyway).
        with open(os.path.join(self.root, "etc/passwd")) as f:
            self.assertRegex(f.read(), r"(?m)^sluice:x:10001:10001:")

    def test_serves_drains_and_exits_0(self):
        app_port, port, admin = free_port(), free_port(), free_port()
        app = self.start("image demo-app", "/usr/local/bin/sluice", "demo-app", "--listen",
                         "127.0.0.1:%d" % app_port)
        app.expect_line(r"listening on", timeout=10)
        s = self.start("image sluice", "/usr/local/bin/sluice", "--listen",
                       "127.0.0.1:%d" % port, "--admin", "127.0.0.1:%d" % admin, "--upstream",
                       "127.0.0.1:%d" % app_port, "--workers", "2", "--drain-delay", "500ms")
        s.expect_line(r"sluice: listening on 127\.0\.0\.1:%d" % port, timeout=10)
        wait_for(lambda: http(admin, "GET", "/readyz").status == 200, 10, "ready")
        for _ in range(20):
            r = http(port, "GET", "/")
            self.assertEqual(r.status, 200)
        self.assertEqual(os.stat("/proc/%d" % s.pid).st_uid, 10001)
        # The image's static client drains it, as the chart's preStop hook does.
        t0 = time.monotonic()
        cp = subprocess.run(self.chroot("/usr/local/bin/sluice-drain", "--admin",
                                        "127.0.0.1:%d" % admin, "--wait"),
                            capture_output=True, text=True, timeout=30)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertEqual(json.loads(cp.stdout)["phase"], "done")
        self.assertGreaterEqual(time.monotonic() - t0, 0.5)
        self.assertEqual(http(admin, "GET", "/readyz").status, 503)
        s.proc.send_signal(signal.SIGTERM)
        self.assertEqual(s.proc.wait(timeout=10), 0, s.log())
        self.assertRegex(s.text(), r"drain done in [0-9.]+ s; 0 connections force-closed")
        app.proc.send_signal(signal.SIGTERM)
        self.assertEqual(app.proc.wait(timeout=10), 0, app.log())


if __name__ == "__main__":
    unittest.main()
