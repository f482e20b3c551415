// The native API, as the viewer calls it: the read key from sessionStorage in an Authorization header
// (never in a URL), errors as ApiError carrying the API's own code and message.

const KEY = "sidetrail.readKey";

export const session = {
  get key() { return sessionStorage.getItem(KEY); },
  set key(value) { sessionStorage.setItem(KEY, value); },
  clear() { sessionStorage.removeItem(KEY); },
};

export class ApiError extends Error {
  constructor(status, code, message, retryAfter) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

// Where the collector's routes start: before /ui/ in this page's path ("" unless a reverse proxy serves
// the collector under a prefix, e.g. /audit/ui/ -> /audit/v1/audit-log).
const BASE = location.pathname.slice(0, Math.max(0, location.pathname.lastIndexOf("/ui/")));

/** The URL of an API path with query parameters (values skipped when empty). */
export function apiUrl(path, params = {}) {
  const url = new URL(BASE + path, location.origin);
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(name, value);
  }
  return url;
}

/** fetch() with the key; resolves to the Response when it is 2xx, else throws ApiError. */
export async function call(path, params = {}, { signal, key = session.key, headers = {} } = {}) {
  let response;
  try {
    response = await fetch(apiUrl(path, params), {
      headers: { ...headers, Authorization: `Bearer ${key}`, Accept: "application/json" },
      signal,
      cache: "no-store",
      credentials: "omit",
      referrerPolicy: "no-referrer",
    });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, "network", "The collector cannot be reached.");
  }
  if (response.ok) return response;
  let code = "http_error";
  let message = `The collector answered ${response.status}.`;
  try {
    const body = await response.json();
    if (typeof body.code === "string") code = body.code;
    if (typeof body.message === "string") message = body.message;
  } catch { /* not the API's error body: keep the generic message */ }
  throw new ApiError(response.status, code, message, Number(response.headers.get("Retry-After")) || 0);
}

/** A JSON answer of the API. */
export async function getJson(path, params, options) {
  return (await call(path, params, options)).json();
}
