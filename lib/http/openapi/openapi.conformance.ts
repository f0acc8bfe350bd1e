/**
 * Holds the HTTP API to its description: which served routes the document misses (and which
 * documented operations nothing serves), and whether one real answer — status, required headers,
 * media type, body — is one the document allows. The contract test drives every operation through
 * this; a route added without documentation, or an answer drifting from its schema, shows up here.
 *
 * The JSON Schema validator is passed in (`CompileSchema`; the tests use ajv's 2020-12 dialect),
 * so that the running service carries no validator it does not use.
 */
import { HEADERS } from "../../constants";
import type {
  HeaderObject,
  HttpMethod,
  JsonSchema,
  OpenApiDocument,
  OperationObject,
  Reference,
  ResponseObject,
} from "./openapi.types";

/** Compiles a self-contained JSON Schema 2020-12 into a check listing the problems of a value (none: valid). */
export type CompileSchema = (schema: JsonSchema) => (value: unknown) => string[];

/** An alias as moleculer-web lists it (`gateway.listAliases`): methods and full path. */
export interface AliasListing {
  methods: string;
  fullPath: string;
}

/** One answer as received. */
export interface ObservedAnswer {
  status: number;
  headers: { get(name: string): string | null };
  /** Parsed JSON for a JSON answer, the text otherwise, undefined for binary content. */
  body: unknown;
}

const SCHEMA_REF = /^#\/components\/schemas\/([^/]+)$/;

/** `GET /api/v1/orders/{id}` for a moleculer-web alias (`:id` → `{id}`). */
export function operationKey(method: string, path: string): string {
  return `${method.toUpperCase()} ${path.replace(/:([A-Za-z_][A-Za-z0-9_]*)/g, "{$1}")}`;
}

/** Every operation of the document as `METHOD /template`. */
export function documentedOperations(document: OpenApiDocument): string[] {
  return Object.entries(document.paths).flatMap(([template, item]) =>
    Object.keys(item).map((method) => operationKey(method, template)),
  );
}

/**
 * What the served aliases and the document disagree on: an alias served but not documented, or an
 * operation documented but served by no alias. Empty when they match exactly.
 */
export function coverageProblems(document: OpenApiDocument, aliases: readonly AliasListing[]): string[] {
  const served = new Set(aliases.map((alias) => operationKey(alias.methods, alias.fullPath)));
  const documented = new Set(documentedOperations(document));
  return [
    ...[...served].filter((op) => !documented.has(op)).map((op) => `served but not documented: ${op}`),
    ...[...documented].filter((op) => !served.has(op)).map((op) => `documented but not served: ${op}`),
  ];
}

/** Checks real answers against the document. */
export class ApiContract {
  private readonly checks = new Map<string, (value: unknown) => string[]>();
  private readonly templates: { template: string; pattern: RegExp }[];

  constructor(
    private readonly document: OpenApiDocument,
    private readonly compile: CompileSchema,
  ) {
    // a concrete path wins over a template that also matches it (/docs/x before /docs/{file})
    this.templates = Object.keys(document.paths)
      .map((template) => ({ template, pattern: patternOf(template) }))
      .sort((a, b) => parameterCount(a.template) - parameterCount(b.template));
  }

  /** The documented operation answering `method path` (a concrete path, query string ignored). */
  operationFor(method: string, path: string): { template: string; operation: OperationObject } | undefined {
    const pathname = path.split("?")[0] as string;
    for (const { template, pattern } of this.templates) {
      if (!pattern.test(pathname)) continue;
      const operation = this.document.paths[template]?.[method.toLowerCase() as HttpMethod];
      if (operation !== undefined) return { template, operation };
    }
    return undefined;
  }

