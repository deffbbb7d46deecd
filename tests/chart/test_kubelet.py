"""The rendered chart's pod, run the way the kubelet runs it (issue #18).

The chart is rendered (test_chart's renderer), and its Deployment's pod is played here: the
init containers, the containers' commands, the app's lifecycle hooks, in the kubelet's order,
with the real sluice and sluice-drain binaries on loopback. The pod's paths are mapped into a
temporary folder (the ConfigMap and Secret mounts, the sluice-bin emptyDir, the image's
/usr/local/bin); the ports are free ones, given to the chart as values.

- A liveness (or startup-probe) kill of the app: preStop, the app stops, the app starts,
  postStart; sluice must serve again (readiness 200, ingress answering) within a few seconds.
  With egress (the wedge of issue #18) and without, native sidecar and plain container.
- The pod's deletion, native sidecar: preStop, the app stops, then sluice's SIGTERM; sluice
  must still be running when that comes, and exit 0 at once.
- The pod's deletion, plain container with egress: sluice's SIGTERM and the app's preStop
  together; after the drain the app's outbound calls still go through sluice until the app has
  gone; then sluice exits 0.
- A token rotated under sluice does not make the preStop hook skip the drain.

Run by ctest as chart.test_kubelet, or directly:
    SLUICE_BIN=build/sluice /usr/bin/python3 tests/chart/test_kubelet.py -v
"""

import base64
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "e2e"))
import test_chart  # noqa: E402
from harness import (CLEAN_ENV, AioUpstream, Proc, free_port, http,  # noqa: E402
                     request_bytes, RawClient)

SLUICE = test_chart.SLUICE
SLUICE_DRAIN = os.environ.get("SLUICE_DRAIN_BIN") or os.path.join(
    os.path.dirname(os.path.abspath(SLUICE)), "sluice-drain")


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


class Pod:
    """One rendered pod, played on this machine."""

    def __init__(self, case, rendered, ports):
        self.case = case
        self.r = rendered
        self.ports = ports
        self.root = tempfile.mkdtemp(prefix="sluice-pod-")
        self.procs = {}
        pod = rendered.pod
        self.volumes = {v["name"]: v for v in pod["volumes"]}
        # Volumes: the ConfigMap's and the Secret's files, empty folders for the emptyDirs.
        for name, v in self.volumes.items():
            d = os.path.join(self.root, "volumes", name)
            os.makedirs(d)
            if "configMap" in v:
                cm = rendered.by[("ConfigMap", v["configMap"]["name"])]
                for key, text in cm["data"].items():
                    self.write(os.path.join(d, key), text)
            elif "secret" in v:
                secret = rendered.by.get(("Secret", v["secret"]["secretName"]))
                for item in v["secret"]["items"]:
                    data = secret["data"][item["key"]] if secret else ""
                    self.write(os.path.join(d, item["path"]), base64.b64decode(data).decode())

    @staticmethod
    def write(path, text):
        with open(path, "w") as f:
            f.write(text)

    def container(self, name):
        return self.r.container(name)

    def mapper(self, c):
        """A function mapping the container's paths to this machine's: its mounts first, then
        the image's binaries."""
        mounts = sorted(((m["mountPath"], os.path.join(self.root, "volumes", m["name"]))
                         for m in c.get("volumeMounts", [])), key=lambda m: -len(m[0]))

        def f(word):
            if word == "/usr/local/bin/sluice":
                return SLUICE
            if word == "/usr/local/bin/sluice-drain":
                return SLUICE_DRAIN
            for path, local in mounts:
                if word == path or word.startswith(path + "/"):
                    return local + word[len(path):]
            return word
        return f

    def argv(self, c):
        m = self.mapper(c)
        # The image's entrypoint is /usr/local/bin/sluice: args alone run it.
        words = c.get("command") or ["/usr/local/bin/sluice"]
        return [m(w) for w in words + c.get("args", [])]

    def config_paths(self):
        """sluice.yaml names files under the sluice container's mounts: map them too."""
        c = self.container("sluice")
        m = self.mapper(c)
        cfg = os.path.join(self.root, "volumes", "sluice-config", "sluice.yaml")
        with open(cfg) as f:
            text = f.read()
        for mount in c["volumeMounts"]:
            text = text.replace(mount["mountPath"] + "/", m(mount["mountPath"]) + "/")
        self.write(cfg, text)

    def run_to_completion(self, name):
        c = self.container(name)
        cp = subprocess.run(self.argv(c), capture_output=True, text=True, env=CLEAN_ENV,
                            timeout=30)
        self.case.assertEqual(cp.returncode, 0, "%s: %s" % (name, cp.stderr))

    def start(self, name):
        p = Proc(name, self.argv(self.container(name)))
        self.procs[name] = p
        return p

    def hook(self, name, which):
        """Runs the container's lifecycle hook, in that container's file system view."""
        c = self.container(name)
        command = c["lifecycle"][which]["exec"]["command"]
        cp = subprocess.run([self.mapper(c)(w) for w in command], capture_output=True, text=True,
                            env=CLEAN_ENV, timeout=60)
        return cp

    def admin(self, path, method="GET"):
        return http(self.ports["admin"], method, path, body=b"" if method == "POST" else None,
                    timeout=10)

    def ingress_serves(self):
        return http(self.ports["http"], "GET", "/", timeout=5).status == 200

    def stop(self, name, sig=signal.SIGTERM):
        p = self.procs.pop(name)
        if p.alive():
            p.proc.send_signal(sig)
        rc = p.proc.wait(timeout=30)
        p.kill()
        return rc

    def close(self):
        for p in self.procs.values():
            p.kill()
        subprocess.run(["rm", "-rf", self.root], check=False)

    def log(self):
        return "\n".join(p.log() for p in self.procs.values())


