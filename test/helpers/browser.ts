// A real headless Chromium (Debian's, driven by playwright-core) for end-to-end tests of the
// browser sign-in, and the steps a user takes at the test IdP's login page (scripts/lib/idp.ts).
import { type Browser, type BrowserContext, chromium, type Page } from "playwright-core";

export const CHROMIUM_PATH = process.env.SALLYPORT_CHROMIUM ?? "/usr/bin/chromium";

export interface TestBrowser {
  browser: Browser;
  /** A fresh context: its own cookie jar, so its IdP session is its alone. */
  context: BrowserContext;
  page: Page;
  close: () => Promise<void>;
}

export async function launchBrowser(): Promise<TestBrowser> {
  const browser = await chromium.launch({
    executablePath: CHROMIUM_PATH,
    // playwright adds its own headless flag; these keep Chromium from reaching out to Google
    // services (updates, sync, QUIC probes), which would slow tests down or fail offline.
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  try {
    const context = await browser.newContext();
    const page = await context.newPage();
    return { browser, context, page, close: () => browser.close() };
  } catch (err) {
    await browser.close();
    throw err;
  }
}

/** The test IdP's login form (scripts/lib/idp-server.mjs). */
export const IDP_LOGIN = {
  login: 'input[name="login"]',
  password: 'input[name="password"]',
  submit: 'button[type="submit"]:has-text("Sign in")',
  error: '[role="alert"]',
} as const;

/**
 * Fills and submits the IdP's login form on `page`, waiting for the form to appear first (the page
 * may still be on its way there through redirects). Resolves once the IdP has answered the
 * submission; where the browser ends up (through redirects to the relying party's callback, or the
 * form again with an error) is the caller's to check, e.g. with `page.waitForURL`.
 */
export async function signInAtIdp(
  page: Page,
  creds: { login: string; password: string },
  timeoutMs = 10_000,
): Promise<void> {
  const login = page.locator(IDP_LOGIN.login);
  await login.waitFor({ timeout: timeoutMs });
  await login.fill(creds.login, { timeout: timeoutMs });
  await page.locator(IDP_LOGIN.password).fill(creds.password, { timeout: timeoutMs });
  const answered = page.waitForResponse(
    (r) => r.request().method() === "POST" && /\/interaction\/[^/]+\/login$/.test(new URL(r.url()).pathname),
    { timeout: timeoutMs },
  );
  await page.locator(IDP_LOGIN.submit).click({ timeout: timeoutMs });
  await answered;
}
