/**
 * The OpenAPI 3.1 description of the HTTP API, built from the gateway's own service schema: every
 * alias of `settings.routes` becomes an operation, its path, query and body parameters are the
 * target action's `params` (params.converter.ts), and the errors the route itself can cause are
 * derived from the route (validation, authentication, body parsing, rate limits). The rest comes
 * from the operations table (openapi.operations.ts). Building throws `ApiDescriptionError` for an
 * alias without documentation or a rule the converter does not know, so neither can be served
 * undocumented.
 */
import { HEADERS } from "../../constants";
import { spelled } from "../headers";
import { REQUEST_ID_PATTERN } from "../request-id";
import { convertParams, type ConvertedParams, type ConvertedRule } from "./params.converter";
import { COMPONENT_SCHEMAS, schemaRef } from "./openapi.schemas";
import { ERROR_STATUSES, OPERATIONS, TAGS, type ErrorStatus, type OperationDoc } from "./openapi.operations";
import {
  ApiDescriptionError,
  type HeaderObject,
  type HttpMethod,
  type JsonSchema,
  type OpenApiDocument,
  type OperationObject,
  type ParameterObject,
  type Reference,
  type RequestBodyObject,
  type ResponseObject,
  type SecurityRequirement,
} from "./openapi.types";

/** The OpenAPI version the document follows. */
export const OPENAPI_VERSION = "3.1.0";
/** Version of the description of API v1; raise it when the document changes meaningfully. */
export const API_DESCRIPTION_VERSION = "1.0.0";

/** The part of a moleculer-web route the builder reads. */
export interface GatewayRoute {
  path?: string;
  aliases?: Readonly<Record<string, unknown>>;
  authentication?: boolean;
  /** The gateway takes rate limits in moleculer-web's authorize hook. */
  authorization?: boolean;
  bodyParsers?: Readonly<Record<string, unknown>>;
}

/** The part of the gateway's (merged) service schema the builder reads. */
export interface GatewaySchema {
  name: string;
  settings?: { routes?: readonly GatewayRoute[] };
  actions?: Readonly<Record<string, unknown>>;
}

/** One alias, as the gateway serves it. */
export interface ServedAlias {
  method: HttpMethod;
  /** Full path in moleculer-web syntax, e.g. `/api/v1/orders/:id`. */
  path: string;
  /** The same path as an OpenAPI template, e.g. `/api/v1/orders/{id}`. */
  template: string;
  action: string;
  route: GatewayRoute;
}

const METHODS_WITH_BODY = new Set<HttpMethod>(["post", "put", "patch"]);
const ALIAS_KEY = /^(GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS)\s+(\/\S*)$/;
const PATH_PARAM = /:([A-Za-z_][A-Za-z0-9_]*)/g;
const BEARER: SecurityRequirement = { bearerAuth: [] };

const STATUS_LABELS: Readonly<Record<ErrorStatus, string>> = {
  400: "Bad request",
  401: "Not authenticated (answered with WWW-Authenticate: Bearer)",
  403: "Forbidden",
  404: "Not found",
  409: "Conflict",
  413: "Body too large",
  415: "Unsupported media type",
  422: "Unprocessable",
  429: "Too many requests: retry after Retry-After seconds",
  503: "Unavailable for a moment: retry after Retry-After seconds",
};

const documents = new WeakMap<object, OpenApiDocument>();

/** The document of this gateway schema, built on first use and then reused (the schema does not change). */
export function openApiDocumentOf(gateway: GatewaySchema): OpenApiDocument {
  let document = documents.get(gateway);
  if (document === undefined) {
    // a private, frozen copy: no caller can change what the next one is served
    document = deepFreeze(structuredClone(buildOpenApiDocument(gateway)));
    documents.set(gateway, document);
  }
  return document;
}

/** Every alias of the gateway's routes, in the order moleculer-web registers them. */
export function servedAliases(gateway: GatewaySchema): ServedAlias[] {
  const served: ServedAlias[] = [];
  for (const route of gateway.settings?.routes ?? []) {
    for (const [key, target] of Object.entries(route.aliases ?? {})) {
      const match = ALIAS_KEY.exec(key.trim());
      if (match === null) unsupportedAlias(key, "expected `METHOD /path`");
      if (typeof target !== "string" || target.includes(":"))
        unsupportedAlias(key, "the target must be an action name");
      const path = joinPaths(route.path ?? "/", match[2] as string);
      const template = path.replace(PATH_PARAM, "{$1}");
      if (/[:*?()[\]]/.test(template))
        unsupportedAlias(key, "only plain `:name` path parameters are described");
      served.push({
        method: (match[1] as string).toLowerCase() as HttpMethod,
        path,
        template,
        action: target,
        route,
      });
    }
  }
  return served;
}

