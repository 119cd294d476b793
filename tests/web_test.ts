/**
 * The dashboard's static files: served from `web/` with their types and a strict
 * content-security policy; nothing outside `web/` is reachable; every module the pages
 * import exists and nothing refers to another origin (the dashboard must work with no
 * internet).
 */
import assert from "node:assert/strict";
import { serveWeb } from "../daemon/web.ts";

Deno.test("/ is the dashboard's index page, with a same-origin-only policy", async () => {
  const response = await serveWeb("/");
  assert.ok(response !== undefined);
  assert.equal(response.headers.get("content-type"), "text/html; charset=utf-8");
  assert.match(response.headers.get("content-security-policy")!, /default-src 'self'/);
  assert.match(await response.text(), /<script type="module" src="\/app.js">/);
});

Deno.test("modules and styles are served with their types; HEAD has no body", async () => {
  assert.equal(
    (await serveWeb("/app.js"))!.headers.get("content-type"),
    "text/javascript; charset=utf-8",
  );
  assert.equal(
    (await serveWeb("/style.css"))!.headers.get("content-type"),
    "text/css; charset=utf-8",
  );
  const head = await serveWeb("/app.js", "HEAD");
  assert.equal(head!.body, null);
});

Deno.test("paths outside web/, unknown types and missing files are not served", async () => {
  for (
    const path of [
      "/../deno.json",
      "/%2e%2e/daemon/main.ts",
      "/lib/../../dami.config.jsonc",
      "/../../etc/passwd",
      "/missing.js",
      "/app.ts",
      "/index.html%00.js",
    ]
  ) {
    assert.equal(await serveWeb(path), undefined, path);
  }
});

Deno.test("every import of the dashboard resolves inside web/ and nothing names another origin", async () => {
  const root = new URL("../web/", import.meta.url);
  const files: URL[] = [];
  const walk = async (dir: URL) => {
    for await (const entry of Deno.readDir(dir)) {
      const url = new URL(entry.name + (entry.isDirectory ? "/" : ""), dir);
      if (entry.isDirectory) await walk(url);
      else files.push(url);
    }
  };
  await walk(root);
  assert.ok(files.length > 5);
  for (const file of files) {
    const text = await Deno.readTextFile(file);
    assert.doesNotMatch(
      text,
      /(?:src|href)="https?:|from "https?:|import\("https?:|url\(https?:/i,
      file.pathname,
    );
    for (const match of text.matchAll(/(?:from |import\()"(\.[^"]+)"/g)) {
      const target = new URL(match[1], file);
      await Deno.stat(target); // throws when the module is missing
    }
  }
});
