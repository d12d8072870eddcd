// The sign-in log: what happened at the sign-in pages that an admin should be able to see —
// approvals and denials of devices, refused identities, cross-site and planted-flow refusals,
// MFA failures and lockouts. Never a code, a token or a cookie. Admin API: GET /api/v1/signin-events.
import { z } from "zod";
import type { NetworkContext } from "./context.ts";
import type { AdminRoute } from "./route-def.ts";
import { route } from "./route-def.ts";
import { iso } from "./views.ts";

export const SIGNIN_EVENT_KINDS = [
  /** The person confirmed the device on the confirmation page: the client gets its session. */
  "device_approved",
  /** The person said "this was not me" on the confirmation page. */
  "device_denied",
  /** A state-changing sign-in request from another site (login CSRF). */
  "cross_site_refused",
  /** A flow cookie this browser did not get from starting that flow (a planted flow). */
  "flow_binding_refused",
  /** The IdP's identity is refused: its email belongs to a person bound to another IdP subject. */
  "identity_conflict",
  /** Linking by email refused: the IdP did not say the email is verified. */
  "email_unverified",
  /** The person is in none of the IdP groups allowed to sign in. */
  "group_not_allowed",
  /** The person's account is disabled. */
  "user_disabled",
  /** A wrong TOTP or recovery code. */
  "mfa_failed",
  /** Too many wrong codes in one flow: the flow ended. */
  "mfa_flow_ended",
  /** Too many wrong codes: MFA is locked for the person for a while. */
  "mfa_locked",
] as const;
export type SignInEventKind = (typeof SIGNIN_EVENT_KINDS)[number];

export interface SignInEvent {
  kind: SignInEventKind;
  userId?: string | null;
  email?: string | null;
  deviceCodeId?: string | null;
  ip?: string | null;
  detail?: string | null;
}

interface SignInEventRow {
  seq: number;
  time: number;
  kind: string;
  user_id: string | null;
  email: string | null;
  device_code_id: string | null;
  ip: string | null;
  detail: string | null;
}

/** Kept for this long; older rows are pruned when new ones are written. */
const RETENTION_MS = 90 * 24 * 3600_000;

export function recordSignInEvent(ctx: Pick<NetworkContext, "db" | "now">, e: SignInEvent): void {
  ctx.db.run`INSERT INTO signin_events (time, kind, user_id, email, device_code_id, ip, detail)
    VALUES (${ctx.now}, ${e.kind}, ${e.userId ?? null}, ${e.email ?? null}, ${e.deviceCodeId ?? null},
    ${e.ip ?? null}, ${e.detail?.slice(0, 500) ?? null})`;
  ctx.db.run`DELETE FROM signin_events WHERE time < ${ctx.now - RETENTION_MS}`;
}

const SignInEventQuery = z.strictObject({
  limit: z.coerce.number().int().min(1).max(1000).default(100),
  kind: z.enum(SIGNIN_EVENT_KINDS).optional(),
  user_id: z.string().max(100).optional(),
});

function listSignInEvents(ctx: NetworkContext, q: z.output<typeof SignInEventQuery>) {
  const kind = q.kind ?? null;
  const user = q.user_id ?? null;
  const rows = ctx.db.all<SignInEventRow>`SELECT * FROM signin_events
    WHERE (${kind} IS NULL OR kind = ${kind}) AND (${user} IS NULL OR user_id = ${user})
    ORDER BY seq DESC LIMIT ${q.limit}`;
  return {
    signin_events: rows.map((r) => ({
      time: iso(r.time),
      kind: r.kind,
      user_id: r.user_id,
      email: r.email,
      device_code_id: r.device_code_id,
      ip: r.ip,
      detail: r.detail,
    })),
  };
}

export const SIGNIN_EVENT_ROUTES: readonly AdminRoute[] = [
  route({
    method: "get",
    path: "/signin-events",
    tag: "signin-events",
    summary: "The sign-in log, newest first: device approvals and denials, refused identities, MFA lockouts",
    query: SignInEventQuery,
    handle: (s, r) => listSignInEvents(s.ctx, r.query),
  }),
];