/** Builds the document; throws `ApiDescriptionError` for anything it cannot describe truthfully. */
export function buildOpenApiDocument(
  gateway: GatewaySchema,
  operations: Readonly<Record<string, OperationDoc>> = OPERATIONS,
): OpenApiDocument {
  const paths: OpenApiDocument["paths"] = {};
  for (const alias of servedAliases(gateway)) {
    const doc = operations[alias.action];
    if (doc === undefined)
      throw new ApiDescriptionError(
        "UNDOCUMENTED_OPERATION",
        `${alias.method.toUpperCase()} ${alias.path} calls ${alias.action}, which the operations table does not document`,
        { action: alias.action },
      );
    const item = (paths[alias.template] ??= {});
    if (item[alias.method] !== undefined)
      unsupportedAlias(`${alias.method.toUpperCase()} ${alias.path}`, "served twice");
    item[alias.method] = operationOf(alias, doc, paramsOf(gateway, alias));
  }
  return {
    openapi: OPENAPI_VERSION,
    info: {
      title: "ordermesh API",
      version: API_DESCRIPTION_VERSION,
      description: API_DESCRIPTION,
      license: { name: "MIT", identifier: "MIT" },
    },
    servers: [{ url: "/", description: "This gateway" }],
    tags: Object.entries(TAGS).map(([name, description]) => ({ name, description })),
    paths,
    components: {
      schemas: structuredClone(COMPONENT_SCHEMAS),
      headers: Object.fromEntries(
        Object.entries(COMPONENT_HEADERS).map(([name, header]) => [spelled(name), structuredClone(header)]),
      ),
      securitySchemes: {
        bearerAuth: {
          type: "http",
          scheme: "bearer",
          bearerFormat: "JWT",
          description: "`sub` is the customer id; `roles` ⊂ {customer, admin}.",
        },
      },
    },
  };
}

const API_DESCRIPTION = [
  "Orders, catalog, payments and notifications of ordermesh (HTTP API v1).",
  "",
  "Every error is `{ error: { code, message, details?, requestId } }`; branch on `code`. Every answer",
  "carries `X-Request-Id` (yours when it is at most 128 plain characters). A customer sees only their",
  "own resources: someone else's order is 404, not 403. Routes under /api/v1 (the webhook aside) are",
  "rate-limited per caller: `RateLimit-Policy` and `RateLimit` say how much is left, and a refusal is",
  "429 `RATE_LIMITED` with `Retry-After`. With `CORS_ORIGINS` set, a browser calling from another",
  "origin is refused 403 `ORIGIN_NOT_ALLOWED`.",
].join("\n");

/** The target action's converted `params`, or null when it has none. */
function paramsOf(gateway: GatewaySchema, alias: ServedAlias): ConvertedParams | null {
  const prefix = `${gateway.name}.`;
  if (!alias.action.startsWith(prefix))
    unsupportedAlias(alias.path, `${alias.action} is not an action of ${gateway.name}`);
  const action = gateway.actions?.[alias.action.slice(prefix.length)];
  if (action === undefined || action === false || action === null)
    unsupportedAlias(alias.path, `${alias.action} does not exist`);
  const params = typeof action === "object" ? (action as { params?: unknown }).params : undefined;
  if (params === undefined) return null;
  if (typeof params !== "object" || params === null)
    throw new ApiDescriptionError("UNSUPPORTED_PARAM_RULE", `${alias.action}: params must be an object`);
  return convertParams(params as Record<string, unknown>, `${alias.action} params`);
}

