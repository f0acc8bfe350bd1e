/**
 * notifications service. It owns the `notifications` document store, publishes its events through the outbox and
 * consumes others' through the inbox; its domain actions and subscriptions are built on this shell.
 * Today it answers `notifications.health` and the outbox and dead-letter actions the REPL uses.
 */
import type { ServiceSchema } from "moleculer";
import { InboxMixin } from "../mixins/inbox.mixin";
import { InfrastructureMixin } from "../mixins/infrastructure.mixin";
import { OutboxMixin } from "../mixins/outbox.mixin";

const NotificationsService: ServiceSchema = {
  name: "notifications",
  mixins: [InfrastructureMixin({ store: true, bus: true }), OutboxMixin(), InboxMixin()],
};

export default NotificationsService;
