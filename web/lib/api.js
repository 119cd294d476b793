// Talks to the daemon's /api: adds the token the user gave (kept in localStorage),
// asks for it again on a 401, and turns error bodies into messages.

const TOKEN_KEY = "dami.token";

/** The token kept in this browser, or "" when none. */
export function token() {
  return localStorage.getItem(TOKEN_KEY) ?? "";
}

/** Headers for an API request. */
export function authHeaders(extra = {}) {
  const t = token();
  return t === "" ? { ...extra } : { ...extra, authorization: `Bearer ${t}` };
}

let asking;
/** Shows the token dialog once (concurrent 401s share it); resolves when a token is saved. */
export function askToken(message = "") {
  asking ??= new Promise((resolve) => {
    const dialog = document.getElementById("token-dialog");
    const input = document.getElementById("token-input");
    document.getElementById("token-error").textContent = message;
    input.value = "";
    dialog.addEventListener("close", function done() {
      dialog.removeEventListener("close", done);
      if (input.value !== "") localStorage.setItem(TOKEN_KEY, input.value);
      asking = undefined;
      resolve();
    });
    dialog.showModal();
    input.focus();
  });
  return asking;
}

/** An API error the page shows as it is. */
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** GET a JSON document from the API; a 401 asks for the token and tries again. */
export async function getJson(path, params = {}, { signal } = {}) {
  for (let attempt = 0;; attempt++) {
    const response = await fetch(withParams(path, params), {
      headers: authHeaders({ accept: "application/json" }),
      signal,
    });
    if (response.status === 401 && attempt < 3) {
      await askToken(attempt === 0 && token() === "" ? "" : "That token was refused.");
      continue;
    }
    if (!response.ok) {
      let message = `${response.status} ${response.statusText}`;
      try {
        const body = await response.json();
        message = body.error ?? body.message ?? message;
      } catch { /* not JSON */ }
      throw new ApiError(response.status, message);
    }
    return await response.json();
  }
}

/** `path?k=v...`, leaving out empty values. */
export function withParams(path, params) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") query.set(key, String(value));
  }
  const text = query.toString();
  return text === "" ? path : `${path}?${text}`;
}

/** Rows of `/api/queries/{name}` as objects, whether the API sends arrays or objects. */
export async function runQuery(name, params, options) {
  const body = await getJson(`/api/queries/${encodeURIComponent(name)}`, params, options);
  const columns = body.columns ?? [];
  const rows = (body.rows ?? []).map((row) =>
    Array.isArray(row) ? Object.fromEntries(columns.map((c, i) => [c, row[i]])) : row
  );
  return { columns, rows };
}
