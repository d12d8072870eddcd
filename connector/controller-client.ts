// The connector's side of the Controller's connector API: token refresh (rotated tokens are kept
// in the state directory, 0600), registration with the certificate digest, heartbeats that renew
// the relay token, and activity-event upload.
import { hostname } from "node:os";
import { join } from "node:path";
import type { z } from "zod";
import type { Logger } from "../bunlib/log.ts";
import { VERSION } from "../bunlib/version.ts";
import {
  EventsResponse,
  type HeartbeatBody,
  HeartbeatResponse,
  type HeartbeatResult,
  RefreshResponse,
  type Registration,
  RegistrationResponse,
  type SessionRef,
} from "../shared/contracts/connector-api.ts";
import { peekClaim } from "../shared/tokens.ts";
import { ensureStateDir, readSecretFile, StateDirError, writeSecretFileAtomic } from "./state-dir.ts";

export const CONNECTOR_VERSION = VERSION;

interface TokenState {
  /** The refresh token the operator provisioned with; a new one given on the command line wins. */
  provisioned_refresh: string;
  access_token: string;
  refresh_token: string;
}

export type { HeartbeatResult, Registration, SessionRef } from "../shared/contracts/connector-api.ts";

/** What a heartbeat tells the Controller that it cannot see for itself (the console shows it). */
export type HeartbeatReport = Pick<HeartbeatBody, "uptime_s" | "tunnels" | "direct_endpoints">;

/** One heartbeat's answer and the connector's clock around it, for the drift estimate. */
export interface TimedHeartbeat {
  result: HeartbeatResult;
  sentAt: number;
  receivedAt: number;
}

/**
 * Every call to the Controller ends by this deadline. None is on a user's path (tunnels and new
 * streams never wait for the Controller), so it can wait out a slow one (a cold start, a busy
 * Durable Object: seconds at worst); but it stays below the heartbeat interval (20 s,
 * connector.ts) so that a Controller that accepts and never answers holds at most one heartbeat
 * and one event upload at a time (each is single-flight), never a growing pile of requests.
 */
export const CONTROLLER_TIMEOUT_MS = 15_000;

export class ControllerError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = "ControllerError";
  }
}

function parseTokenState(text: string | undefined, path: string): TokenState | undefined {
  if (text === undefined) return undefined;
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    v = undefined;
  }
  const t = v as Partial<Record<keyof TokenState, unknown>> | undefined;
  if (
    !t ||
    typeof t.provisioned_refresh !== "string" ||
    typeof t.access_token !== "string" ||
    typeof t.refresh_token !== "string"
  ) {
    throw new StateDirError(
      `${path} is not a token file this connector wrote; move it away and start with fresh tokens from provisioning`,
    );
  }
  return {
    provisioned_refresh: t.provisioned_refresh,
    access_token: t.access_token,
    refresh_token: t.refresh_token,
  };
}

export class ConnectorControllerClient {
  private tokens: TokenState;
  private readonly statePath: string;

  constructor(
    private readonly baseUrl: string,
    stateDir: string,
    given: { access?: string; refresh?: string },
    private readonly log: Logger,
    /** Tests shorten it; see CONTROLLER_TIMEOUT_MS. */
    private readonly timeoutMs = CONTROLLER_TIMEOUT_MS,
  ) {
    ensureStateDir(stateDir);
    this.statePath = join(stateDir, "tokens.json");
    const saved = parseTokenState(readSecretFile(this.statePath), this.statePath);
    if (saved && (!given.refresh || given.refresh === saved.provisioned_refresh)) {
      this.tokens = saved;
    } else if (given.access && given.refresh) {
      this.tokens = {
        provisioned_refresh: given.refresh,
        access_token: given.access,
        refresh_token: given.refresh,
      };
      this.save();
    } else {
      throw new ControllerError(
        0,
        "not_provisioned",
        "no tokens: pass --access-token and --refresh-token (or SALLYPORT_ACCESS_TOKEN / SALLYPORT_REFRESH_TOKEN) from provisioning",
      );
    }
  }

