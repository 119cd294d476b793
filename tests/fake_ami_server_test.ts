/**
 * The fake AMI server answers like the recorded Asterisk 20.20.1: a raw TCP client sends
 * the fixtures' actions byte for byte and compares the answers with the recordings.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { AmiParser } from "../dami/parser.ts";
import { type AmiMessage, headerValue, headerValues } from "../dami/message.ts";
import { type FakeAmi, startFakeAmi } from "./fake_ami_server.ts";
import { type FixtureName, loadFixture } from "./fixtures.ts";

const encoder = new TextEncoder();

/** A bare socket speaking AMI, to see exactly what the server sends. */
class RawClient {
  #conn: Deno.Conn;
  #parser = new AmiParser();
  #messages: AmiMessage[] = [];
  #buf = new Uint8Array(65536);
  eof = false;

  private constructor(conn: Deno.Conn) {
    this.#conn = conn;
  }

  static async connect(server: FakeAmi): Promise<RawClient> {
    return new RawClient(await Deno.connect({ hostname: server.hostname, port: server.port }));
  }

  get banner(): string | undefined {
    return this.#parser.banner;
  }

  async send(text: string | Uint8Array): Promise<void> {
    const bytes = typeof text === "string" ? encoder.encode(text) : text;
    let offset = 0;
    while (offset < bytes.length) offset += await this.#conn.write(bytes.subarray(offset));
  }

  /** The next `n` messages. */
  async read(n: number): Promise<AmiMessage[]> {
    while (this.#messages.length < n && !this.eof) {
      const got = await this.#conn.read(this.#buf);
      if (got === null) this.eof = true;
      else this.#messages.push(...this.#parser.push(this.#buf.subarray(0, got)));
    }
    return this.#messages.splice(0, n);
  }

  /** Resolves true when the server closes the connection. */
  async waitEof(): Promise<boolean> {
    while (!this.eof) await this.read(Number.MAX_SAFE_INTEGER);
    return true;
  }

  close(): void {
    try {
      this.#conn.close();
    } catch {
      // Closed by the server.
    }
  }
}

function recorded(name: FixtureName): AmiMessage[] {
  return new AmiParser().push(loadFixture(name).inBytes);
}

/** Header keys and the values that do not vary with time or addresses. */
function shape(message: AmiMessage) {
  const varying =
    /^(Timestamp|EventTV|SessionTV|SessionID|LocalAddress|RemoteAddress|Uptime|LastReload)$/;
  return message.headers.map(([k, v]) => [k, varying.test(k) ? "*" : v]);
}

Deno.test("fake server: action-before-login conversation gets the recorded answers", async () => {
  await using server = await startFakeAmi();
  const client = await RawClient.connect(server);
  const expected = recorded("action-before-login");
  const answers: AmiMessage[] = [];
  const counts = [1, 1, 3, 1];
  for (const [i, out] of loadFixture("action-before-login").outChunks.entries()) {
    await client.send(out);
    answers.push(...await client.read(counts[i]));
  }
  assert.equal(client.banner, "Asterisk Call Manager/9.0.0");
  assert.deepEqual(answers.map(shape), expected.map(shape));
  client.close();
});

Deno.test("fake server: login, Pings with and without ActionID, Logoff then close, as recorded", async () => {
  await using server = await startFakeAmi();
  const client = await RawClient.connect(server);
  const expected = recorded("login-ping-logoff");
  const answers: AmiMessage[] = [];
  for (const [i, out] of loadFixture("login-ping-logoff").outChunks.entries()) {
    await client.send(out);
    answers.push(...await client.read(i === 0 ? 3 : 1));
  }
  assert.deepEqual(answers.map(shape), expected.map(shape));
  assert.ok(await client.waitEof());
  client.close();
});

Deno.test("fake server: a wrong secret is refused after the configured delay and the socket closed", async () => {
  await using server = await startFakeAmi({ authFailDelayMs: 0 });
  const client = await RawClient.connect(server);
  await client.send(loadFixture("login-bad-secret").outChunks[0]);
  const answers = await client.read(2);
  assert.deepEqual(
    answers.map((m) => m.headers),
    recorded("login-bad-secret").map((m) => m.headers),
  );
  assert.ok(client.eof);
  client.close();
});

Deno.test("fake server: MD5 challenge and Key as recorded in md5-login", async () => {
  await using server = await startFakeAmi();
  const client = await RawClient.connect(server);
  const outs = loadFixture("md5-login").outChunks;
  await client.send(outs[0]);
  const [challenge] = await client.read(1);
  await client.send(outs[1]);
  const login = await client.read(3);
  await client.send(outs[2]);
  const pong = await client.read(1);
  assert.deepEqual([challenge, ...login, ...pong].map(shape), recorded("md5-login").map(shape));
  client.close();
});

