/**
 * The deployment policy of ordermesh's Kubernetes manifests, as plain functions: each takes the
 * rendered objects of one kustomization and returns its violations (empty: compliant). The spec
 * runs them on every overlay and on mutated copies, so a mutation exercises exactly the real check.
 */
import type { IDeployment } from "kubernetes-models/apps/v1/Deployment";
import type { IHorizontalPodAutoscaler } from "kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler";
import type { IIngress } from "kubernetes-models/networking.k8s.io/v1/Ingress";
import type { INetworkPolicy } from "kubernetes-models/networking.k8s.io/v1/NetworkPolicy";
import type { INetworkPolicyPeer } from "kubernetes-models/networking.k8s.io/v1/NetworkPolicyPeer";
import type { IPodDisruptionBudget } from "kubernetes-models/policy/v1/PodDisruptionBudget";
import type { IContainer } from "kubernetes-models/v1/Container";
import type { IPodSpec } from "kubernetes-models/v1/PodSpec";
import type { IPodTemplateSpec } from "kubernetes-models/v1/PodTemplateSpec";
import type { ISecurityContext } from "kubernetes-models/v1/SecurityContext";
import type { IService } from "kubernetes-models/v1/Service";
import { duration } from "../../lib/config";
import { describeObject, isRecord, schemaViolations, type KubeObject } from "./k8s-manifests";

/** Which kustomization the objects come from: the base alone, or a deployable overlay. */
export type Profile = "base" | "production" | "kind";

export interface Check {
  name: string;
  profiles: readonly Profile[];
  run(objects: readonly KubeObject[]): string[];
}

export const NAMESPACE = "ordermesh";
const APP_LABEL = "app.kubernetes.io/name";
const COMPONENT_LABEL = "app.kubernetes.io/component";
const CONFIG_MAP = "ordermesh-config";
const SECRET = "ordermesh-secrets";
const USER_ID = 1000;

// ---- reading objects ----------------------------------------------------------------------------

// The checks read objects through kubernetes-models' interfaces. Every field there is optional, and
// a field the check needs but does not find is reported, so the view is safe even before the schema
// check has run (the spec runs that one too, on the same objects).
function as<T>(obj: KubeObject): T {
  return obj as unknown as T;
}

function ofKind(objects: readonly KubeObject[], kind: string): KubeObject[] {
  return objects.filter((obj) => obj.kind === kind);
}

/** The object's pod template (Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob, Pod). */
export function podTemplateOf(obj: KubeObject): IPodTemplateSpec | undefined {
  const spec = obj.spec;
  if (!isRecord(spec)) return undefined;
  if (obj.kind === "Pod") return as<IPodTemplateSpec>(obj);
  if (obj.kind === "CronJob") {
    const jobTemplate = spec.jobTemplate;
    const jobSpec = isRecord(jobTemplate) ? jobTemplate.spec : undefined;
    return isRecord(jobSpec) && isRecord(jobSpec.template)
      ? (jobSpec.template as IPodTemplateSpec)
      : undefined;
  }
  return isRecord(spec.template) ? (spec.template as IPodTemplateSpec) : undefined;
}

interface PodTemplate {
  owner: KubeObject;
  labels: Record<string, string>;
  spec: IPodSpec;
}

function podTemplates(objects: readonly KubeObject[]): PodTemplate[] {
  const templates: PodTemplate[] = [];
  for (const owner of objects) {
    const template = podTemplateOf(owner);
    if (template?.spec === undefined) continue;
    templates.push({ owner, labels: template.metadata?.labels ?? {}, spec: template.spec });
  }
  return templates;
}

function allContainers(spec: IPodSpec): { kind: string; container: IContainer }[] {
  return [
    ...(spec.initContainers ?? []).map((container) => ({ kind: "init container", container })),
    ...(spec.containers ?? []).map((container) => ({ kind: "container", container })),
    // ephemeral containers share the fields the policy reads
    ...(spec.ephemeralContainers ?? []).map((container) => ({
      kind: "ephemeral container",
      container: container as IContainer,
    })),
  ];
}

interface Selector {
  matchLabels?: Record<string, string>;
  matchExpressions?: { key: string; operator: string; values?: string[] }[];
}

