/**
 * The parts of OpenAPI 3.1 (https://spec.openapis.org/oas/v3.1.0) that ordermesh's API description
 * uses, typed just enough for the builder and the conformance checks to agree on one shape.
 */
import { OrdermeshError } from "../../errors";

/** A JSON Schema 2020-12 object (the dialect of OpenAPI 3.1). Keywords are checked by validators, not here. */
export interface JsonSchema {
  [keyword: string]: unknown;
}

export type HttpMethod = "get" | "put" | "post" | "delete" | "patch" | "head" | "options";

export interface HeaderObject {
  description?: string;
  required?: boolean;
  schema: JsonSchema;
}

/** A header described once in `components.headers` and referred to by `$ref`. */
export interface Reference {
  $ref: string;
}

export interface MediaTypeObject {
  schema?: JsonSchema;
}

export interface ResponseObject {
  description: string;
  headers?: Record<string, HeaderObject | Reference>;
  content?: Record<string, MediaTypeObject>;
}

export interface ParameterObject {
  name: string;
  in: "path" | "query" | "header";
  required: boolean;
  description?: string;
  schema: JsonSchema;
}

export interface RequestBodyObject {
  description?: string;
  required: boolean;
  content: Record<string, MediaTypeObject>;
}

export type SecurityRequirement = Record<string, string[]>;

export interface OperationObject {
  operationId: string;
  summary: string;
  description?: string;
  tags: string[];
  security: SecurityRequirement[];
  parameters?: ParameterObject[];
  requestBody?: RequestBodyObject;
  responses: Record<string, ResponseObject>;
}

export type PathItemObject = Partial<Record<HttpMethod, OperationObject>>;

export interface OpenApiDocument {
  openapi: string;
  info: {
    title: string;
    version: string;
    description?: string;
    license?: { name: string; identifier?: string };
  };
  servers: { url: string; description?: string }[];
  tags: { name: string; description: string }[];
  paths: Record<string, PathItemObject>;
  components: {
    schemas: Record<string, JsonSchema>;
    headers: Record<string, HeaderObject>;
    securitySchemes: Record<
      string,
      { type: "http"; scheme: string; bearerFormat?: string; description?: string }
    >;
  };
}

/** Why the API could not be described: raised while the document is built, never at request time. */
export type ApiDescriptionErrorCode =
  /** A fastest-validator rule (or one of its properties) the converter does not know. */
  | "UNSUPPORTED_PARAM_RULE"
  /** An alias whose target action has no entry in the operations table. */
  | "UNDOCUMENTED_OPERATION"
  /** An alias form the builder cannot read (no method, REST shorthand, function handler, …). */
  | "UNSUPPORTED_ALIAS";

/** The document cannot be built: something served would go undocumented or be documented wrong. */
export class ApiDescriptionError extends OrdermeshError {
  constructor(code: ApiDescriptionErrorCode, message: string, data?: Record<string, unknown>) {
    super(code, message, { data });
  }
}
