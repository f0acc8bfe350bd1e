/**
 * Rendering of the Prometheus text exposition format (version 0.0.4) from several registries, and
 * the process metrics (CPU, memory, event loop, GC) of the running process.
 */
import { Registry, collectDefaultMetrics } from "prom-client";

/** Content type of the Prometheus text format, for the `Content-Type` of `GET /metrics`. */
export const PROMETHEUS_CONTENT_TYPE: string = Registry.PROMETHEUS_CONTENT_TYPE;

let processRegistry: Registry | undefined;

/**
 * The metrics of this process, created on first use. One registry per process, not per gateway:
 * they describe the process, and their collectors (an event-loop delay monitor, a GC observer)
 * cannot be stopped, so a process that starts several gateways (tests) must start them once.
 */
export function processMetrics(): Registry {
  if (processRegistry === undefined) {
    processRegistry = new Registry();
    collectDefaultMetrics({ register: processRegistry });
  }
  return processRegistry;
}

/**
 * The text of every metric in `registries`, one after the other. Merging first makes a name that
 * two registries both define an error here rather than a duplicate family in the output.
 */
export async function renderMetrics(registries: readonly Registry[]): Promise<string> {
  return Registry.merge([...registries]).metrics();
}