/** Whether a label selector selects these labels; an empty selector selects everything. */
export function selects(selector: Selector | undefined, labels: Record<string, string>): boolean {
  if (selector === undefined) return false;
  for (const [key, value] of Object.entries(selector.matchLabels ?? {})) {
    if (labels[key] !== value) return false;
  }
  for (const { key, operator, values = [] } of selector.matchExpressions ?? []) {
    const value = labels[key];
    const ok =
      operator === "In"
        ? value !== undefined && values.includes(value)
        : operator === "NotIn"
          ? value === undefined || !values.includes(value)
          : operator === "Exists"
            ? value !== undefined
            : operator === "DoesNotExist"
              ? value === undefined
              : false;
    if (!ok) return false;
  }
  return true;
}

function isEmptySelector(selector: Selector | undefined): boolean {
  return (
    selector !== undefined &&
    Object.keys(selector.matchLabels ?? {}).length === 0 &&
    (selector.matchExpressions ?? []).length === 0
  );
}

function configData(objects: readonly KubeObject[]): Record<string, string> {
  const config = objects.find(
    (obj) =>
      obj.kind === "ConfigMap" && obj.metadata.name === CONFIG_MAP && obj.metadata.namespace === NAMESPACE,
  );
  const data = config?.data;
  return isRecord(data) ? (data as Record<string, string>) : {};
}

function adminPort(objects: readonly KubeObject[]): number {
  return Number(configData(objects).ADMIN_PORT ?? "9000");
}

/** An ordermesh process (`ordermesh start`), as opposed to NATS, Redis or the simulator. */
function isServiceContainer(container: IContainer): boolean {
  return imageName(container.image ?? "") === "ordermesh" && (container.args ?? []).includes("start");
}

function imageName(image: string): string {
  const withoutDigest = image.split("@")[0] ?? "";
  const lastSlash = withoutDigest.lastIndexOf("/");
  const colon = withoutDigest.indexOf(":", lastSlash + 1);
  return colon === -1 ? withoutDigest : withoutDigest.slice(0, colon);
}

// ---- the checks ---------------------------------------------------------------------------------

/** The namespace exists with Pod Security "restricted" enforced; every namespaced object names its namespace. */
export function namespaceViolations(objects: readonly KubeObject[]): string[] {
  const violations: string[] = [];
  const namespace = objects.find((obj) => obj.kind === "Namespace" && obj.metadata.name === NAMESPACE);
  if (namespace === undefined) violations.push(`no Namespace ${NAMESPACE}`);
  for (const mode of ["enforce", "audit", "warn"]) {
    const value = namespace?.metadata.labels?.[`pod-security.kubernetes.io/${mode}`];
    if (namespace !== undefined && value !== "restricted")
      violations.push(
        `Namespace ${NAMESPACE}: pod-security.kubernetes.io/${mode} is ${value ?? "unset"}, not restricted`,
      );
  }
  for (const obj of objects) {
    if (obj.kind !== "Namespace" && obj.metadata.namespace === undefined)
      violations.push(`${describeObject(obj)}: no namespace (it would land in the current context's)`);
  }
  return violations;
}

const RESTRICTED_VOLUME_TYPES = new Set([
  "emptyDir",
  "configMap",
  "secret",
  "projected",
  "persistentVolumeClaim",
]);
const ALLOWED_CAPABILITIES = new Set(["NET_BIND_SERVICE"]);
const SAFE_SYSCTLS = new Set([
  "kernel.shm_rmid_forced",
  "net.ipv4.ip_local_port_range",
  "net.ipv4.ip_unprivileged_port_start",
  "net.ipv4.tcp_syncookies",
  "net.ipv4.ping_group_range",
  "net.ipv4.ip_local_reserved_ports",
  "net.ipv4.tcp_keepalive_time",
  "net.ipv4.tcp_fin_timeout",
  "net.ipv4.tcp_keepalive_intvl",
  "net.ipv4.tcp_keepalive_probes",
]);
const SELINUX_TYPES = new Set([
  "",
  "container_t",
  "container_init_t",
  "container_kvm_t",
  "container_engine_t",
]);

/**
 * Pod Security Standards "restricted" (which includes "baseline") on every pod template, plus this
 * project's rules: uid/gid 1000, read-only root filesystem, no service-account token.
 */
