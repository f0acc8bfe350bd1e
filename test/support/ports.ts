/** Free TCP ports for servers the tests start (shared with the cluster launcher through lib/testing). */
export { freePort } from "../../lib/local-servers/ports";