function operationOf(alias: ServedAlias, doc: OperationDoc, params: ConvertedParams | null): OperationObject {
  const { method, route } = alias;
  if (doc.access !== "none" && route.authentication !== true)
    unsupportedAlias(alias.path, `${alias.action} wants a token on a route without authentication`);
  const properties = { ...params?.properties };
  const parameters: ParameterObject[] = [];

  for (const [, name] of alias.path.matchAll(PATH_PARAM)) {
    const rule = properties[name as string];
    if (rule === undefined) unsupportedAlias(alias.path, `the path parameter :${name} is not in the params`);
    parameters.push(textParameter(name as string, "path", rule, alias.action));
    delete properties[name as string];
  }

  let requestBody: RequestBodyObject | undefined = doc.rawBody;
  const rest = Object.entries(properties);
  if (rest.length > 0 && METHODS_WITH_BODY.has(method)) {
    if (doc.rawBody !== undefined)
      unsupportedAlias(alias.path, `${alias.action} has both params and a raw body`);
    requestBody = jsonBody(rest, params?.closed === true);
  } else {
    for (const [name, rule] of rest) parameters.push(textParameter(name, "query", rule, alias.action));
  }

  if (doc.idempotencyKey !== undefined) parameters.push(idempotencyKeyParameter(doc.idempotencyKey));
  parameters.push(...(doc.headers ?? []));

  const description = [
    doc.description,
    params?.closed === true && !METHODS_WITH_BODY.has(method) && rest.length > 0
      ? "Unknown query parameters are refused (400 `VALIDATION_ERROR`)."
      : undefined,
  ].filter((line) => line !== undefined);

  return {
    operationId: alias.action.slice(alias.action.indexOf(".") + 1),
    summary: doc.summary,
    ...(description.length === 0 ? {} : { description: description.join(" ") }),
    tags: [doc.tag],
    security: doc.access === "bearer" ? [BEARER] : doc.access === "optional-bearer" ? [{}, BEARER] : [],
    ...(parameters.length === 0 ? {} : { parameters }),
    ...(requestBody === undefined ? {} : { requestBody }),
    responses: responsesOf(alias, doc, params),
  };
}

/** A path or query parameter: its value arrives as text, so the rule must accept text. */
function textParameter(
  name: string,
  location: "path" | "query",
  rule: ConvertedRule,
  action: string,
): ParameterObject {
  if (!rule.acceptsText)
    throw new ApiDescriptionError(
      "UNSUPPORTED_PARAM_RULE",
      `${action} params.${name}: a ${location} value is text; this rule never accepts text (add convert: true?)`,
      { action, name },
    );
  return { name, in: location, required: location === "path" || !rule.optional, schema: rule.schema };
}

function jsonBody(properties: [string, ConvertedRule][], closed: boolean): RequestBodyObject {
  const required = properties.filter(([, rule]) => !rule.optional).map(([name]) => name);
  const schema: JsonSchema = {
    type: "object",
    properties: Object.fromEntries(properties.map(([name, rule]) => [name, rule.schema])),
    ...(required.length === 0 ? {} : { required }),
    ...(closed ? { additionalProperties: false } : {}),
  };
  return { required: required.length > 0, content: { "application/json": { schema } } };
}

function idempotencyKeyParameter(need: "required" | "optional"): ParameterObject {
  return {
    name: spelled(HEADERS.idempotencyKey),
    in: "header",
    required: need === "required",
    description:
      "Makes a retry safe: the same key and body within 24 h answer the stored response. Scoped per " +
      "caller and route. Another body with the same key is 422; while the first is running, 409.",
    schema: { type: "string", minLength: 1, maxLength: 255, pattern: "^[\\x21-\\x7e]+$" },
  };
}

function responsesOf(
  alias: ServedAlias,
  doc: OperationDoc,
  params: ConvertedParams | null,
): Record<string, ResponseObject> {
  const rateLimited = alias.route.authorization === true;
  const responses: Record<string, ResponseObject> = {};
  for (const [status, answer] of Object.entries(doc.answers)) {
    responses[status] = {
      description: answer.description,
      headers: {
        ...headerRefs([HEADERS.requestId, ...(answer.headers ?? [])]),
        ...(rateLimited ? headerRefs(RATE_LIMIT_HEADERS) : {}),
      },
      content: Object.fromEntries(
        Object.entries(answer.content).map(([type, schema]) => [type, schema === null ? {} : { schema }]),
      ),
    };
  }
  const codes = errorCodesOf(alias, doc, params, rateLimited);
  for (const status of ERROR_STATUSES) {
    const list = codes.get(status);
    if (list === undefined) continue;
    if (responses[status] !== undefined)
      unsupportedAlias(alias.path, `${status} is documented both as an answer and as an error`);
    responses[status] = errorResponse(status, list, rateLimited);
  }
  return responses;
}

/** The codes by status: those implied by the route and the params, then the operation's own. */
function errorCodesOf(
  alias: ServedAlias,
  doc: OperationDoc,
  params: ConvertedParams | null,
  rateLimited: boolean,
): Map<ErrorStatus, string[]> {
  const codes = new Map<ErrorStatus, string[]>();
  const add = (status: ErrorStatus, ...list: readonly string[]) =>
    codes.set(status, [...(codes.get(status) ?? []), ...list.filter((c) => !codes.get(status)?.includes(c))]);
  const parsers = alias.route.bodyParsers ?? {};
  const readsBody = METHODS_WITH_BODY.has(alias.method);
  if (params !== null) add(400, "VALIDATION_ERROR (details: field, message, type)");
  if (readsBody && isOn(parsers.json)) {
    add(400, "INVALID_JSON");
    add(413, "PAYLOAD_TOO_LARGE");
    add(415, "UNSUPPORTED_MEDIA_TYPE (a body must be application/json)");
  }
  if (readsBody && isOn(parsers.raw)) add(413, "PAYLOAD_TOO_LARGE");
  if (alias.route.authentication === true) {
    add(401, "UNAUTHORIZED", "TOKEN_EXPIRED");
    add(403, "ORIGIN_NOT_ALLOWED (CORS_ORIGINS is set and the browser's Origin is not in it)");
  }
  if (rateLimited) add(429, "RATE_LIMITED");
  for (const [status, list] of Object.entries(doc.errors ?? {}))
    add(Number(status) as ErrorStatus, ...(list as readonly string[]));
  return codes;
}

