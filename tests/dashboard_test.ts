/**
 * The dashboard in a real browser: Debian's Chromium, headless, driven by
 * playwright-core, against the daemon (a process, on a real PostgreSQL) fed by the fake
 * Asterisk with the recorded queue call. A waiting caller shows on the wallboard, then
 * the agent answering; the finished call opens its timeline; the events tail survives a
 * forced reconnect without gap or duplicate; the Queues page shows the SQL's numbers;
 * the token is asked once and kept. Screenshots of every page go to
 * `tests/screenshots/` (not committed).
 */
import assert from "node:assert/strict";
import type { Browser, Page } from "playwright-core";
import { launchChromium } from "./chromium.ts";
import postgres from "postgres";
import { DaemonProcess } from "./daemon_process.ts";
import { startFakeAmi } from "./fake_ami_server.ts";
import { eventTexts } from "./fixtures.ts";
import { createTestDatabase } from "./pg.ts";

const TOKEN = "dashboard-token-0123456789abcdef";
const SHOTS = new URL("./screenshots/", import.meta.url);

async function shot(page: Page, name: string): Promise<void> {
  await Deno.mkdir(SHOTS, { recursive: true });
  await page.screenshot({ path: new URL(`${name}.png`, SHOTS).pathname, fullPage: true });
}

