// What the user is looking at, and its one spelling in the page's URL.
//
// Filter names are the native API's own parameter names, and their values are written in the API's
// filter grammar, so a bookmarked /ui/?outcome=failure&path=~eq:/admin/* means exactly the API query
// /v1/audit-log?outcome=failure&path=~eq:/admin/*. Besides the filters the URL holds the time range
// (range=15m|1h|24h|7d|all, or range=custom with from/to), the chart's grouping and the open event.
// The key is never part of it.

export const TEXT_FILTERS = [
  "q", "action", "actor_id", "resource_type", "resource_id", "client_ip", "path",
  "actor_name", "actor_email", "request_id", "user_agent",
];
export const CHOICE_FILTERS = ["outcome", "method", "status_code", "actor_type"];
export const FILTERS = [...TEXT_FILTERS, ...CHOICE_FILTERS];
export const RANGES = { "15m": 15 * 60e3, "1h": 3600e3, "24h": 86400e3, "7d": 7 * 86400e3 };
export const DEFAULT_RANGE = "24h";
export const GROUPS = ["outcome", "action"];
const METADATA = /^metadata\.([A-Za-z0-9_][A-Za-z0-9_.-]{0,63})$/;
const OPERATOR = /^(eq|neq|~eq|gt|gte|lt|lte):/;

/** The empty view: the default range, no filter. */
export function emptyState() {
  return { range: DEFAULT_RANGE, from: "", to: "", filters: {}, metadata: null, group: "outcome", event: "" };
}

/** The view a URL's query string describes (unknown parameters are ignored). */
export function fromSearch(search) {
  const params = new URLSearchParams(search);
  const state = emptyState();
  const range = params.get("range");
  if (range && (range in RANGES || range === "all" || range === "custom")) state.range = range;
  if (params.has("from") || params.has("to")) {
    state.range = "custom";
    state.from = validTime(params.get("from"));
    state.to = validTime(params.get("to"));
  }
  for (const name of FILTERS) {
    const value = params.get(name);
    if (value) state.filters[name] = value;
  }
  for (const [name, value] of params) {
    const key = METADATA.exec(name);
    if (key && !state.metadata) state.metadata = { key: key[1], value };
  }
  if (GROUPS.includes(params.get("group"))) state.group = params.get("group");
  state.event = params.get("event") || "";
  return state;
}

/** The query string for a view (defaults left out, so the plain /ui/ is the default view). */
export function toSearch(state) {
  const params = new URLSearchParams();
  if (state.range === "custom") {
    if (state.from) params.set("from", state.from);
    if (state.to) params.set("to", state.to);
    if (!state.from && !state.to) params.set("range", "custom");
  } else if (state.range !== DEFAULT_RANGE) {
    params.set("range", state.range);
  }
  for (const name of FILTERS) if (state.filters[name]) params.set(name, state.filters[name]);
  if (state.metadata) params.set(`metadata.${state.metadata.key}`, state.metadata.value);
  if (state.group !== "outcome") params.set("group", state.group);
  if (state.event) params.set("event", state.event);
  const text = params.toString();
  return text ? `?${text}` : "";
}

/** The time range in epoch ms at ``now``: presets end now (to stays open, so new events still match). */
export function resolveRange(state, now = Date.now()) {
  if (state.range in RANGES) return { from: now - RANGES[state.range], to: null };
  if (state.range === "custom") {
    return { from: state.from ? Date.parse(state.from) : null, to: state.to ? Date.parse(state.to) : null };
  }
  return { from: null, to: null };
}

/** The API's query parameters for a view and its resolved range. */
export function apiParams(state, range) {
  const params = { ...state.filters };
  if (state.metadata) params[`metadata.${state.metadata.key}`] = state.metadata.value;
  if (range.from !== null) params.from = new Date(range.from).toISOString();
  if (range.to !== null) params.to = new Date(range.to).toISOString();
  return params;
}

/**
 * A typed filter value in the API's grammar: trimmed, and a value with a * wildcard and no operator of
 * its own becomes a case-insensitive match (~eq:). Free text (q) is taken as it is.
 */
export function grammarValue(name, raw) {
  const value = raw.trim();
  if (name !== "q" && value.includes("*") && !OPERATOR.test(value)) return `~eq:${value}`;
  return value;
}

/** "key=value" as a metadata filter, null when empty; throws with a message when malformed. */
export function parseMetadata(raw) {
  const text = raw.trim();
  if (!text) return null;
  const at = text.indexOf("=");
  const key = at > 0 ? text.slice(0, at).trim() : "";
  if (!METADATA.test(`metadata.${key}`)) {
    throw new Error("Metadata: write key=value (the key: letters, digits, _ . -, at most 64)");
  }
  return { key, value: text.slice(at + 1) };
}

function validTime(text) {
  return text && !Number.isNaN(Date.parse(text)) ? new Date(Date.parse(text)).toISOString() : "";
}
