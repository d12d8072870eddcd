// A real OpenID Provider (panva's `oidc-provider`) for the end-to-end tests and the demo, run as
// its own process by `idp.ts` under Node 22 (the runtime oidc-provider is written and tested for).
// Configuration comes as JSON in SALLYPORT_IDP_CONFIG (environment, not argv, because it holds
// passwords and client secrets and argv is world-readable). One line goes to stdout when it
// listens: `IDP_READY issuer=<url>`. Nothing secret is printed.
//
// Protocol surface: discovery, authorization code flow with PKCE S256 (required for every client),
// RS256 ID tokens carrying email, email_verified, name and the groups claim, refresh tokens, the
// userinfo and end_session endpoints. The login and consent interactions are served here: a plain
// HTML login form checks the configured users' passwords; consent is granted automatically.
import { createHash, generateKeyPairSync, randomBytes, timingSafeEqual } from "node:crypto";
import { createServer } from "node:http";
import Provider, { errors } from "oidc-provider";

const MAX_FORM_BYTES = 16 * 1024;
const INTERACTION_PATH = /^\/interaction\/([A-Za-z0-9_-]+)(\/login)?$/;

function fail(message) {
  process.stderr.write(`idp-server: ${message}\n`);
  process.exit(2);
}

/** Validates the configuration handed over by idp.ts; returns it with defaults filled in. */
function parseConfig(raw) {
  if (!raw) fail("SALLYPORT_IDP_CONFIG is not set");
  let c;
  try {
    c = JSON.parse(raw);
  } catch {
    fail("SALLYPORT_IDP_CONFIG is not JSON");
  }
  const str = (v, what) => {
    if (typeof v !== "string" || v === "") fail(`${what} must be a non-empty string`);
    return v;
  };
  const strings = (v, what) => {
    if (!Array.isArray(v)) fail(`${what} must be an array of strings`);
    return v.map((s, i) => str(s, `${what}[${i}]`));
  };
  if (!Array.isArray(c.users) || !Array.isArray(c.clients)) fail("users and clients must be arrays");
  const users = c.users.map((u, i) => ({
    sub: str(u.sub, `users[${i}].sub`),
    email: str(u.email, `users[${i}].email`),
    name: str(u.name, `users[${i}].name`),
    password: str(u.password, `users[${i}].password`),
    groups: strings(u.groups, `users[${i}].groups`),
    // What the login form takes: the email unless set (two accounts may share an email).
    login: u.login === undefined ? str(u.email, `users[${i}].email`) : str(u.login, `users[${i}].login`),
    // true, false, or null to leave the claim out (as Entra ID does).
    email_verified: u.email_verified === undefined ? true : u.email_verified,
  }));
  const clients = c.clients.map((k, i) => ({
    client_id: str(k.client_id, `clients[${i}].client_id`),
    client_secret: str(k.client_secret, `clients[${i}].client_secret`),
    redirect_uris: strings(k.redirect_uris, `clients[${i}].redirect_uris`),
    token_endpoint_auth_method: k.token_endpoint_auth_method ?? "client_secret_basic",
  }));
  const port = c.port ?? 0;
  if (!Number.isInteger(port) || port < 0 || port > 65535) fail("port must be an integer in 0..65535");
  const sessionTtlSeconds = c.sessionTtlSeconds ?? 3600;
  if (!Number.isInteger(sessionTtlSeconds) || sessionTtlSeconds < 1) fail("sessionTtlSeconds must be >= 1");
  return {
    host: c.host ?? "127.0.0.1",
    port,
    users,
    clients,
    groupsClaim: str(c.groupsClaim ?? "groups", "groupsClaim"),
    sessionTtlSeconds,
  };
}

const config = parseConfig(process.env.SALLYPORT_IDP_CONFIG);
const usersBySub = new Map(config.users.map((u) => [u.sub, u]));

/** Compares two strings in time independent of where they differ (hashes equalise the lengths). */
function sameSecret(a, b) {
  const h = (s) => createHash("sha256").update(s).digest();
  return timingSafeEqual(h(a), h(b));
}

