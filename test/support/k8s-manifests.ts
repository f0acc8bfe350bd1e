/**
 * The Kubernetes manifests under k8s/, rendered offline with `kubectl kustomize` and checked against
 * Kubernetes' own schemas (kubernetes-models), unknown fields included.
 */
import { execFileSync } from "node:child_process";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseAllDocuments } from "yaml";
import { CronJob } from "kubernetes-models/batch/v1/CronJob";
import { DaemonSet } from "kubernetes-models/apps/v1/DaemonSet";
import { Deployment } from "kubernetes-models/apps/v1/Deployment";
import { HorizontalPodAutoscaler } from "kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler";
import { Ingress } from "kubernetes-models/networking.k8s.io/v1/Ingress";
import { Job } from "kubernetes-models/batch/v1/Job";
import { NetworkPolicy } from "kubernetes-models/networking.k8s.io/v1/NetworkPolicy";
import { PodDisruptionBudget } from "kubernetes-models/policy/v1/PodDisruptionBudget";
import { StatefulSet } from "kubernetes-models/apps/v1/StatefulSet";
import { ConfigMap } from "kubernetes-models/v1/ConfigMap";
import { Namespace } from "kubernetes-models/v1/Namespace";
import { PersistentVolumeClaim } from "kubernetes-models/v1/PersistentVolumeClaim";
import { Pod } from "kubernetes-models/v1/Pod";
import { Secret } from "kubernetes-models/v1/Secret";
import { Service } from "kubernetes-models/v1/Service";
import { ServiceAccount } from "kubernetes-models/v1/ServiceAccount";
import { requireBinary, type Requirement } from "./infra";

/** `kubectl.describe(…)` runs only where kubectl (with its built-in kustomize) is installed; fails under CI=true. */
export const kubectl: Requirement = requireBinary(
  "kubectl",
  "kubectl ≥ 1.27 from the Kubernetes package repository; Debian's kubernetes-client 1.20 is too old",
);

export const K8S_DIR = resolve(__dirname, "../../k8s");

/** What the checks need of every object; the rest is read through kubernetes-models' types. */
export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    namespace?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  };
  [field: string]: unknown;
}

/** `Kind namespace/name`, the prefix of every violation. */
export function describeObject(obj: KubeObject): string {
  return `${obj.kind} ${obj.metadata.namespace ?? "(cluster)"}/${obj.metadata.name}`;
}

/**
 * A copy of k8s/ that renders without real secrets: the production overlay's git-ignored
 * secrets.env is replaced by secrets.env.example (a real one, if present, is never read).
 */
export function stageManifests(): { dir: string; cleanup(): void } {
  const root = mkdtempSync(join(tmpdir(), "ordermesh-k8s-"));
  const dir = join(root, "k8s");
  const realSecrets = join(K8S_DIR, "overlays/production/secrets.env");
  cpSync(K8S_DIR, dir, { recursive: true, filter: (source) => source !== realSecrets });
  writeFileSync(
    join(dir, "overlays/production/secrets.env"),
    readFileSync(join(K8S_DIR, "overlays/production/secrets.env.example")),
  );
  return { dir, cleanup: () => rmSync(root, { recursive: true, force: true }) };
}

/**
 * Throws unless kubectl's built-in kustomize is v5 or newer (kubectl ≥ 1.27): older ones
 * do not know fields the overlays use (`envs` of a secretGenerator, `replicas`).
 */
export function requireKustomizeV5(kubectlPath: string): void {
  const out = execFileSync(kubectlPath, ["version", "--client", "-o", "json"], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
  });
  const parsed: unknown = JSON.parse(out);
  const version =
    isRecord(parsed) && typeof parsed.kustomizeVersion === "string" ? parsed.kustomizeVersion : "";
  const major = Number(/^v?(\d+)\./.exec(version)?.[1] ?? "0");
  if (major < 5)
    throw new Error(`${kubectlPath} bundles kustomize ${version || "(unknown)"}; v5 or newer is needed`);
}

/** `kubectl kustomize <dir>`, parsed. Throws with kubectl's own message when it cannot render. */
export function render(kubectlPath: string, dir: string): KubeObject[] {
  let text: string;
  try {
    text = execFileSync(kubectlPath, ["kustomize", dir], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "pipe"],
    });
  } catch (err) {
    const stderr = (err as { stderr?: unknown }).stderr;
    throw new Error(`kubectl kustomize ${dir} failed: ${typeof stderr === "string" ? stderr : String(err)}`);
  }
  return parseManifests(text);
}

/** Every document of a YAML stream, each checked to be a Kubernetes object. */
export function parseManifests(text: string): KubeObject[] {
  const objects: KubeObject[] = [];
  for (const doc of parseAllDocuments(text)) {
    if (doc.errors.length > 0)
      throw new Error(`invalid YAML: ${doc.errors.map((e) => e.message).join("; ")}`);
    const value: unknown = doc.toJS();
    if (value === null || value === undefined) continue;
    if (!isKubeObject(value))
      throw new Error(`not a Kubernetes object: ${JSON.stringify(value).slice(0, 200)}`);
    objects.push(value);
  }
  return objects;
}

