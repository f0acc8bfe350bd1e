/**
 * What the OpenAPI suites share: the strict JSON Schema 2020-12 compiler that judges the document
 * and the answers held against it, a small gateway schema to build documents from, and the code of
 * an error a conversion throws.
 */
import Ajv2020 from "ajv/dist/2020";
import type { CompileSchema } from "../../lib/http/openapi/openapi.conformance";
import type { GatewaySchema } from "../../lib/http/openapi/openapi.document";
import { ORDER_ITEMS_PARAM } from "../../lib/params";

const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;

/** ajv's 2020-12 dialect, strict: an unknown keyword in the document fails to compile. */
export function ajvCompile(): CompileSchema {
  const ajv = new Ajv2020({ strict: true, allErrors: true, allowUnionTypes: true });
  ajv.addFormat("date-time", {
    type: "string",
    validate: (s: string) => RFC3339.test(s) && !Number.isNaN(Date.parse(s)),
  });
  return (schema) => {
    const validate = ajv.compile(schema);
    return (value) =>
      validate(value)
        ? []
        : (validate.errors ?? []).map((e) =>
            e.keyword === "additionalProperties"
              ? `${e.instancePath || "/"} has the undocumented property "${String(e.params.additionalProperty)}"`
              : `${e.instancePath || "/"} ${e.message ?? e.keyword}`,
          );
  };
}

/** The params rule of an id in a path, as the gateway's actions declare it. */
export const ID_PARAM = { type: "string", min: 1, max: 128 };

/** A gateway schema shaped like services/gateway.service.ts, reduced to a few aliases. */
export function aGateway(
  apiAliases: Record<string, string> = {},
  actions: Record<string, unknown> = {},
): GatewaySchema {
  return {
    name: "gateway",
    settings: {
      routes: [
        {
          path: "/api/v1",
          authentication: true,
          authorization: true,
          bodyParsers: { json: { strict: true, limit: "64kb" }, urlencoded: false },
          aliases: {
            "POST /orders": "gateway.placeOrder",
            "GET /orders": "gateway.listOrders",
            "GET /orders/:id": "gateway.getOrder",
            ...apiAliases,
          },
        },
        { path: "/", bodyParsers: { json: false }, aliases: { "GET /livez": "gateway.livez" } },
      ],
    },
    actions: {
      placeOrder: {
        params: {
          $$strict: true,
          items: ORDER_ITEMS_PARAM,
          paymentMethod: { type: "string", optional: true },
        },
      },
      listOrders: {
        params: {
          $$strict: true,
          limit: { type: "number", integer: true, min: 1, max: 100, optional: true, convert: true },
          cursor: { type: "string", optional: true },
        },
      },
      getOrder: { params: { $$strict: true, id: ID_PARAM } },
      livez: { handler: () => ({ status: "ok" }) },
      ...actions,
    },
  };
}

/** The `code` of what `run` throws, or "no error" when it throws nothing. */
export function codeOf(run: () => unknown): unknown {
  try {
    run();
  } catch (err) {
    return (err as { code?: unknown }).code;
  }
  return "no error";
}