  /**
   * Compiles every schema the document holds (components, parameters, bodies, answers) and lists
   * those the validator refuses, e.g. an unknown keyword under a strict validator.
   */
  schemaProblems(): string[] {
    const schemas: [string, JsonSchema][] = Object.entries(this.document.components.schemas).map(
      ([name, schema]) => [`components.schemas.${name}`, schema],
    );
    for (const [template, item] of Object.entries(this.document.paths)) {
      for (const [method, operation] of Object.entries(item) as [string, OperationObject][]) {
        const at = `${method.toUpperCase()} ${template}`;
        for (const parameter of operation.parameters ?? [])
          schemas.push([`${at} ${parameter.name}`, parameter.schema]);
        for (const [type, media] of Object.entries(operation.requestBody?.content ?? {}))
          if (media.schema !== undefined) schemas.push([`${at} body ${type}`, media.schema]);
        for (const [status, response] of Object.entries(operation.responses))
          for (const [type, media] of Object.entries(response.content ?? {}))
            if (media.schema !== undefined) schemas.push([`${at} ${status} ${type}`, media.schema]);
      }
    }
    return schemas.flatMap(([at, schema]) => {
      try {
        this.compile(this.standalone(schema));
        return [];
      } catch (err) {
        return [`${at}: ${err instanceof Error ? err.message : String(err)}`];
      }
    });
  }

  /** What is wrong with this answer to `method path`; empty when the document allows it. */
  problemsOf(method: string, path: string, answer: ObservedAnswer): string[] {
    const found = this.operationFor(method, path);
    const where = `${method.toUpperCase()} ${path} → ${answer.status}`;
    if (found === undefined) return [`${where}: no documented operation`];
    const response = found.operation.responses[String(answer.status)];
    if (response === undefined) return [`${where}: status not documented for ${found.template}`];
    return [
      ...this.headerProblems(response, answer),
      ...this.bodyProblems(`${method} ${found.template} ${answer.status}`, response, answer),
    ].map((problem) => `${where}: ${problem}`);
  }

  private headerProblems(response: ResponseObject, answer: ObservedAnswer): string[] {
    return Object.entries(response.headers ?? {})
      .filter(([name, header]) => this.header(header).required === true && answer.headers.get(name) === null)
      .map(([name]) => `required header ${name} missing`);
  }

  private bodyProblems(key: string, response: ResponseObject, answer: ObservedAnswer): string[] {
    const content = response.content ?? {};
    if (Object.keys(content).length === 0) return [];
    const received =
      (answer.headers.get(HEADERS.contentType) ?? "").split(";")[0]?.trim().toLowerCase() ?? "";
    const mediaType = Object.keys(content).find((type) => type.toLowerCase() === received);
    if (mediaType === undefined)
      return [`content type "${received}" not documented (${Object.keys(content).join(", ")})`];
    const schema = content[mediaType]?.schema;
    if (schema === undefined) return [];
    const cacheKey = `${key} ${mediaType}`;
    let check = this.checks.get(cacheKey);
    if (check === undefined) {
      check = this.compile(this.standalone(schema));
      this.checks.set(cacheKey, check);
    }
    return check(answer.body).map((problem) => `body: ${problem}`);
  }

  /** The schema with every component it may refer to under `$defs`, refs rewritten to match. */
  private standalone(schema: JsonSchema): JsonSchema {
    return {
      ...(rewriteRefs(schema) as JsonSchema),
      $defs: rewriteRefs(this.document.components.schemas) as Record<string, JsonSchema>,
    };
  }

  private header(header: HeaderObject | Reference): HeaderObject {
    if (!("$ref" in header)) return header;
    const name = header.$ref.replace(/^#\/components\/headers\//, "");
    const found = this.document.components.headers[name];
    if (found === undefined) throw new Error(`unresolved header reference ${header.$ref}`);
    return found;
  }
}

function parameterCount(template: string): number {
  return template.split("{").length - 1;
}

/** `/api/v1/orders/{id}` → a pattern matching one non-empty segment per parameter. */
function patternOf(template: string): RegExp {
  const escaped = template
    .split(/\{[^}]+\}/)
    .map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"))
    .join("[^/]+");
  return new RegExp(`^${escaped}$`);
}

/** A deep copy with `#/components/schemas/X` refs turned into `#/$defs/X`. */
function rewriteRefs(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(rewriteRefs);
  if (typeof value !== "object" || value === null) return value;
  return Object.fromEntries(
    Object.entries(value).map(([key, inner]) => {
      if (key === "$ref" && typeof inner === "string") {
        const match = SCHEMA_REF.exec(inner);
        return [key, match === null ? inner : `#/$defs/${match[1] as string}`];
      }
      return [key, rewriteRefs(inner)];
    }),
  );
}
