/**
 * The README against the code: every column its "Tables" section names exists in the
 * Drizzle schema and every public column is named there; every config key it names
 * exists in the config schema, and every key of the config schema is documented.
 */
import assert from "node:assert/strict";
import { getTableConfig, type PgTable } from "drizzle-orm/pg-core";
import { parse as parseJsonc } from "jsonc-parser";
import { configJsonSchema, parseConfig } from "../daemon/config.ts";
import * as schema from "../schema/mod.ts";

const README = await Deno.readTextFile(new URL("../README.md", import.meta.url));

/** The text of the section that starts with `heading` (up to the next heading of its level). */
function section(heading: string): string {
  const level = heading.match(/^#+/)![0];
  const start = README.indexOf(`\n${heading}\n`);
  assert.ok(start >= 0, `README has no "${heading}" section`);
  const rest = README.slice(start + heading.length + 2);
  const end = rest.search(new RegExp(`\\n${level} `));
  return end < 0 ? rest : rest.slice(0, end);
}

/** Backticked words of a text, e.g. `dataDir`. */
function backticked(text: string): string[] {
  return [...text.matchAll(/`([^`\n]+)`/g)].map((m) => m[1]);
}

/** The `projection_*` tables are the projector's bookkeeping, not for SQL users. */
const INTERNAL_TABLE = /^projection_/;

function documentedTables(): Map<string, string[]> {
  const tables = new Map<string, string[]>();
  for (const line of section("## Tables").split("\n")) {
    const cells = line.split("|").map((c) => c.trim());
    const name = /^`([a-z_]+)`$/.exec(cells[1] ?? "")?.[1];
    if (name === undefined || cells.length < 5) continue;
    // A column is the first backticked word of each item; `(...)` explains it.
    const columns = backticked(cells[3].replace(/\([^()]*\)/g, ""));
    tables.set(name, columns);
  }
  return tables;
}

function schemaTables(): Map<string, string[]> {
  const tables = new Map<string, string[]>();
  for (const value of Object.values(schema)) {
    if (value === null || typeof value !== "object") continue;
    let config;
    try {
      config = getTableConfig(value as PgTable);
    } catch {
      continue; // not a table
    }
    if (typeof config.name !== "string" || !Array.isArray(config.columns)) continue;
    tables.set(config.name, config.columns.map((c) => c.name));
  }
  return tables;
}

Deno.test("the README's tables name exactly the schema's public tables and columns", () => {
  const documented = documentedTables();
  const actual = schemaTables();
  assert.ok(actual.size >= 8, `${actual.size} tables found in schema/`);
  const publicTables = [...actual.keys()].filter((t) => !INTERNAL_TABLE.test(t)).sort();
  assert.deepEqual([...documented.keys()].sort(), publicTables, "tables");
  for (const [table, columns] of documented) {
    const real = actual.get(table)!;
    assert.deepEqual(
      columns.filter((c) => !real.includes(c)),
      [],
      `${table}: columns the README names that schema/ does not have`,
    );
    assert.deepEqual(
      real.filter((c) => !columns.includes(c)),
      [],
      `${table}: columns of schema/ the README does not name`,
    );
    assert.equal(new Set(columns).size, columns.length, `${table}: a column named twice`);
  }
});

Deno.test("every column the README's SQL examples use exists in its table", () => {
  const actual = schemaTables();
  const sql = [...section("## Tables").matchAll(/```sql\n([\s\S]*?)```/g)].map((m) => m[1]);
  assert.ok(sql.length > 0);
  const aliases = new Map<string, string>();
  for (const text of sql) {
    for (const m of text.matchAll(/\b(?:FROM|JOIN)\s+([a-z_]+)(?:\s+([a-z]+))?/gi)) {
      if (m[2] !== undefined && !/^(WHERE|JOIN|ON|ORDER|GROUP)$/i.test(m[2])) {
        aliases.set(m[2], m[1]);
      }
    }
    for (const m of text.matchAll(/\b([a-z])\.([a-z_]+)/g)) {
      const table = aliases.get(m[1]);
      assert.ok(table !== undefined, `alias ${m[1]} in ${text}`);
      assert.ok(actual.get(table)!.includes(m[2]), `${table}.${m[2]} used by the README's SQL`);
    }
  }
});

/** Every key path of the config's JSON Schema, e.g. `servers.keepalive.schedule`. */
function schemaKeyPaths(): string[] {
  const paths: string[] = [];
  const walk = (node: Record<string, unknown>, prefix: string) => {
    if (node.items !== undefined) walk(node.items as Record<string, unknown>, prefix);
    for (const [key, child] of Object.entries(node.properties ?? {})) {
      const path = prefix === "" ? key : `${prefix}.${key}`;
      paths.push(path);
      walk(child as Record<string, unknown>, path);
    }
  };
  walk(configJsonSchema(), "");
  return paths;
}

