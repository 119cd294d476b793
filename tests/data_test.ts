/**
 * DAMIData, the original DAMI key → value shape: lossless numbers, repeated keys as
 * arrays in order, Output always an array; and the jsonb `fields` of the daemon.
 */
import assert from "node:assert/strict";
import { buildDAMIData, losslessNumber, toDAMIData } from "../dami/data.ts";
import { type AmiMessage, headersToFields } from "../dami/message.ts";
import { AmiParser } from "../dami/parser.ts";
import { FIXTURE_NAMES, loadFixture } from "./fixtures.ts";

function message(headers: Array<[string, string]>): AmiMessage {
  return { kind: "event", headers, seq: 1, receivedAt: 0 };
}

Deno.test("only integers that print back identically become numbers", () => {
  const cases: Array<[string, string | number]> = [
    ["0", 0],
    ["42", 42],
    ["-7", -7],
    ["5070", 5070],
    ["9007199254740991", 9007199254740991],
    ["9007199254740993", "9007199254740993"],
    ["12345678901234567", "12345678901234567"],
    ["0123", "0123"],
    ["+1555", "+1555"],
    ["-0", "-0"],
    ["00", "00"],
    ["1e3", "1e3"],
    ["1.5", "1.5"],
    ["1795663605.15", "1795663605.15"],
    [" 1", " 1"],
    ["1 ", "1 "],
    ["", ""],
    ["-", "-"],
    ["0x10", "0x10"],
    ["١٢", "١٢"],
  ];
  for (const [input, expected] of cases) assert.equal(losslessNumber(input), expected, input);
});

Deno.test("repeated keys become arrays in arrival order, each value converted losslessly", () => {
  const data = toDAMIData(message([
    ["Event", "VarSet"],
    ["ChanVariable", "A=1"],
    ["Variable", "0123"],
    ["ChanVariable", "B=2"],
    ["Variable", "7"],
    ["Variable", "x"],
  ]));
  assert.deepEqual(data, {
    Event: "VarSet",
    ChanVariable: ["A=1", "B=2"],
    Variable: ["0123", 7, "x"],
  });
});

Deno.test("Output is always an array of text lines, even one line that looks like a number", () => {
  assert.deepEqual(toDAMIData(message([["Response", "Success"], ["Output", "42"]])).Output, ["42"]);
  assert.deepEqual(
    toDAMIData(message([["Response", "Success"], ["Output", ""], ["Output", "0123"]])).Output,
    ["", "0123"],
  );
});

Deno.test("keys keep their case and a header named __proto__ stays plain data", () => {
  const data = toDAMIData(
    message([["IPaddress", "10.0.0.1"], ["__proto__", "x"], ["ipaddress", "y"]]),
  );
  assert.equal(data.IPaddress, "10.0.0.1");
  assert.equal(data.ipaddress, "y");
  assert.equal(Object.getPrototypeOf(data), Object.prototype);
  assert.ok(Object.hasOwn(data, "__proto__"));
  assert.equal(data["__proto__"], "x");
  const fields = headersToFields([["__proto__", "1"], ["__proto__", "2"]]);
  assert.deepEqual(Object.getOwnPropertyDescriptor(fields, "__proto__")?.value, ["1", "2"]);
});

Deno.test("real events convert: the SIP peer list and a Cdr keep phone-like values as text", () => {
  const messages = new AmiParser().push(loadFixture("sip-calls").inBytes);
  const cdr = toDAMIData(messages.find((m) => m.headers[0][1] === "Cdr")!);
  assert.equal(cdr.Disposition, "ANSWERED");
  assert.equal(typeof cdr.Duration, "number");
  assert.equal(typeof cdr.UniqueID, "string"); // "1795663687.42"
  const peer = toDAMIData(messages.find((m) => m.headers[0][1] === "PeerEntry")!);
  assert.equal(peer.ObjectName, 6001);
  assert.equal(peer.IPport, 5070);
  assert.equal(peer.Description, "");
});

Deno.test("headersToFields keeps every header as text: single as a string, repeated as an array", () => {
  assert.deepEqual(
    headersToFields([["Event", "Newchannel"], ["Exten", "0123"], ["V", "1"], ["V", "2"]]),
    { Event: "Newchannel", Exten: "0123", V: ["1", "2"] },
  );
});

Deno.test("headers named like Object.prototype members are own data, single or repeated", () => {
  const data = toDAMIData(message([
    ["constructor", "1"],
    ["toString", "x"],
    ["toString", "y"],
    ["hasOwnProperty", "0123"],
    ["__proto__", "a"],
    ["__proto__", "b"],
    ["__proto__", "c"],
  ]));
  assert.equal(Object.getPrototypeOf(data), Object.prototype);
  assert.equal(data.constructor, 1);
  assert.deepEqual(data.toString, ["x", "y"]);
  assert.equal(data.hasOwnProperty, "0123");
  assert.deepEqual(Object.getOwnPropertyDescriptor(data, "__proto__")?.value, ["a", "b", "c"]);
  assert.deepEqual(Object.keys(data), [
    "constructor",
    "toString",
    "hasOwnProperty",
    "__proto__",
  ]);
  const fields = headersToFields([["constructor", "1"], ["valueOf", "2"], ["valueOf", "3"]]);
  assert.equal(Object.getPrototypeOf(fields), Object.prototype);
  assert.deepEqual(JSON.parse(JSON.stringify(fields)), { constructor: "1", valueOf: ["2", "3"] });
  assert.deepEqual(
    Object.getOwnPropertyDescriptor(headersToFields([["__proto__", "1"]]), "__proto__")?.value,
    "1",
  );
});

Deno.test("the compiled shape and the key-by-key loop build the same DAMIData for every fixture message", () => {
  for (const name of FIXTURE_NAMES) {
    for (const m of new AmiParser().push(loadFixture(name).inBytes)) {
      const expected = buildDAMIData(m.headers);
      assert.deepEqual(toDAMIData(m), expected, name);
      assert.deepEqual(toDAMIData(m), expected, `${name}, second time`);
      assert.deepEqual(Object.keys(toDAMIData(m)), Object.keys(expected));
    }
  }
});

Deno.test("header names from the server never become code in a compiled shape", () => {
  const hostile = [
    '"};globalThis.damiPwned=1;({"',
    "'];globalThis.damiPwned=1;//",
    "`${globalThis.damiPwned=1}`",
    "\\",
    "a\u2028b\u2029c",
    "__proto__",
    "constructor",
  ];
  const headers: Array<[string, string]> = hostile.map((key, i) => [key, String(i)]);
  headers.push([hostile[0], "again"]);
  for (let i = 0; i < 2; i++) {
    const data = toDAMIData(message(headers));
    assert.equal((globalThis as Record<string, unknown>).damiPwned, undefined);
    assert.equal(Object.getPrototypeOf(data), Object.prototype);
    assert.deepEqual(Object.keys(data), hostile);
    assert.deepEqual(data[hostile[0]], [0, "again"]);
    assert.equal(Object.getOwnPropertyDescriptor(data, "__proto__")?.value, 5);
    assert.equal(data.constructor, 6);
    assert.deepEqual(data, buildDAMIData(headers));
  }
});
