/**
 * A fresh, uniquely named PostgreSQL database per test suite on the local server
 * (127.0.0.1:5432, trust auth), dropped afterwards. Tests never share state.
 *
 * @module
 */
import postgres from "postgres";

/** Base URL of the test server; override with `DAMI_TEST_PG`. */
export const TEST_PG_BASE = Deno.env.get("DAMI_TEST_PG") ?? "postgres://postgres@127.0.0.1:5432";

/** A throwaway database: its URL and a function that drops it. */
export interface TestDatabase {
  url: string;
  name: string;
  drop(): Promise<void>;
}

/** Creates an empty database named `dami_test_<prefix>_<random>`. */
export async function createTestDatabase(prefix = "t"): Promise<TestDatabase> {
  const name = `dami_test_${prefix.replace(/[^a-z0-9_]/gi, "_").toLowerCase()}_${
    crypto.randomUUID().slice(0, 8)
  }`;
  const admin = postgres(`${TEST_PG_BASE}/postgres`, { max: 1, onnotice: () => {} });
  try {
    await admin.unsafe(`CREATE DATABASE "${name}"`);
  } finally {
    await admin.end();
  }
  return {
    name,
    url: `${TEST_PG_BASE}/${name}`,
    async drop() {
      const a = postgres(`${TEST_PG_BASE}/postgres`, { max: 1, onnotice: () => {} });
      try {
        await a.unsafe(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
      } finally {
        await a.end();
      }
    },
  };
}
