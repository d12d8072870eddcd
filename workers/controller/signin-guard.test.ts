import { describe, expect, test } from "bun:test";
import { isCrossSite, ownOrigins, sameToken, signInCookies } from "./signin-guard.ts";

const own = ownOrigins({ issuer: "https://sp.example.com" }, "https://sp.example.com/auth/nw_x/device");
const h = (o: Record<string, string>) => new Headers(o);

describe("isCrossSite", () => {
  test("fetch metadata decides when the browser sends it", () => {
    expect(isCrossSite(h({ "sec-fetch-site": "same-origin", origin: "https://sp.example.com" }), own)).toBe(
      false,
    );
    // Chromium under a no-referrer policy: Origin null, but the metadata says same-origin.
    expect(isCrossSite(h({ "sec-fetch-site": "same-origin", origin: "null" }), own)).toBe(false);
    expect(isCrossSite(h({ "sec-fetch-site": "cross-site", origin: "https://sp.example.com" }), own)).toBe(
      true,
    );
    // A sibling subdomain is the same site but another origin: refused.
    expect(isCrossSite(h({ "sec-fetch-site": "same-site", origin: "https://evil.example.com" }), own)).toBe(
      true,
    );
    expect(isCrossSite(h({ "sec-fetch-site": "none" }), own)).toBe(true);
  });
  test("without fetch metadata the Origin must be the Controller's", () => {
    expect(isCrossSite(h({ origin: "https://sp.example.com" }), own)).toBe(false);
    expect(isCrossSite(h({ origin: "https://evil.example" }), own)).toBe(true);
    expect(isCrossSite(h({ origin: "null" }), own)).toBe(true);
    expect(isCrossSite(h({ origin: "https://sp.example.com:8443" }), own)).toBe(true);
  });
  test("a request with neither header is no browser forgery", () => {
    expect(isCrossSite(h({}), own)).toBe(false);
  });
});

describe("cookies", () => {
  test("__Host- prefixed on https, plain on http; the flow cookie is per network", () => {
    expect(signInCookies({ issuer: "https://sp.example.com", networkId: "nw_a" })).toEqual({
      secure: true,
      flow: "__Host-sp_flow_nw_a",
      bind: "__Host-sp_bind",
    });
    expect(signInCookies({ issuer: "http://127.0.0.1:8787", networkId: "nw_a" }).flow).toBe("sp_flow_nw_a");
  });
});

test("sameToken compares whole strings", () => {
  expect(sameToken("abc", "abc")).toBe(true);
  expect(sameToken("abc", "abd")).toBe(false);
  expect(sameToken("abc", "ab")).toBe(false);
  expect(sameToken("", "")).toBe(true);
});
