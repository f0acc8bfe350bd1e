/** Typing helpers for service and mixin schemas. */
import type { ServiceSchema, ServiceSettingSchema } from "moleculer";

/**
 * Any service schema, whatever its settings, methods and vars. Moleculer's own
 * `createService` takes `ServiceSchema<any, any, any>`; this names that once.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- mirrors Moleculer's createService signature
export type AnyServiceSchema = ServiceSchema<any, any, any>;

/**
 * Declare a mixin whose handlers see `this` with the vars `TVars`. Moleculer types `mixins` with the
 * default `this`, so the typed schema is widened here, once, instead of in every handler.
 */
export function defineMixin<TVars, TSettings = ServiceSettingSchema>(
  schema: Partial<ServiceSchema<TSettings, Record<string, never>, TVars>>,
): Partial<ServiceSchema> {
  return schema as unknown as Partial<ServiceSchema>;
}
