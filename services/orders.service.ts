/**
 * orders service. It owns the `orders` document store and talks to the event bus; its domain
 * actions and subscriptions are built on this shell. Today it answers `orders.health`.
 */
import type { ServiceSchema } from "moleculer";
import { InfrastructureMixin } from "../mixins/infrastructure.mixin";

const OrdersService: ServiceSchema = {
  name: "orders",
  mixins: [InfrastructureMixin({ store: true, bus: true })],
};

export default OrdersService;