  /** The rotated refresh token is the only one the Controller still accepts: never lose it. */
  private save(): void {
    writeSecretFileAtomic(this.statePath, JSON.stringify(this.tokens));
  }

  get connectorIdHint(): string | undefined {
    return peekClaim(this.tokens.access_token, "sub");
  }

  /** POST `path`; the answer is parsed with `schema` (shared/contracts/connector-api.ts), never cast. */
  private async call<S extends z.ZodType>(
    path: string,
    schema: S,
    body: unknown,
    auth: boolean,
  ): Promise<z.output<S>> {
    let res: Response;
    let text: string;
    try {
      res = await fetch(`${this.baseUrl}/connector/v1${path}`, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          ...(auth ? { authorization: `Bearer ${this.tokens.access_token}` } : {}),
        },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(this.timeoutMs),
      });
      // Inside the deadline too: a Controller may send the head and never the body.
      text = await res.text();
    } catch (err) {
      if ((err as Error).name !== "TimeoutError") throw err;
      throw new Error(`the controller did not answer ${path} within ${this.timeoutMs / 1000} s`);
    }
    let json: unknown;
    try {
      json = text ? JSON.parse(text) : {};
    } catch {
      throw new ControllerError(
        res.status,
        "bad_response",
        `controller answered ${res.status} with non-JSON`,
      );
    }
    if (!res.ok) {
      const err = (json as { error?: { code?: string; message?: string } }).error;
      throw new ControllerError(res.status, err?.code ?? "error", err?.message ?? `HTTP ${res.status}`);
    }
    const parsed = schema.safeParse(json);
    if (!parsed.success) {
      const where = parsed.error.issues[0]?.path.join(".") || "body";
      throw new ControllerError(
        res.status,
        "bad_response",
        `controller sent a malformed answer to ${path} (${where})`,
      );
    }
    return parsed.data;
  }

  /** Call with the access token; on 401 refresh once (rotating the refresh token) and retry. */
  private async authed<S extends z.ZodType>(path: string, schema: S, body: unknown): Promise<z.output<S>> {
    try {
      return await this.call(path, schema, body, true);
    } catch (err) {
      if (!(err instanceof ControllerError) || err.status !== 401) throw err;
      await this.refresh();
      return await this.call(path, schema, body, true);
    }
  }

  async refresh(): Promise<void> {
    const res = await this.call(
      "/refresh",
      RefreshResponse,
      { refresh_token: this.tokens.refresh_token },
      false,
    );
    this.tokens = { ...this.tokens, access_token: res.access_token, refresh_token: res.refresh_token };
    this.save();
    this.log.info("tokens refreshed");
  }

  register(certSha256: string, directEndpoints: string[] = []): Promise<Registration> {
    return this.authed("/register", RegistrationResponse, {
      cert_sha256: certSha256,
      version: CONNECTOR_VERSION,
      hostname: hostname(),
      direct_endpoints: directEndpoints,
    });
  }

  /** `sent_at` (this clock) lets the Controller record the drift; `server_time` lets us measure it. */
  async heartbeat(sessions: SessionRef[] = [], report: HeartbeatReport = {}): Promise<TimedHeartbeat> {
    const sentAt = Date.now();
    const body: HeartbeatBody = { ...report, version: CONNECTOR_VERSION, sessions, sent_at: sentAt };
    const result: HeartbeatResult = await this.authed("/heartbeat", HeartbeatResponse, body);
    return { result, sentAt, receivedAt: Date.now() };
  }

  /** `sent_at` lets the Controller put the events' times on its own clock. */
  async uploadEvents(events: unknown[]): Promise<{ accepted: number }> {
    return await this.authed("/events", EventsResponse, { events, sent_at: Date.now() });
  }
}