Deno.test("dashboard: live wallboard, call timeline, events tail across a reconnect, queue figures", async () => {
  const db = await createTestDatabase("dashboard");
  const dir = await Deno.makeTempDir({ prefix: "dami-dashboard-" });
  await using ami = await startFakeAmi({ authFailDelayMs: 0 });
  const config = `${dir}/dami.config.jsonc`;
  await Deno.writeTextFile(
    config,
    JSON.stringify({
      database: { url: "${DATABASE_URL}" },
      dataDir: "./data",
      http: { listen: "127.0.0.1:0", token: "${DAMI_HTTP_TOKEN}" },
      servers: [{
        name: "pbx1",
        host: "127.0.0.1",
        port: ami.port,
        username: "dami",
        secret: "dami-secret",
        auth: "plain",
      }],
    }),
  );
  const daemon = new DaemonProcess(["--config", config], {
    DATABASE_URL: db.url,
    DAMI_HTTP_TOKEN: TOKEN,
  });
  const sql = postgres(db.url, { max: 1, onnotice: () => {} });
  let browser: Browser | undefined;
  try {
    const listening = await daemon.waitForLog(/^HTTP on http:\/\//);
    const base = listening.match(/http:\/\/[^ ]+/)![0];
    await daemon.waitForLog(/^connected to pbx1/);
    const session = await ami.session(0);
    const events = eventTexts("queue-call");
    const join = events.findIndex((e) => e.startsWith("Event: QueueCallerJoin"));
    const connect = events.findIndex((e) => e.startsWith("Event: AgentConnect"));

    browser = await launchChromium();
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await context.newPage();
    const failures: string[] = [];
    page.on("pageerror", (error) => failures.push(error.message));
    page.on("response", (r) => {
      if (r.status() >= 400 && r.status() !== 401) failures.push(`${r.status()} ${r.url()}`);
    });

    page.on("requestfailed", (request) => {
      if (!request.url().startsWith(base)) failures.push(`left the origin: ${request.url()}`);
    });

    // The token is asked once, kept in the browser.
    await page.goto(`${base}/#/live`);
    await page.getByRole("textbox", { name: "Token" }).fill(TOKEN);
    await page.getByRole("button", { name: "Save" }).click();
    await page.locator("#live-status", { hasText: "live" }).waitFor({ timeout: 5000 });

    // The caller joins the queue: the wallboard shows one caller waiting, within 2 s.
    await session.send(events.slice(0, join + 1).join(""));
    await page.locator('[data-waiting="support"]', { hasText: "1" }).waitFor({ timeout: 2000 });
    assert.equal(await page.locator('[data-queue="support"] li[data-caller]').count(), 1);
    await page.getByRole("table").first().locator("tbody tr").first().waitFor({ timeout: 2000 });
    await shot(page, "live-waiting");

    // The agent answers: nobody waits any more and the member is in a call.
    await session.send(events.slice(join + 1, connect + 1).join(""));
    await page.locator('[data-waiting="support"]', { hasText: "0" }).waitFor({ timeout: 2000 });
    await page.locator('[data-member="SIP/6001"]', { hasText: "in call" }).waitFor({
      timeout: 2000,
    });
    await shot(page, "live-answered");

    // A lost connection: the page resumes and says so.
    await page.evaluate(() =>
      (globalThis as { __damiLive?: { reconnect(): void } }).__damiLive!.reconnect()
    );
    await page.locator("#live-status[data-resumed=true]").waitFor({ timeout: 5000 });
    await session.send(events.slice(connect + 1).join(""));

    // The finished call: in the Calls page (today), its detail shows every event in order.
    const callId = await waitForCall(sql);
    // Call times come from the events' own Timestamp header (the recording's day).
    const [{ day }] = await sql<{ day: string }[]>`
      select to_char(started_at at time zone 'UTC', 'YYYY-MM-DD') as day from calls
       where call_id = ${callId}`;
    await page.goto(`${base}/#/calls`);
    await page.getByLabel("From").fill(day);
    await page.getByLabel("To (inclusive)").fill(day);
    await page.getByRole("button", { name: "Search" }).click();
    const row = page.locator("#call-results tbody tr[role=link]").first();
    await row.waitFor({ timeout: 5000 });
    await row.press("Enter"); // keyboard: rows are links
    await page.getByRole("heading", { name: `Call ${callId}` }).waitFor({ timeout: 5000 });
    const timeline = page.locator("ol.timeline > li");
    const [{ n: callEvents }] = await sql<{ n: number }[]>`
      select count(*)::int as n from ami_events
       where linkedid in (select linkedid from call_legs where call_id = ${callId})
          or uniqueid in (select uniqueid from call_legs where call_id = ${callId})`;
    assert.equal(await timeline.count(), callEvents);
    await timeline.first().locator("summary").click();
    assert.match(await timeline.first().locator("pre").innerText(), /Event: |Channel: /);
    await shot(page, "call-detail");

    // The events tail: every stored event once, across a forced reconnect.
    await page.goto(`${base}/#/events`);
    await page.locator("#events-status", { hasText: "live" }).waitFor({ timeout: 5000 });
    const [{ n: stored }] = await sql<{ n: number }[]>`select count(*)::int as n from ami_events`;
    await page.locator("#events-count", { hasText: String(stored) }).waitFor({ timeout: 5000 });
    await page.evaluate(() =>
      (globalThis as { __damiEvents?: { reconnect(): void } }).__damiEvents!.reconnect()
    );
    await session.send(events.slice(0, 20).join("")); // 20 more while reconnecting
    await page.locator("#events-status", { hasText: "reconnected" }).waitFor({ timeout: 5000 });
    await page.locator("#events-count", { hasText: String(stored + 20) }).waitFor({
      timeout: 5000,
    });
    const shown = await page.locator("#events-body tr").evaluateAll((rows) =>
      rows.map((r) => Number((r as { getAttribute(name: string): string }).getAttribute("data-id")))
    );
    const ids =
      (await sql<{ id: string }[]>`select id::text as id from ami_events order by ami_events.id`)
        .map((r) => Number(r.id));
    assert.deepEqual(shown.toSorted((a, b) => a - b), ids);
    await shot(page, "events");

    // The Queues page shows the SQL's figures.
    await page.goto(`${base}/#/queues`);
    const queueRow = page.locator("#queue-results table").first().locator("tbody tr").first();
    await queueRow.waitFor({ timeout: 5000 });
    await page.getByLabel("From").fill(day);
    await page.getByLabel("To (inclusive)").fill(day);
    await page.getByRole("button", { name: "Show" }).click();
    await page.locator("#queue-results table").first().locator("tbody tr td", {
      hasText: "support",
    })
      .waitFor({ timeout: 5000 });
    const cells = await queueRow.locator("td").allInnerTexts();
    const expected = await fetch(
      `${base}/api/queries/queue-stats?interval=day&from=${day}&tz=UTC`,
      {
        headers: { authorization: `Bearer ${TOKEN}` },
      },
    ).then((r) => r.json());
    const figures = expected.rows[0];
    const values = Array.isArray(figures)
      ? figures
      : expected.columns.map((c: string) => figures[c]);
    // interval, queue, offered, answered, abandoned, short, unanswered, SL, ASA, AHT, rate
    assert.deepEqual(
      cells.slice(1),
      values.slice(1).map((v: unknown) => v === null ? "" : String(v)),
    );
    await shot(page, "queues");

    await page.goto(`${base}/#/overview`);
    await page.locator("[data-tile=total]").waitFor({ timeout: 5000 });
    await page.locator("svg.chart").waitFor({ timeout: 5000 }); // the week's chart follows
    await shot(page, "overview");
    await page.goto(`${base}/#/endpoints`);
    await page.locator("main table").first().waitFor({ timeout: 5000 });
    await shot(page, "endpoints");
    assert.deepEqual(failures, []);

    // On a phone-sized screen the wallboard is usable: no horizontal scrolling.
    await page.setViewportSize({ width: 390, height: 844 });
    await page.goto(`${base}/#/live`);
    await page.locator("#live-status", { hasText: "live" }).waitFor({ timeout: 5000 });
    const overflow = await page.evaluate<number>("document.body.scrollWidth - innerWidth");
    assert.ok(overflow <= 0, `the wallboard is ${overflow} px wider than a phone`);
    await shot(page, "live-phone");
  } finally {
    await browser?.close();
    daemon.kill("SIGTERM");
    await daemon.finished();
    await sql.end();
    await db.drop();
    await Deno.remove(dir, { recursive: true });
  }
});

/** The id of the first complete call once the projector has it. */
async function waitForCall(sql: postgres.Sql): Promise<string> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const rows = await sql<{ call_id: string }[]>`
      select call_id from calls where ended_at is not null order by started_at limit 1`;
    if (rows.length > 0) return rows[0].call_id;
    if (Date.now() > deadline) throw new Error("no finished call was projected");
    await new Promise((r) => setTimeout(r, 100));
  }
}
