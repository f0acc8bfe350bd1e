/**
 * Who is calling. The gateway authenticates the request and puts the principal in
 * `ctx.meta.user`; domain services read it back with `principalOf` and enforce ownership
 * themselves, so that a call that skips the gateway cannot skip the check.
 */
import type { Role } from "./constants";

export interface Principal {
  /** Customer id (the token's `sub`). */
  id: string;
  roles: Role[];
}

export interface PrincipalMeta {
  /** null: an anonymous HTTP caller (moleculer-web sets it so). */
  user?: Principal | null;
}

/** The caller of an action, or undefined for an internal call without one. */
export function principalOf(ctx: { meta: unknown }): Principal | undefined {
  const meta = ctx.meta as PrincipalMeta | undefined;
  const user = meta?.user;
  if (user === undefined || user === null || typeof user.id !== "string" || !Array.isArray(user.roles))
    return undefined;
  return user;
}

/** Whether the caller may see a resource owned by `ownerId`: its owner, an admin, or an internal call. */
export function canSee(principal: Principal | undefined, ownerId: string): boolean {
  if (principal === undefined) return true;
  return principal.roles.includes("admin") || principal.id === ownerId;
}

export function isAdmin(principal: Principal | undefined): boolean {
  return principal?.roles.includes("admin") === true;
}
