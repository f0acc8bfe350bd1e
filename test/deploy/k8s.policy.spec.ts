/**
 * The Kubernetes manifests, checked offline: every kustomization under k8s/ is rendered with
 * `kubectl kustomize`, every object is validated against Kubernetes' schemas (unknown fields
 * included), and the deployment policy (Pod Security "restricted", probes, pinned images, shutdown
 * timing, network isolation, production settings) holds. Mutated copies prove each check bites.
 */
import { join } from "node:path";
import { Deployment } from "kubernetes-models/apps/v1/Deployment";
import {
  kubectl,
  render,
  requireKustomizeV5,
  schemaViolations,
  stageManifests,
  type KubeObject,
} from "../support/k8s-manifests";
import { CHECKS, podTemplateOf, policyViolations, type Profile } from "../support/k8s-policy";

const KUSTOMIZATIONS: Readonly<Record<Profile, string>> = {
  base: "base",
  production: "overlays/production",
  kind: "overlays/kind",
};
const PROFILES = Object.keys(KUSTOMIZATIONS) as Profile[];

/** A mutation: `key` set to `value` in the rendered ConfigMap. */
function setConfig(objects: KubeObject[], key: string, value: string): void {
  const config = objects.find((obj) => obj.kind === "ConfigMap");
  (config?.data as Record<string, string>)[key] = value;
}

