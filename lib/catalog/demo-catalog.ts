/**
 * The demo catalog: twelve products seeded into an empty inventory when `SEED_DEMO` is on
 * (docs/inventory.md, "Seeding"). Data, not rules: it lives beside the seeding code, not in the
 * domain model.
 */
import type { Money } from "../../models/money";

/** A product of the demo catalog and how many units it starts with. */
export interface CatalogEntry {
  readonly sku: string;
  readonly name: string;
  readonly price: Money;
  readonly quantity: number;
}

/**
 * The catalog seeded into an empty inventory when SEED_DEMO is on. Prices in USD, EUR and JPY;
 * `DRIPPER-LIMITED` is scarce on purpose.
 */
export const DEMO_CATALOG: readonly CatalogEntry[] = [
  { sku: "MUG-BLUE", name: "Blue enamel mug", price: { minor: 1299, currency: "USD" }, quantity: 120 },
  { sku: "MUG-RED", name: "Red enamel mug", price: { minor: 1299, currency: "USD" }, quantity: 80 },
  {
    sku: "COFFEE-ETHIOPIA-250",
    name: "Ethiopian single-origin coffee, 250 g",
    price: { minor: 1650, currency: "USD" },
    quantity: 90,
  },
  {
    sku: "FILTER-PAPER-100",
    name: "Paper coffee filters, pack of 100",
    price: { minor: 499, currency: "USD" },
    quantity: 200,
  },
  {
    sku: "TUMBLER-STEEL",
    name: "Steel travel tumbler",
    price: { minor: 2499, currency: "USD" },
    quantity: 70,
  },
  {
    sku: "DRIPPER-LIMITED",
    name: "Limited-edition ceramic dripper",
    price: { minor: 8900, currency: "USD" },
    quantity: 5,
  },
  {
    sku: "TEA-EARL-GREY",
    name: "Earl Grey loose-leaf tea, 125 g",
    price: { minor: 850, currency: "EUR" },
    quantity: 150,
  },
  {
    sku: "KETTLE-GOOSENECK",
    name: "Gooseneck kettle",
    price: { minor: 5900, currency: "EUR" },
    quantity: 25,
  },
  { sku: "GRINDER-HAND", name: "Hand coffee grinder", price: { minor: 4450, currency: "EUR" }, quantity: 40 },
  {
    sku: "TEA-SENCHA-JP",
    name: "Sencha green tea, 100 g",
    price: { minor: 1800, currency: "JPY" },
    quantity: 60,
  },
  { sku: "TEAPOT-TETSUBIN", name: "Cast-iron teapot", price: { minor: 7500, currency: "JPY" }, quantity: 20 },
  { sku: "MATCHA-WHISK", name: "Bamboo matcha whisk", price: { minor: 2200, currency: "JPY" }, quantity: 35 },
];
