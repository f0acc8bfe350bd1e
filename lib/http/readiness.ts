/**
 * The gateway's `GET /readyz` (docs/operations.md, "Shutdown and probes"): ready when its broker
 * runs and is not draining, its bus and key-value store answer, and every service in
 * REQUIRED_SERVICES has an instance that reports healthy. Every failed check says why; a check
 * never throws.
 */

/** One readiness check. */
export interface ReadinessCheck {
  ok: boolean;
  error?: string;
  /** The node whose instance of a service answered. */
  nodeID?: string;
}

export interface Readiness {
  ready: boolean;
  checks: Record<string, ReadinessCheck>;
}

/** What the checks look at. */
export interface ReadinessProbe {
  /** The broker has started and the gateway is not draining. */
  accepting: boolean;
  /** Adapters to ping, by check name; undefined when not open. */
  adapters: Readonly<Record<string, { ping(): Promise<void> } | undefined>>;
  /** The services that must be healthy. */
  requiredServices: readonly string[];
  /** The services with at least one available instance. */
  availableServices: ReadonlySet<string>;
  /** A service's `health` action, called on one of its instances. */
  health(service: string): Promise<{ healthy: boolean; nodeID?: string }>;
}

/** Run every check at once. */
export async function readinessOf(probe: ReadinessProbe): Promise<Readiness> {
  const checks: Record<string, ReadinessCheck> = { broker: { ok: probe.accepting } };
  const run = async (name: string, check: () => Promise<ReadinessCheck>): Promise<void> => {
    try {
      checks[name] = await check();
    } catch (err) {
      checks[name] = { ok: false, error: err instanceof Error ? err.message : String(err) };
    }
  };
  await Promise.all([
    ...Object.entries(probe.adapters).map(([name, adapter]) =>
      run(name, async () => {
        if (adapter === undefined) throw new Error("not open");
        await adapter.ping();
        return { ok: true };
      }),
    ),
    ...probe.requiredServices.map((service) =>
      run(service, async () => {
        if (!probe.availableServices.has(service)) return { ok: false, error: "no instance has joined" };
        const report = await probe.health(service);
        return { ok: report.healthy, nodeID: report.nodeID };
      }),
    ),
  ]);
  return { ready: Object.values(checks).every((check) => check.ok), checks };
}
