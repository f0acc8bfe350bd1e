/**
 * The gateway's actions that describe the API: `GET /openapi.json`, built from the gateway's own
 * schema (openapi.document.ts), and the `/docs` page with its files (docs.page.ts).
 */
import type { Service, ServiceSchema } from "moleculer";
import type { ApiContext } from "../api-context";
import {
  DOCS_ASSET_NAMES,
  DOCS_PAGE,
  DOCS_PAGE_CONTENT_TYPE,
  DOCS_PAGE_HEADERS,
  docsAsset,
  type DocsAssetName,
} from "./docs.page";
import { openApiDocumentOf, type GatewaySchema } from "./openapi.document";
import type { OpenApiDocument } from "./openapi.types";

export const API_DESCRIPTION_ACTIONS: NonNullable<ServiceSchema["actions"]> = {
  openapi: {
    visibility: "published",
    handler(this: Service): OpenApiDocument {
      return openApiDocumentOf(this.schema as unknown as GatewaySchema);
    },
  },

  docs: {
    visibility: "published",
    handler(ctx: ApiContext): string {
      ctx.meta.$responseType = DOCS_PAGE_CONTENT_TYPE;
      // the page's own policy (same origin, no inline script) instead of the API's deny-all one
      ctx.meta.$responseHeaders = { ...DOCS_PAGE_HEADERS };
      return DOCS_PAGE;
    },
  },

  docsAsset: {
    visibility: "published",
    params: { $$strict: true, file: { type: "enum", values: DOCS_ASSET_NAMES } },
    handler(ctx: ApiContext<{ file: DocsAssetName }>): Buffer {
      const asset = docsAsset(ctx.params.file);
      ctx.meta.$responseType = asset.contentType;
      return asset.body;
    },
  },
};
