// Nobody can sign in as someone else. The attacks of issue 17, each run the way an attacker would,
// with real parts: the edge on workerd, a real OpenID provider (oidc-provider), headless Chromium
// for the victim (and for the attacker where he needs a browser), another site served from another
// origin. Each test fails on the sign-in pages as they were before this hardening:
// - login CSRF on the device flow (a form on another site submits the attacker's user code);
// - approval without an explicit act of the person (the callback used to approve on a GET);
// - MFA guessing without limit;
// - a planted flow cookie adopted by the victim's silent IdP sign-in;
// - account linking by email that moved the stored subject to a newcomer.
import { afterAll, beforeAll, expect, test } from "bun:test";
import type { Server } from "bun";
import { exportJWK, generateKeyPair } from "jose";
import type { Page } from "playwright-core";
import { type Idp, type IdpUser, startIdp } from "../../scripts/lib/idp.ts";
import { type Provisioned, provisionNetwork } from "../../scripts/lib/provision.ts";
import { launchBrowser, signInAtIdp, type TestBrowser } from "../helpers/browser.ts";
import { adminApi, type Edge, startEdge } from "../helpers/edge.ts";
import { signInInBrowser, totpNow } from "../helpers/person.ts";

const WIKI = "wiki.attacks.internal";
const VAULT = "vault.attacks.internal";
const person = (sub: string, extra: Partial<IdpUser> = {}): IdpUser & { login: string } => ({
  sub,
  login: extra.login ?? extra.email ?? `${sub}@example.com`,
  email: `${sub}@example.com`,
  name: sub,
  password: `${sub}-pw`,
  groups: ["engineering"],
  ...extra,
});
const ALICE = person("alice");
const BOB = person("bob", { groups: ["sales"] });
/** MFA people: VAULT's policy asks for MFA. */
const CAROL = person("carol", { groups: ["vault-people"] });
const FRANK = person("frank", { groups: ["vault-people"] });
/** A second IdP account that claims Alice's (verified) email. */
const MALLORY = person("mallory", { email: "alice@example.com", login: "mallory" });
/** Two IdP accounts with the email of a person an admin created: one unverified, one verified. */
const DAVE_UNVERIFIED = person("dave-1", { email: "dave@example.com", login: "dave1", email_verified: null });
const DAVE = person("dave-2", { email: "dave@example.com", login: "dave2" });
const MARKUP = '"><img src=x onerror=alert(1)>';

let edge: Edge;
let idp: Idp;
let p: Provisioned;
let api: ReturnType<typeof adminApi>;
let evil: Server<undefined>;
/** Another site: http://localhost:PORT is not the same site as the Controller's 127.0.0.1. */
let evilOrigin: string;
/** What the other site serves next. */
let evilPage = "";

beforeAll(async () => {
  edge = await startEdge();
  api = adminApi(edge);
  p = await provisionNetwork(
    edge,
    [
      { name: WIKI, address: WIKI },
      { name: VAULT, address: VAULT },
    ],
    "Attacks",
  );
  const callback = `${edge.url}/auth/${edge.networkId}/callback`;
  idp = await startIdp({
    users: [ALICE, BOB, CAROL, FRANK, MALLORY, DAVE_UNVERIFIED, DAVE],
    clients: [{ client_id: "sallyport", client_secret: "s3cret-for-tests", redirect_uris: [callback] }],
  });
  await api("PUT", "/idp", {
    preset: "generic",
    issuer: idp.issuer,
    client_id: "sallyport",
    client_secret: "s3cret-for-tests",
    scopes: ["openid", "email", "profile", "groups"],
  });
  const eng = await api<{ group: { id: string } }>("POST", "/groups", { name: "engineering" });
  await api("POST", `/groups/${eng.group.id}/resources`, { resource_ids: [p.resources[WIKI]] });
  const vaultPeople = await api<{ group: { id: string } }>("POST", "/groups", { name: "vault-people" });
  await api("POST", `/groups/${vaultPeople.group.id}/resources`, { resource_ids: [p.resources[VAULT]] });
  const mfa = await api<{ policy: { id: string } }>("POST", "/policies", {
    name: "MFA",
    authentication: { required: true, frequency_hours: 24, mfa: true },
    device: { mode: "any" },
    location: { mode: "any" },
  });
  await api("PATCH", `/resources/${p.resources[VAULT]}`, { policy_id: mfa.policy.id });
  evil = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch: () => new Response(evilPage, { headers: { "content-type": "text/html" } }),
  });
  evilOrigin = `http://localhost:${evil.port}`;
}, 120_000);

