/**
 * inventory service. It owns the `inventory` document store, publishes its events through the outbox and
 * consumes others' through the inbox; its domain actions and subscriptions are built on this shell.
 * Today it answers `inventory.health` and the outbox and dead-letter actions the REPL uses.
 */
import type { ServiceSchema } from "moleculer";
import { InboxMixin } from "../mixins/inbox.mixin";
import { InfrastructureMixin } from "../mixins/infrastructure.mixin";
import { OutboxMixin } from "../mixins/outbox.mixin";

const InventoryService: ServiceSchema = {
  name: "inventory",
  mixins: [InfrastructureMixin({ store: true, bus: true }), OutboxMixin(), InboxMixin()],
};

export default InventoryService;
