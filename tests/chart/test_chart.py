"""The Helm chart (charts/sluice), rendered by Helm's template engine without Helm.

render/main.go is Go's text/template with sprig plus Helm's own functions and objects (see its
header); validate.mjs checks the manifests with kubernetes-models and rejects unknown fields;
values.schema.json is checked with Python's jsonschema against the coalesced values, as Helm
does. The ConfigMap's sluice.yaml goes through the real `sluice check-config`. When `helm` is on
PATH, `helm lint --strict` and `helm template` run too, and must agree with the renderer.

Run by ctest as chart.test_chart (SLUICE_BIN = the built sluice), or directly:
    SLUICE_BIN=build/sluice /usr/bin/python3 tests/chart/test_chart.py -v
"""

import base64
import copy
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request

import jsonschema
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CHART = os.path.join(ROOT, "charts", "sluice")
VALUES = os.path.join(HERE, "values")
PHOENIX = os.path.join(CHART, "examples", "phoenix.yaml")
PLAIN = os.path.join(VALUES, "plain.yaml")
EXISTING = os.path.join(VALUES, "existing-secret.yaml")
SLUICE = os.environ.get("SLUICE_BIN", os.path.join(ROOT, "build", "sluice"))
# Where the renderer is built (ctest gives a folder under build/).
WORK = os.environ.get("CHART_TEST_DIR", os.path.join(ROOT, "build", "chart-test"))
RENDER = os.path.join(WORK, "render")
TOKEN_HEADER = "X-Sluice-Admin-Token"
MONITORING = "monitoring.coreos.com/v1"


def read(path):
    with open(path) as f:
        return f.read()


def build_renderer():
    os.makedirs(WORK, exist_ok=True)
    env = dict(os.environ, GO111MODULE="off", GOPATH="/usr/share/gocode", GOFLAGS="")
    env.setdefault("GOCACHE", os.path.join(WORK, "go-cache"))
    subprocess.run(["go", "build", "-o", RENDER, "."], cwd=os.path.join(HERE, "render"),
                   env=env, check=True)


def install_node_modules():
    """Checks that `make deps` installed node_modules from the lockfile (npm ci, then a stamp
    with the lockfile's SHA-256); the test never installs anything itself."""
    lock = os.path.join(HERE, "package-lock.json")
    stamp = os.path.join(HERE, "node_modules", ".sluice-lock-sha256")
    want = hashlib.sha256(read(lock).encode()).hexdigest()
    if not (os.path.exists(stamp) and read(stamp).strip() == want):
        raise AssertionError("tests/chart/node_modules is missing or older than "
                             "package-lock.json: run `make deps` (npm ci in tests/chart)")


class Rendered:
    """One render: the manifests by (kind, name), the coalesced values, the admin token."""

    def __init__(self, docs, values):
        self.docs = docs
        self.values = values
        self.by = {(d["kind"], d["metadata"]["name"]): d for d in docs}

    def kinds(self):
        return sorted(d["kind"] for d in self.docs)

    def one(self, kind):
        found = [d for d in self.docs if d["kind"] == kind]
        assert len(found) == 1, f"{len(found)} {kind} manifests"
        return found[0]

    @property
    def deployment(self):
        return self.one("Deployment")

    @property
    def pod(self):
        return self.deployment["spec"]["template"]["spec"]

    def container(self, name):
        pod = self.pod
        for c in pod.get("initContainers", []) + pod["containers"]:
            if c["name"] == name:
                return c
        raise AssertionError(f"no container {name}")

    @property
    def sluice_yaml(self):
        cms = [d for d in self.docs if d["kind"] == "ConfigMap" and "sluice.yaml" in d.get("data", {})]
        assert len(cms) == 1
        return cms[0]["data"]["sluice.yaml"]