afterAll(async () => {
  evil?.stop(true);
  await idp?.stop();
  await edge?.stop();
}, 60_000);

async function withBrowser<T>(fn: (b: TestBrowser) => Promise<T>): Promise<T> {
  const b = await launchBrowser();
  try {
    return await fn(b);
  } finally {
    await b.close();
  }
}

interface DeviceAuth {
  device_code: string;
  user_code: string;
  verification_uri: string;
  verification_uri_complete: string;
}

/** What `sallyport login` does first: a device authorization, here for a device named `name`. */
async function authorizeDevice(name = "laptop", hostname = "laptop.local"): Promise<DeviceAuth> {
  const { publicKey } = await generateKeyPair("ES256", { extractable: true });
  const { x, y } = await exportJWK(publicKey);
  const res = await fetch(`${edge.url}/client/v1/device/authorize`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      network_id: edge.networkId,
      device: { public_jwk: { kty: "EC", crv: "P-256", x, y }, name, os: "linux", hostname },
    }),
  });
  expect(res.status).toBe(200);
  return (await res.json()) as DeviceAuth;
}

/** The client's poll: the error code while no session is given, or "session". */
async function poll(deviceCode: string): Promise<string> {
  const res = await fetch(`${edge.url}/client/v1/device/token`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ device_code: deviceCode }),
  });
  const body = (await res.json()) as { session_token?: string; error?: { code: string } };
  if (res.status === 200 && body.session_token) return "session";
  return body.error?.code ?? `status ${res.status}`;
}

/** Polls until the answer is no longer `slow_down` (the interval is 2 s). */
async function settledPoll(deviceCode: string): Promise<string> {
  for (let i = 0; i < 5; i++) {
    const r = await poll(deviceCode);
    if (r !== "slow_down") return r;
    await Bun.sleep(2100);
  }
  return "slow_down";
}

async function signInEvents(kind?: string) {
  const q = kind ? `?kind=${kind}` : "";
  return (
    await api<{
      signin_events: { kind: string; user_id: string | null; email: string | null; detail: string }[];
    }>("GET", `/signin-events${q}`)
  ).signin_events;
}

const bodyText = async (page: Page) => (await page.locator("body").textContent()) ?? "";

/** A whole legitimate sign-in of `who` for a device of their own, in `page` (leaves an IdP session). */
async function signInOwnDevice(page: Page, who: { login: string; password: string; totpSecret?: string }) {
  const own = await authorizeDevice();
  const done = await signInInBrowser(page, own.verification_uri_complete, who);
  expect(done.finalText).toContain("You are signed in");
  expect(await settledPoll(own.device_code)).toBe("session");
  return done;
}

/** From the device page through the (silent or filled-in) IdP sign-in to the first bound page. */
async function throughIdp(page: Page, url: string, who: { login: string; password: string }) {
  await page.goto(url);
  await page.locator("#continue").click();
  await page.locator('input[name="login"], #code, #approve, #error').first().waitFor({ timeout: 15_000 });
  if ((await page.locator('input[name="login"]').count()) > 0) await signInAtIdp(page, who);
  await page.locator("#code, #approve, #error").first().waitFor({ timeout: 15_000 });
}

