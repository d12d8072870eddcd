import { describe, expect, test } from "bun:test";
import { hashSecret, idPattern, newId, newSecret, parseSecret } from "./secrets.ts";

describe("secrets", () => {
  test("round trip, for IDs whose random part contains underscores and dashes", async () => {
    const networkId = `nw_${"a_b-".repeat(4)}`;
    const objectId = `ak_${"_-".repeat(8)}`;
    expect(networkId).toMatch(idPattern("nw"));
    expect(objectId).toMatch(idPattern("ak"));
    const s = await newSecret("spk", networkId, objectId);
    expect(s.token.startsWith(`spk_${networkId}_${objectId}_`)).toBe(true);
    expect(parseSecret("spk", s.token)).toEqual({ kind: "spk", networkId, objectId });
    expect(s.hash).toBe(await hashSecret(s.token));
    expect(s.hash).toMatch(/^[0-9a-f]{64}$/);
  });

  test("a secret of one kind is not accepted as another", async () => {
    const s = await newSecret("spr", newId("nw"), newId("cn"));
    expect(parseSecret("spr", s.token)).toBeDefined();
    expect(parseSecret("spk", s.token)).toBeUndefined();
    expect(parseSecret("sak", s.token)).toBeUndefined();
    // The object ID must be of the kind's type, too.
    const wrongObject = `spr_${newId("nw")}_${newId("ak")}_${"A".repeat(43)}`;
    expect(parseSecret("spr", wrongObject)).toBeUndefined();
  });

  test("malformed input is undefined, never an exception", () => {
    for (const bad of [undefined, null, 42, "", "spk_", "spk_nw_x_ak_y_z", `spk_${"x".repeat(300)}`, {}]) {
      expect(parseSecret("spk", bad)).toBeUndefined();
    }
    const ok = `spk_${newId("nw")}_${newId("ak")}_${"A".repeat(43)}`;
    expect(parseSecret("spk", ok)).toBeDefined();
    expect(parseSecret("spk", `${ok}A`)).toBeUndefined();
    expect(parseSecret("spk", ` ${ok}`)).toBeUndefined();
  });

  test("IDs are the prefix and 16 base64url characters", () => {
    for (let i = 0; i < 50; i++) expect(newId("rs")).toMatch(/^rs_[A-Za-z0-9_-]{16}$/);
  });
});
