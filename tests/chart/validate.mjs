// Validates Kubernetes manifests with kubernetes-models (and @kubernetes-models/prometheus-operator).
//
// Input on stdin: a JSON array of manifests (test_chart.py parses the YAML stream with PyYAML).
// Output on stdout: a JSON array with one entry per manifest: {kind, name, errors: [...]}.
// Exit status 0 whether or not manifests are invalid (the caller reads the errors); 1 if the
// input cannot be read.
//
// Two checks per manifest:
//  1. the model's own validate(): types, enums, formats and required fields of the API version;
//  2. unknown fields: the models' validators ignore properties their schema does not name (the
//     OpenAPI schemas do not say additionalProperties: false), so a misspelt field such as
//     `securityContxt` would pass. The same validator is run again on a copy of the manifest
//     wrapped in Proxies that record which properties it reads: a validator reads every property
//     its schema names, and enumerates the keys of free-form maps (labels, annotations, data), so
//     a key that was neither read nor enumerated is one the API does not have.
import { readFileSync } from "node:fs";
import { Deployment } from "kubernetes-models/apps/v1";
import { ConfigMap, Secret, Service } from "kubernetes-models/v1";
import { PodDisruptionBudget } from "kubernetes-models/policy/v1";
import { ServiceMonitor, PodMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1";

const MODELS = new Map(
  [Deployment, ConfigMap, Secret, Service, PodDisruptionBudget, ServiceMonitor, PodMonitor].map((m) => [
    `${m.apiVersion}/${m.kind}`,
    m,
  ]),
);

function describe(err) {
  if (err && Array.isArray(err.errors)) {
    return err.errors.map((e) => `${e.instancePath || "/"} ${e.message || e.keyword} ${JSON.stringify(e.params || {})}`);
  }
  return [String(err && err.message ? err.message : err)];
}

// A deep copy of `value` whose objects record the properties read and whether keys were listed.
function tracked(value, path, records) {
  if (Array.isArray(value)) {
    return new Proxy(
      value.map((v, i) => tracked(v, `${path}/${i}`, records)),
      {},
    );
  }
  if (value !== null && typeof value === "object") {
    const rec = { path, keys: Object.keys(value), read: new Set(), listed: false };
    records.push(rec);
    const copy = {};
    for (const k of rec.keys) copy[k] = tracked(value[k], `${path}/${k}`, records);
    return new Proxy(copy, {
      get(t, k, r) {
        if (typeof k === "string") rec.read.add(k);
        return Reflect.get(t, k, r);
      },
      has(t, k) {
        if (typeof k === "string") rec.read.add(k);
        return Reflect.has(t, k);
      },
      getOwnPropertyDescriptor(t, k) {
        if (typeof k === "string") rec.read.add(k);
        return Reflect.getOwnPropertyDescriptor(t, k);
      },
      ownKeys(t) {
        rec.listed = true;
        return Reflect.ownKeys(t);
      },
    });
  }
  return value;
}

function unknownFields(Model, manifest) {
  const records = [];
  const proxy = tracked(manifest, "", records);
  try {
    Model.prototype.validate.call(proxy);
  } catch {
    // Reported by the first check.
  }
  const unknown = [];
  for (const rec of records) {
    if (rec.listed) continue;
    for (const k of rec.keys) if (!rec.read.has(k)) unknown.push(`${rec.path}/${k}: unknown field "${k}"`);
  }
  return unknown;
}

function check(manifest) {
  const kind = manifest && manifest.kind;
  const name = manifest && manifest.metadata && manifest.metadata.name;
  const Model = MODELS.get(`${manifest && manifest.apiVersion}/${kind}`);
  if (!Model) return { kind, name, errors: [`no model for apiVersion ${manifest && manifest.apiVersion} kind ${kind}`] };
  const errors = [];
  try {
    new Model(manifest).validate();
  } catch (err) {
    errors.push(...describe(err));
  }
  errors.push(...unknownFields(Model, manifest));
  return { kind, name, errors };
}

let manifests;
try {
  manifests = JSON.parse(readFileSync(0, "utf8"));
} catch (err) {
  console.error(`validate.mjs: cannot read a JSON array of manifests on stdin: ${err.message}`);
  process.exit(1);
}
process.stdout.write(JSON.stringify(manifests.map(check)) + "\n");