export function podSecurityViolations(objects: readonly KubeObject[]): string[] {
  const violations: string[] = [];
  for (const { owner, spec } of podTemplates(objects)) {
    const at = describeObject(owner);
    const pod = spec.securityContext ?? {};
    if (spec.hostNetwork === true) violations.push(`${at}: hostNetwork`);
    if (spec.hostPID === true) violations.push(`${at}: hostPID`);
    if (spec.hostIPC === true) violations.push(`${at}: hostIPC`);
    if (spec.automountServiceAccountToken !== false)
      violations.push(`${at}: automountServiceAccountToken is not false`);
    if (pod.fsGroup !== USER_ID) violations.push(`${at}: securityContext.fsGroup is not ${USER_ID}`);
    if (pod.windowsOptions?.hostProcess === true) violations.push(`${at}: windowsOptions.hostProcess`);
    for (const sysctl of pod.sysctls ?? []) {
      if (!SAFE_SYSCTLS.has(sysctl.name)) violations.push(`${at}: unsafe sysctl ${sysctl.name}`);
    }
    violations.push(...seLinuxAndAppArmor(`${at}: pod`, pod));
    for (const [key, value] of Object.entries(podTemplateOf(owner)?.metadata?.annotations ?? {})) {
      if (
        key.startsWith("container.apparmor.security.beta.kubernetes.io/") &&
        value !== "runtime/default" &&
        !value.startsWith("localhost/")
      )
        violations.push(`${at}: AppArmor annotation ${key}=${value}`);
    }
    for (const volume of spec.volumes ?? []) {
      const types = Object.keys(volume).filter((key) => key !== "name");
      for (const type of types) {
        if (!RESTRICTED_VOLUME_TYPES.has(type)) violations.push(`${at}: volume ${volume.name} is ${type}`);
      }
    }
    for (const { kind, container } of allContainers(spec)) {
      const where = `${at}: ${kind} ${container.name}`;
      const own: ISecurityContext = container.securityContext ?? {};
      if ((own.runAsNonRoot ?? pod.runAsNonRoot) !== true)
        violations.push(`${where}: runAsNonRoot is not true`);
      if ((own.runAsUser ?? pod.runAsUser) !== USER_ID)
        violations.push(`${where}: runAsUser is not ${USER_ID}`);
      if ((own.runAsGroup ?? pod.runAsGroup) !== USER_ID)
        violations.push(`${where}: runAsGroup is not ${USER_ID}`);
      const seccomp = own.seccompProfile?.type ?? pod.seccompProfile?.type;
      if (seccomp !== "RuntimeDefault" && seccomp !== "Localhost")
        violations.push(`${where}: seccompProfile is ${seccomp ?? "unset"}, not RuntimeDefault`);
      if (own.privileged === true) violations.push(`${where}: privileged`);
      if (own.allowPrivilegeEscalation !== false)
        violations.push(`${where}: allowPrivilegeEscalation is not false`);
      if (!(own.capabilities?.drop ?? []).includes("ALL"))
        violations.push(`${where}: capabilities.drop does not include ALL`);
      for (const capability of own.capabilities?.add ?? []) {
        if (!ALLOWED_CAPABILITIES.has(capability))
          violations.push(`${where}: capabilities.add ${capability}`);
      }
      if (own.procMount !== undefined && own.procMount !== "Default")
        violations.push(`${where}: procMount ${own.procMount}`);
      if (own.windowsOptions?.hostProcess === true) violations.push(`${where}: windowsOptions.hostProcess`);
      violations.push(...seLinuxAndAppArmor(where, own));
      if (own.readOnlyRootFilesystem !== true)
        violations.push(`${where}: readOnlyRootFilesystem is not true`);
      for (const port of container.ports ?? []) {
        if (port.hostPort !== undefined && port.hostPort !== 0)
          violations.push(`${where}: hostPort ${port.hostPort}`);
      }
    }
  }
  return violations;
}

function seLinuxAndAppArmor(
  where: string,
  context: Pick<ISecurityContext, "seLinuxOptions" | "appArmorProfile">,
): string[] {
  const violations: string[] = [];
  const selinux = context.seLinuxOptions;
  if (selinux?.type !== undefined && !SELINUX_TYPES.has(selinux.type))
    violations.push(`${where}: seLinuxOptions.type ${selinux.type}`);
  if (selinux?.user !== undefined || selinux?.role !== undefined)
    violations.push(`${where}: seLinuxOptions.user/role set`);
  if (context.appArmorProfile?.type === "Unconfined") violations.push(`${where}: AppArmor Unconfined`);
  return violations;
}

/**
 * Startup, readiness and liveness probes on every container; an ordermesh process answers them on
 * /startupz, /readyz, /livez — the gateway on its HTTP port, a domain service on its admin port.
 */
