/**
 * The /docs page: Swagger UI showing /openapi.json, every file served by this process from the
 * `swagger-ui-dist` package (no CDN, works offline). The page runs under its own Content Security
 * Policy, looser than the API's deny-all one but still same-origin only, with no inline script:
 * the initialiser is a served file of its own (`/docs/docs.js`).
 */
import { readFileSync } from "node:fs";
import { HEADERS } from "../../constants";
import { spelled } from "../headers";

/** Where the page and its files live. */
export const DOCS_PATH = "/docs";

/** Content types of the page and its files. */
const TYPES = {
  html: "text/html; charset=utf-8",
  css: "text/css; charset=utf-8",
  js: "text/javascript; charset=utf-8",
  png: "image/png",
} as const;

/**
 * Same origin for everything; `data:` images because Swagger UI's stylesheet draws its icons as
 * inline SVG. https://developer.mozilla.org/docs/Web/HTTP/Headers/Content-Security-Policy
 */
export const DOCS_CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join("; ");

/** Starts Swagger UI on the page: no third-party validator badge, the layout without the top bar. */
const INITIALISER = `"use strict";
window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  validatorUrl: null,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
});
`;

/** Content type of the page. */
export const DOCS_PAGE_CONTENT_TYPE = TYPES.html;

/** The page itself. */
export const DOCS_PAGE = `<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <title>ordermesh API</title>
    <link rel="stylesheet" href="${DOCS_PATH}/swagger-ui.css">
    <link rel="icon" type="image/png" href="${DOCS_PATH}/favicon-32x32.png">
  </head>
  <body>
    <noscript>This page needs JavaScript. The description itself is at <a href="/openapi.json">/openapi.json</a>.</noscript>
    <div id="swagger-ui"></div>
    <script src="${DOCS_PATH}/swagger-ui-bundle.js"></script>
    <script src="${DOCS_PATH}/docs.js"></script>
  </body>
</html>
`;

/** The headers of the page: its own policy instead of the API's. */
export const DOCS_PAGE_HEADERS: Readonly<Record<string, string>> = {
  [spelled(HEADERS.contentSecurityPolicy)]: DOCS_CONTENT_SECURITY_POLICY,
};

/** The files of the page, by the name they are served under (`GET /docs/{file}`). */
const ASSETS = {
  "swagger-ui.css": { type: TYPES.css, read: () => fromSwaggerUi("swagger-ui.css") },
  "swagger-ui-bundle.js": { type: TYPES.js, read: () => fromSwaggerUi("swagger-ui-bundle.js") },
  "favicon-32x32.png": { type: TYPES.png, read: () => fromSwaggerUi("favicon-32x32.png") },
  "docs.js": { type: TYPES.js, read: () => Buffer.from(INITIALISER, "utf8") },
} satisfies Record<string, { type: string; read: () => Buffer }>;

export type DocsAssetName = keyof typeof ASSETS;

/** Every file name the page may ask for. */
export const DOCS_ASSET_NAMES = Object.keys(ASSETS) as DocsAssetName[];

/** The page's files never change while the process runs: each is read once. */
const loaded = new Map<DocsAssetName, { body: Buffer; contentType: string }>();

/** One file of the page, with its content type. */
export function docsAsset(name: DocsAssetName): { body: Buffer; contentType: string } {
  let asset = loaded.get(name);
  if (asset === undefined) {
    const { type, read } = ASSETS[name];
    asset = { body: read(), contentType: type };
    loaded.set(name, asset);
  }
  return asset;
}

/** A file of the swagger-ui-dist package, found the way Node finds the package itself. */
function fromSwaggerUi(file: string): Buffer {
  return readFileSync(require.resolve(`swagger-ui-dist/${file}`));
}
