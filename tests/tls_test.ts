/**
 * DAMI over TLS (Asterisk `tlsenable`), against the fake server with a certificate
 * signed by a throwaway CA made by openssl at test time.
 */
import assert from "node:assert/strict";
import { DAMI, DAMIError } from "../mod.ts";
import { startFakeAmi } from "./fake_ami_server.ts";

/** A throwaway CA and a server certificate for 127.0.0.1 signed by it (rustls refuses a CA as end entity). */
async function testCertificates(): Promise<{ ca: string; cert: string; key: string }> {
  const dir = await Deno.makeTempDir({ prefix: "dami-tls-" });
  const openssl = async (...args: string[]) => {
    const { success, stderr } = await new Deno.Command("openssl", {
      args,
      cwd: dir,
      stdout: "null",
      stderr: "piped",
    }).output();
    assert.ok(success, `openssl ${args[0]}: ${new TextDecoder().decode(stderr)}`);
  };
  try {
    await openssl(
      "req",
      "-x509",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-days",
      "1",
      "-subj",
      "/CN=DAMI test CA",
      "-keyout",
      "ca.key",
      "-out",
      "ca.pem",
    );
    await openssl(
      "req",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-subj",
      "/CN=127.0.0.1",
      "-keyout",
      "server.key",
      "-out",
      "server.csr",
    );
    await Deno.writeTextFile(
      `${dir}/ext.cnf`,
      "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
    );
    await openssl(
      "x509",
      "-req",
      "-in",
      "server.csr",
      "-CA",
      "ca.pem",
      "-CAkey",
      "ca.key",
      "-CAcreateserial",
      "-days",
      "1",
      "-extfile",
      "ext.cnf",
      "-out",
      "server.pem",
    );
    return {
      ca: await Deno.readTextFile(`${dir}/ca.pem`),
      cert: await Deno.readTextFile(`${dir}/server.pem`),
      key: await Deno.readTextFile(`${dir}/server.key`),
    };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const { ca, ...certificate } = await testCertificates();

Deno.test("TLS: login, a list action and events work over TLS with the CA given in caCerts", async () => {
  await using server = await startFakeAmi({ tls: certificate });
  const dami = new DAMI({
    hostname: server.hostname,
    port: server.port,
    logger: false,
    tls: true,
    caCerts: [ca],
  });
  await dami.connectAndLogin({ username: "dami", secret: "dami-secret", authType: "md5" });
  assert.equal(dami.banner, "Asterisk Call Manager/9.0.0");
  const events: string[] = [];
  dami.on("*", (data) => void events.push(String(data.Event)));
  await dami.listen();
  const peers = await dami.to("SIPPeers");
  assert.equal(peers.length, 5);
  assert.equal(await dami.ping(), true);
  assert.deepEqual(events, ["FullyBooted", "SuccessfulAuth"]);
  await dami.logoff();
  assert.equal((await dami.closed).reason, "logoff");
});

Deno.test("TLS: a server certificate the client does not trust is refused at connect with code connect", async () => {
  await using server = await startFakeAmi({ tls: certificate });
  const dami = new DAMI({ hostname: server.hostname, port: server.port, logger: false, tls: true });
  await assert.rejects(
    dami.connectAndLogin({ username: "dami", secret: "dami-secret" }),
    (error: unknown) =>
      error instanceof DAMIError && error.code === "connect" &&
      /invalid peer certificate/.test(error.message),
  );
  assert.equal(dami.connected, false);
});