export function probeViolations(objects: readonly KubeObject[]): string[] {
  const violations: string[] = [];
  const admin = adminPort(objects);
  for (const { owner, spec } of podTemplates(objects)) {
    for (const container of spec.containers ?? []) {
      const where = `${describeObject(owner)}: container ${container.name}`;
      const probes = {
        startupProbe: "/startupz",
        readinessProbe: "/readyz",
        livenessProbe: "/livez",
      } as const;
      for (const [probe, path] of Object.entries(probes) as [keyof typeof probes, string][]) {
        const found = container[probe];
        if (found === undefined) {
          violations.push(`${where}: no ${probe}`);
          continue;
        }
        if (!isServiceContainer(container)) continue;
        const gateway = (container.env ?? []).some((v) => v.name === "SERVICES" && v.value === "gateway");
        const port = gateway ? "http" : "admin";
        if (found.httpGet?.path !== path || found.httpGet.port !== port)
          violations.push(`${where}: ${probe} is not GET ${path} on port ${port}`);
      }
      if (isServiceContainer(container)) {
        if (!(container.ports ?? []).some((p) => p.name === "admin" && p.containerPort === admin))
          violations.push(`${where}: no container port "admin" ${admin} (ADMIN_PORT)`);
        const startup = container.startupProbe;
        if (startup !== undefined && (startup.periodSeconds !== 2 || startup.failureThreshold !== 60))
          violations.push(`${where}: startupProbe is not every 2s for up to 60 tries`);
      }
    }
  }
  return violations;
}

/** Every image pinned to a release (a tag other than latest, or a digest), pulled only when missing. */
export function imageViolations(objects: readonly KubeObject[]): string[] {
  const violations: string[] = [];
  for (const { owner, spec } of podTemplates(objects)) {
    for (const { kind, container } of allContainers(spec)) {
      const where = `${describeObject(owner)}: ${kind} ${container.name}`;
      const image = container.image ?? "";
      if (image === "") {
        violations.push(`${where}: no image`);
        continue;
      }
      if (!image.includes("@sha256:")) {
        const tag = image.slice(imageName(image).length + 1);
        if (!image.slice(imageName(image).length).startsWith(":") || tag === "")
          violations.push(`${where}: image ${image} has no tag`);
        else if (tag === "latest") violations.push(`${where}: image ${image} is :latest`);
      }
      if (container.imagePullPolicy !== "IfNotPresent")
        violations.push(
          `${where}: imagePullPolicy is ${container.imagePullPolicy ?? "unset"}, not IfNotPresent`,
        );
    }
  }
  return violations;
}

/**
 * A stop must end on its own: SHUTDOWN_DRAIN + SHUTDOWN_TIMEOUT (README defaults 5s and 30s) below
 * every pod's terminationGracePeriodSeconds (Kubernetes default 30), or the kubelet's SIGKILL cuts it.
 */
export function shutdownViolations(objects: readonly KubeObject[]): string[] {
  const data = configData(objects);
  const violations: string[] = [];
  // the app's own parser, so the check reads the values exactly as the processes will
  const parse = (name: string, fallback: string, zeroAllowed: boolean): number => {
    const raw = data[name] ?? fallback;
    if (zeroAllowed && /^0+(ms|s|m|h)?$/.test(raw)) return 0;
    try {
      return duration(raw);
    } catch (err) {
      violations.push(
        `ConfigMap ${CONFIG_MAP}: ${name}: ${err instanceof Error ? err.message : String(err)}`,
      );
      return 0;
    }
  };
  const stopMs = parse("SHUTDOWN_DRAIN", "5s", true) + parse("SHUTDOWN_TIMEOUT", "30s", false);
  for (const { owner, spec } of podTemplates(objects)) {
    const grace = spec.terminationGracePeriodSeconds ?? 30;
    if (grace * 1000 <= stopMs)
      violations.push(
        `${describeObject(owner)}: terminationGracePeriodSeconds ${grace} is not above SHUTDOWN_DRAIN + SHUTDOWN_TIMEOUT (${stopMs / 1000}s)`,
      );
  }
  return violations;
}

/** The base carries no Secret: every overlay brings its own, so none can ship by accident. */
export function noSecretViolations(objects: readonly KubeObject[]): string[] {
  return ofKind(objects, "Secret").map((obj) => `${describeObject(obj)}: a Secret in the base`);
}