function isKubeObject(value: unknown): value is KubeObject {
  if (!isRecord(value) || typeof value.apiVersion !== "string" || typeof value.kind !== "string")
    return false;
  return isRecord(value.metadata) && typeof value.metadata.name === "string";
}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** A kubernetes-models class: constructed from the object's data, validated by its generated schema. */
interface SchemaModel<D> {
  new (data: D): { validate(): void };
  prototype: { validate(): void };
}

interface Schema {
  /** The documented use: `new Deployment(obj).validate()`; throws on a schema violation. */
  validate(obj: KubeObject): void;
  /** The same generated validator, run on `obj` itself (so it can be watched). */
  validateInPlace(obj: unknown): void;
}

function schema<D>(Model: SchemaModel<D>): Schema {
  return {
    // the schema is what decides whether obj has the model's shape: that is the point of the call
    validate: (obj) => new Model(obj as unknown as D).validate(),
    validateInPlace: (obj) => Model.prototype.validate.call(obj),
  };
}

/** Every kind the manifests may use, by `apiVersion/kind`. Anything else is a violation. */
const SCHEMAS: Readonly<Record<string, Schema>> = {
  "v1/Namespace": schema(Namespace),
  "v1/ConfigMap": schema(ConfigMap),
  "v1/Secret": schema(Secret),
  "v1/Service": schema(Service),
  "v1/ServiceAccount": schema(ServiceAccount),
  "v1/Pod": schema(Pod),
  "v1/PersistentVolumeClaim": schema(PersistentVolumeClaim),
  "apps/v1/Deployment": schema(Deployment),
  "apps/v1/StatefulSet": schema(StatefulSet),
  "apps/v1/DaemonSet": schema(DaemonSet),
  "batch/v1/Job": schema(Job),
  "batch/v1/CronJob": schema(CronJob),
  "autoscaling/v2/HorizontalPodAutoscaler": schema(HorizontalPodAutoscaler),
  "policy/v1/PodDisruptionBudget": schema(PodDisruptionBudget),
  "networking.k8s.io/v1/NetworkPolicy": schema(NetworkPolicy),
  "networking.k8s.io/v1/Ingress": schema(Ingress),
};

/**
 * Schema violations of every object: kubernetes-models' validation (types, enums, required
 * fields), plus fields the schema does not declare. kubernetes-models' schemas allow additional
 * properties, so a misspelt or misplaced field (`readinesProbe`, `securityContext` one level too
 * deep) would pass its validate() and be dropped silently by the API server.
 */
export function schemaViolations(objects: readonly KubeObject[]): string[] {
  const violations: string[] = [];
  for (const obj of objects) {
    const found = SCHEMAS[`${obj.apiVersion}/${obj.kind}`];
    if (found === undefined) {
      violations.push(`${describeObject(obj)}: no schema for ${obj.apiVersion} ${obj.kind}`);
      continue;
    }
    const checked = withUnwrappedSecretData(obj);
    try {
      found.validate(checked);
    } catch (err) {
      violations.push(`${describeObject(obj)}: ${err instanceof Error ? err.message : String(err)}`);
    }
    for (const path of undeclaredFields(found, checked)) {
      violations.push(`${describeObject(obj)}: unknown field ${path}`);
    }
  }
  return violations;
}

/**
 * kustomize wraps a Secret's base64 values at 70 columns. The API server decodes them with Go's
 * encoding/base64, which skips line breaks, but the schema's "byte" format does not: join them.
 */
function withUnwrappedSecretData(obj: KubeObject): KubeObject {
  if (obj.kind !== "Secret" || !isRecord(obj.data)) return obj;
  const data = Object.fromEntries(
    Object.entries(obj.data).map(([key, value]) => [
      key,
      typeof value === "string" ? value.replace(/[\r\n]/g, "") : value,
    ]),
  );
  return { ...obj, data };
}

/**
 * The generated validators read every property their schema declares (`data.image`, …) and walk
 * every entry of a map-typed field (labels, ConfigMap data). Running one on a watched copy of the
 * object therefore tells which fields the schema knows: a field it never read is not in the schema.
 */
function undeclaredFields(found: Schema, obj: KubeObject): string[] {
  const read = new WeakMap<object, Set<string>>();
  const proxies = new WeakMap<object, object>();
  const watch = (value: unknown): unknown => {
    if (typeof value !== "object" || value === null) return value;
    const known = proxies.get(value);
    if (known !== undefined) return known;
    const keys = new Set<string>();
    read.set(value, keys);
    const proxy = new Proxy(value, {
      get(target, key, receiver) {
        if (typeof key === "string") keys.add(key);
        return watch(Reflect.get(target, key, receiver));
      },
    });
    proxies.set(value, proxy);
    return proxy;
  };
  try {
    found.validateInPlace(watch(obj));
  } catch {
    // schema errors are reported by schemaViolations; only the reads matter here
  }
  const unknown: string[] = [];
  const walk = (value: unknown, path: string): void => {
    if (Array.isArray(value)) {
      value.forEach((item, index) => walk(item, `${path}/${index}`));
      return;
    }
    if (!isRecord(value)) return;
    const keys = read.get(value);
    for (const [key, child] of Object.entries(value)) {
      if (keys === undefined || !keys.has(key)) unknown.push(`${path}/${key}`);
      else walk(child, `${path}/${key}`);
    }
  };
  walk(obj, "");
  return unknown;
}
