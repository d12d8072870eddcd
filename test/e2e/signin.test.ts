// People sign in through their IdP and Resource Policies decide every connection, end to end with
// real parts: the edge on workerd, a real OpenID provider (oidc-provider), headless Chromium on
// the sign-in pages, the compiled client and connector, curl through the tunnel. The Controller's
// development clock offset (DEV_MODE edges only) stands in for an hour passing.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { exportJWK, generateKeyPair } from "jose";
import { type Idp, startIdp } from "../../scripts/lib/idp.ts";
import { CLIENT_BIN, type Proc, startClient, startConnector } from "../../scripts/lib/processes.ts";
import { type Provisioned, provisionNetwork } from "../../scripts/lib/provision.ts";
import { launchBrowser, signInAtIdp, type TestBrowser } from "../helpers/browser.ts";
import { adminApi, type Edge, startEdge } from "../helpers/edge.ts";
import { curlVia } from "../helpers/peers.ts";
import { loginPerson, signInInBrowser, totpNow } from "../helpers/person.ts";
import { startEcho, startHttp } from "../helpers/servers.ts";
import { SocksRefused, socksConnect } from "../helpers/socks-client.ts";

const APP = "app.signin.internal";
const WIKI = "wiki.signin.internal";
const ALICE = {
  sub: "alice",
  login: "alice@example.com",
  email: "alice@example.com",
  name: "Alice",
  password: "alice-pw",
  groups: ["engineering"],
};
const BOB = {
  sub: "bob",
  login: "bob@example.com",
  email: "bob@example.com",
  name: "Bob",
  password: "bob-pw",
  groups: ["sales"],
};
/** Short, so a test can outlive the IdP session (silent renewal then fails). */
const IDP_SESSION_S = 15;

let edge: Edge;
let idp: Idp;
let p: Provisioned;
let connector: Proc;
let http: { port: number; close: () => void };
let echo: { port: number; close: () => void };
let tmp: string;
let api: ReturnType<typeof adminApi>;
let aliceTotp: string | undefined;
let aliceRecovery: string[] = [];
const usedRecovery: string[] = [];

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), "sallyport-signin-"));
  http = await startHttp("hello from app\n");
  echo = await startEcho();
  edge = await startEdge();
  api = adminApi(edge);
  p = await provisionNetwork(
    edge,
    [
      { name: APP, address: APP },
      { name: WIKI, address: WIKI },
    ],
    "SignIn",
  );
  const callback = `${edge.url}/auth/${edge.networkId}/callback`;
  idp = await startIdp({
    users: [ALICE, BOB],
    clients: [{ client_id: "sallyport", client_secret: "s3cret-for-tests", redirect_uris: [callback] }],
    sessionTtlSeconds: IDP_SESSION_S,
  });
  await api("PUT", "/idp", {
    preset: "generic",
    issuer: idp.issuer,
    client_id: "sallyport",
    client_secret: "s3cret-for-tests",
    // No offline_access: the IdP's refresh token lives as long as the IdP session, which is exactly
    // when silent renewal should work.
    scopes: ["openid", "email", "profile", "groups"],
  });
  // "engineering" (an admin-made group the IdP's groups claim names) grants both Resources; APP
  // is under an hourly policy with MFA, WIKI under an hourly policy without.
  const eng = await api<{ group: { id: string } }>("POST", "/groups", { name: "engineering" });
  await api("POST", `/groups/${eng.group.id}/resources`, {
    resource_ids: [p.resources[APP], p.resources[WIKI]],
  });
  const policy = await api<{ policy: { id: string } }>("POST", "/policies", {
    name: "Hourly with MFA",
    authentication: { required: true, frequency_hours: 1, mfa: true },
    device: { mode: "any" },
    location: { mode: "any" },
  });
  await api("PATCH", `/resources/${p.resources[APP]}`, { policy_id: policy.policy.id });
  const hourly = await api<{ policy: { id: string } }>("POST", "/policies", {
    name: "Hourly",
    authentication: { required: true, frequency_hours: 1, mfa: false },
    device: { mode: "any" },
    location: { mode: "any" },
  });
  await api("PATCH", `/resources/${p.resources[WIKI]}`, { policy_id: hourly.policy.id });
  connector = await startConnector({
    controller: edge.url,
    accessToken: p.connector.accessToken,
    refreshToken: p.connector.refreshToken,
    stateDir: join(tmp, "connector"),
    hostOverrides: [`${APP}=127.0.0.1`, `${WIKI}=127.0.0.1`],
  });
}, 120_000);

