/**
 * encodeAction: the bytes DAMI sends, and what it refuses to send (edge case 19 and
 * header injection), with the recorded client writes of the fixtures as reference.
 */
import assert from "node:assert/strict";
import { encodeAction, MAX_HEADERS, MAX_LINE_BYTES } from "../dami/action.ts";
import { DAMIInvalidInputError } from "../dami/errors.ts";
import { loadFixture } from "./fixtures.ts";

const decoder = new TextDecoder();

function text(bytes: Uint8Array): string {
  return decoder.decode(bytes);
}

function refuses(fn: () => unknown, pattern: RegExp): void {
  assert.throws(fn, (error: unknown) => {
    assert.ok(error instanceof DAMIInvalidInputError);
    assert.equal(error.code, "invalid");
    assert.match(error.message, pattern);
    return true;
  });
}

Deno.test("encodeAction produces byte for byte the actions recorded from a real client", () => {
  const originate = loadFixture("originate-local").outChunks[1];
  assert.deepEqual(
    encodeAction("Originate", {
      Channel: "Local/100@internal",
      Application: "Wait",
      Data: 3,
      Async: true,
      CallerID: '"Alice Ünïcode" <5551234>',
      Variable: ["FOO=bar", "BAZ=qux"],
    }, "orig-1"),
    originate,
  );
  const login = loadFixture("md5-login").outChunks[1];
  assert.deepEqual(
    encodeAction("Login", {
      AuthType: "MD5",
      Username: "dami",
      Key: "6c9bba098513d6f48cab59af8502a8c3",
    }, "md5-1"),
    login,
  );
  const filter = loadFixture("lists-and-errors").outChunks.at(-1)!;
  assert.deepEqual(
    encodeAction("Filter", { Operation: "Add", Filter: "Event: Newchannel" }, "flt"),
    filter,
  );
});

Deno.test("an object value becomes one name=value line per entry, in order", () => {
  assert.equal(
    text(encodeAction("Originate", { Variable: { FOO: "bar", N: 2, ON: false } }, "a")),
    "Action: Originate\r\nVariable: FOO=bar\r\nVariable: N=2\r\nVariable: ON=false\r\nActionID: a\r\n\r\n",
  );
});

Deno.test("undefined fields are skipped and an ActionID in the data is replaced by the one given, last", () => {
  assert.equal(
    text(encodeAction("Ping", { ActionID: "ignored", actionid: "too", Skip: undefined }, "real")),
    "Action: Ping\r\nActionID: real\r\n\r\n",
  );
});

Deno.test("numbers, bigints and booleans are written as text; non-finite numbers are refused", () => {
  assert.equal(
    text(encodeAction("X", { A: 0, B: -1.5, C: 12345678901234567890n, D: true }, "i")),
    "Action: X\r\nA: 0\r\nB: -1.5\r\nC: 12345678901234567890\r\nD: true\r\nActionID: i\r\n\r\n",
  );
  refuses(() => encodeAction("X", { A: NaN }, "i"), /"A" is not a finite number/);
  refuses(() => encodeAction("X", { A: [1, Infinity] }, "i"), /"A" is not a finite number/);
});

Deno.test("CR or LF in a value, a key or an entry name is refused (header injection)", () => {
  refuses(
    () => encodeAction("Originate", { Channel: "SIP/1\r\nAction: Hangup" }, "i"),
    /field "Channel" contains CR or LF/,
  );
  refuses(() => encodeAction("Originate", { Channel: "SIP/1\n" }, "i"), /CR or LF/);
  refuses(() => encodeAction("Originate", { Channel: "\rSIP/1" }, "i"), /CR or LF/);
  refuses(() => encodeAction("X", { "A\r\nB": "1" }, "i"), /invalid field name/);
  refuses(() => encodeAction("X", { "A:B": "1" }, "i"), /invalid field name/);
  refuses(() => encodeAction("X", { " A": "1" }, "i"), /invalid field name/);
  refuses(() => encodeAction("X", { "": "1" }, "i"), /invalid field name/);
  refuses(() => encodeAction("X", { Variable: { "A\nB": "1" } }, "i"), /entry name/);
  refuses(() => encodeAction("X", { Variable: { "A=B": "1" } }, "i"), /entry name/);
  refuses(() => encodeAction("X", { Variable: ["ok", "x\ny"] }, "i"), /CR or LF/);
  refuses(() => encodeAction("Ping\r\nAction: Hangup", {}, "i"), /"Action" contains CR or LF/);
  refuses(() => encodeAction("Ping", {}, "id\r\n"), /"ActionID" contains CR or LF/);
});

Deno.test("edge 19: a line of exactly 1024 bytes is sent, one byte more is refused (UTF-8 bytes counted)", () => {
  const prefix = "Data: ".length + 2; // "Data: " + CRLF
  const fits = "x".repeat(MAX_LINE_BYTES - prefix);
  assert.ok(text(encodeAction("X", { Data: fits }, "i")).includes(`Data: ${fits}\r\n`));
  refuses(
    () => encodeAction("X", { Data: fits + "x" }, "i"),
    /field "Data" makes a line longer than 1024 bytes/,
  );
  // 2-byte characters: 508 of them are 1016 bytes but only 508 UTF-16 units.
  const wide = "é".repeat((MAX_LINE_BYTES - prefix) / 2);
  encodeAction("X", { Data: wide }, "i");
  refuses(() => encodeAction("X", { Data: wide + "é" }, "i"), /longer than 1024 bytes/);
});

Deno.test("edge 19: 128 headers are sent, 129 are refused, repeated ones counted", () => {
  // Action + 126 + ActionID = 128.
  const fits: Record<string, string> = {};
  for (let i = 0; i < MAX_HEADERS - 2; i++) fits[`H${i}`] = "1";
  const lines = text(encodeAction("UserEvent", fits, "i")).split("\r\n").filter((l) => l !== "");
  assert.equal(lines.length, MAX_HEADERS);
  refuses(
    () => encodeAction("UserEvent", { ...fits, One: "more" }, "i"),
    /UserEvent has 129 headers; Asterisk reads at most 128/,
  );
  refuses(
    () => encodeAction("Originate", { Variable: Array(MAX_HEADERS - 1).fill("A=1") }, "i"),
    /129 headers/,
  );
});

Deno.test("refusal messages name the field and never include its value", () => {
  const secret = "hunter2-very-secret";
  for (
    const data of [
      { Secret: `${secret}\r\n` },
      { Secret: secret.repeat(100) },
      { Variable: { [`${secret}\n`]: "1" } },
    ]
  ) {
    assert.throws(() => encodeAction("Login", data, "i"), (error: unknown) => {
      assert.ok(error instanceof DAMIInvalidInputError);
      assert.ok(!error.message.includes(secret), error.message);
      return true;
    });
  }
});
