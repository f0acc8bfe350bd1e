/**
 * payments service. It owns the `payments` document store and talks to the event bus; its domain
 * actions and subscriptions are built on this shell. Today it answers `payments.health`.
 */
import type { ServiceSchema } from "moleculer";
import { InfrastructureMixin } from "../mixins/infrastructure.mixin";

const PaymentsService: ServiceSchema = {
  name: "payments",
  mixins: [InfrastructureMixin({ store: true, bus: true })],
};

export default PaymentsService;