afterAll(async () => {
  await connector?.stop("SIGINT");
  await idp?.stop();
  await edge?.stop();
  http?.close();
  echo?.close();
}, 60_000);

async function withBrowser<T>(fn: (b: TestBrowser) => Promise<T>): Promise<T> {
  const b = await launchBrowser();
  try {
    return await fn(b);
  } finally {
    await b.close();
  }
}

/** `sallyport status --json` of a person's client. */
async function status(stateDir: string) {
  const proc = Bun.spawn([CLIENT_BIN, "status", "--json"], {
    env: { ...process.env, SALLYPORT_STATE_DIR: stateDir },
    stdout: "pipe",
  });
  // biome-ignore lint/suspicious/noExplicitAny: checked by the assertions
  return JSON.parse(await new Response(proc.stdout).text()) as any;
}

async function resources(stateDir: string) {
  const proc = Bun.spawn([CLIENT_BIN, "resources", "--json"], {
    env: { ...process.env, SALLYPORT_STATE_DIR: stateDir },
    stdout: "pipe",
  });
  // biome-ignore lint/suspicious/noExplicitAny: checked by the assertions
  return JSON.parse(await new Response(proc.stdout).text()) as any[];
}

const setClock = (offsetSeconds: number) => api("POST", "/dev/clock", { offset_seconds: offsetSeconds });

/**
 * Alice signs in again (MFA with one of her recovery codes), recorded `secondsAgo` in the past
 * (DEV_MODE only), so an hourly timer ends `3600 - secondsAgo` seconds from now. Resolves with the
 * time the sign-in finished.
 */
async function aliceSignsInAgo(secondsAgo: number): Promise<number> {
  const recoveryCode = aliceRecovery.shift();
  if (recoveryCode) usedRecovery.push(recoveryCode);
  await setClock(-secondsAgo);
  try {
    await withBrowser((b) =>
      loginPerson({
        controller: edge.url,
        networkId: edge.networkId,
        stateDir: join(tmp, "alice"),
        page: b.page,
        person: { ...ALICE, totpSecret: aliceTotp, recoveryCode },
      }),
    );
  } finally {
    await setClock(0);
  }
  return Date.now();
}

test("a person signs in with the device flow, enrolls TOTP, and reaches a Resource under an MFA policy", async () => {
  const state = join(tmp, "alice");
  const signed = await withBrowser((b) =>
    loginPerson({
      controller: edge.url,
      networkId: edge.networkId,
      stateDir: state,
      page: b.page,
      person: ALICE,
    }),
  );
  expect(signed.output).toContain("enter the code");
  expect(signed.output).toContain("Signed in to");
  expect(signed.totpSecret).toMatch(/^[A-Z2-7]+$/);
  expect(signed.recoveryCodes?.length).toBe(10);
  aliceTotp = signed.totpSecret;
  aliceRecovery = signed.recoveryCodes ?? [];

  // Created on first sign-in, put in the Group the IdP's groups claim names.
  const { users } = await api<{ users: { id: string; email: string }[] }>("GET", "/users");
  const alice = users.find((u) => u.email === ALICE.email);
  expect(alice).toBeDefined();

  const client = await startClient({ controller: edge.url, stateDir: state });
  try {
    const r = await curlVia(client.socks, `http://${APP}:${http.port}/`);
    expect(r).toBe("hello from app\n");
    const listed = await resources(state);
    const app = listed.find((x) => x.name === APP);
    expect(app.access.allowed).toBe(true);
    // An hourly policy: access ends about an hour after this sign-in.
    expect(app.access.until * 1000 - Date.now()).toBeGreaterThan(3500_000);
    expect(app.access.until * 1000 - Date.now()).toBeLessThanOrEqual(3600_000);
  } finally {
    await client.stop();
  }
}, 90_000);

