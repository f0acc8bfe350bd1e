/**
 * Who may call the API (README, "HTTP API (v1)"): the bearer token a request carries, and the role
 * a gateway action needs. Ownership is not decided here: the domain services check it again, so a
 * call that skips the gateway cannot skip it (lib/principal.ts).
 */
import type { IncomingMessage } from "node:http";
import { Errors } from "moleculer";
import { AuthenticationError } from "../auth/jwt";
import { HEADERS, type Role } from "../constants";
import type { Principal } from "../principal";

const { MoleculerClientError } = Errors;

const BEARER = /^Bearer ([A-Za-z0-9._~+/=-]+)$/;

/** The request's bearer token; null without an Authorization header, 401 for one of another form. */
export function bearerTokenOf(headers: IncomingMessage["headers"]): string | null {
  const header = headers[HEADERS.authorization];
  if (header === undefined || header === "") return null;
  const match = BEARER.exec(header);
  if (match === null) throw new AuthenticationError("UNAUTHORIZED", "expected Authorization: Bearer <token>");
  return match[1] as string;
}

/** The caller, who must hold one of `roles`: 401 without a principal, 403 with the wrong role. */
export function requireRole(user: Principal | null | undefined, ...roles: Role[]): Principal {
  if (user === undefined || user === null)
    throw new MoleculerClientError("a Bearer token is required", 401, "UNAUTHORIZED");
  if (!roles.some((role) => user.roles.includes(role)))
    throw new MoleculerClientError(`this needs the role ${roles.join(" or ")}`, 403, "FORBIDDEN");
  return user;
}