function errorResponse(status: ErrorStatus, codes: readonly string[], rateLimited: boolean): ResponseObject {
  const headers: Record<string, HeaderObject | Reference> = headerRefs([HEADERS.requestId]);
  if (status === 401) Object.assign(headers, headerRefs([HEADERS.wwwAuthenticate]));
  if (status === 429 || status === 503) Object.assign(headers, headerRefs([HEADERS.retryAfter]));
  if (status === 429) {
    // on a refusal the rate-limit fields are always there
    for (const name of RATE_LIMIT_HEADERS)
      headers[spelled(name)] = { ...COMPONENT_HEADERS[name], required: true };
  } else if (rateLimited) {
    Object.assign(headers, headerRefs(RATE_LIMIT_HEADERS));
  }
  const list = codes.map((code) => code.replace(/^([A-Z][A-Z0-9_]*)/, "`$1`")).join("; ");
  return {
    description: `${STATUS_LABELS[status]}. Codes: ${list}.`,
    headers,
    content: { "application/json": { schema: schemaRef("Error") } },
  };
}

/** Response headers of `components.headers`, by their name in lib/constants.ts. */
export type HeaderName = keyof typeof COMPONENT_HEADERS;

/** The rate-limit fields, policy first. */
const RATE_LIMIT_HEADERS = [HEADERS.rateLimitPolicy, HEADERS.rateLimit] as const;

/** References to `components.headers`, keyed by each header's spelled name. */
function headerRefs(names: readonly HeaderName[]): Record<string, Reference> {
  return Object.fromEntries(
    names.map((name) => [spelled(name), { $ref: `#/components/headers/${spelled(name)}` }]),
  );
}

/** Response headers, described once. */
const COMPONENT_HEADERS = {
  [HEADERS.requestId]: {
    description:
      "The request's id: the client's own when it is plain and at most 128 characters, else a new one.",
    required: true,
    schema: { type: "string", pattern: REQUEST_ID_PATTERN.source },
  },
  [HEADERS.location]: {
    description: "Where the created resource lives.",
    required: true,
    schema: { type: "string" },
  },
  [HEADERS.idempotentReplayed]: {
    description: "`true` when this is the stored answer to an earlier request with the same Idempotency-Key.",
    required: false,
    schema: { type: "string", const: "true" },
  },
  [HEADERS.retryAfter]: {
    description: "Seconds to wait before retrying.",
    required: true,
    schema: { type: "integer", minimum: 0 },
  },
  [HEADERS.rateLimitPolicy]: {
    description:
      'The caller\'s quota for this class of request (IETF draft-ietf-httpapi-ratelimit-headers), e.g. `"reads";q=100;w=2`.',
    required: false,
    schema: { type: "string" },
  },
  [HEADERS.rateLimit]: {
    description: 'What is left of the quota and when it is full again, e.g. `"reads";r=42;t=1`.',
    required: false,
    schema: { type: "string" },
  },
  [HEADERS.wwwAuthenticate]: {
    description: 'The scheme to use: `Bearer realm="ordermesh"`.',
    required: true,
    schema: { type: "string" },
  },
} satisfies Record<string, HeaderObject>;

/** A body parser setting that is switched on (`true` or an options object). */
function isOn(setting: unknown): boolean {
  return setting === true || (typeof setting === "object" && setting !== null);
}

/** moleculer-web's joining: one slash between route and alias path, none at the end. */
function joinPaths(routePath: string, aliasPath: string): string {
  const joined = `/${routePath}/${aliasPath}`.replace(/\/{2,}/g, "/");
  return joined.length > 1 ? joined.replace(/\/$/, "") : joined;
}

function unsupportedAlias(alias: string, why: string): never {
  throw new ApiDescriptionError("UNSUPPORTED_ALIAS", `alias ${alias}: ${why}`, { alias });
}

function deepFreeze<T>(value: T): T {
  if (typeof value === "object" && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const inner of Object.values(value)) deepFreeze(inner);
  }
  return value;
}
