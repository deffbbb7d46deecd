"""sluice's chart as a dependency of a chart that owns its Deployment (charts/example-parent).

The example parent chart includes sluice's named templates (charts/sluice/templates/_sidecar.tpl)
in its own pod spec. Rendered with the same sluice values, its pod must have the same sluice
wiring as the sluice chart's own Deployment: init containers, the sluice container, the app's
hooks and mount, the volumes, the grace period, the config checksum, and the same ConfigMap.
The manifests validate (kubernetes-models), the dependency renders no Deployment of its own,
and a parent that forgets `standalone: false` is told so.

Run by ctest as chart.test_library, or directly:
    SLUICE_BIN=build/sluice /usr/bin/python3 tests/chart/test_library.py -v
"""

import copy
import os
import subprocess
import unittest

import yaml

import test_chart

PARENT = os.path.join(test_chart.ROOT, "charts", "example-parent")


class LibraryTest(test_chart.ChartTestCase):

    def render_parent(self, *files, **kw):
        cmd = [test_chart.RENDER, "-chart", PARENT, "-strict", "-name", "shop", "-namespace",
               "prod", "-kube-version", kw.get("kube_version", "1.31.0")]
        for f in files:
            cmd += ["-f", f]
        r = subprocess.run(cmd, capture_output=True, text=True)
        return r

    def parent(self, *files, **kw):
        r = self.render_parent(*files, **kw)
        self.assertEqual(r.returncode, 0, r.stderr)
        docs = [d for d in yaml.safe_load_all(r.stdout) if d]
        self.assert_valid_manifests(docs)
        return test_chart.Rendered(docs, None)

    def own(self, sluice_values, **kw):
        """The sluice chart's own render with the parent's values for it."""
        values = copy.deepcopy(sluice_values)
        values["standalone"] = True
        return self.render(self.write("own.yaml", yaml.safe_dump(values)), **kw)

    def parent_sluice_values(self, extra=None):
        with open(os.path.join(PARENT, "values.yaml")) as f:
            values = yaml.safe_load(f)["sluice"]
        if extra:
            values = merge(values, extra)
        return values

    def assert_same_wiring(self, parent, own):
        p, o = parent.pod, own.pod
        self.assertEqual(p["initContainers"], o["initContainers"])
        sidecars = lambda pod: [c for c in pod["containers"] if c["name"] != "app"]
        self.assertEqual(sidecars(p), sidecars(o))
        papp, oapp = parent.container("app"), own.container("app")
        self.assertEqual(papp["lifecycle"], oapp["lifecycle"])
        sluice_mounts = lambda c: [m for m in c["volumeMounts"] if m["name"].startswith("sluice")]
        self.assertEqual(sluice_mounts(papp), sluice_mounts(oapp))
        sluice_volumes = lambda pod: [v for v in pod["volumes"] if v["name"].startswith("sluice")]
        self.assertEqual(sluice_volumes(p), sluice_volumes(o))
        self.assertEqual(p["terminationGracePeriodSeconds"], o["terminationGracePeriodSeconds"])
        ann = lambda r: r.deployment["spec"]["template"]["metadata"]["annotations"]
        self.assertEqual(ann(parent), {k: v for k, v in ann(own).items()})
        cm = lambda r: r.by[("ConfigMap", "shop-sluice-config")]["data"]
        self.assertEqual(cm(parent), cm(own))

    def test_example_has_the_charts_own_sidecar_wiring(self):
        parent = self.parent()
        self.assertEqual(sorted(d["kind"] for d in parent.docs),
                         ["ConfigMap", "ConfigMap", "Deployment", "Secret", "Service"])
        self.assertEqual(parent.deployment["metadata"]["name"], "shop-shop")  # the parent's
        own = self.own(self.parent_sluice_values())
        self.assert_same_wiring(parent, own)
        self.assertEqual([c["name"] for c in parent.pod["initContainers"]],
                         ["sluice-tools", "sluice"])
        self.assertEqual(parent.container("app")["image"], "registry.example.com/shop:1.4.2")
        svc = parent.by[("Service", "shop-shop")]
        self.assertEqual(svc["spec"]["ports"][0]["targetPort"], 8080)

    def test_plain_container_mode_too(self):
        f = self.write("plain-parent.yaml", "sluice: {sluice: {native: false}}\n")
        parent = self.parent(f, kube_version="1.27.0")
        self.assertEqual([c["name"] for c in parent.pod["containers"]], ["app", "sluice"])
        own = self.own(self.parent_sluice_values({"sluice": {"native": False}}),
                       kube_version="1.27.0")
        self.assert_same_wiring(parent, own)

    def test_context_version_is_the_charts(self):
        with open(os.path.join(test_chart.CHART, "Chart.yaml")) as f:
            chart = yaml.safe_load(f)
        with open(os.path.join(test_chart.CHART, "templates", "_sidecar.tpl")) as f:
            tpl = f.read()
        self.assertIn('(dict "Name" "sluice" "Version" "%s" "AppVersion" "%s")'
                      % (chart["version"], chart["appVersion"]), tpl)

    def test_a_standalone_dependency_is_refused(self):
        r = self.render_parent(self.write("standalone.yaml", "sluice: {standalone: true}\n"))
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("set standalone: false", r.stderr)

    def test_native_sidecar_check_applies_to_the_parent(self):
        r = self.render_parent(kube_version="1.28.0")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("sluice.native=true needs Kubernetes 1.29", r.stderr)


def merge(base, extra):
    out = copy.deepcopy(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


if __name__ == "__main__":
    unittest.main()