/** Production configuration: no demo data, three JetStream replicas. */
export function productionConfigViolations(objects: readonly KubeObject[]): string[] {
  const data = configData(objects);
  const violations: string[] = [];
  if (data.SEED_DEMO !== "false")
    violations.push(`ConfigMap ${CONFIG_MAP}: SEED_DEMO is ${data.SEED_DEMO}, not "false"`);
  if (data.JETSTREAM_REPLICAS !== "3")
    violations.push(`ConfigMap ${CONFIG_MAP}: JETSTREAM_REPLICAS is ${data.JETSTREAM_REPLICAS}, not "3"`);
  return violations;
}

/**
 * TRUSTED_PROXIES names the ingress controller, never a whole network: 0.0.0.0/0, 10.0.0.0/8 or any
 * block wider than a /16 (IPv6: /48) would let any pod in it forge its client address.
 */
export function trustedProxyViolations(objects: readonly KubeObject[]): string[] {
  const raw = configData(objects).TRUSTED_PROXIES;
  if (raw === undefined) return [];
  const violations: string[] = [];
  for (const entry of raw.split(",").map((part) => part.trim())) {
    const [address = "", prefix] = entry.split("/");
    const bits = prefix === undefined ? (address.includes(":") ? 128 : 32) : Number(prefix);
    const widest = address.includes(":") ? 48 : 16;
    if (!Number.isInteger(bits) || bits < widest)
      violations.push(
        `ConfigMap ${CONFIG_MAP}: TRUSTED_PROXIES entry ${entry} is a whole network, not the ingress controller`,
      );
  }
  return violations;
}

/** Every ordermesh Deployment (production): an autoscaler, a disruption budget, spread over nodes and zones. */
export function availabilityViolations(objects: readonly KubeObject[]): string[] {
  const violations: string[] = [];
  const budgets = ofKind(objects, "PodDisruptionBudget").map((obj) => as<IPodDisruptionBudget>(obj));
  const autoscalers = objects
    .filter((obj) => obj.kind === "HorizontalPodAutoscaler" && obj.apiVersion === "autoscaling/v2")
    .map((obj) => as<IHorizontalPodAutoscaler>(obj));
  for (const obj of ofKind(objects, "Deployment")) {
    if (obj.metadata.labels?.[APP_LABEL] !== "ordermesh") continue;
    const at = describeObject(obj);
    const labels = podTemplateOf(obj)?.metadata?.labels ?? {};
    const namespace = obj.metadata.namespace;
    if (!budgets.some((pdb) => pdb.metadata?.namespace === namespace && selects(pdb.spec?.selector, labels)))
      violations.push(`${at}: no PodDisruptionBudget`);
    const scaled = autoscalers.some(
      (hpa) =>
        hpa.metadata?.namespace === namespace &&
        hpa.spec?.scaleTargetRef.kind === "Deployment" &&
        hpa.spec.scaleTargetRef.name === obj.metadata.name,
    );
    if (!scaled) violations.push(`${at}: no HorizontalPodAutoscaler (autoscaling/v2)`);
    const spread = as<IDeployment>(obj).spec?.template.spec?.topologySpreadConstraints ?? [];
    for (const key of ["kubernetes.io/hostname", "topology.kubernetes.io/zone"]) {
      const ok = spread.some(
        (c) =>
          c.topologyKey === key &&
          c.whenUnsatisfiable === "ScheduleAnyway" &&
          selects(c.labelSelector, labels),
      );
      if (!ok) violations.push(`${at}: no topology spread over ${key} (ScheduleAnyway, selecting its pods)`);
    }
  }
  return violations;
}

function isGatewaySelector(selector: Selector | undefined): boolean {
  return selector?.matchLabels?.[COMPONENT_LABEL] === "gateway";
}

function isOutside(peer: INetworkPolicyPeer): boolean {
  return peer.namespaceSelector !== undefined || peer.ipBlock !== undefined;
}

/**
 * Ingress to the namespace: denied by default; from outside the namespace only to the gateway,
 * except the admin port from a selected namespace (Prometheus). Likewise only the gateway is
 * published (NodePort, LoadBalancer, Ingress backends).
 */