/** The user whose login (case-insensitive; the email unless set) and password match, or undefined. */
function checkLogin(login, password) {
  const wanted = login.trim().toLowerCase();
  let found;
  // Every user's password is compared, so the time taken does not tell which emails exist.
  for (const u of config.users) {
    const ok = sameSecret(u.password, password);
    if (ok && u.login.toLowerCase() === wanted) found = u;
  }
  return found;
}

const escapeHtml = (s) => String(s).replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);

function loginPage(uid, { login = "", error } = {}) {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in - Sallyport test IdP</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body>
<main>
<h1>Sign in</h1>
${error ? `<p role="alert" id="error">${escapeHtml(error)}</p>` : ""}
<form method="post" action="/interaction/${escapeHtml(uid)}/login" autocomplete="off">
<label>Email <input name="login" type="text" autocomplete="username" value="${escapeHtml(login)}" required autofocus></label>
<label>Password <input name="password" type="password" autocomplete="current-password" required></label>
<button type="submit">Sign in</button>
</form>
</main>
</body></html>`;
}

function sendHtml(res, status, html) {
  res.writeHead(status, {
    "content-type": "text/html; charset=utf-8",
    "cache-control": "no-store",
    // No form-action directive: Chromium applies it to every redirect after the form is posted,
    // and the last of those goes to the relying party's redirect_uri, another origin.
    "content-security-policy": "default-src 'none'; frame-ancestors 'none'",
  });
  res.end(html);
}

async function readForm(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > MAX_FORM_BYTES) throw new Error("form too large");
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString("utf8"));
}

// Signing key and cookie key are made fresh for each run: tokens of an earlier run must not verify.
const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
const signingKey = {
  ...privateKey.export({ format: "jwk" }),
  kid: randomBytes(8).toString("hex"),
  use: "sig",
  alg: "RS256",
};

const server = createServer();
await new Promise((resolve, reject) => {
  server.once("error", reject);
  server.listen(config.port, config.host, resolve);
});
const issuer = `http://${config.host}:${server.address().port}`;

const provider = new Provider(issuer, {
  clients: config.clients.map((c) => ({
    ...c,
    grant_types: ["authorization_code", "refresh_token"],
    response_types: ["code"],
  })),
  jwks: { keys: [signingKey] },
  cookies: {
    // Cookies ignore ports: on 127.0.0.1 the Controller's cookies and ours share one jar, so ours
    // get names nobody else uses.
    names: { session: "sp_idp_session", interaction: "sp_idp_interaction", resume: "sp_idp_resume" },
    keys: [randomBytes(32).toString("base64url")],
  },
  // The scope to claims mapping; `groups` is our own scope carrying the (configurable) groups claim.
  claims: {
    openid: ["sub"],
    email: ["email", "email_verified"],
    profile: ["name"],
    groups: [config.groupsClaim],
  },
  // Put the scope-granted claims into the ID token itself, not only into userinfo: the Controller
  // reads email and groups from the ID token.
  conformIdTokenClaims: false,
  pkce: { required: () => true },
  // One machine, one clock. The default 15 s would also keep an ended session (and the tokens
  // bound to it) usable server-side for 15 s after its cookie expired in the browser.
  clockTolerance: 0,
  // A refresh token for every code exchange of a client allowed the refresh_token grant, with or
  // without offline_access. Without offline_access it still ends with the IdP session
  // (expiresWithSession default).
  issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed("refresh_token"),
  features: {
    devInteractions: { enabled: false },
    rpInitiatedLogout: { enabled: true },
  },
  interactions: { url: async (_ctx, interaction) => `/interaction/${interaction.uid}` },
  findAccount: async (_ctx, sub) => {
    const u = usersBySub.get(sub);
    if (!u) return undefined;
    return {
      accountId: u.sub,
      // oidc-provider filters these by the granted scopes and claims.
      claims: async () => ({
        sub: u.sub,
        email: u.email,
        ...(u.email_verified === null ? {} : { email_verified: u.email_verified === true }),
        name: u.name,
        [config.groupsClaim]: [...u.groups],
      }),
    };
  },
  ttl: {
    AccessToken: 600,
    AuthorizationCode: 60,
    IdToken: 600,
    Interaction: 600,
    RefreshToken: 24 * 3600,
    Grant: 24 * 3600,
    // Counted from the login, not from the last use: a test can rely on the sign-in at the IdP
    // ending sessionTtlSeconds after the password was typed, however often it is reused silently.
    Session: (_ctx, session) =>
      session.loginTs
        ? Math.max(1, session.loginTs + config.sessionTtlSeconds - Math.floor(Date.now() / 1000))
        : config.sessionTtlSeconds,
  },
  renderError: async (ctx, out) => {
    ctx.type = "html";
    ctx.body = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Error</title></head><body><h1>Error</h1><p id="error">${escapeHtml(out.error)}: ${escapeHtml(out.error_description ?? "")}</p></body></html>`;
  },
});

/** Grants every scope and claim the request still lacks, then hands the request back. */
async function autoConsent(req, res, details) {
  const { prompt, params, session, grantId } = details;
  const grant = grantId
    ? await provider.Grant.find(grantId)
    : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  const missing = prompt.details;
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(" "));
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
  for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
    grant.addResourceScope(indicator, scopes.join(" "));
  }
  const savedId = await grant.save();
  await provider.interactionFinished(
    req,
    res,
    { consent: grantId ? {} : { grantId: savedId } },
    {
      mergeWithLastSubmission: true,
    },
  );
}

async function interaction(req, res, uid, isLoginPost) {
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) {
    sendHtml(res, 400, "<!doctype html><p>This sign-in link does not match the current sign-in.</p>");
    return;
  }
  if (details.prompt.name === "consent") {
    await autoConsent(req, res, details);
    return;
  }
  if (details.prompt.name !== "login") {
    sendHtml(res, 400, "<!doctype html><p>Unsupported interaction.</p>");
    return;
  }
  if (!isLoginPost) {
    sendHtml(res, 200, loginPage(uid));
    return;
  }
  const form = await readForm(req);
  const login = form.get("login") ?? "";
  const user = checkLogin(login, form.get("password") ?? "");
  if (!user) {
    sendHtml(res, 401, loginPage(uid, { login, error: "Invalid email or password" }));
    return;
  }
  // Consent, if still needed, comes back as a second interaction that autoConsent answers.
  await provider.interactionFinished(
    req,
    res,
    { login: { accountId: user.sub, remember: true } },
    {
      mergeWithLastSubmission: false,
    },
  );
}

const callback = provider.callback();
server.on("request", (req, res) => {
  const url = new URL(req.url ?? "/", issuer);
  const m = INTERACTION_PATH.exec(url.pathname);
  const method = req.method ?? "GET";
  if (!m || !((method === "GET" && !m[2]) || (method === "POST" && m[2]))) {
    callback(req, res);
    return;
  }
  interaction(req, res, m[1], Boolean(m[2])).catch((err) => {
    if (res.headersSent) {
      res.destroy();
      return;
    }
    if (err instanceof errors.SessionNotFound) {
      sendHtml(res, 400, "<!doctype html><p>The sign-in expired or was not started here. Start again.</p>");
      return;
    }
    process.stderr.write(`idp-server: interaction failed: ${err?.stack ?? err}\n`);
    sendHtml(res, 500, "<!doctype html><p>Internal error.</p>");
  });
});

// Exit when the parent goes away without stopping us (a crashed test run), so no IdP is orphaned.
const parent = process.ppid;
setInterval(() => {
  if (process.ppid !== parent) process.exit(0);
}, 1000).unref();
// No state worth flushing: everything lives in memory and dies with the process.
process.on("SIGTERM", () => process.exit(0));

process.stdout.write(`IDP_READY issuer=${issuer}\n`);