test("login CSRF: a form on another site cannot submit the attacker's user code; a lured person sees the device and can refuse it", async () => {
  const attacker = await authorizeDevice(MARKUP, "attacker-box");
  await withBrowser(async (b) => {
    // The victim is signed in at the IdP (and has used Sallyport before in this browser).
    await signInOwnDevice(b.page, ALICE);

    // 1. The other site auto-submits a form with the attacker's code to the device page.
    evilPage = `<!doctype html><body onload="document.forms[0].submit()">
<form method="post" action="${edge.url}/auth/${edge.networkId}/device">
<input name="user_code" value="${attacker.user_code}"></form></body>`;
    const answered = b.page.waitForResponse(
      (r) => r.url().endsWith("/device") && r.request().method() === "POST",
    );
    await b.page.goto(evilOrigin);
    expect((await answered).status()).toBe(403);
    await b.page.locator("#error").waitFor();
    expect(await bodyText(b.page)).toContain("came from another site");
    expect(await settledPoll(attacker.device_code)).toBe("authorization_pending");
    expect((await signInEvents("cross_site_refused")).length).toBeGreaterThan(0);

    // 2. Lured to the device page itself, the person continues; the IdP signs her in silently, and
    //    nothing is approved: the confirmation page names the device that asked, as text.
    await throughIdp(b.page, attacker.verification_uri_complete, ALICE);
    expect(await b.page.locator("#approve").count()).toBe(1);
    expect(await settledPoll(attacker.device_code)).toBe("authorization_pending");
    expect(await b.page.locator("#device-name").textContent()).toBe(MARKUP);
    expect(await b.page.locator("#device img, img").count()).toBe(0);
    expect(await b.page.locator("#device-hostname").textContent()).toBe("attacker-box");
    expect(await b.page.locator("#device-user-code").textContent()).toBe(attacker.user_code);

    // 3. A cross-site POST to the confirmation, with the real flow cookie of this real IdP flow in
    //    the browser, is refused; so is a same-origin POST without the flow's CSRF token.
    evilPage = `<!doctype html><body onload="document.forms[0].submit()">
<form method="post" action="${edge.url}/auth/${edge.networkId}/confirm">
<input name="decision" value="approve"></form></body>`;
    const confirmTab = await b.context.newPage();
    const refused = confirmTab.waitForResponse((r) => r.url().endsWith("/confirm"));
    await confirmTab.goto(evilOrigin);
    expect((await refused).status()).toBe(403);
    const forged = await b.context.request.post(`${edge.url}/auth/${edge.networkId}/confirm`, {
      form: { decision: "approve" },
      headers: { origin: edge.url },
    });
    expect(forged.status()).toBe(403);
    expect(await settledPoll(attacker.device_code)).toBe("authorization_pending");

    // 4. The person says it was not her: the attacker's client is refused.
    await b.page.locator("#deny").click();
    await b.page.locator("#denied").waitFor();
    expect(await settledPoll(attacker.device_code)).toBe("access_denied");
    expect((await signInEvents("device_denied"))[0]?.email).toBe(ALICE.email);
  });
}, 90_000);

test("a planted flow cookie is refused: the victim's silent IdP sign-in does not approve the attacker's code", async () => {
  const attacker = await authorizeDevice("attacker laptop", "attacker-box");
  // The attacker starts the flow in his own browser, up to the IdP, and keeps its cookie and URL.
  const planted = await withBrowser(async (a) => {
    let authorizeUrl = "";
    a.page.on("request", (r) => {
      if (r.url().startsWith(`${idp.issuer}/auth?`)) authorizeUrl = r.url();
    });
    await a.page.goto(attacker.verification_uri_complete);
    await a.page.locator("#continue").click();
    await a.page.locator('input[name="login"]').waitFor({ timeout: 15_000 });
    const cookie = (await a.context.cookies(edge.url)).find((c) => c.name.startsWith("sp_flow_"));
    expect(cookie).toBeDefined();
    expect(authorizeUrl).not.toBe("");
    return { cookie: cookie!, authorizeUrl };
  });
  await withBrowser(async (b) => {
    await signInOwnDevice(b.page, ALICE);
    // Another port on the same host (or a sibling subdomain) can set a cookie for the Controller.
    await b.context.addCookies([{ name: planted.cookie.name, value: planted.cookie.value, url: edge.url }]);
    await b.page.goto(planted.authorizeUrl);
    await b.page.locator("#error, #approve, #signed-in").first().waitFor({ timeout: 15_000 });
    expect(await b.page.locator("#approve, #signed-in").count()).toBe(0);
    expect(await bodyText(b.page)).toContain("not started in this browser");
  });
  expect(await settledPoll(attacker.device_code)).toBe("authorization_pending");
  expect((await signInEvents("flow_binding_refused")).length).toBeGreaterThan(0);
}, 90_000);

/** A wrong 6-digit code for `secret`: none of the steps the Controller accepts now. */
function wrongCode(secret: string, salt: number): string {
  const near = new Set([-30_000, 0, 30_000].map((d) => totpNow(secret, Date.now() + d)));
  for (let n = salt; ; n++) {
    const c = String((n * 7919) % 1_000_000).padStart(6, "0");
    if (!near.has(c)) return c;
  }
}

async function submitCode(page: Page, code: string): Promise<number> {
  await page.locator("#code").fill(code);
  const answered = page.waitForResponse((r) => r.url().endsWith("/mfa") && r.request().method() === "POST");
  await page.locator("#verify").click();
  const status = (await answered).status();
  await page.locator("#code, #approve, #error").first().waitFor({ timeout: 15_000 });
  return status;
}