export function networkViolations(objects: readonly KubeObject[]): string[] {
  const violations: string[] = [];
  const admin = adminPort(objects);
  const policies = ofKind(objects, "NetworkPolicy").filter((obj) => obj.metadata.namespace === NAMESPACE);
  const denyAll = policies.some((obj) => {
    const spec = as<INetworkPolicy>(obj).spec;
    return (
      isEmptySelector(spec?.podSelector) &&
      (spec?.policyTypes ?? []).includes("Ingress") &&
      (spec?.ingress ?? []).length === 0
    );
  });
  if (!denyAll) violations.push(`no default-deny ingress NetworkPolicy in ${NAMESPACE}`);
  for (const obj of policies) {
    const spec = as<INetworkPolicy>(obj).spec;
    if (isGatewaySelector(spec?.podSelector)) continue;
    (spec?.ingress ?? []).forEach((rule, index) => {
      const peers = rule.from ?? [];
      const fromAnywhere = peers.length === 0;
      if (!fromAnywhere && !peers.some(isOutside)) return;
      const adminOnly =
        !fromAnywhere &&
        peers.every((peer) => peer.ipBlock === undefined) &&
        (rule.ports ?? []).length > 0 &&
        (rule.ports ?? []).every((port) => port.port === admin || port.port === "admin");
      if (!adminOnly)
        violations.push(
          `${describeObject(obj)}: ingress rule ${index} admits traffic from outside to pods other than the gateway`,
        );
    });
  }
  for (const obj of ofKind(objects, "Service")) {
    const spec = as<IService>(obj).spec;
    const published =
      spec?.type === "NodePort" || spec?.type === "LoadBalancer" || (spec?.externalIPs ?? []).length > 0;
    if (published && spec?.selector?.[COMPONENT_LABEL] !== "gateway")
      violations.push(
        `${describeObject(obj)}: published (${spec?.type ?? "externalIPs"}) but not the gateway`,
      );
  }
  for (const obj of ofKind(objects, "Ingress")) {
    const spec = as<IIngress>(obj).spec;
    const backends = [
      spec?.defaultBackend,
      ...(spec?.rules ?? []).flatMap((rule) => (rule.http?.paths ?? []).map((path) => path.backend)),
    ];
    for (const backend of backends) {
      if (backend !== undefined && backend.service?.name !== "gateway")
        violations.push(
          `${describeObject(obj)}: routes to ${backend.service?.name ?? "a resource"}, not the gateway`,
        );
    }
  }
  return violations;
}

/**
 * Production's NATS, Redis and MongoDB namespaces admit, from outside, only ordermesh's pods — on
 * the listed ports; their own pods (cluster peers) stay free to talk to each other.
 */
export function datastoreNetworkViolations(objects: readonly KubeObject[]): string[] {
  const violations: string[] = [];
  for (const namespace of ["nats", "redis", "mongo"]) {
    const policies = ofKind(objects, "NetworkPolicy").filter((obj) => obj.metadata.namespace === namespace);
    const isolating = policies.filter((obj) => {
      const spec = as<INetworkPolicy>(obj).spec;
      return isEmptySelector(spec?.podSelector) && (spec?.policyTypes ?? []).includes("Ingress");
    });
    if (isolating.length === 0) violations.push(`no NetworkPolicy isolating namespace ${namespace}`);
    for (const obj of isolating) {
      (as<INetworkPolicy>(obj).spec?.ingress ?? []).forEach((rule, index) => {
        const peers = rule.from ?? [];
        const ok =
          peers.length > 0 &&
          peers.every((peer) => {
            if (peer.ipBlock !== undefined) return false;
            if (peer.namespaceSelector === undefined) return true;
            return (
              peer.namespaceSelector.matchLabels?.["kubernetes.io/metadata.name"] === NAMESPACE &&
              peer.podSelector?.matchLabels?.[APP_LABEL] === "ordermesh" &&
              (rule.ports ?? []).length > 0
            );
          });
        if (!ok)
          violations.push(`${describeObject(obj)}: ingress rule ${index} admits more than ordermesh's pods`);
      });
    }
  }
  return violations;
}

