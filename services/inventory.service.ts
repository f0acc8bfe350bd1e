/**
 * inventory service. It owns the `inventory` document store and talks to the event bus; its domain
 * actions and subscriptions are built on this shell. Today it answers `inventory.health`.
 */
import type { ServiceSchema } from "moleculer";
import { InfrastructureMixin } from "../mixins/infrastructure.mixin";

const InventoryService: ServiceSchema = {
  name: "inventory",
  mixins: [InfrastructureMixin({ store: true, bus: true })],
};

export default InventoryService;