test("a person in no Group that grants the Resource is denied, and told it is the group requirement", async () => {
  const state = join(tmp, "bob");
  const signed = await withBrowser((b) =>
    loginPerson({
      controller: edge.url,
      networkId: edge.networkId,
      stateDir: state,
      page: b.page,
      person: BOB,
    }),
  );
  // No policy on Bob's (empty) access asks for MFA: no TOTP page.
  expect(signed.totpSecret).toBeUndefined();
  expect(await resources(state)).toEqual([]);
  const check = Bun.spawn([CLIENT_BIN, "check", APP, String(http.port)], {
    env: { ...process.env, SALLYPORT_STATE_DIR: state },
    stdout: "pipe",
  });
  const text = await new Response(check.stdout).text();
  expect(await check.exited).toBe(3);
  expect(text).toContain("denied (group)");
  // The denial is an activity event with the reason; Bob learns nothing about Alice's access.
  const { events } = await api<{ events: { outcome: string; reason: string; destination: string }[] }>(
    "GET",
    "/events",
  );
  expect(
    events.some((e) => e.outcome === "denied" && e.reason.startsWith("group") && e.destination === APP),
  ).toBe(true);
  expect(text).not.toContain("alice");
}, 90_000);

test("at the policy's expiry the connector cuts the open stream; new connections are denied with the reason", async () => {
  const state = join(tmp, "alice");
  // Sign in "59 min 52 s ago": the hourly timer ends 8 s from now.
  await aliceSignsInAgo(3600 - 8);
  const client = await startClient({ controller: edge.url, stateDir: state });
  try {
    const sock = await socksConnect(client.socks, APP, echo.port);
    const opened = Date.now();
    sock.on("error", () => {});
    sock.write("ping");
    await new Promise<void>((r) => sock.once("data", () => r()));
    const closedAfter = await Promise.race([
      new Promise<number>((r) => sock.once("close", () => r(Date.now() - opened))),
      Bun.sleep(20_000).then(() => -1),
    ]);
    expect(closedAfter).toBeGreaterThan(1000);
    expect(closedAfter).toBeLessThan(15_000);
    // Using APP so close to expiry made the client renew silently (the IdP session is valid): that
    // reset the authentication timer, so WIKI (no MFA) keeps working, but APP's policy wants MFA
    // at that frequency too, which only the person can do: APP is denied, with that reason.
    expect(client.logs()).toContain("re-authenticated silently");
    const wiki = await curlVia(client.socks, `http://${WIKI}:${http.port}/`);
    expect(wiki).toBe("hello from app\n");
    await expect(socksConnect(client.socks, APP, echo.port)).rejects.toBeInstanceOf(SocksRefused);
    const s = await status(state);
    expect(s.denials?.[0]?.reason, client.logs()).toBe("mfa");
    expect(s.reauth.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/reauth$/);
    // sallyport doctor names the identity link (the sign-in lapsed), with the way out.
    const doctor = Bun.spawn([CLIENT_BIN, "doctor", `${APP}:${echo.port}`, "--json"], {
      env: { ...process.env, SALLYPORT_STATE_DIR: state },
      stdout: "pipe",
    });
    const report = JSON.parse(await new Response(doctor.stdout).text()) as {
      checks: { link: string; ok: boolean | null; evidence: string; next?: string }[];
    };
    expect(await doctor.exited).toBe(1);
    const broken = report.checks.find((c) => c.ok === false);
    expect(broken?.link).toBe("identity");
    expect(broken?.evidence).toContain("mfa");
    expect(broken?.next).toContain("sallyport login");
  } finally {
    await client.stop();
  }
}, 90_000);

