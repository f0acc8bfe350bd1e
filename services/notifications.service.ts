/**
 * notifications service. It owns the `notifications` document store and talks to the event bus; its domain
 * actions and subscriptions are built on this shell. Today it answers `notifications.health`.
 */
import type { ServiceSchema } from "moleculer";
import { InfrastructureMixin } from "../mixins/infrastructure.mixin";

const NotificationsService: ServiceSchema = {
  name: "notifications",
  mixins: [InfrastructureMixin({ store: true, bus: true })],
};

export default NotificationsService;