test("MFA guessing: a flow ends after 5 wrong codes, the person is locked after 10, recovery codes count too", async () => {
  const enrolled = await withBrowser((b) => signInOwnDevice(b.page, CAROL));
  const secret = enrolled.totpSecret!;
  expect(secret).toBeTruthy();

  // Flow 1: four wrong codes (two of them recovery-code shaped), then the fifth ends the flow.
  const first = await authorizeDevice();
  await withBrowser(async (b) => {
    await throughIdp(b.page, first.verification_uri_complete, CAROL);
    for (const code of [wrongCode(secret, 1), "aaaaa-bbbbb", wrongCode(secret, 2), "ccccc-ddddd"]) {
      expect(await submitCode(b.page, code)).toBe(200);
      expect(await bodyText(b.page)).toContain("not valid");
    }
    expect(await submitCode(b.page, wrongCode(secret, 3))).toBe(429);
    expect(await bodyText(b.page)).toContain("this sign-in was stopped");
    // The ended flow takes no more codes, not even the right one.
    await b.page.goto(`${edge.url}/auth/${edge.networkId}/mfa`);
    expect(await b.page.locator("#code").count()).toBe(0);
  });
  expect(await settledPoll(first.device_code)).toBe("authorization_pending");

  // Flow 2, another browser: five more wrong codes lock MFA for Carol, wherever she signs in.
  const second = await authorizeDevice();
  await withBrowser(async (b) => {
    await throughIdp(b.page, second.verification_uri_complete, CAROL);
    for (let i = 0; i < 4; i++) expect(await submitCode(b.page, wrongCode(secret, 10 + i))).toBe(200);
    expect(await submitCode(b.page, wrongCode(secret, 20))).toBe(429);
    expect(await b.page.locator("#mfa-locked").count()).toBe(1);
    expect(await bodyText(b.page)).toMatch(/Try again in 5 minutes/);
  });

  // Flow 3: locked: no code is even asked for, the right one included.
  const third = await authorizeDevice();
  await withBrowser(async (b) => {
    await throughIdp(b.page, third.verification_uri_complete, CAROL);
    expect(await b.page.locator("#mfa-locked").count()).toBe(1);
    expect(await b.page.locator("#code").count()).toBe(0);
  });
  expect(await settledPoll(third.device_code)).toBe("authorization_pending");
  const locked = await signInEvents("mfa_locked");
  expect(locked.length).toBe(1);
  expect(locked[0]?.detail).toContain("after 10 wrong codes");
  expect((await signInEvents("mfa_failed")).length).toBe(10);
}, 120_000);

test("one TOTP code submitted in two flows at once: exactly one is accepted", async () => {
  const enrolled = await withBrowser((b) => signInOwnDevice(b.page, FRANK));
  const secret = enrolled.totpSecret!;
  const [one, two] = [await authorizeDevice(), await authorizeDevice()];
  await withBrowser(async (b) => {
    const other = await b.context.newPage();
    await throughIdp(b.page, one.verification_uri_complete, FRANK);
    await throughIdp(other, two.verification_uri_complete, FRANK);
    // The next time step's code: accepted (±1 step) and not yet used (the enrollment used this one).
    const code = totpNow(secret, Date.now() + 30_000);
    await Promise.all([b.page.locator("#code").fill(code), other.locator("#code").fill(code)]);
    await Promise.all([b.page.locator("#verify").click(), other.locator("#verify").click()]);
    const outcomes = await Promise.all(
      [b.page, other].map(async (pg) => {
        await pg.locator("#approve, #error").first().waitFor({ timeout: 15_000 });
        return (await pg.locator("#approve").count()) > 0 ? "accepted" : "refused";
      }),
    );
    expect(outcomes.sort()).toEqual(["accepted", "refused"]);
  });
}, 120_000);

test("one user code approved from two browsers at once: exactly one approval counts", async () => {
  const device = await authorizeDevice();
  await withBrowser(async (b) => {
    const otherContext = await b.browser.newContext();
    const other = await otherContext.newPage();
    await throughIdp(b.page, device.verification_uri_complete, ALICE);
    await throughIdp(other, device.verification_uri_complete, ALICE);
    expect(await b.page.locator("#approve").count()).toBe(1);
    expect(await other.locator("#approve").count()).toBe(1);
    await Promise.all([b.page.locator("#approve").click(), other.locator("#approve").click()]);
    const outcomes = await Promise.all(
      [b.page, other].map(async (pg) => {
        await pg.locator("#signed-in, #error").first().waitFor({ timeout: 15_000 });
        return (await pg.locator("#signed-in").count()) > 0 ? "approved" : "refused";
      }),
    );
    expect(outcomes.sort()).toEqual(["approved", "refused"]);
    await otherContext.close();
  });
  expect(await settledPoll(device.device_code)).toBe("session");
  expect(await poll(device.device_code)).toBe("expired_token");
}, 90_000);