/** Everything an object names exists in the same output: ConfigMaps and Secrets (and their keys), Services' pods, targets. */
export function referenceViolations(objects: readonly KubeObject[]): string[] {
  const violations: string[] = [];
  const find = (kind: string, namespace: string | undefined, name: string): KubeObject | undefined =>
    objects.find(
      (obj) => obj.kind === kind && obj.metadata.namespace === namespace && obj.metadata.name === name,
    );
  const keysOf = (obj: KubeObject): string[] => [
    ...Object.keys(isRecord(obj.data) ? obj.data : {}),
    ...Object.keys(isRecord(obj.stringData) ? obj.stringData : {}),
  ];
  const templates = podTemplates(objects);
  for (const { owner, spec } of templates) {
    const at = describeObject(owner);
    const namespace = owner.metadata.namespace;
    const need = (kind: string, name: string, key?: string): void => {
      const found = find(kind, namespace, name);
      if (found === undefined) violations.push(`${at}: ${kind} ${name} does not exist`);
      else if (key !== undefined && !keysOf(found).includes(key))
        violations.push(`${at}: ${kind} ${name} has no key ${key}`);
    };
    for (const { container } of allContainers(spec)) {
      for (const source of container.envFrom ?? []) {
        if (source.configMapRef !== undefined && source.configMapRef.optional !== true)
          need("ConfigMap", source.configMapRef.name ?? "");
        if (source.secretRef !== undefined && source.secretRef.optional !== true)
          need("Secret", source.secretRef.name ?? "");
      }
      for (const variable of container.env ?? []) {
        const configKey = variable.valueFrom?.configMapKeyRef;
        if (configKey !== undefined && configKey.optional !== true)
          need("ConfigMap", configKey.name ?? "", configKey.key);
        const secretKey = variable.valueFrom?.secretKeyRef;
        if (secretKey !== undefined && secretKey.optional !== true)
          need("Secret", secretKey.name ?? "", secretKey.key);
      }
    }
    for (const volume of spec.volumes ?? []) {
      if (volume.configMap !== undefined && volume.configMap.optional !== true)
        need("ConfigMap", volume.configMap.name ?? "");
      if (volume.secret !== undefined && volume.secret.optional !== true)
        need("Secret", volume.secret.secretName ?? "");
    }
  }
  const podsOf = (namespace: string | undefined, selector: Selector | undefined): PodTemplate[] =>
    templates.filter((t) => t.owner.metadata.namespace === namespace && selects(selector, t.labels));
  for (const obj of ofKind(objects, "Service")) {
    const spec = as<IService>(obj).spec;
    const pods = podsOf(obj.metadata.namespace, { matchLabels: spec?.selector ?? {} });
    if (pods.length === 0) {
      violations.push(`${describeObject(obj)}: selects no pods`);
      continue;
    }
    for (const port of spec?.ports ?? []) {
      const target = port.targetPort;
      if (typeof target !== "string") continue;
      const named = pods.every((pod) =>
        (pod.spec.containers ?? []).some((c) => (c.ports ?? []).some((p) => p.name === target)),
      );
      if (!named) violations.push(`${describeObject(obj)}: targetPort ${target} is not a port of its pods`);
    }
  }
  for (const obj of ofKind(objects, "PodDisruptionBudget")) {
    if (podsOf(obj.metadata.namespace, as<IPodDisruptionBudget>(obj).spec?.selector).length === 0)
      violations.push(`${describeObject(obj)}: selects no pods`);
  }
  for (const obj of ofKind(objects, "HorizontalPodAutoscaler")) {
    const target = as<IHorizontalPodAutoscaler>(obj).spec?.scaleTargetRef;
    if (target === undefined) violations.push(`${describeObject(obj)}: no scaleTargetRef`);
    else if (find(target.kind, obj.metadata.namespace, target.name) === undefined)
      violations.push(`${describeObject(obj)}: scales ${target.kind} ${target.name}, which does not exist`);
  }
  for (const obj of ofKind(objects, "Ingress")) {
    for (const rule of as<IIngress>(obj).spec?.rules ?? []) {
      for (const path of rule.http?.paths ?? []) {
        const name = path.backend.service?.name ?? "";
        const service = find("Service", obj.metadata.namespace, name);
        const port = path.backend.service?.port;
        const ports = service === undefined ? [] : (as<IService>(service).spec?.ports ?? []);
        if (!ports.some((p) => p.name === port?.name || p.port === port?.number))
          violations.push(
            `${describeObject(obj)}: backend ${name} port ${port?.name ?? port?.number} does not exist`,
          );
      }
    }
  }
  return violations;
}

function secretValues(objects: readonly KubeObject[]): Record<string, string> | undefined {
  const secret = objects.find(
    (obj) =>
      obj.kind === "Secret" &&
      obj.metadata.namespace === NAMESPACE &&
      (obj.metadata.name === SECRET || obj.metadata.name.startsWith(`${SECRET}-`)),
  );
  if (secret === undefined) return undefined;
  const values: Record<string, string> = {};
  for (const [key, value] of Object.entries(isRecord(secret.data) ? secret.data : {}))
    values[key] = Buffer.from(String(value), "base64").toString("utf8");
  for (const [key, value] of Object.entries(isRecord(secret.stringData) ? secret.stringData : {}))
    values[key] = String(value);
  return values;
}

