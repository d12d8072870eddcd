// Property tests of the relay's control messages, both directions: seeded with every valid message,
// mutated character by character or replaced by arbitrary JSON and non-text, each input either
// parses into a known message or fails with ControlMessageError, never anything else; the size cap
// holds before any parsing.
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import {
  ControlMessageError,
  MAX_CONTROL_MESSAGE,
  parseConnectorToRelay,
  parseRelayToConnector,
} from "./relay-control.ts";

const TO_CONNECTOR = [
  '{"type":"dial","session":"AAAAAAAAAAAAAAAAAAAAAAAA"}',
  '{"type":"sync"}',
  '{"type":"refreshed","exp":1790000000}',
  '{"type":"pong"}',
  '{"type":"ping"}',
];
const TO_RELAY = ['{"type":"refresh","token":"eyJhbGciOiJFUzI1NiJ9.e30.sig"}', '{"type":"pong"}'];

function mutated(seeds: string[]): fc.Arbitrary<string> {
  return fc
    .tuple(
      fc.constantFrom(...seeds),
      fc.array(fc.tuple(fc.nat(), fc.nat(4), fc.string({ maxLength: 6 })), { maxLength: 4 }),
    )
    .map(([seed, edits]) => {
      let s = seed;
      for (const [at, cut, insert] of edits) {
        const i = at % (s.length + 1);
        s = s.slice(0, i) + insert + s.slice(i + cut);
      }
      return s;
    });
}

const inputs = (seeds: string[]) =>
  fc.oneof(
    { weight: 4, arbitrary: mutated(seeds) },
    { weight: 1, arbitrary: fc.constantFrom(...seeds) },
    { weight: 1, arbitrary: fc.json() },
    { weight: 1, arbitrary: fc.jsonValue().map((v) => JSON.stringify({ type: "dial", session: v })) },
    { weight: 1, arbitrary: fc.anything() },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 64 }).map((b) => b.buffer) },
  );

function onlyOwnErrors(parse: (d: unknown) => { type: string }, types: string[], data: unknown): void {
  try {
    const m = parse(data);
    expect(types).toContain(m.type);
  } catch (err) {
    if (!(err instanceof ControlMessageError)) throw err;
  }
}

describe("relay control messages", () => {
  test("every seed parses", () => {
    for (const s of TO_CONNECTOR) expect(parseRelayToConnector(s).type).toBeDefined();
    for (const s of TO_RELAY) expect(parseConnectorToRelay(s).type).toBeDefined();
  });

  test("relay → connector: a known message or ControlMessageError", () => {
    const types = ["dial", "sync", "refreshed", "pong", "ping"];
    fc.assert(
      fc.property(inputs(TO_CONNECTOR), (d) => onlyOwnErrors(parseRelayToConnector, types, d)),
      { seed: 10, numRuns: 3000 },
    );
  });

  test("connector → relay: a known message or ControlMessageError", () => {
    fc.assert(
      fc.property(inputs(TO_RELAY), (d) => onlyOwnErrors(parseConnectorToRelay, ["refresh", "pong"], d)),
      { seed: 10, numRuns: 3000 },
    );
  });

  test("a dial names only a well-formed session id; oversized messages are refused before parsing", () => {
    expect(() => parseRelayToConnector('{"type":"dial","session":"../../etc"}')).toThrow(ControlMessageError);
    const big = `{"type":"refresh","token":"${"a".repeat(MAX_CONTROL_MESSAGE)}"}`;
    expect(() => parseConnectorToRelay(big)).toThrow("too large");
  });
});
