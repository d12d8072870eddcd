// The application's first bytes before its stream opens (EarlyBytes): in order behind the OPEN,
// replayed whole on the next attempt after one that did not open, and never handed over twice.
import { expect, test } from "bun:test";
import { EarlyBytes } from "./proxy-connection.ts";

const bytes = (s: string) => new TextEncoder().encode(s);
const text = (parts: Uint8Array[]) => parts.map((p) => new TextDecoder().decode(p)).join("");

test("bytes held before an attempt go to its stream first, in order, then each new one at once", () => {
  const early = new EarlyBytes(bytes("HEAD "));
  early.push(bytes("one "));
  const sent: Uint8Array[] = [];
  early.sendTo((b) => sent.push(b));
  expect(text(sent)).toBe("HEAD one ");
  early.push(bytes("two"));
  expect(text(sent)).toBe("HEAD one two");
  expect(early.size).toBe(12);
  expect(early.streaming).toBe(true);
});

test("an attempt that did not open stops taking bytes; the next gets all of them again, in order", () => {
  const early = new EarlyBytes();
  early.push(bytes("a"));
  const first: Uint8Array[] = [];
  const stopFirst = early.sendTo((b) => first.push(b));
  early.push(bytes("b"));
  stopFirst();
  expect(early.streaming).toBe(false);
  early.push(bytes("c"));
  expect(text(first)).toBe("ab");
  const second: Uint8Array[] = [];
  early.sendTo((b) => second.push(b));
  early.push(bytes("d"));
  expect(text(second)).toBe("abcd");
  expect(text(first)).toBe("ab");
  // A late stop of the first attempt does not cut off the second.
  stopFirst();
  early.push(bytes("e"));
  expect(text(second)).toBe("abcde");
});

test("finish: nothing to hand over when a stream took the bytes; all of them, copied, when none did", () => {
  const streamed = new EarlyBytes(bytes("x"));
  streamed.sendTo(() => {});
  expect(streamed.finish().length).toBe(0);

  const chunk = Buffer.from("held");
  const held = new EarlyBytes(bytes("lead:"));
  held.push(chunk);
  const stop = held.sendTo(() => {});
  stop();
  const rest = held.finish();
  expect(new TextDecoder().decode(rest)).toBe("lead:held");
  expect(Buffer.isBuffer(rest)).toBe(false);
  chunk.fill(0); // the caller's copy is its own
  expect(new TextDecoder().decode(rest)).toBe("lead:held");
  expect(new EarlyBytes().finish().length).toBe(0);
});

test("after finish, no byte is taken and no stream is fed", () => {
  const early = new EarlyBytes();
  early.finish();
  expect(() => early.push(bytes("late"))).toThrow("after the connect phase");
  const sent: Uint8Array[] = [];
  early.sendTo((b) => sent.push(b))();
  expect(sent.length).toBe(0);
});