/** Every key path of a JSONC value, arrays flattened (`servers.keepalive.schedule`). */
function valueKeyPaths(value: unknown, prefix = "", free: string[] = []): string[] {
  if (Array.isArray(value)) return value.flatMap((v) => valueKeyPaths(v, prefix, free));
  if (value === null || typeof value !== "object") return [];
  return Object.entries(value).flatMap(([key, child]) => {
    const path = prefix === "" ? key : `${prefix}.${key}`;
    // Records (log categories, action params) have keys of the user's choosing.
    return free.includes(prefix) ? [] : [path, ...valueKeyPaths(child, path, free)];
  });
}

const FREE_KEYS = ["logging.categories", "actions.params"];

function configExample(): unknown {
  const blocks = [...section("### Configuration").matchAll(/```jsonc\n([\s\S]*?)```/g)];
  assert.equal(blocks.length, 1, "one JSONC example in the Configuration section");
  return parseJsonc(blocks[0][1]);
}

Deno.test("the README's config example is a valid config", () => {
  const blocks = [...section("### Configuration").matchAll(/```jsonc\n([\s\S]*?)```/g)];
  const config = parseConfig(blocks[0][1], "/etc/dami/README.jsonc", {
    env: { AMI_SECRET: "x" },
  });
  assert.ok(config.servers.length > 0);
});

Deno.test("every config key the README names exists, and every key of the config is documented", () => {
  const known = schemaKeyPaths();
  assert.ok(known.includes("servers.keepalive.schedule"), known.join(", "));
  const leaves = new Set(known.map((p) => p.slice(p.lastIndexOf(".") + 1)));
  const topLevel = new Set(known.filter((p) => !p.includes(".")));
  const daemon = section("## The daemon");
  // A config key in the text is a camelCase word, a dotted path from a top-level key, or
  // a quoted key of a JSON fragment such as `"cluster": { "instance": "..." }`.
  const quoted = backticked(daemon).flatMap((code) =>
    [...code.matchAll(/"([A-Za-z$][A-Za-z]*)"\s*:/g)].map((m) => m[1])
  );
  const named = [
    ...backticked(daemon).filter((word) =>
      /^[a-z]+[A-Z][A-Za-z]*$/.test(word) ||
      (/^[a-z][A-Za-z]*(\.[a-z][A-Za-z]*)+$/.test(word) && topLevel.has(word.split(".")[0]))
    ),
    ...quoted,
  ];
  assert.ok(named.includes("spoolCapBytes"), named.join(", "));
  for (const word of named) {
    assert.ok(
      word.includes(".") ? known.includes(word) : leaves.has(word),
      `the README names config key "${word}", which the config does not have`,
    );
  }
  const example = valueKeyPaths(configExample(), "", FREE_KEYS);
  for (const path of example) {
    assert.ok(known.includes(path), `the README's example uses "${path}", unknown to the config`);
  }
  const words = new Set([...backticked(daemon), ...quoted]);
  const undocumented = known.filter((path) =>
    !example.includes(path) && !words.has(path) &&
    !words.has(path.slice(path.lastIndexOf(".") + 1))
  );
  assert.deepEqual(undocumented, [], "config keys the README's daemon section does not name");
});

Deno.test("compose.yaml requires the secrets rather than falling back to a default", async () => {
  const compose = await Deno.readTextFile(new URL("../compose.yaml", import.meta.url));
  for (const name of ["AMI_SECRET", "POSTGRES_PASSWORD"]) {
    const uses = [...compose.matchAll(new RegExp(`\\$\\{${name}(:?[-?=+]?)[^}]*\\}`, "g"))];
    assert.ok(uses.length > 0, name);
    for (const use of uses) assert.equal(use[1], ":?", `${use[0]} must be required`);
  }
  // The README's compose command sets both.
  const deploy = section("## Deploy");
  assert.match(deploy, /AMI_SECRET=/);
  assert.match(deploy, /POSTGRES_PASSWORD=/);
  assert.ok(!deploy.includes("change-me"), "the README does not suggest a weak secret");
});

Deno.test("the sample Asterisk configs use no option Asterisk 20 does not know", async () => {
  const queues = await Deno.readTextFile(
    new URL("../deploy/asterisk/queues.conf", import.meta.url),
  );
  // Removed in Asterisk 12: the Agent* events are always sent.
  const settings = queues.split("\n").filter((l) => !l.trimStart().startsWith(";"));
  assert.ok(!settings.some((l) => /^\s*(eventwhencalled|eventmemberstatus)\s*=/.test(l)));
});