class KubeletTest(test_chart.ChartTestCase):

    def setUp(self):
        self.pods = []
        self.others = []

    def tearDown(self):
        for p in self.pods:
            p.close()
        for o in self.others:
            o.kill()

    def make_pod(self, native, egress):
        ports = {"http": free_port(), "admin": free_port(), "app": free_port(),
                 "egress": free_port()}
        values = {
            "sluice": {"native": native, "workers": 1,
                       "ports": {"http": ports["http"], "admin": ports["admin"]},
                       "drain": {"delay": "300ms", "budget": "10s", "ws_close_spread": "100ms"},
                       "log": {"format": "text", "access": False}},
            "app": {"port": ports["app"]},
            "egress": {"port": ports["egress"]},
        }
        if egress:
            api = AioUpstream(name="api")
            self.others.append(api)
            values["egress"]["apis"] = [{"name": "api", "hosts": ["api.example"],
                                         "endpoints": ["127.0.0.1:%d" % api.port]}]
        r = self.render(self.write("pod.yaml", yaml.safe_dump(values)))
        pod = Pod(self, r, ports)
        self.pods.append(pod)
        pod.config_paths()
        return pod

    def start_pod(self, pod):
        """The kubelet's start: init containers in order (a native sidecar's startup probe
        passes before the next one), then the app and its postStart hook."""
        for c in pod.r.pod.get("initContainers", []):
            if c.get("restartPolicy") == "Always":
                pod.start(c["name"])
                wait_for(lambda: pod.admin(c["startupProbe"]["httpGet"]["path"]).status == 200,
                         10, "%s's startup probe" % c["name"])
            else:
                pod.run_to_completion(c["name"])
        for c in pod.r.pod["containers"]:
            pod.start(c["name"])
            if c["name"] == "app":
                cp = pod.hook("app", "postStart")
                self.assertEqual(cp.returncode, 0, cp.stderr)
        wait_for(lambda: pod.admin("/readyz").status == 200, 10, "the pod ready")
        self.assertTrue(pod.ingress_serves())

    def egress_call(self, pod):
        return http(pod.ports["egress"], "GET", "/", headers=[("Host", "api.example")],
                    timeout=5).status

    def liveness_kill(self, pod, rotate_token=False):
        if rotate_token:  # the Secret rotated outside Helm, after sluice read it
            for f in os.listdir(os.path.join(pod.root, "volumes", "sluice-admin-token")):
                pod.write(os.path.join(pod.root, "volumes", "sluice-admin-token", f),
                          "rotated-token-0123456789")
        cp = pod.hook("app", "preStop")
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertIn('"phase":"done"', cp.stdout)
        self.assertEqual(pod.admin("/readyz").status, 503)
        pod.stop("app")
        pod.start("app")
        t0 = time.monotonic()
        cp = pod.hook("app", "postStart")
        self.assertEqual(cp.returncode, 0, cp.stderr)
        wait_for(lambda: pod.admin("/readyz").status == 200, 5, "ready again after the restart")
        wait_for(lambda: pod.ingress_serves(), 5, "ingress serves again after the restart")
        self.assertLess(time.monotonic() - t0, 5.0)

    def delete_native(self, pod, egress):
        # preStop, then the app's SIGTERM; sluice's own SIGTERM only after the app has exited.
        cp = pod.hook("app", "preStop")
        self.assertEqual(cp.returncode, 0, cp.stderr)
        if egress:
            self.assertEqual(self.egress_call(pod), 200)  # the app's shutdown calls out
        pod.stop("app")
        self.assertTrue(pod.procs["sluice"].alive(),
                        "sluice exited before the app:\n" + pod.log())
        t0 = time.monotonic()
        self.assertEqual(pod.stop("sluice"), 0)
        self.assertLess(time.monotonic() - t0, 3.0)

    # ---- the tests -----------------------------------------------------------------------------

    def test_native_with_egress_liveness_kill_then_deletion(self):
        pod = self.make_pod(native=True, egress=True)
        self.start_pod(pod)
        self.assertEqual(self.egress_call(pod), 200)
        self.liveness_kill(pod)
        self.liveness_kill(pod, rotate_token=True)  # and again, the token changed meanwhile
        self.assertEqual(self.egress_call(pod), 200)
        self.delete_native(pod, egress=True)

    def test_native_without_egress_liveness_kill_then_deletion(self):
        pod = self.make_pod(native=True, egress=False)
        self.start_pod(pod)
        self.liveness_kill(pod)
        self.delete_native(pod, egress=False)

    def test_plain_with_egress_liveness_kill_then_deletion(self):
        pod = self.make_pod(native=False, egress=True)
        self.assertEqual([c["name"] for c in pod.r.pod["containers"]], ["app", "sluice"])
        self.start_pod(pod)
        self.liveness_kill(pod)
        # Deletion: the app's preStop and sluice's SIGTERM at the same time.
        result = {}
        t = threading.Thread(target=lambda: result.update(cp=pod.hook("app", "preStop")))
        t.start()
        pod.procs["sluice"].proc.send_signal(signal.SIGTERM)
        t.join(30)
        self.assertEqual(result["cp"].returncode, 0, result["cp"].stderr)
        # The drain is over; the app now gets its SIGTERM and, shutting down, still calls out.
        wait_for(lambda: pod.admin("/drain").json()["phase"] == "done", 5, "drain done")
        self.assertEqual(self.egress_call(pod), 200)
        self.assertTrue(pod.procs["sluice"].alive(), "sluice exited before the app:\n" + pod.log())
        pod.stop("app")
        sluice = pod.procs["sluice"]
        self.assertEqual(sluice.proc.wait(timeout=5), 0, pod.log())
        sluice.wait_line(r"the app has gone: stopping", timeout=2)
        pod.procs.pop("sluice").kill()


if __name__ == "__main__":
    unittest.main()