kubectl.describe("kubernetes manifests", () => {
  const rendered = new Map<Profile, KubeObject[]>();
  let cleanup = (): void => {};

  beforeAll(() => {
    const binary = kubectl.path ?? "kubectl";
    requireKustomizeV5(binary);
    const staged = stageManifests();
    cleanup = staged.cleanup;
    for (const profile of PROFILES) {
      rendered.set(profile, render(binary, join(staged.dir, KUSTOMIZATIONS[profile])));
    }
  });

  afterAll(() => cleanup());

  const objectsOf = (profile: Profile): KubeObject[] => {
    const objects = rendered.get(profile);
    if (objects === undefined) throw new Error(`${profile} was not rendered`);
    return objects;
  };

  /** A deep copy of one kustomization's output, for a mutation to change. */
  const copyOf = (profile: Profile): KubeObject[] => structuredClone(objectsOf(profile));

  const deployment = (objects: KubeObject[], name: string): KubeObject => {
    const found = objects.find((obj) => obj.kind === "Deployment" && obj.metadata.name === name);
    if (found === undefined) throw new Error(`no Deployment ${name}`);
    return found;
  };

  /** The first container of a Deployment, as a plain record a mutation may change. */
  const containerOf = (objects: KubeObject[], name: string): Record<string, unknown> => {
    const container = podTemplateOf(deployment(objects, name))?.spec?.containers?.[0];
    if (container === undefined) throw new Error(`Deployment ${name} has no container`);
    return container as unknown as Record<string, unknown>;
  };

  describe.each(PROFILES)("%s", (profile) => {
    it("renders", () => {
      expect(objectsOf(profile).length).toBeGreaterThan(0);
    });

    const checks = CHECKS.filter((check) => check.profiles.includes(profile));
    it.each(checks.map((check) => [check.name, check] as const))("%s", (_name, check) => {
      expect(check.run(objectsOf(profile))).toEqual([]);
    });
  });

  it("has pod templates and containers to check in every overlay", () => {
    for (const profile of PROFILES) {
      const templates = objectsOf(profile).filter((obj) => podTemplateOf(obj) !== undefined);
      expect(templates.length).toBeGreaterThanOrEqual(5);
    }
  });

  describe("kubernetes-models alone", () => {
    it("accepts an unknown field, which is why the schema check looks for undeclared fields", () => {
      const obj = structuredClone(deployment(objectsOf("production"), "gateway"));
      (podTemplateOf(obj)?.spec?.containers?.[0] as unknown as Record<string, unknown>).readinesProbe = {};
      expect(() =>
        new Deployment(obj as unknown as ConstructorParameters<typeof Deployment>[0]).validate(),
      ).not.toThrow();
      expect(schemaViolations([obj])).toEqual([
        expect.stringContaining("unknown field /spec/template/spec/containers/0/readinesProbe"),
      ]);
    });

    it("still rejects a wrong type", () => {
      const obj = structuredClone(deployment(objectsOf("production"), "gateway"));
      (podTemplateOf(obj)?.spec as unknown as Record<string, unknown>).terminationGracePeriodSeconds =
        "forty";
      expect(schemaViolations([obj])).toEqual([expect.stringContaining("terminationGracePeriodSeconds")]);
    });
  });

  describe("mutations are caught by the same checks", () => {
    type Mutation = [
      title: string,
      profile: Profile,
      mutate: (objects: KubeObject[]) => void,
      expected: string,
    ];
    const mutations: Mutation[] = [
      [
        "capabilities drop ALL removed",
        "production",
        (objects) => {
          const context = containerOf(objects, "orders").securityContext as Record<string, unknown>;
          delete context.capabilities;
        },
        "capabilities.drop does not include ALL",
      ],
      [
        "an image set to :latest",
        "production",
        (objects) => {
          containerOf(objects, "payments").image = "ordermesh:latest";
        },
        "is :latest",
      ],
      [
        "an untagged image",
        "kind",
        (objects) => {
          containerOf(objects, "redis").image = "redis";
        },
        "has no tag",
      ],
      [
        "a readinessProbe removed",
        "production",
        (objects) => {
          delete containerOf(objects, "inventory").readinessProbe;
        },
        "no readinessProbe",
      ],
      [
        "an unknown field in a container",
        "kind",
        (objects) => {
          containerOf(objects, "notifications").securityContextt = { privileged: true };
        },
        "unknown field /spec/template/spec/containers/0/securityContextt",
      ],
      [
        "allowPrivilegeEscalation true",
        "production",
        (objects) => {
          (
            containerOf(objects, "gateway").securityContext as Record<string, unknown>
          ).allowPrivilegeEscalation = true;
        },
        "allowPrivilegeEscalation is not false",
      ],
      [
        "a hostPath volume",
        "kind",
        (objects) => {
          podTemplateOf(deployment(objects, "nats"))?.spec?.volumes?.push({
            name: "host",
            hostPath: { path: "/" },
          });
        },
        "volume host is hostPath",
      ],
      [
        "a grace period the stop does not fit in",
        "production",
        (objects) => {
          const spec = podTemplateOf(deployment(objects, "gateway"))?.spec;
          if (spec !== undefined) spec.terminationGracePeriodSeconds = 30;
        },
        "terminationGracePeriodSeconds 30 is not above",
      ],
      [
        "TRUSTED_PROXIES = 10.0.0.0/8",
        "production",
        (objects) => setConfig(objects, "TRUSTED_PROXIES", "10.0.0.0/8"),
        "TRUSTED_PROXIES entry 10.0.0.0/8",
      ],
      [
        "demo data seeded in production",
        "production",
        (objects) => setConfig(objects, "SEED_DEMO", "true"),
        "SEED_DEMO is true",
      ],
      [
        "a Secret in the base",
        "base",
        (objects) => {
          objects.push({
            apiVersion: "v1",
            kind: "Secret",
            metadata: { name: "leak", namespace: "ordermesh" },
          });
        },
        "a Secret in the base",
      ],
      [
        "the default deny removed",
        "production",
        (objects) => {
          objects.splice(
            objects.findIndex((obj) => obj.metadata.name === "default-deny-ingress"),
            1,
          );
        },
        "no default-deny ingress NetworkPolicy",
      ],
      [
        "a domain service published as NodePort",
        "kind",
        (objects) => {
          objects.push({
            apiVersion: "v1",
            kind: "Service",
            metadata: { name: "orders", namespace: "ordermesh" },
            spec: {
              type: "NodePort",
              selector: { "app.kubernetes.io/name": "ordermesh", "app.kubernetes.io/component": "orders" },
              ports: [{ port: 9000, targetPort: "admin" }],
            },
          });
        },
        "published (NodePort) but not the gateway",
      ],
      [
        "a service's disruption budget removed",
        "production",
        (objects) => {
          objects.splice(
            objects.findIndex(
              (obj) => obj.kind === "PodDisruptionBudget" && obj.metadata.name === "payments",
            ),
            1,
          );
        },
        "Deployment ordermesh/payments: no PodDisruptionBudget",
      ],
    ];

    it.each(mutations)("%s (%s)", (_title, profile, mutate, expected) => {
      const objects = copyOf(profile);
      expect(policyViolations(profile, objects)).toEqual([]);
      mutate(objects);
      expect(policyViolations(profile, objects)).toEqual(
        expect.arrayContaining([expect.stringContaining(expected)]),
      );
    });
  });
});
