/**
 * The direction of imports, from the module graph Deno itself resolves
 * (`deno info --json`): `dami/` and `mod.ts` import nothing of the project outside
 * `dami/` (the library stands alone), and `queries/` never imports `daemon/`.
 */
import assert from "node:assert/strict";

const root = new URL("../", import.meta.url);

/** Project files (relative paths) in the module graph of `entry`, `entry` included. */
async function moduleGraph(entry: string): Promise<string[]> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", entry],
    cwd: root,
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
  const graph = JSON.parse(new TextDecoder().decode(out.stdout)) as {
    modules: Array<{ specifier: string }>;
  };
  return graph.modules.map((m) => m.specifier)
    .filter((s) => s.startsWith(root.href) && !s.includes("/node_modules/"))
    .map((s) => s.slice(root.href.length));
}

function tsFiles(dir: string): string[] {
  return [...Deno.readDirSync(new URL(dir, root))]
    .filter((e) => e.isFile && e.name.endsWith(".ts"))
    .map((e) => `${dir}${e.name}`).sort();
}

/** Every `[entry, imported]` pair where an entry of `entries` reaches a file outside `allowed`. */
async function violations(entries: string[], allowed: (path: string) => boolean) {
  const found: string[] = [];
  for (const entry of entries) {
    for (const path of await moduleGraph(entry)) {
      if (!allowed(path)) found.push(`${entry} -> ${path}`);
    }
  }
  return found;
}

Deno.test("mod.ts and dami/ import nothing of the project outside dami/", async () => {
  const entries = ["mod.ts", ...tsFiles("dami/")];
  assert.ok(entries.length >= 8, entries.join());
  assert.deepEqual(
    await violations(entries, (path) => path === "mod.ts" || path.startsWith("dami/")),
    [],
  );
});

Deno.test("queries/ never imports daemon/", async () => {
  const entries = tsFiles("queries/");
  assert.ok(entries.length > 0);
  assert.deepEqual(await violations(entries, (path) => !path.startsWith("daemon/")), []);
});

Deno.test("the import check sees a real cross-folder import (daemon/supervisor.ts reaches dami/)", async () => {
  // Guards the two tests above against a graph that silently comes back empty.
  const found = await violations(["daemon/supervisor.ts"], (path) => !path.startsWith("dami/"));
  assert.ok(found.includes("daemon/supervisor.ts -> dami/client.ts"), found.join("\n"));
});