test("a person is their issuer + subject: an email match never takes over a bound person; linking needs a verified email", async () => {
  const { users: before } = await api<{ users: { id: string; email: string }[] }>("GET", "/users");
  const alice = before.find((u) => u.email === ALICE.email);
  expect(alice).toBeDefined();

  // A second IdP account claiming Alice's verified email is refused, with a clear message.
  const m = await authorizeDevice();
  await withBrowser(async (b) => {
    await throughIdp(b.page, m.verification_uri_complete, MALLORY);
    expect(b.page.url()).not.toContain("/confirm");
    expect(await bodyText(b.page)).toContain("signs in with another identity");
  });
  expect(await settledPoll(m.device_code)).toBe("authorization_pending");
  const conflict = await signInEvents("identity_conflict");
  expect(conflict[0]?.user_id).toBe(alice!.id);
  // Alice is still Alice: her own sign-in works and lands on the same person.
  await withBrowser((b) => signInOwnDevice(b.page, ALICE));
  const { users: after } = await api<{ users: { id: string; email: string }[] }>("GET", "/users");
  expect(after.filter((u) => u.email === ALICE.email).map((u) => u.id)).toEqual([alice!.id]);

  // An admin creates Dave; an IdP account with his email but no email_verified claim is not linked.
  const dave = await api<{ user: { id: string } }>("POST", "/users", { email: DAVE.email });
  const d1 = await authorizeDevice();
  await withBrowser(async (b) => {
    await throughIdp(b.page, d1.verification_uri_complete, DAVE_UNVERIFIED);
    expect(await bodyText(b.page)).toContain("does not say this email address is verified");
  });
  expect((await signInEvents("email_unverified"))[0]?.user_id).toBe(dave.user.id);
  // One that says it is verified is linked to the person the admin made...
  await withBrowser((b) => signInOwnDevice(b.page, DAVE));
  const { users } = await api<{ users: { id: string; email: string }[] }>("GET", "/users");
  expect(users.filter((u) => u.email === DAVE.email).map((u) => u.id)).toEqual([dave.user.id]);
  // ...and from then on the other account is a stranger to him.
  const d2 = await authorizeDevice();
  await withBrowser(async (b) => {
    await throughIdp(b.page, d2.verification_uri_complete, DAVE_UNVERIFIED);
    expect(await bodyText(b.page)).toContain("signs in with another identity");
  });
}, 120_000);

test("the sign-in group gate: only members of the allowed IdP groups may sign in", async () => {
  await api("PUT", "/idp", {
    preset: "generic",
    issuer: idp.issuer,
    client_id: "sallyport",
    scopes: ["openid", "email", "profile", "groups"],
    allowed_groups: ["engineering"],
  });
  try {
    expect((await api<{ idp: { allowed_groups: string[] } }>("GET", "/idp")).idp.allowed_groups).toEqual([
      "engineering",
    ]);
    const bob = await authorizeDevice();
    await withBrowser(async (b) => {
      await throughIdp(b.page, bob.verification_uri_complete, BOB);
      expect(await bodyText(b.page)).toContain("not in a group that may sign in");
    });
    expect(await settledPoll(bob.device_code)).toBe("authorization_pending");
    expect((await signInEvents("group_not_allowed"))[0]?.email).toBe(BOB.email);
    await withBrowser((b) => signInOwnDevice(b.page, ALICE));
  } finally {
    await api("PUT", "/idp", {
      preset: "generic",
      issuer: idp.issuer,
      client_id: "sallyport",
      scopes: ["openid", "email", "profile", "groups"],
    });
  }
}, 90_000);

test("an expired device code is refused on the device page and at the confirmation", async () => {
  const age = (userCode: string) =>
    api("POST", "/dev/device-codes/age", { user_code: userCode, seconds: 11 * 60 });
  await withBrowser(async (b) => {
    const stale = await authorizeDevice();
    await b.page.goto(stale.verification_uri_complete);
    await age(stale.user_code);
    await b.page.locator("#continue").click();
    await b.page.locator("#error").waitFor();
    expect(await bodyText(b.page)).toContain("unknown or has expired");

    const late = await authorizeDevice();
    await throughIdp(b.page, late.verification_uri_complete, ALICE);
    expect(await b.page.locator("#approve").count()).toBe(1);
    await age(late.user_code);
    await b.page.locator("#approve").click();
    await b.page.locator("#error").waitFor();
    expect(await bodyText(b.page)).toContain("expired before you finished");
    expect(await poll(late.device_code)).toBe("expired_token");
  });
}, 90_000);