/** Production's Secret (rendered from secrets.env.example here) keeps its name and carries the three keys. */
export function productionSecretViolations(objects: readonly KubeObject[]): string[] {
  const values = secretValues(objects);
  if (values === undefined) return [`no Secret ${SECRET} in ${NAMESPACE}`];
  const violations: string[] = [];
  if (!objects.some((obj) => obj.kind === "Secret" && obj.metadata.name === SECRET))
    violations.push(`Secret ${SECRET}: renamed (disableNameSuffixHash is off)`);
  for (const key of ["MONGO_URL", "JWT_SECRET", "PSP_WEBHOOK_SECRET"]) {
    if (!(key in values)) violations.push(`Secret ${SECRET}: no key ${key}`);
  }
  return violations;
}

/**
 * The local cluster: secrets that pass the app's checks (≥ 32 random-looking hex characters), no
 * MONGO_URL (the embedded store), one replica of everything and no autoscaler.
 */
export function localClusterViolations(objects: readonly KubeObject[]): string[] {
  const violations: string[] = [];
  const values = secretValues(objects) ?? {};
  for (const key of ["JWT_SECRET", "PSP_WEBHOOK_SECRET"]) {
    const value = values[key] ?? "";
    if (!/^[0-9a-f]{32,}$/i.test(value) || new Set(value).size < 8)
      violations.push(`Secret ${SECRET}: ${key} is not ≥ 32 random hex characters`);
  }
  if ("MONGO_URL" in values || "MONGO_URL" in configData(objects))
    violations.push("MONGO_URL is set: the local cluster runs on the embedded stores");
  for (const obj of ofKind(objects, "Deployment")) {
    if (as<IDeployment>(obj).spec?.replicas !== 1)
      violations.push(`${describeObject(obj)}: replicas is not 1`);
  }
  for (const obj of ofKind(objects, "HorizontalPodAutoscaler"))
    violations.push(`${describeObject(obj)}: no autoscaling on one machine`);
  return violations;
}

/** The checks that hold for the base and every overlay alike. */
const EVERY_PROFILE: readonly Profile[] = ["base", "production", "kind"];

/** Every check, and the kustomizations it applies to. */
export const CHECKS: readonly Check[] = [
  {
    name: "Kubernetes schemas, unknown fields included",
    profiles: EVERY_PROFILE,
    run: schemaViolations,
  },
  {
    name: "namespace with Pod Security restricted",
    profiles: EVERY_PROFILE,
    run: namespaceViolations,
  },
  {
    name: "Pod Security restricted on every pod",
    profiles: EVERY_PROFILE,
    run: podSecurityViolations,
  },
  {
    name: "startup, readiness and liveness probes",
    profiles: EVERY_PROFILE,
    run: probeViolations,
  },
  { name: "images pinned, never latest", profiles: EVERY_PROFILE, run: imageViolations },
  {
    name: "grace period above drain + shutdown timeout",
    profiles: EVERY_PROFILE,
    run: shutdownViolations,
  },
  {
    name: "trusted proxies: the ingress controller only",
    profiles: EVERY_PROFILE,
    run: trustedProxyViolations,
  },
  {
    name: "default deny, only the gateway reachable from outside",
    profiles: EVERY_PROFILE,
    run: networkViolations,
  },
  { name: "no Secret in the base", profiles: ["base"], run: noSecretViolations },
  { name: "references resolve", profiles: ["production", "kind"], run: referenceViolations },
  { name: "production configuration", profiles: ["production"], run: productionConfigViolations },
  { name: "production Secret", profiles: ["production"], run: productionSecretViolations },
  {
    name: "autoscaler, disruption budget and spread per service",
    profiles: ["production"],
    run: availabilityViolations,
  },
  {
    name: "NATS, Redis and MongoDB reachable only from ordermesh",
    profiles: ["production"],
    run: datastoreNetworkViolations,
  },
  {
    name: "local cluster: one of each, embedded stores, usable secrets",
    profiles: ["kind"],
    run: localClusterViolations,
  },
];

/** Every violation of one kustomization: the union of the checks that apply to it. */
export function policyViolations(profile: Profile, objects: readonly KubeObject[]): string[] {
  return CHECKS.filter((check) => check.profiles.includes(profile)).flatMap((check) => check.run(objects));
}