test("near expiry while in use: silent renewal while the IdP session is valid, else a prompt and a local re-auth URL that resets every timer", async () => {
  const state = join(tmp, "alice");
  // 5 minutes left: inside the 10-minute prompt window.
  const signInNearExpiry = () => aliceSignsInAgo(3600 - 300);
  const untilOf = async (name: string) => (await resources(state)).find((x) => x.name === name).access.until;

  // 1. The IdP session is still valid: using WIKI (hourly, no MFA) renews silently and its timer
  //    moves about an hour out; nobody is prompted.
  await signInNearExpiry();
  const client = await startClient({ controller: edge.url, stateDir: state });
  try {
    const before = await untilOf(WIKI);
    expect(before * 1000 - Date.now()).toBeLessThan(310_000);
    await curlVia(client.socks, `http://${WIKI}:${http.port}/`);
    await waitUntil(async () => (await untilOf(WIKI)) * 1000 - Date.now() > 3500_000, 20_000, client.logs);
    expect((await status(state)).reauth).toBeNull();
  } finally {
    await client.stop();
  }

  // 2. Near expiry again, and the IdP session has lapsed: no silent renewal; using APP prompts.
  const signedAt = await signInNearExpiry();
  const again = await startClient({ controller: edge.url, stateDir: state });
  try {
    await Bun.sleep(Math.max(0, signedAt + (IDP_SESSION_S + 2) * 1000 - Date.now()));
    const wikiBefore = await untilOf(WIKI);
    await curlVia(again.socks, `http://${APP}:${http.port}/`);
    await waitUntil(async () => (await status(state)).reauth !== null, 20_000, again.logs);
    const s = await status(state);
    expect(s.reauth.resources).toContain(p.resources[APP]);
    expect(new Date(s.reauth.expires_at).getTime() - Date.now()).toBeLessThan(600_000);
    expect(again.logs()).toContain("sign in again to keep access");
    expect(await untilOf(WIKI)).toBe(wikiBefore);

    // 3. The person follows the local URL: the sign-in pages, the IdP, MFA. Every timer resets
    //    (the rolling window: WIKI's too, though the prompt was for APP) and the prompt goes away.
    await withBrowser((b) =>
      signInInBrowser(b.page, s.reauth.url, {
        ...ALICE,
        totpSecret: aliceTotp,
        recoveryCode: aliceRecovery.shift(),
      }),
    );
    await waitUntil(async () => (await status(state)).reauth === null, 20_000, again.logs);
    expect((await untilOf(APP)) * 1000 - Date.now()).toBeGreaterThan(3500_000);
    expect((await untilOf(WIKI)) * 1000 - Date.now()).toBeGreaterThan(3500_000);
    const r = await curlVia(again.socks, `http://${APP}:${http.port}/`);
    expect(r).toBe("hello from app\n");
  } finally {
    await again.stop();
  }
}, 150_000);

async function waitUntil(
  cond: () => Promise<boolean>,
  timeoutMs = 20_000,
  logs?: () => string,
): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (await cond()) return;
    await Bun.sleep(250);
  }
  throw new Error(`condition not met in time${logs ? `\n${logs()}` : ""}`);
}

test("an admin blocks the person's device: its live stream is cut and new connections refused; unblocked, it works again", async () => {
  const state = join(tmp, "alice");
  const client = await startClient({ controller: edge.url, stateDir: state });
  try {
    const { device_id } = await status(state);
    const sock = await socksConnect(client.socks, WIKI, echo.port);
    sock.on("error", () => {});
    sock.write("ping");
    await new Promise<void>((r) => sock.once("data", () => r()));
    const closed = new Promise<number>((r) => sock.once("close", () => r(Date.now())));
    const blockedAt = Date.now();
    await api("POST", `/devices/${device_id}/block`);
    const cutAt = await Promise.race([closed, Bun.sleep(60_000).then(() => -1)]);
    expect(cutAt).toBeGreaterThan(0);
    expect(cutAt - blockedAt).toBeLessThan(60_000);
    await expect(socksConnect(client.socks, WIKI, echo.port)).rejects.toBeInstanceOf(SocksRefused);
    expect((await status(state)).denials[0].reason).toBe("device");
    await api("POST", `/devices/${device_id}/unblock`);
    expect(await curlVia(client.socks, `http://${WIKI}:${http.port}/`)).toBe("hello from app\n");
  } finally {
    await client.stop();
  }
}, 90_000);

