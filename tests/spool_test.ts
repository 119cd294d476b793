import assert from "node:assert/strict";
import { Spool, type SpoolPosition } from "../daemon/spool.ts";

const payload = (i: number) => JSON.stringify({ i, text: `record ${i} ünïcode \\ "quoted"` });

async function readAll(spool: Spool, from: SpoolPosition, batch = 1000) {
  const payloads: string[] = [];
  let corrupt = 0;
  let position = from;
  for (;;) {
    const read = await spool.read(position, batch);
    payloads.push(...read.payloads);
    corrupt += read.corrupt;
    if (read.payloads.length === 0 && read.corrupt === 0) return { payloads, corrupt, position };
    position = read.end;
  }
}

async function segmentFiles(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(dir)) names.push(e.name);
  return names.sort();
}

Deno.test("records read back in append order, across segment files and buffered or not", async () => {
  const dir = await Deno.makeTempDir();
  const spool = await Spool.open(dir, { segmentBytes: 4096 });
  const expected = Array.from({ length: 1000 }, (_, i) => payload(i));
  for (const p of expected.slice(0, 600)) assert.ok(spool.append(p));
  await spool.flush();
  for (const p of expected.slice(600)) assert.ok(spool.append(p)); // still buffered
  const { payloads, corrupt, position } = await readAll(spool, spool.start, 37);
  assert.deepEqual(payloads, expected);
  assert.equal(corrupt, 0);
  assert.equal(spool.distance(position, spool.end), 0);
  assert.ok((await segmentFiles(dir)).length > 10);
  await spool.close();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("a spool reopened after close gives back every unreleased record, and new ones after", async () => {
  const dir = await Deno.makeTempDir();
  const first = await Spool.open(dir, { segmentBytes: 2048 });
  for (let i = 0; i < 100; i++) first.append(payload(i));
  const { end } = await first.read(first.start, 40);
  first.release(end);
  await first.close();

  const second = await Spool.open(dir, { segmentBytes: 2048 });
  second.append(payload(100));
  const { payloads } = await readAll(second, second.start);
  // Whole segments before the released position are gone; the rest comes back in order.
  const firstIndex = JSON.parse(payloads[0]).i;
  assert.ok(firstIndex <= 40, `replay starts at ${firstIndex}`);
  assert.deepEqual(
    payloads,
    Array.from({ length: 101 - firstIndex }, (_, k) => payload(firstIndex + k)),
  );
  await second.close();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("records flushed before a crash are all there for the next process", async () => {
  const dir = await Deno.makeTempDir();
  const crashed = await Spool.open(dir);
  for (let i = 0; i < 500; i++) crashed.append(payload(i));
  await crashed.flush();
  // No close(): the next open sees the files exactly as a killed process leaves them.
  const next = await Spool.open(dir);
  const { payloads, corrupt } = await readAll(next, next.start);
  assert.equal(payloads.length, 500);
  assert.equal(corrupt, 0);
  await crashed.close();
  await next.close();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("a torn last line is skipped, not misparsed, and reading goes on in the next segment", async () => {
  const dir = await Deno.makeTempDir();
  const spool = await Spool.open(dir);
  for (let i = 0; i < 10; i++) spool.append(payload(i));
  await spool.close();
  const [file] = await segmentFiles(dir);
  const full = await Deno.readFile(`${dir}/${file}`);
  // A crash in the middle of writing record 9: its bytes are cut short, no newline.
  const lastLineStart = full.lastIndexOf(0x0a, full.length - 2) + 1;
  await Deno.writeFile(`${dir}/${file}`, full.subarray(0, lastLineStart + 20));

  const reopened = await Spool.open(dir);
  reopened.append(payload(10));
  const { payloads, corrupt } = await readAll(reopened, reopened.start);
  assert.deepEqual(payloads, [0, 1, 2, 3, 4, 5, 6, 7, 8, 10].map(payload));
  assert.equal(corrupt, 1);
  await reopened.close();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("a line whose checksum does not match is skipped and the lines after it are read", async () => {
  const dir = await Deno.makeTempDir();
  const spool = await Spool.open(dir);
  for (let i = 0; i < 5; i++) spool.append(payload(i));
  await spool.close();
  const [file] = await segmentFiles(dir);
  const bytes = await Deno.readFile(`${dir}/${file}`);
  const thirdLine = bytes.indexOf(0x0a, bytes.indexOf(0x0a) + 1) + 1;
  bytes[thirdLine + 20] ^= 0x01; // one flipped bit inside record 2's JSON
  await Deno.writeFile(`${dir}/${file}`, bytes);

  const reopened = await Spool.open(dir);
  const { payloads, corrupt } = await readAll(reopened, reopened.start);
  assert.deepEqual(payloads, [0, 1, 3, 4].map(payload));
  assert.equal(corrupt, 1);
  await reopened.close();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("released segments are deleted, and a fully released spool leaves no file", async () => {
  const dir = await Deno.makeTempDir();
  const spool = await Spool.open(dir, { segmentBytes: 1024 });
  for (let i = 0; i < 200; i++) spool.append(payload(i));
  await spool.flush();
  const before = (await segmentFiles(dir)).length;
  const half = await spool.read(spool.start, 100);
  spool.release(half.end);
  await spool.flush();
  const after = (await segmentFiles(dir)).length;
  assert.ok(after < before, `${after} files after releasing half, ${before} before`);
  const rest = await readAll(spool, half.end);
  assert.equal(rest.payloads.length, 100);
  spool.release(rest.position);
  assert.equal(spool.bytes, 0);
  await spool.close();
  assert.deepEqual(await segmentFiles(dir), []);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("append refuses past the cap and accepts again once records are released", async () => {
  const dir = await Deno.makeTempDir();
  const spool = await Spool.open(dir, { capBytes: 2000, segmentBytes: 500 });
  let accepted = 0;
  while (spool.append(payload(accepted))) accepted++;
  assert.ok(accepted > 5 && spool.bytes <= 2000, `${accepted} records, ${spool.bytes} bytes`);
  assert.equal(spool.append(payload(999)), null);
  const { payloads, position } = await readAll(spool, spool.start);
  assert.equal(payloads.length, accepted);
  spool.release(position);
  assert.ok(spool.append(payload(accepted)));
  await spool.close();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("an empty spool takes a record larger than the cap rather than refusing it forever", async () => {
  const dir = await Deno.makeTempDir();
  const spool = await Spool.open(dir, { capBytes: 100 });
  assert.ok(spool.append(JSON.stringify("x".repeat(500))));
  assert.equal(spool.append(payload(1)), null);
  await spool.close();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("a payload containing a newline is refused", async () => {
  const dir = await Deno.makeTempDir();
  const spool = await Spool.open(dir);
  assert.throws(() => spool.append('{"a":\n1}'), TypeError);
  await spool.close();
  await Deno.remove(dir, { recursive: true });
});