Deno.test("fake server: commands and lists answer with the recorded bytes under the client's ActionID", async () => {
  await using server = await startFakeAmi();
  const client = await RawClient.connect(server);
  await client.send("Action: Login\r\nUsername: dami\r\nSecret: dami-secret\r\n\r\n");
  await client.read(3);
  await client.send("Action: Command\r\nCommand: dialplan show internal\r\nActionID: x1\r\n\r\n");
  const [command] = await client.read(1);
  const expected = recorded("commands").find((m) => headerValue(m, "ActionID") === "c5")!;
  assert.deepEqual(headerValues(command, "Output"), headerValues(expected, "Output"));
  assert.equal(headerValue(command, "ActionID"), "x1");
  await client.send("Action: SIPPeers\r\nActionID: x2\r\n\r\n");
  const peers = await client.read(5);
  assert.deepEqual(peers.map((m) => headerValue(m, "ActionID")), ["x2", "x2", "x2", "x2", "x2"]);
  assert.equal(headerValue(peers[4], "ListItems"), "3");
  await client.send("Action: PJSIPShowEndpoints\r\nActionID: x3\r\n\r\n");
  const endpoints = await client.read(5);
  assert.equal(headerValue(endpoints[0], "EventList"), "start");
  assert.equal(headerValue(endpoints[4], "Event"), "EndpointListComplete");
  await client.send("Action: Nope\r\nActionID: x4\r\n\r\n");
  const [unknown, badFormat] = await client.read(2);
  assert.equal(
    headerValue(unknown, "Message"),
    "Invalid/unknown command: Nope. Use Action: ListCommands to show available commands.",
  );
  assert.equal(headerValue(badFormat, "Event"), "RequestBadFormat");
  client.close();
});

Deno.test("fake server: Asterisk 13 style answers Command with a Follows body", async () => {
  await using server = await startFakeAmi({
    commandStyle: "follows",
    commands: { "sip show peers": ["Name/username  Host: x", "", "1 sip peers"] },
  });
  const client = await RawClient.connect(server);
  await client.send("Action: Login\r\nUsername: dami\r\nSecret: dami-secret\r\n\r\n");
  await client.read(3);
  await client.send("Action: Command\r\nCommand: sip show peers\r\nActionID: old\r\n\r\n");
  const [answer] = await client.read(1);
  assert.equal(headerValue(answer, "Response"), "Follows");
  assert.deepEqual(headerValues(answer, "Output"), ["Name/username  Host: x", "", "1 sip peers"]);
  client.close();
});

Deno.test("fake server: scripted handlers, silent Ping, pushed events and session bookkeeping", async () => {
  await using server = await startFakeAmi();
  server.handle("UserEvent", (action) => action.respond("Success", { Message: "scripted" }));
  const client = await RawClient.connect(server);
  await client.send(
    "Action: Login\r\nUsername: dami\r\nSecret: dami-secret\r\nEvents: call\r\n\r\n",
  );
  await client.read(3);
  const session = await server.session(0);
  assert.equal(session.loggedIn, true);
  assert.equal(session.eventMask, "call");
  await client.send("Action: UserEvent\r\nActionID: u\r\n\r\n");
  assert.equal(headerValue((await client.read(1))[0], "Message"), "scripted");
  server.setPingMode("silent");
  await client.send("Action: Ping\r\nActionID: p\r\n\r\n");
  await server.broadcast("Event: Hangup\r\nCause: 16\r\n\r\n");
  const [next] = await client.read(1);
  assert.equal(headerValue(next, "Event"), "Hangup");
  assert.deepEqual(session.actions.map((a) => a.name), ["Login", "UserEvent", "Ping"]);
  assert.equal(server.connections, 1);
  client.close();
  await session.closed;
  assert.equal(server.openSessions.length, 0);
});

Deno.test("fake server: restart sends Shutdown, closes sessions and accepts again on the same port", async () => {
  await using server = await startFakeAmi();
  const port = server.port;
  const client = await RawClient.connect(server);
  await client.send("Action: Login\r\nUsername: dami\r\nSecret: dami-secret\r\n\r\n");
  await client.read(3);
  const restarting = server.restart({ downMs: 50 });
  const [shutdown] = await client.read(1);
  assert.equal(headerValue(shutdown, "Restart"), "True");
  assert.ok(await client.waitEof());
  client.close();
  await restarting;
  assert.equal(server.port, port);
  const again = await RawClient.connect(server);
  await server.session(1);
  assert.equal(server.connections, 2);
  again.close();
});

Deno.test("fake server: a cut session sends the partial bytes then closes", async () => {
  await using server = await startFakeAmi();
  const client = await RawClient.connect(server);
  const session = await server.session(0);
  await session.cut("Event: Hangup\r\nChannel: SIP/1");
  assert.deepEqual(await client.read(1), []);
  assert.ok(client.eof);
  client.close();
});

Deno.test("fake server: MD5 key is md5(challenge + secret) with a configured challenge", async () => {
  await using server = await startFakeAmi({ challenge: "123", secret: "s3" });
  const client = await RawClient.connect(server);
  await client.send("Action: Challenge\r\nAuthType: MD5\r\n\r\n");
  const [challenge] = await client.read(1);
  assert.equal(headerValue(challenge, "Challenge"), "123");
  const key = createHash("md5").update("123s3").digest("hex");
  await client.send(`Action: Login\r\nAuthType: MD5\r\nUsername: dami\r\nKey: ${key}\r\n\r\n`);
  const [ok] = await client.read(1);
  assert.equal(headerValue(ok, "Message"), "Authentication accepted");
  client.close();
});
