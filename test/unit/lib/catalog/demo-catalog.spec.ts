import { DEMO_CATALOG } from "../../../../lib/catalog/demo-catalog";
import { SKU_PATTERN } from "../../../../models/inventory";
import { CURRENCY_EXPONENTS } from "../../../../models/money";

describe("demo catalog", () => {
  it("has a dozen valid products in USD, EUR and JPY, one of them scarce", () => {
    expect(DEMO_CATALOG).toHaveLength(12);
    expect(new Set(DEMO_CATALOG.map((p) => p.sku)).size).toBe(DEMO_CATALOG.length);
    for (const product of DEMO_CATALOG) {
      expect(product.sku).toMatch(SKU_PATTERN);
      expect(product.name.length).toBeGreaterThan(0);
      expect(Number.isSafeInteger(product.price.minor) && product.price.minor > 0).toBe(true);
      expect(Object.keys(CURRENCY_EXPONENTS)).toContain(product.price.currency);
      expect(Number.isSafeInteger(product.quantity) && product.quantity > 0).toBe(true);
    }
    expect(new Set(DEMO_CATALOG.map((p) => p.price.currency))).toEqual(new Set(["USD", "EUR", "JPY"]));
    expect(DEMO_CATALOG.filter((p) => p.quantity < 10)).toHaveLength(1);
    expect(DEMO_CATALOG.filter((p) => p.quantity >= 20 && p.quantity <= 200)).toHaveLength(11);
  });
});