class ChartTestCase(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        build_renderer()
        install_node_modules()
        cls.schema = json.loads(read(os.path.join(CHART, "values.schema.json")))
        jsonschema.Draft7Validator.check_schema(cls.schema)
        cls.tmp = tempfile.mkdtemp(prefix="sluice-chart-")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    # -- helpers ------------------------------------------------------------------------------

    def write(self, name, text):
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def run_render(self, *files, api_versions=(), kube_version="1.31.0", lookup=None,
                   notes=False, values_out=None, name="shop", namespace="prod"):
        cmd = [RENDER, "-chart", CHART, "-strict", "-name", name, "-namespace", namespace,
               "-kube-version", kube_version]
        for f in files:
            cmd += ["-f", f]
        for a in api_versions:
            cmd += ["-api-versions", a]
        if lookup is not None:
            cmd += ["-lookup", self.write("lookup.yaml", yaml.safe_dump_all(lookup))]
        if notes:
            cmd.append("-notes")
        if values_out:
            cmd += ["-values-out", values_out]
        return subprocess.run(cmd, capture_output=True, text=True)

    def render(self, *files, **kw):
        """Renders, validates the coalesced values against the schema and the manifests with
        kubernetes-models; returns a Rendered."""
        values_out = os.path.join(self.tmp, "values.json")
        r = self.run_render(*files, values_out=values_out, **kw)
        self.assertEqual(r.returncode, 0, r.stderr)
        values = json.loads(read(values_out))
        errors = sorted(jsonschema.Draft7Validator(self.schema).iter_errors(values), key=str)
        self.assertEqual([], [f"{list(e.path)}: {e.message}" for e in errors])
        docs = [d for d in yaml.safe_load_all(r.stdout) if d]
        self.assertTrue(docs)
        self.assert_valid_manifests(docs)
        return Rendered(docs, values)

    def validate_manifests(self, docs):
        r = subprocess.run(["node", os.path.join(HERE, "validate.mjs")], input=json.dumps(docs),
                           capture_output=True, text=True, cwd=HERE)
        self.assertEqual(r.returncode, 0, r.stderr)
        return json.loads(r.stdout)

    def assert_valid_manifests(self, docs):
        results = self.validate_manifests(docs)
        self.assertEqual(len(results), len(docs))
        bad = {f"{x['kind']}/{x['name']}": x["errors"] for x in results if x["errors"]}
        self.assertEqual({}, bad)

    def schema_errors(self, values_yaml):
        """Errors of values.schema.json for a user values file, coalesced with the defaults."""
        path = self.write("user-values.yaml", values_yaml)
        values_out = os.path.join(self.tmp, "values.json")
        r = self.run_render(path, values_out=values_out)
        self.assertTrue(os.path.exists(values_out), r.stderr)
        values = json.loads(read(values_out))
        os.unlink(values_out)
        return [(".".join(str(p) for p in e.absolute_path), e.message)
                for e in jsonschema.Draft7Validator(self.schema).iter_errors(values)], r

    def token_of(self, rendered):
        """The token in the chart's Secret. No pod spec carries it (the hooks use loopback)."""
        token = base64.b64decode(rendered.one("Secret")["data"]["token"]).decode()
        self.assertNotIn(token, json.dumps(rendered.deployment))
        self.assertNotIn(TOKEN_HEADER, json.dumps(rendered.deployment))
        return token

    def assert_hooks(self, rendered, admin):
        """The app's hooks run the static sluice-drain over loopback; sluice-tools copies it."""
        app = rendered.container("app")
        self.assertEqual(app["lifecycle"], {
            "preStop": {"exec": {"command": ["/sluice-bin/sluice-drain", "--admin", admin,
                                             "--wait"]}},
            "postStart": {"exec": {"command": ["/sluice-bin/sluice-drain", "--admin", admin,
                                               "--resume"]}}})
        self.assertIn({"name": "sluice-bin", "mountPath": "/sluice-bin", "readOnly": True},
                      app["volumeMounts"])
        tools = rendered.pod["initContainers"][0]
        self.assertEqual(tools["name"], "sluice-tools")
        self.assertEqual(tools["command"],
                         ["cp", "/usr/local/bin/sluice-drain", "/sluice-bin/sluice-drain"])
        self.assertNotIn("restartPolicy", tools)  # runs to completion before the others
        self.assertEqual(tools["volumeMounts"], [{"name": "sluice-bin", "mountPath": "/sluice-bin"}])
        vol = {v["name"]: v for v in rendered.pod["volumes"]}["sluice-bin"]
        self.assertIn("emptyDir", vol)

    def check_config(self, rendered, secret_token):
        """Runs the real `sluice check-config` over the ConfigMap's sluice.yaml, with the Secret
        mounted where the pod has it (its path moved into a temporary folder)."""
        d = tempfile.mkdtemp(dir=self.tmp)
        text = rendered.sluice_yaml
        m = re.search(r"^  token_file: (/etc/sluice/admin/)(\S+)$", text, re.M)
        self.assertIsNotNone(m, text)
        with open(os.path.join(d, m.group(2)), "w") as f:
            f.write(secret_token)
        text = text.replace(m.group(1), d + "/")
        path = os.path.join(d, "sluice.yaml")
        with open(path, "w") as f:
            f.write(text)
        r = subprocess.run([SLUICE, "check-config", path], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(r.stdout.strip(), f"{path}: ok")
        self.assertNotIn("warning", r.stderr)
        r = subprocess.run([SLUICE, "--config", path, "--print-config"], capture_output=True,
                           text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        cfg = yaml.safe_load(r.stdout)
        # sluice reads the token from where the pod mounts the Secret.
        self.assertEqual(cfg["admin"]["token_file"], os.path.join(d, m.group(2)))
        return cfg


class DefaultsTest(ChartTestCase):
    """`helm install` with nothing but the chart's values.yaml."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        # One render for every test of the class (a TestCase instance lends its assertions).
        cls.r = cls("test_objects").render()

    def test_objects(self):
        self.assertEqual(self.r.kinds(), ["ConfigMap", "ConfigMap", "Deployment",
                                          "PodDisruptionBudget", "Secret", "Service"])
        self.assertNotIn("ServiceMonitor", self.r.kinds())

    def test_native_sidecar_and_probes(self):
        pod = self.r.pod
        self.assertEqual([c["name"] for c in pod["initContainers"]], ["sluice-tools", "sluice"])
        self.assertEqual([c["name"] for c in pod["containers"]], ["app"])
        s = pod["initContainers"][1]
        self.assertEqual(s["restartPolicy"], "Always")
        self.assertEqual(s["image"], "sluice:0.1.0")
        self.assertEqual(s["args"], ["--config", "/etc/sluice/config/sluice.yaml"])
        probe = lambda p: (p["httpGet"]["path"], p["httpGet"]["port"])
        # The startup probe gates the app's start: /healthz, since /readyz waits for the app.
        self.assertEqual(probe(s["startupProbe"]), ("/healthz", 9901))
        self.assertEqual(probe(s["readinessProbe"]), ("/readyz", 9901))
        self.assertEqual(probe(s["livenessProbe"]), ("/healthz", 9901))
        ports = {p["name"]: p["containerPort"] for p in s["ports"]}
        self.assertEqual(ports, {"http": 8080, "admin": 9901})

    def test_app_is_the_demo_app(self):
        app = self.r.container("app")
        self.assertEqual(app["image"], "sluice:0.1.0")
        self.assertEqual(app["args"], ["demo-app", "--listen", "127.0.0.1:4000"])

    def test_hooks_drain_and_resume_over_loopback_without_the_token(self):
        self.assert_hooks(self.r, "127.0.0.1:9901")
        token = self.token_of(self.r)
        self.assertRegex(token, r"^[A-Za-z0-9]{40}$")
        secret = self.r.one("Secret")
        self.assertEqual(base64.b64decode(secret["data"]["token"]).decode(), token)
        # sluice reads the same Secret.
        vol = {v["name"]: v for v in self.r.pod["volumes"]}["sluice-admin-token"]
        self.assertEqual(vol["secret"]["secretName"], secret["metadata"]["name"])
        mount = {m["name"]: m for m in self.r.container("sluice")["volumeMounts"]}["sluice-admin-token"]
        self.assertIn(f"token_file: {mount['mountPath']}/token", self.r.sluice_yaml)

    def test_grace_period(self):
        self.assertEqual(self.r.pod["terminationGracePeriodSeconds"], 5 + 25 + 5)

    def test_security(self):
        pod = self.r.pod
        self.assertIs(pod["securityContext"]["runAsNonRoot"], True)
        self.assertIsInstance(pod["securityContext"]["runAsUser"], int)
        self.assertGreater(pod["securityContext"]["runAsUser"], 0)
        self.assertEqual(pod["securityContext"]["seccompProfile"], {"type": "RuntimeDefault"})
        self.assertIs(pod["automountServiceAccountToken"], False)
        for name in ("sluice-tools", "sluice", "app"):
            sc = self.r.container(name)["securityContext"]
            self.assertIs(sc["readOnlyRootFilesystem"], True, name)
            self.assertIs(sc["allowPrivilegeEscalation"], False, name)
            self.assertEqual(sc["capabilities"], {"drop": ["ALL"]}, name)

    def test_service_targets_sluice(self):
        svc = self.r.one("Service")
        self.assertEqual(svc["spec"]["ports"], [{"name": "http", "port": 80, "targetPort": 8080,
                                                 "protocol": "TCP", "appProtocol": "http"}])
        labels = self.r.deployment["spec"]["template"]["metadata"]["labels"]
        for k, v in svc["spec"]["selector"].items():
            self.assertEqual(labels[k], v)
        pdb = self.r.one("PodDisruptionBudget")
        self.assertEqual(pdb["spec"]["maxUnavailable"], 1)
        self.assertEqual(pdb["spec"]["selector"]["matchLabels"], svc["spec"]["selector"])
        strategy = self.r.deployment["spec"]["strategy"]
        self.assertEqual(strategy["rollingUpdate"], {"maxSurge": 1, "maxUnavailable": 0})

    def test_prometheus_annotations(self):
        ann = self.r.deployment["spec"]["template"]["metadata"]["annotations"]
        self.assertEqual(ann["prometheus.io/scrape"], "true")
        self.assertEqual(ann["prometheus.io/port"], "9901")
        self.assertEqual(ann["prometheus.io/path"], "/metrics")
        self.assertEqual(ann["checksum/config"],
                         hashlib.sha256(self.r.sluice_yaml.rstrip("\n").encode()).hexdigest())

    def test_sluice_yaml_passes_check_config(self):
        cfg = self.check_config(self.r, self.token_of(self.r))
        self.assertEqual(cfg["admin"]["address"], "0.0.0.0:9901")
        self.assertEqual([l["name"] for l in cfg["listeners"]], ["ingress"])
        self.assertEqual(cfg["listeners"][0]["address"], "0.0.0.0:8080")
        app = {c["name"]: c for c in cfg["clusters"]}["app"]
        self.assertEqual(app["endpoints"], ["127.0.0.1:4000"])
        self.assertIs(app["readiness"], True)
        self.assertEqual(app["pool"]["idle_timeout"], "4s")
        self.assertEqual((cfg["drain"]["delay"], cfg["drain"]["budget"]), ("5s", "25s"))
        self.assertIs(cfg["drain"]["wait_for_app"], False)  # native: SIGTERM comes after the app
        self.assertEqual(cfg["log"]["format"], "json")


class NonDefaultValuesTest(ChartTestCase):
    def test_plain_container_mode(self):
        r = self.render(PLAIN, kube_version="1.27.3")
        pod = r.pod
        self.assertEqual([c["name"] for c in pod["initContainers"]], ["sluice-tools"])
        self.assertEqual([c["name"] for c in pod["containers"]], ["app", "sluice"])
        s = r.container("sluice")
        self.assertNotIn("restartPolicy", s)
        probe = lambda p: (p["httpGet"]["path"], p["httpGet"]["port"])
        self.assertEqual(probe(s["startupProbe"]), ("/healthz", 9100))
        self.assertEqual(probe(s["readinessProbe"]), ("/readyz", 9100))
        self.assertEqual(probe(s["livenessProbe"]), ("/healthz", 9100))
        self.assertEqual(s["env"], [{"name": "SLUICE_LOG_LEVEL", "value": "debug"}])
        app = r.container("app")
        self.assertEqual((app["image"], app["command"], app["args"]),
                         ("ghcr.io/example/web:2.0", ["node"], ["server.js"]))
        self.assertEqual(app["readinessProbe"]["httpGet"]["path"], "/health")
        self.assertEqual([m["name"] for m in app["volumeMounts"]], ["sluice-bin"])  # no tmp
        self.assert_hooks(r, "127.0.0.1:9100")
        self.assertEqual(self.token_of(r), "0123456789abcdef-given-token")
        self.assertEqual(base64.b64decode(r.one("Secret")["data"]["token"]).decode(),
                         "0123456789abcdef-given-token")
        # 500ms rounds up to 1 s; 20 s budget; 1m margin.
        self.assertEqual(pod["terminationGracePeriodSeconds"], 1 + 20 + 60)
        for c in pod["containers"]:
            sc = c["securityContext"]
            self.assertEqual((sc["readOnlyRootFilesystem"], sc["allowPrivilegeEscalation"],
                              sc["capabilities"]), (True, False, {"drop": ["ALL"]}))
        svc = r.one("Service")
        self.assertEqual((svc["metadata"]["name"], svc["spec"]["type"]), ("web", "NodePort"))
        self.assertEqual(svc["spec"]["ports"][0]["targetPort"], 9000)
        self.assertEqual(r.one("PodDisruptionBudget")["spec"]["maxUnavailable"], "25%")
        self.assertEqual(r.deployment["spec"]["replicas"], 3)
        meta = r.deployment["spec"]["template"]["metadata"]
        self.assertNotIn("prometheus.io/scrape", meta["annotations"])
        self.assertEqual(meta["annotations"]["example.com/owner"], "web-team")
        self.assertEqual(meta["labels"]["team"], "web")
        dash = [d for d in r.docs if d["metadata"]["name"] == "web-dashboard"][0]
        self.assertEqual(dash["metadata"]["namespace"], "monitoring")

    def test_plain_mode_sluice_yaml(self):
        r = self.render(PLAIN, kube_version="1.27.3")
        cfg = self.check_config(r, self.token_of(r))
        listeners = {l["name"]: l for l in cfg["listeners"]}
        self.assertEqual(listeners["ingress"]["address"], "0.0.0.0:9000")
        egress = listeners["egress"]
        self.assertEqual(egress["address"], "127.0.0.1:9200")
        self.assertIs(egress["drain"], False)
        self.assertEqual([(x.get("host"), x["cluster"]) for x in egress["routes"]],
                         [("api.payments.example", "payments"), ("*.googleapis.com", "google"),
                          ("googleapis.com", "google"), ("legacy.internal", "legacy")])
        clusters = {c["name"]: c for c in cfg["clusters"]}
        self.assertEqual(sorted(clusters), ["app", "google", "legacy", "payments"])
        self.assertEqual(clusters["app"]["endpoints"], ["127.0.0.1:3000"])
        self.assertEqual(clusters["app"]["load_balancing"], "least_request")
        self.assertEqual(clusters["app"]["pool"]["max_requests_per_connection"], 1000)
        self.assertEqual(clusters["payments"]["tls"]["min_version"], "1.3")
        self.assertEqual(clusters["payments"]["outlier"]["consecutive_failures"], 5)
        self.assertEqual(clusters["legacy"]["endpoints"], ["10.0.0.7:8080", "[fd00::7]:8080"])
        self.assertIs(clusters["legacy"]["readiness"], False)
        self.assertEqual(cfg["drain"]["delay"], "500ms")
        self.assertIs(cfg["drain"]["wait_for_app"], True)  # plain container: outlive the app
        self.assertEqual(cfg["limits"]["max_body_bytes"], "10MiB")
        self.assertEqual((cfg["log"]["format"], cfg["log"]["level"], cfg["log"]["access"]),
                         ("text", "warn", False))
        self.assertEqual(cfg["workers"], 1)

    def test_phoenix_example(self):
        r = self.render(PHOENIX)
        self.assertEqual(r.pod["terminationGracePeriodSeconds"], 5 + 30 + 10)
        app = r.container("app")
        self.assertEqual(app["image"], "registry.example.com/shop:1.4.2")
        self.assertNotIn("args", app)
        self.assertEqual(r.container("sluice")["image"], "registry.example.com/sluice:0.1.0")
        cfg = self.check_config(r, self.token_of(r))
        clusters = {c["name"]: c for c in cfg["clusters"]}
        self.assertEqual(clusters["app"]["endpoints"], ["127.0.0.1:4000"])
        self.assertEqual(clusters["stripe"]["endpoints"], ["api.stripe.com:443"])
        self.assertIs(clusters["stripe"]["tls"]["verify"], True)
        egress = {l["name"]: l for l in cfg["listeners"]}["egress"]
        self.assertEqual(egress["address"], "127.0.0.1:8081")
        self.assertIs(egress["drain"], False)
        # The example's HTTP_PROXY is the egress listener.
        env = {e["name"]: e.get("value") for e in app["env"]}
        self.assertEqual(env["HTTP_PROXY"], "http://" + egress["address"])

    def test_grace_period_is_derived(self):
        cases = [("5s", "25s", "5s", 35), ("0s", "25s", "0s", 25), ("1500ms", "1m", "5s", 2 + 60 + 5),
                 ("2m", "1h", "30s", 120 + 3600 + 30)]
        for delay, budget, margin, want in cases:
            f = self.write("grace.yaml", yaml.safe_dump(
                {"sluice": {"drain": {"delay": delay, "budget": budget}},
                 "terminationGraceMargin": margin}))
            r = self.run_render(f)
            self.assertEqual(r.returncode, 0, r.stderr)
            pod = [d for d in yaml.safe_load_all(r.stdout) if d and d["kind"] == "Deployment"][0]
            self.assertEqual(pod["spec"]["template"]["spec"]["terminationGracePeriodSeconds"],
                             want, (delay, budget, margin))

    def test_native_sidecar_needs_kubernetes_1_29(self):
        r = self.run_render(kube_version="1.28.9")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("sluice.native=true needs Kubernetes 1.29", r.stderr)
        # EKS/GKE style versions with a pre-release part count as their release.
        self.assertEqual(self.run_render(kube_version="v1.29.4-eks-036c24b").returncode, 0)

    def test_port_collisions_fail(self):
        for values, message in [
            ({"app": {"port": 8080}}, "app.port 8080 is one of sluice's ports"),
            ({"app": {"port": 8081}, "egress": {"apis": [
                {"name": "x", "hosts": ["x.example"], "endpoints": ["x.example:443"]}]}},
             "app.port 8081 is one of sluice's ports"),
            ({"sluice": {"ports": {"http": 9901}}}, "must differ"),
            ({"egress": {"apis": [{"name": "x", "hosts": ["a.example"], "endpoints": ["a:1"]},
                                  {"name": "x", "hosts": ["b.example"], "endpoints": ["b:1"]}]}},
             "two APIs have the same name"),
        ]:
            r = self.run_render(self.write("bad.yaml", yaml.safe_dump(values)))
            self.assertNotEqual(r.returncode, 0, values)
            self.assertIn(message, r.stderr)

    def test_replicas_null_leaves_them_to_an_hpa(self):
        self.assertEqual(self.render().deployment["spec"]["replicas"], 2)
        r = self.render(self.write("hpa.yaml", "replicas: null\n"))
        self.assertNotIn("replicas", r.deployment["spec"])

    def test_default_topology_spread(self):
        spread = self.render().pod["topologySpreadConstraints"]
        self.assertEqual([(c["topologyKey"], c["whenUnsatisfiable"], c["maxSkew"]) for c in spread],
                         [("kubernetes.io/hostname", "ScheduleAnyway", 1),
                          ("topology.kubernetes.io/zone", "ScheduleAnyway", 1)])
        for c in spread:
            self.assertEqual(c["labelSelector"]["matchLabels"],
                             {"app.kubernetes.io/name": "sluice", "app.kubernetes.io/instance": "shop"})
        mine = [{"maxSkew": 2, "topologyKey": "kubernetes.io/hostname",
                 "whenUnsatisfiable": "DoNotSchedule",
                 "labelSelector": {"matchLabels": {"app": "x"}}}]
        r = self.render(self.write("spread.yaml", yaml.safe_dump({"topologySpreadConstraints": mine})))
        self.assertEqual(r.pod["topologySpreadConstraints"], mine)

    def test_ipv6_bind_address(self):
        r = self.render(self.write("v6.yaml", "sluice: {bindAddress: '[::]'}\n"))
        cfg = self.check_config(r, self.token_of(r))
        self.assertEqual(cfg["admin"]["address"], "[::]:9901")
        self.assertEqual(cfg["listeners"][0]["address"], "[::]:8080")
        self.assert_hooks(r, "[::1]:9901")  # loopback of the same family
        errors, _ = self.schema_errors("sluice: {bindAddress: '::'}\n")
        self.assertTrue(any(p == "sluice.bindAddress" for p, _ in errors), errors)

    def test_app_image_needs_a_tag(self):
        r = self.run_render(self.write("notag.yaml", "app: {image: {repository: example/app}}\n"))
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("app.image.tag is required", r.stderr)


class AdminTokenTest(ChartTestCase):
    def secret(self, name, key, token, namespace="prod"):
        return {"apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": name, "namespace": namespace},
                "data": {key: base64.b64encode(token.encode()).decode()}}

    def test_generated_token_is_kept_on_upgrade(self):
        first = self.render()
        token = self.token_of(first)
        # A second install generates another one...
        self.assertNotEqual(self.token_of(self.render()), token)
        # ...but an upgrade finds the chart's Secret and keeps its token.
        kept = self.render(lookup=[self.secret("shop-sluice-admin-token", "token", token)])
        self.assertEqual(self.token_of(kept), token)
        self.assertEqual(base64.b64decode(kept.one("Secret")["data"]["token"]).decode(), token)

    def test_existing_secret(self):
        # Only mounted: the chart never reads it (helm template works), and since no pod spec
        # carries the token, rotating the Secret outside Helm cannot make a hook skip the drain.
        token = "existing-token-0123456789"
        r = self.render(EXISTING)
        self.assertNotIn("Secret", r.kinds())
        self.assertNotIn(TOKEN_HEADER, json.dumps(r.deployment))
        self.assert_hooks(r, "127.0.0.1:9901")
        vol = {v["name"]: v for v in r.pod["volumes"]}["sluice-admin-token"]
        self.assertEqual(vol["secret"], {"secretName": "web-admin",
                                         "items": [{"key": "admin-token", "path": "admin-token"}]})
        self.assertIn("token_file: /etc/sluice/admin/admin-token", r.sluice_yaml)
        self.check_config(r, token + "\n")

    def test_a_short_token_value_fails(self):
        r = self.run_render(self.write("short.yaml", "sluice: {adminToken: {value: short}}\n"))
        self.assertNotEqual(r.returncode, 0)


class MonitoringTest(ChartTestCase):
    def test_service_monitor_only_with_the_api(self):
        self.assertNotIn("ServiceMonitor", self.render().kinds())
        r = self.render(PHOENIX, api_versions=[MONITORING])
        sm = r.one("ServiceMonitor")
        self.assertEqual(sm["metadata"]["labels"]["release"], "kube-prometheus-stack")
        self.assertEqual(sm["spec"]["endpoints"], [{"port": "admin", "path": "/metrics",
                                                    "interval": "15s"}])
        self.assertEqual(sm["spec"]["namespaceSelector"], {"matchNames": ["prod"]})
        # The Service it selects exposes sluice's admin port under that name, and only that one.
        services = [d for d in r.docs if d["kind"] == "Service"]
        selected = [s for s in services if all(s["metadata"]["labels"].get(k) == v for k, v in
                                              sm["spec"]["selector"]["matchLabels"].items())]
        self.assertEqual(len(selected), 1)
        self.assertEqual(selected[0]["spec"]["ports"],
                         [{"name": "admin", "port": 9901, "targetPort": 9901, "protocol": "TCP"}])
        pod_labels = r.deployment["spec"]["template"]["metadata"]["labels"]
        for k, v in selected[0]["spec"]["selector"].items():
            self.assertEqual(pod_labels[k], v)
        # The app's Service does not expose the admin port.
        app_svc = [s for s in services if s is not selected[0]][0]
        self.assertEqual([p["targetPort"] for p in app_svc["spec"]["ports"]], [8080])
        # Turned off by value even where the API exists.
        off = self.write("nosm.yaml", "metrics: {serviceMonitor: {enabled: false}}\n")
        self.assertNotIn("ServiceMonitor", self.render(off, api_versions=[MONITORING]).kinds())

    def test_dashboard(self):
        r = self.render()
        cm = [d for d in r.docs if d["metadata"]["name"] == "shop-sluice-dashboard"][0]
        self.assertEqual(cm["metadata"]["labels"]["grafana_dashboard"], "1")
        dash = json.loads(cm["data"]["sluice.json"])
        # The file's dashboard, with a uid and title of the release's own.
        want = json.loads(read(os.path.join(CHART, "dashboards", "sluice.json")))
        self.assertRegex(dash["uid"], r"^sluice-[0-9a-f]{16}$")
        self.assertEqual(dash["title"], "sluice (prod/shop-sluice)")
        self.assertEqual(dict(dash, uid="sluice", title="sluice"), want)
        other = [d for d in self.render(name="cart").docs
                 if d["metadata"]["name"] == "cart-sluice-dashboard"][0]
        other_uid = json.loads(other["data"]["sluice.json"])["uid"]
        self.assertNotEqual(other_uid, dash["uid"], "two releases, one dashboard uid")
        self.assertLessEqual(len(dash["uid"]), 40)  # Grafana's limit
        exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
        titles = " ".join(p["title"] for p in dash["panels"]).lower()
        for topic in ("requests", "errors", "latency", "pool reuse", "websocket", "drain"):
            self.assertIn(topic, titles)
        used = set()
        for e in exprs:
            used |= set(re.findall(r"\b((?:sluice|process)_[a-z_]+)", e))
        used = {re.sub(r"_(bucket|sum|count)$", "", m) for m in used}
        self.assertGreaterEqual(len(used), 15)
        # Every metric the dashboard uses is one sluice really exports, and documented.
        exported = self.exported_metric_families()
        self.assertEqual(sorted(used - exported), [])
        readme = read(os.path.join(ROOT, "README.md"))
        self.assertEqual([m for m in sorted(used) if f"`{m}`" not in readme], [])
        self.assertNotIn("dashboard", " ".join(
            d["metadata"]["name"] for d in self.render(
                self.write("nodash.yaml", "metrics: {dashboard: {enabled: false}}\n")).docs))

    def exported_metric_families(self):
        """The metric families of a running sluice's /metrics."""
        p = subprocess.Popen([SLUICE, "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
                              "--upstream", "127.0.0.1:9", "--workers", "1",
                              "--drain-delay", "0s"], stderr=subprocess.PIPE, text=True)
        try:
            line = p.stderr.readline()
            m = re.search(r"admin 127\.0\.0\.1:(\d+)", line)
            self.assertIsNotNone(m, line)
            with urllib.request.urlopen(f"http://127.0.0.1:{m.group(1)}/metrics",
                                        timeout=5) as resp:
                text = resp.read().decode()
        finally:
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=10)
            p.stderr.close()
        return set(re.findall(r"^# TYPE (\S+) ", text, re.M))

    def test_scrape_annotations_or_service_monitor_not_both(self):
        ann = lambda r: r.deployment["spec"]["template"]["metadata"]["annotations"]
        # auto: annotations where no ServiceMonitor is made...
        self.assertEqual(ann(self.render())["prometheus.io/scrape"], "true")
        # ...and none where one is.
        r = self.render(api_versions=[MONITORING])
        self.assertIn("ServiceMonitor", r.kinds())
        self.assertNotIn("prometheus.io/scrape", ann(r))
        both = self.write("both.yaml", "metrics: {podAnnotations: true}\n")
        self.assertEqual(ann(self.render(both, api_versions=[MONITORING]))["prometheus.io/scrape"],
                         "true")
        off = self.write("off.yaml", "metrics: {podAnnotations: false}\n")
        self.assertNotIn("prometheus.io/scrape", ann(self.render(off)))

    def test_notes(self):
        r = self.run_render(notes=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        # Every pod of the release, the old ones draining included, each line with its pod.
        self.assertIn("kubectl --namespace prod logs -f --prefix --max-log-requests 20 -c sluice "
                      "-l app.kubernetes.io/name=sluice,app.kubernetes.io/instance=shop", r.stdout)
        self.assertNotIn("logs deployment/", r.stdout)
        self.assertIn("kubelet at 1.29 or later", r.stdout)
        self.assertNotIn("WARNING", r.stdout)
        # Nodes that lookup can list: those with an older kubelet are named.
        node = lambda name, v: {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
                                "status": {"nodeInfo": {"kubeletVersion": v}}}
        r = self.run_render(notes=True, lookup=[node("a", "v1.30.2"), node("b", "v1.28.9-eks-1")])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("older than 1.29, where this pod would never start: b (v1.28.9-eks-1)",
                      r.stdout)
        r = self.run_render(notes=True)
        self.assertIn("kubectl --namespace prod port-forward deployment/shop-sluice 9901:9901",
                      r.stdout)
        self.assertIn("http://127.0.0.1:9901/", r.stdout)
        self.assertIn("grace period is 35s", r.stdout)
        self.assertIn("no ServiceMonitor", r.stdout)
        r = self.run_render(PLAIN, notes=True, kube_version="1.27.0", api_versions=[MONITORING])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("port-forward deployment/web 9100:9100", r.stdout)
        self.assertIn("http://127.0.0.1:9100/", r.stdout)
        self.assertIn("a second container", r.stdout)
        self.assertIn("ServiceMonitor web", r.stdout)
        self.assertNotIn("<no value>", r.stdout)


class SchemaTest(ChartTestCase):
    def test_every_values_file_is_valid(self):
        for f in (os.path.join(CHART, "values.yaml"), PHOENIX, PLAIN, EXISTING):
            errors, _ = self.schema_errors(read(f))
            self.assertEqual(errors, [], f)

    def test_invalid_values_are_rejected(self):
        cases = [
            # A misspelt key, at the top and deep down.
            ("replica: 3\n", "", "'replica' was unexpected"),
            ("sluice:\n  drain:\n    dealy: 5s\n", "sluice.drain", "'dealy' was unexpected"),
            ("app:\n  imag: {repository: x}\n", "app", "'imag' was unexpected"),
            ("egress:\n  apis:\n    - {name: s, hosts: [s.example], endpoint: [s.example:443]}\n",
             "egress.apis.0", "'endpoints' is a required property"),
            # Wrong types.
            ("replicas: two\n", "replicas", "is not of type 'integer'"),
            ("sluice:\n  native: 'yes'\n", "sluice.native", "is not of type 'boolean'"),
            ("app:\n  port: '4000'\n", "app.port", "is not of type 'integer'"),
            ("app:\n  env: {NAME: value}\n", "app.env", "is not of type 'array'"),
            # Values that would break sluice or the pod.
            ("sluice:\n  drain:\n    delay: 5\n", "sluice.drain.delay", "is not of type 'string'"),
            ("sluice:\n  drain:\n    budget: 25 seconds\n", "sluice.drain.budget", "does not match"),
            ("app:\n  port: 70000\n", "app.port", "is greater than the maximum"),
            ("sluice:\n  log: {format: yaml}\n", "sluice.log.format", "is not one of"),
            ("sluice:\n  adminToken: {value: short}\n", "sluice.adminToken.value", "does not match"),
            ("egress:\n  apis:\n    - {name: app, hosts: [a.example], endpoints: ['a:1']}\n",
             "egress.apis.0.name", "should not be valid"),
            ("egress:\n  apis:\n    - {name: s, hosts: [s.example], endpoints: [s.example]}\n",
             "egress.apis.0.endpoints.0", "does not match"),
            ("sluice:\n  drain: null\n", "sluice", "'drain' is a required property"),
        ]
        for text, path, message in cases:
            errors, r = self.schema_errors(text)
            self.assertTrue(any(p == path and message in m for p, m in errors),
                            f"{text!r}: want {path}: {message}, got {errors}")

    def test_a_typo_is_caught_by_the_schema_only(self):
        # The templates never read a misspelt key, so without the schema it would pass silently.
        errors, r = self.schema_errors("sluice:\n  drain:\n    dealy: 5s\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(errors)


class ValidatorTest(ChartTestCase):
    """validate.mjs itself: it must reject what the API server would."""

    def test_rejects_unknown_fields_wrong_types_and_missing_fields(self):
        base = self.render().deployment
        typo = copy.deepcopy(base)
        typo["spec"]["template"]["spec"]["containers"][0]["securityContxt"] = {}
        typo["spec"]["template"]["spec"]["terminationGracePeriod"] = 30
        wrong = copy.deepcopy(base)
        wrong["spec"]["replicas"] = "2"
        missing = copy.deepcopy(base)
        del missing["spec"]["template"]["spec"]["containers"][0]["name"]
        unknown_kind = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
        sm = {"apiVersion": MONITORING, "kind": "ServiceMonitor", "metadata": {"name": "m"},
              "spec": {"selector": {}, "endpoints": [{"port": "admin", "intervall": "15s"}]}}
        results = self.validate_manifests([base, typo, wrong, missing, unknown_kind, sm])
        errors = [" ".join(x["errors"]) for x in results]
        self.assertEqual(errors[0], "")
        self.assertIn('/spec/template/spec/containers/0/securityContxt: unknown field', errors[1])
        self.assertIn('/spec/template/spec/terminationGracePeriod: unknown field', errors[1])
        self.assertIn("/spec/replicas must be integer", errors[2])
        self.assertIn("name", errors[3])
        self.assertIn("required", errors[3])
        self.assertIn("no model for apiVersion example.com/v1 kind Widget", errors[4])
        self.assertIn('/spec/endpoints/0/intervall: unknown field', errors[5])


class ChartMetadataTest(ChartTestCase):
    def test_chart_yaml(self):
        chart = yaml.safe_load(read(os.path.join(CHART, "Chart.yaml")))
        self.assertEqual(chart["apiVersion"], "v2")
        self.assertEqual(chart["name"], "sluice")
        self.assertRegex(chart["version"], r"^\d+\.\d+\.\d+$")
        version = re.search(r"project\(sluice VERSION (\S+)",
                            read(os.path.join(ROOT, "CMakeLists.txt"))).group(1)
        self.assertEqual(chart["appVersion"], version)
        r = subprocess.run([SLUICE, "--version"], capture_output=True, text=True)
        self.assertIn(version, r.stdout + r.stderr)

    HELM_CASES = [((), (), "1.31.0"), ((PHOENIX,), (MONITORING,), "1.31.0"),
                  ((PLAIN,), (MONITORING,), "1.27.0")]

    def test_renderer_strict(self):
        """The renderer in strict mode (missingkey=error, as helm lint --strict) over every
        values file."""
        for files, apis, kube in self.HELM_CASES:
            r = self.run_render(*files, api_versions=apis, kube_version=kube)
            self.assertEqual(r.returncode, 0, r.stderr)

    @unittest.skipIf(shutil.which("helm") is None,
                     "helm is not on PATH: Helm's own lint and template never ran, only "
                     "tests/chart/render (Helm's template engine rebuilt from Go sources)")
    def test_helm_agrees(self):
        """`helm lint --strict` and `helm template` agree with the renderer."""
        helm = shutil.which("helm")
        for files, apis, kube in self.HELM_CASES:
            args = [a for f in files for a in ("-f", f)]
            lint = subprocess.run([helm, "lint", "--strict", CHART, "--kube-version", kube] + args,
                                  capture_output=True, text=True)
            self.assertEqual(lint.returncode, 0, lint.stdout + lint.stderr)
            api_args = [a for v in apis for a in ("--api-versions", v)]
            out = subprocess.run([helm, "template", "shop", CHART, "--namespace", "prod",
                                  "--kube-version", kube] + api_args + args,
                                 capture_output=True, text=True)
            self.assertEqual(out.returncode, 0, out.stderr)
            ours = self.run_render(*files, api_versions=apis, kube_version=kube)
            theirs_docs = [d for d in yaml.safe_load_all(out.stdout) if d]
            ours_docs = [d for d in yaml.safe_load_all(ours.stdout) if d]
            key = lambda d: (d["kind"], d["metadata"]["name"])
            self.assertEqual(sorted(map(key, theirs_docs)), sorted(map(key, ours_docs)))
            # Equal but for the generated token (and what hashes it).
            strip = lambda docs: json.loads(re.sub(r'"(token|value)": "[^"]*"', '"\\1": ""',
                                                   json.dumps(sorted(docs, key=key))))
            self.assertEqual(strip(theirs_docs), strip(ours_docs))


if __name__ == "__main__":
    unittest.main()