test("single use: an approved device code yields exactly one session; a TOTP code and a recovery code work once", async () => {
  const { publicKey } = await generateKeyPair("ES256", { extractable: true });
  const { x, y } = await exportJWK(publicKey);
  const authorize = async () => {
    const res = await fetch(`${edge.url}/client/v1/device/authorize`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        network_id: edge.networkId,
        device: { public_jwk: { kty: "EC", crv: "P-256", x, y } },
      }),
    });
    expect(res.status).toBe(200);
    return (await res.json()) as { device_code: string; verification_uri_complete: string };
  };
  const poll = (deviceCode: string) =>
    fetch(`${edge.url}/client/v1/device/token`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ device_code: deviceCode }),
    }).then(async (r) => ({ status: r.status, body: (await r.json()) as { error?: { code: string } } }));

  await withBrowser(async (b) => {
    const page = b.page;
    /** From the device page to the MFA form (through the IdP's form when its session lapsed). */
    const toMfa = async (url: string) => {
      await page.goto(url);
      await page.locator("#continue").click();
      await page.locator('input[name="login"], #code').first().waitFor({ timeout: 15_000 });
      if ((await page.locator("#code").count()) === 0) await signInAtIdp(page, ALICE);
      await page.locator("#code").waitFor({ timeout: 15_000 });
    };
    /** Submits an MFA code; a right one leads to the confirmation page, which is approved. */
    const submit = async (code: string) => {
      await page.locator("#code").fill(code);
      await page.locator("#verify").click();
      await page.locator("#approve, #error").first().waitFor({ timeout: 15_000 });
      if ((await page.locator("#approve").count()) > 0) {
        await page.locator("#approve").click();
        await page.locator("#signed-in, #error").first().waitFor({ timeout: 15_000 });
      }
      return (await page.locator("body").textContent()) ?? "";
    };

    const first = await authorize();
    await toMfa(first.verification_uri_complete);
    const code = totpNow(aliceTotp!);
    expect(await submit(code)).toContain("You are signed in");
    // Two clients polling the one approved code at once: exactly one gets the session.
    const polls = await Promise.all([poll(first.device_code), poll(first.device_code)]);
    expect(polls.map((p) => p.status).sort()).toEqual([200, 400]);
    expect(polls.find((p) => p.status === 400)?.body.error?.code).toBe("expired_token");

    const second = await authorize();
    await toMfa(second.verification_uri_complete);
    expect(await submit(code)).toContain("That code is not valid"); // the same TOTP code again
    expect(await submit(usedRecovery[0]!)).toContain("That recovery code is not valid");
    expect(await submit(aliceRecovery.shift()!)).toContain("You are signed in");
  });
}, 90_000);

test("SCIM deactivation: the person's live stream is cut and new connections refused within a minute", async () => {
  const state = join(tmp, "alice");
  const client = await startClient({ controller: edge.url, stateDir: state });
  try {
    const sock = await socksConnect(client.socks, WIKI, echo.port);
    sock.on("error", () => {});
    sock.write("ping");
    await new Promise<void>((r) => sock.once("data", () => r()));
    const closed = new Promise<number>((r) => sock.once("close", () => r(Date.now())));
    const { token } = await api<{ token: string }>("POST", "/scim-tokens", { name: "IdP" });
    const { users } = await api<{ users: { id: string; email: string }[] }>("GET", "/users");
    const alice = users.find((u) => u.email === ALICE.email)!;
    const started = Date.now();
    // The way Entra ID deactivates: a path-less PatchOp with a string boolean.
    const res = await fetch(`${edge.url}/scim/v2/Users/${alice.id}`, {
      method: "PATCH",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/scim+json" },
      body: JSON.stringify({
        schemas: ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        Operations: [{ op: "Replace", value: { active: "False" } }],
      }),
    });
    expect(res.status).toBe(200);
    const cutAt = await Promise.race([closed, Bun.sleep(60_000).then(() => -1)]);
    expect(cutAt).toBeGreaterThan(0);
    expect(cutAt - started).toBeLessThan(60_000);
    await expect(socksConnect(client.socks, WIKI, echo.port)).rejects.toBeInstanceOf(SocksRefused);
  } finally {
    await client.stop();
  }
}, 90_000);
