/** Every service a process can run, by the name used in SERVICES. */
import type { ServiceName } from "../lib/config";
import type { AnyServiceSchema } from "../mixins/schema";
import GatewayService from "./gateway.service";
import InventoryService from "./inventory.service";
import NotificationsService from "./notifications.service";
import OrdersService from "./orders.service";
import PaymentsService from "./payments.service";

export const SERVICE_SCHEMAS: Readonly<Record<ServiceName, AnyServiceSchema>> = {
  gateway: GatewayService,
  orders: OrdersService,
  inventory: InventoryService,
  payments: PaymentsService,
  notifications: NotificationsService,
};
