// A person signing in the way a person does: `sallyport login --no-browser` prints a URL and a
// code; headless Chromium opens it, continues to the IdP, signs in, completes TOTP MFA when the
// sign-in pages ask (enrolling with the secret the page shows, or with a known secret), and
// approves the device on the confirmation page.
import * as OTPAuth from "otpauth";
import type { Page } from "playwright-core";
import { CLIENT_BIN, spawnLogged } from "../../scripts/lib/processes.ts";
import { signInAtIdp } from "./browser.ts";

export interface PersonSignIn {
  /** The TOTP secret enrolled (or used) during this sign-in, if MFA was asked. */
  totpSecret?: string;
  /** What the sign-in pages said at the end. */
  finalText: string;
  recoveryCodes?: string[];
}

export function totpNow(secret: string, at = Date.now()): string {
  return new OTPAuth.TOTP({ secret: OTPAuth.Secret.fromBase32(secret), digits: 6, period: 30 }).generate({
    timestamp: at,
  });
}

/** Fill the MFA page: enroll from the page's secret, or use `secret`; returns the secret used. */
async function completeMfa(page: Page, secret?: string, recoveryCode?: string): Promise<string | undefined> {
  const shown = page.locator("#totp-secret");
  const enrolling = (await shown.count()) > 0;
  if (!enrolling && recoveryCode) {
    await page.locator("#code").fill(recoveryCode);
    await page.locator("#verify").click();
    return secret;
  }
  const s = enrolling ? ((await shown.textContent()) ?? "").trim() : secret;
  if (!s) throw new Error("MFA asked for a code but no TOTP secret is known");
  await page.locator("#code").fill(totpNow(s));
  await page.locator("#verify").click();
  return s;
}

/** Drives the sign-in pages from the device page to the end, in `page`. */
export async function signInInBrowser(
  page: Page,
  url: string,
  person: { login: string; password: string; totpSecret?: string; recoveryCode?: string },
): Promise<PersonSignIn> {
  await page.goto(url);
  await page.locator("#continue").click();
  // An IdP session already in this browser skips the IdP's form (silent re-authentication).
  const form = page.locator('input[name="login"]');
  const landed = await Promise.race([
    form.waitFor({ timeout: 15_000 }).then(() => "idp" as const),
    page
      .locator("#code, #approve, #signed-in, #error")
      .first()
      .waitFor({ timeout: 15_000 })
      .then(() => "sp" as const),
  ]).catch(async (err: Error) => {
    const body = await page
      .locator("body")
      .textContent()
      .catch(() => "");
    throw new Error(`${err.message}\nat ${page.url()}: ${body}`);
  });
  if (landed === "idp") await signInAtIdp(page, person);
  await page.locator("#code, #approve, #signed-in, #error").first().waitFor({ timeout: 15_000 });
  let totpSecret: string | undefined;
  if ((await page.locator("#code").count()) > 0) {
    totpSecret = await completeMfa(page, person.totpSecret, person.recoveryCode);
    await page.locator("#approve, #signed-in, #error").first().waitFor({ timeout: 15_000 });
  }
  const codes = page.locator("#recovery-codes");
  const recoveryCodes =
    (await codes.count()) > 0 ? ((await codes.textContent()) ?? "").trim().split("\n") : undefined;
  // The confirmation page names the device that asked; the person approves it.
  if ((await page.locator("#approve").count()) > 0) {
    await page.locator("#approve").click();
    await page.locator("#signed-in, #error").first().waitFor({ timeout: 15_000 });
  }
  return { totpSecret, finalText: (await page.locator("body").textContent()) ?? "", recoveryCodes };
}

/** `sallyport login` for a person, completed in `page`; resolves when the command has exited 0. */
export async function loginPerson(opts: {
  controller: string;
  networkId: string;
  stateDir: string;
  page: Page;
  person: { login: string; password: string; totpSecret?: string; recoveryCode?: string };
}): Promise<PersonSignIn & { output: string }> {
  const login = spawnLogged(
    [CLIENT_BIN, "login", "--controller", opts.controller, "--network", opts.networkId, "--no-browser"],
    { SALLYPORT_STATE_DIR: opts.stateDir },
    "person-login",
  );
  try {
    const line = await login.waitFor(/\(or open (\S+)\)/, 20_000);
    const url = /\(or open (\S+)\)/.exec(line)?.[1] ?? "";
    const result = await signInInBrowser(opts.page, url, opts.person);
    await Promise.race([login.proc.exited, Bun.sleep(20_000)]);
    if (login.proc.exitCode !== 0) {
      throw new Error(
        `sallyport login did not finish (${login.proc.exitCode}):\n${login.logs()}\n${result.finalText}`,
      );
    }
    return { ...result, output: login.logs() };
  } finally {
    if (login.proc.exitCode === null) await login.stop();
  }
}
