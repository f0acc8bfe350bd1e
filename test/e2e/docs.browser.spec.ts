/**
 * The /docs page in a real browser (Debian's Chromium, headless, through playwright-core): it renders
 * the operations of /openapi.json from files this process serves, asks nothing of any other host,
 * and runs under its Content Security Policy without a single violation or console error. A
 * full-page screenshot lands in test-artifacts/docs.png.
 */
import { mkdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { chromium, type BrowserContext } from "playwright-core";
import { startGatewayNode, type GatewayNode } from "../support/gateway-node";
import { requireBinary } from "../support/infra";

/** Debian's Chromium (ORDERMESH_CHROMIUM_BIN elsewhere); skipped loudly without it, failed under CI=true. */
const chromiumBinary = requireBinary("chromium", "apt-get install chromium");

const SCREENSHOT = join(__dirname, "..", "..", "test-artifacts", "docs.png");
const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/** Whether a URL stays on this machine (data: URLs never leave it). */
function isLocal(url: string): boolean {
  const { protocol, hostname } = new URL(url);
  return protocol === "data:" || protocol === "blob:" || hostname === "127.0.0.1" || hostname === "localhost";
}

chromiumBinary.describe("API docs page in a browser", () => {
  let node: GatewayNode<undefined> | undefined;
  let base: string;
  let context: BrowserContext;

  beforeAll(async () => {
    node = await startGatewayNode({ name: "docs", simulator: false });
    base = node.url;
    // a fresh profile: nothing cached, nothing signed in
    context = await chromium.launchPersistentContext(join(node.dir, "profile"), {
      executablePath: chromiumBinary.path as string,
      args: CHROMIUM_ARGS,
      headless: true,
    });
  }, 60_000);

  afterAll(async () => {
    await context?.close();
    await node?.stop();
  });

  it("renders the operations from local files only, without console errors or CSP violations", async () => {
    const requested: string[] = [];
    const leaving: string[] = [];
    const problems: string[] = [];
    // anything for another host is recorded and refused, so the page is judged as if offline
    await context.route(
      (url) => !isLocal(url.href),
      async (route) => {
        leaving.push(route.request().url());
        await route.abort();
      },
    );
    context.on("request", (request) => requested.push(request.url()));
    const page = await context.newPage();
    page.on("console", (message) => {
      if (message.type() === "error") problems.push(`console: ${message.text()}`);
    });
    page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
    // the browser's own report of every blocked load or script, kept where the test can read it
    await page.addInitScript({
      content: `window.cspViolations = [];
        document.addEventListener("securitypolicyviolation", (event) =>
          window.cspViolations.push(event.violatedDirective + " " + event.blockedURI));`,
    });

    const response = await page.goto(`${base}/docs`, { waitUntil: "load" });
    expect(response?.status()).toBe(200);
    expect(response?.headers()["content-security-policy"]).toContain("script-src 'self'");

    await page.locator(".opblock-summary-path").first().waitFor({ state: "visible", timeout: 20_000 });
    expect(await page.title()).toBe("ordermesh API");
    await expect(page.locator(".info .title").innerText()).resolves.toContain("ordermesh API");
    const placeOrder = page.locator(".opblock-post", {
      has: page.locator('.opblock-summary-path[data-path="/api/v1/orders"]'),
    });
    await expect(placeOrder.count()).resolves.toBe(1);
    await expect(placeOrder.locator(".opblock-summary-method").innerText()).resolves.toBe("POST");
    await expect(page.locator(".opblock").count()).resolves.toBeGreaterThanOrEqual(19);

    // open it: its parameters and responses come out of the document
    await placeOrder.locator(".opblock-summary").click();
    await placeOrder.getByText("Idempotency-Key", { exact: true }).waitFor({ timeout: 10_000 });
    await placeOrder.locator(".responses-table").first().waitFor({ timeout: 10_000 });

    mkdirSync(join(SCREENSHOT, ".."), { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    expect(statSync(SCREENSHOT).size).toBeGreaterThan(10_000);

    const violations = await page.evaluate<string[]>("window.cspViolations");
    expect(violations).toEqual([]);
    expect(problems).toEqual([]);
    expect(leaving).toEqual([]);
    expect(requested.filter((url) => !isLocal(url))).toEqual([]);
    // and it did load what it needs from here
    expect(requested).toEqual(
      expect.arrayContaining([
        `${base}/docs`,
        `${base}/docs/swagger-ui-bundle.js`,
        `${base}/docs/swagger-ui.css`,
        `${base}/docs/docs.js`,
        `${base}/openapi.json`,
      ]),
    );
  }, 60_000);
});
