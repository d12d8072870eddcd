// Console edit forms become admin API bodies that the API's own schemas accept, and a bad value is
// the schema's clear error (the console shows it as a 400), not something the form invents.
import { describe, expect, test } from "bun:test";
import { PolicyCreate, PolicyUpdate } from "../policy-schemas.ts";
import { ResourceUpdate } from "../schemas.ts";
import { countryList, policyBody, portList, resourceUpdateBody } from "./forms.ts";

describe("resource form", () => {
  test("ports, alias, ICMP and policy become a ResourceUpdate", () => {
    const body = resourceUpdateBody({
      name: "DB",
      address: " db.internal ",
      alias: "",
      tcp_policy: "restricted",
      tcp_ports: "5432, 8000-8080 22",
      udp_policy: "allow_all",
      udp_ports: "53",
      icmp: "on",
      policy_id: "po_default",
    });
    const parsed = ResourceUpdate.parse(body);
    expect(parsed.alias).toBeNull();
    expect(parsed.address).toBe("db.internal");
    expect(parsed.protocols).toEqual({
      tcp: {
        policy: "restricted",
        ports: [
          [5432, 5432],
          [8000, 8080],
          [22, 22],
        ],
      },
      udp: { policy: "allow_all", ports: [] },
      icmp: true,
    });
  });

  test("a bad port is the schema's error", () => {
    const r = ResourceUpdate.safeParse(
      resourceUpdateBody({ name: "x", address: "x.internal", tcp_policy: "restricted", tcp_ports: "ssh" }),
    );
    expect(r.success).toBe(false);
  });

  test("lists split on commas and spaces", () => {
    expect(portList(" 22,,443  80 ")).toEqual(["22", "443", "80"]);
    expect(countryList("us, ca de")).toEqual(["US", "CA", "DE"]);
  });
});

describe("policy form", () => {
  test("sign-in, MFA, trusted devices and a country list become a PolicyCreate", () => {
    const body = policyBody({
      name: "Finance",
      auth_required: "on",
      frequency_hours: "12",
      mfa: "on",
      device_mode: "trusted",
      location_mode: "allow",
      countries: "us, ca",
    });
    expect(PolicyCreate.parse(body)).toEqual({
      name: "Finance",
      authentication: { required: true, frequency_hours: 12, mfa: true },
      device: { mode: "trusted" },
      location: { mode: "allow", countries: ["US", "CA"] },
    });
  });

  test("no sign-in, any location; a custom device rule is kept (left out of the update)", () => {
    const body = policyBody({ name: "Printers", device_mode: "keep", location_mode: "any" });
    expect(PolicyUpdate.parse(body)).toEqual({
      name: "Printers",
      authentication: { required: false },
      location: { mode: "any" },
    });
  });

  test("out-of-range frequency and an empty allow list are refused by the schema", () => {
    expect(
      PolicyCreate.safeParse(
        policyBody({ name: "x", auth_required: "on", frequency_hours: "1000", location_mode: "any" }),
      ).success,
    ).toBe(false);
    expect(
      PolicyCreate.safeParse(policyBody({ name: "x", location_mode: "allow", countries: "" })).success,
    ).toBe(false);
  });
});
