// The viewer's wiring: sign-in, the view (filters <-> URL), loading pages as the table scrolls, the chart,
// the detail, live tail, export and the keyboard. Modules: api (calls), query (view <-> URL), table,
// histogram, detail, live, export; dom builds every node from data as text.

import { ApiError, getJson, session } from "./api.js";
import { setText } from "./dom.js";
import { renderDetail } from "./detail.js";
import { exportEvents } from "./export.js";
import { bytes, count, toLocalInput, TIME_ZONE } from "./format.js";
import { Histogram } from "./histogram.js";
import { LiveTail } from "./live.js";
import {
  apiParams, CHOICE_FILTERS, emptyState, fromSearch, grammarValue, parseMetadata, resolveRange, TEXT_FILTERS, toSearch,
} from "./query.js";
import { EventTable } from "./table.js";

const FIRST_PAGE = 100;
const MORE_FILTERS = ["actor_name", "actor_email", "actor_type", "request_id", "user_agent"]; // under "More filters"
const NARROW = window.matchMedia("(max-width: 640px)"); // phones: the filter panel starts folded
const PAGE = 200;
const $ = (id) => document.getElementById(id);

const ui = {
  signIn: $("sign-in"), signInForm: $("sign-in-form"), key: $("key"), signInError: $("sign-in-error"),
  viewer: $("viewer"), sessionActions: $("session-actions"), signOut: $("sign-out"),
  filters: $("filters"), filterError: $("filter-error"), range: $("f-range"), from: $("f-from"), to: $("f-to"),
  filterPanel: $("filter-panel"), filterSummary: $("filter-summary"), moreFilters: $("more-filters"),
  metadata: $("f-metadata"), clear: $("clear"), groupBy: $("group-by"), status: $("status"),
  newEvents: $("new-events"), liveState: $("live-state"), grid: $("grid"), rows: $("rows"), chart: $("histogram"),
  detail: $("detail"), detailTitle: $("detail-title"), detailBody: $("detail-body"), detailClose: $("detail-close"),
  live: $("live"), exportCsv: $("export-csv"), exportNdjson: $("export-ndjson"),
};

let state = fromSearch(location.search);
let range = resolveRange(state); // resolved when the view is applied: the table, chart and export agree
let load = null; // the current view's loading: {controller, cursor, hasMore, busy, total}
let pending = []; // live events held while the user is scrolled away from the top
let exporting = false;

const table = new EventTable(ui.grid, ui.grid, ui.rows, {
  onOpen: (event) => openDetail(event),
  onNearEnd: () => loadPage(),
  onScroll: () => { if (table.atTop && pending.length) flushPending(); },
});
const histogram = new Histogram($("histogram"), {
  onSelect: (from, to) => {
    apply({ ...state, range: "custom", from: new Date(from).toISOString(), to: new Date(to).toISOString(), event: "" });
  },
});
const live = new LiveTail({
  view: () => ({ params: apiParams(state, range), range }),
  onEvents: (events) => admitLive(events),
  onState: (text) => setText(ui.liveState, text),
  onAuthError: (error) => signOut(authMessage(error)),
});

// ---- sign in / out ----------------------------------------------------------------------------------

function authMessage(error) {
  if (error.status === 403) return `This key cannot read the audit log: ${error.message}`;
  return `The key was not accepted: ${error.message}`;
}

function showSignIn(message = "") {
  live.stop();
  setLive(false);
  ui.viewer.hidden = true;
  ui.sessionActions.hidden = true;
  ui.signIn.hidden = false;
  setText(ui.signInError, message);
  ui.key.focus();
}

function signOut(message = "") {
  session.clear();
  if (load) load.controller.abort();
  load = null;
  table.reset();
  if (ui.detail.open) ui.detail.close();
  showSignIn(message);
}

ui.signInForm.addEventListener("submit", async (submit) => {
  submit.preventDefault(); // nothing is ever sent as a form: the key must not reach a URL or a log
  const key = ui.key.value.trim();
  if (!key) return setText(ui.signInError, "Paste a read key first.");
  setText(ui.signInError, "Checking the key…");
  try {
    await getJson("/v1/audit-log", { limit: 1 }, { key });
  } catch (error) {
    return setText(ui.signInError, error.status === 401 || error.status === 403 ? authMessage(error) : error.message);
  }
  session.key = key;
  ui.key.value = "";
  showViewer();
});

ui.signOut.addEventListener("click", () => signOut("Signed out."));

function showViewer() {
  ui.signIn.hidden = true;
  ui.viewer.hidden = false;
  ui.sessionActions.hidden = false;
  range = resolveRange(state);
  fillForm();
  startLoad();
}

// ---- the view <-> the form and the URL ----------------------------------------------------------------

function fillForm() {
  for (const name of [...TEXT_FILTERS, ...CHOICE_FILTERS]) {
    const input = $(`f-${name}`);
    const value = state.filters[name] || "";
    if (input.tagName === "SELECT" && value && ![...input.options].some((option) => option.value === value)) {
      input.append(new Option(value, value)); // a bookmarked value the menu does not offer (status_code=404)
    }
    input.value = value;
  }
  ui.metadata.value = state.metadata ? `${state.metadata.key}=${state.metadata.value}` : "";
  const active = Object.keys(state.filters).filter((name) => name !== "q").length + (state.metadata ? 1 : 0);
  setText(ui.filterSummary, active ? `Filters (${active} active)` : "Filters");
  if (MORE_FILTERS.some((name) => state.filters[name])) ui.moreFilters.open = true; // a bookmarked one shows
  ui.range.value = state.range;
  ui.from.value = toLocalInput(range.from);
  ui.to.value = toLocalInput(range.to);
  ui.filters.classList.toggle("custom", state.range === "custom");
  ui.groupBy.value = state.group;
  setText(ui.filterError, "");
  setText(ui.grid.querySelector("[role=columnheader]"), `Time (${TIME_ZONE})`);
}

function readForm() {
  const next = { ...emptyState(), group: state.group, range: ui.range.value, filters: {} };
  for (const name of [...TEXT_FILTERS, ...CHOICE_FILTERS]) {
    const input = $(`f-${name}`);
    const value = input.tagName === "SELECT" ? input.value : grammarValue(name, input.value);
    if (value) next.filters[name] = value;
  }
  next.metadata = parseMetadata(ui.metadata.value); // throws with a message for the user
  if (next.range === "custom") {
    next.from = ui.from.value ? new Date(ui.from.value).toISOString() : "";
    next.to = ui.to.value ? new Date(ui.to.value).toISOString() : "";
  }
  return next;
}

/** Show ``next``: the URL first (a new history entry unless ``replace``), then the data. */
function apply(next, { replace = false } = {}) {
  state = next;
  const url = `${location.pathname}${toSearch(state)}`;
  if (replace) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
  range = resolveRange(state);
  fillForm();
  startLoad();
}

ui.filters.addEventListener("submit", (submit) => {
  submit.preventDefault();
  try {
    apply({ ...readForm(), event: "" });
  } catch (error) {
    setText(ui.filterError, error.message);
  }
});

ui.filters.addEventListener("change", (change) => {
  if (change.target === ui.range && ui.range.value === "custom") {
    ui.filters.classList.add("custom");
    ui.from.value = toLocalInput(range.from ?? Date.now() - 86400e3);
    ui.to.value = toLocalInput(range.to ?? Date.now());
    ui.from.focus();
    return;
  }
  if (change.target.tagName === "SELECT") ui.filters.requestSubmit(); // menus apply at once; text on Enter
});

ui.clear.addEventListener("click", () => apply({ ...emptyState(), group: state.group }));

ui.groupBy.addEventListener("change", () => {
  state = { ...state, group: ui.groupBy.value };
  history.replaceState(null, "", `${location.pathname}${toSearch(state)}`);
  drawChart(load);
});

window.addEventListener("popstate", () => {
  if (ui.detail.open) ui.detail.close();
  state = fromSearch(location.search);
  range = resolveRange(state);
  if (!session.key) return;
  fillForm();
  startLoad();
});

// ---- loading ------------------------------------------------------------------------------------------

function showStatus(text) {
  setText(ui.status, text);
}

function failed(error) {
  if (error.name === "AbortError") return true;
  if (error instanceof ApiError && (error.status === 401 || error.status === 403)) {
    signOut(authMessage(error));
    return true;
  }
  if (error instanceof ApiError && error.status === 400) {
    setText(ui.filterError, `The collector refused this view: ${error.message}`);
    showStatus("");
    return true;
  }
  showStatus(error.message);
  return false;
}

function startLoad() {
  if (load) load.controller.abort();
  const controller = new AbortController();
  load = { controller, cursor: "", hasMore: true, busy: false, total: null, first: true };
  pending = [];
  showNewEvents();
  table.reset();
  showStatus("Loading…");
  loadPage();
  drawChart(load);
  if (state.event) openById(state.event);
}

async function loadPage() {
  const current = load;
  if (!current || current.busy || !current.hasMore) return;
  current.busy = true;
  ui.grid.setAttribute("aria-busy", "true"); // screen readers (and the tests) know when a page is on its way
  const { signal } = current.controller;
  try {
    const params = { ...apiParams(state, range), limit: current.first ? FIRST_PAGE : PAGE, cursor: current.cursor };
    const page = await getJson("/v1/audit-log", params, { signal });
    if (current !== load) return;
    current.hasMore = page.has_more;
    current.cursor = page.next_cursor || "";
    table.append(page.data);
    if (current.first) {
      current.first = false;
      requestAnimationFrame(() => performance.mark("sidetrail:first-rows")); // the frame painting them (tests read it)
      if (live.running) live.start(maxSeq());
    }
    current.busy = false;
    countStatus();
    table.render(); // may ask for the next page at once when the view is taller than what is loaded
  } catch (error) {
    current.busy = false;
    if (current === load) {
      current.hasMore = false;
      failed(error);
    }
  }
  if (current === load && !current.busy) ui.grid.setAttribute("aria-busy", "false");
}

function countStatus() {
  if (!load) return;
  const loaded = table.rows.length;
  if (!loaded && !load.hasMore) return showStatus("No events match this view.");
  const of = load.total !== null ? ` of ${count(load.total)}` : "";
  showStatus(load.hasMore ? `${count(loaded)}${of} events loaded; scroll for more.` : `All ${count(loaded)} events.`);
}

/** The chart's span: the view's range, with open ends closed at the oldest event and now. */
async function chartSpan(signal) {
  const params = apiParams(state, range);
  let { from, to } = range;
  const now = Date.now();
  if (from === null) {
    const oldest = await getJson("/v1/audit-log", { ...params, order: "asc", limit: 1 }, { signal });
    from = oldest.data.length ? Date.parse(oldest.data[0].created_at) : now - 86400e3;
  }
  if (to === null) {
    to = now;
    if (state.range === "all" || state.range === "custom") {
      const newest = await getJson("/v1/audit-log", { ...params, limit: 1 }, { signal });
      if (newest.data.length) to = Math.max(Date.parse(newest.data[0].created_at) + 1, from + 60e3);
    }
  }
  return { from, to: Math.max(to, from + 60e3) };
}

async function drawChart(current) {
  if (!current) return;
  ui.chart.setAttribute("aria-busy", "true");
  const { signal } = current.controller;
  try {
    const { from, to } = await chartSpan(signal);
    const { total } = await histogram.load(apiParams(state, range), from, to, state.group, signal);
    if (current !== load) return;
    current.total = total;
    countStatus();
  } catch (error) {
    if (current === load) failed(error);
  }
  if (current === load) ui.chart.setAttribute("aria-busy", "false");
}

// ---- detail -------------------------------------------------------------------------------------------

function openDetail(event) {
  const rangeParams = Object.fromEntries(new URLSearchParams(toSearch({ ...emptyState(), range: state.range,
    from: state.from, to: state.to })));
  renderDetail(ui.detailTitle, ui.detailBody, event, {
    range: rangeParams,
    navigate: (params) => {
      ui.detail.close();
      apply(fromSearch(`?${params}`));
    },
    announce: showStatus,
  });
  if (!ui.detail.open) ui.detail.showModal();
  if (state.event !== event.id) {
    state = { ...state, event: event.id };
    history.replaceState(null, "", `${location.pathname}${toSearch(state)}`);
  }
}

async function openById(id) {
  try {
    const answer = await getJson(`/v1/audit-log/${encodeURIComponent(id)}`, {}, { signal: load.controller.signal });
    openDetail(answer.data);
  } catch (error) {
    if (error.status === 404) showStatus("The event in the link is not in this tenant's trail.");
    else failed(error);
  }
}

ui.detailClose.addEventListener("click", () => ui.detail.close());
ui.detail.addEventListener("close", () => {
  state = { ...state, event: "" };
  history.replaceState(null, "", `${location.pathname}${toSearch(state)}`);
  ui.grid.focus();
});

// ---- live tail ----------------------------------------------------------------------------------------

function maxSeq() {
  return table.rows.reduce((max, event) => Math.max(max, event.seq || 0), 0);
}

function setLive(on) {
  ui.live.setAttribute("aria-pressed", String(on));
  ui.live.classList.toggle("on", on);
  if (!on) setText(ui.liveState, "");
}

ui.live.addEventListener("click", () => {
  if (live.running) {
    live.stop();
    setLive(false);
    flushPending();
    countStatus();
  } else {
    setLive(true);
    live.start(maxSeq());
  }
});

function admitLive(events) {
  if (table.atTop && !pending.length) {
    counted(table.insert(events, !load.hasMore));
    return;
  }
  pending.push(...events); // paused: the user is reading further down
  showNewEvents();
}

function showNewEvents() {
  ui.newEvents.hidden = pending.length === 0;
  setText(ui.newEvents, `${count(pending.length)} new event${pending.length === 1 ? "" : "s"} ↑`);
}

function flushPending() {
  if (!pending.length) return;
  const added = table.insert(pending, !load.hasMore);
  pending = [];
  showNewEvents();
  counted(added);
}

/** Live events joined the table: the view's total grows with them. */
function counted(added) {
  if (load && load.total !== null) load.total += added;
  countStatus();
}

ui.newEvents.addEventListener("click", () => {
  ui.grid.scrollTop = 0;
  flushPending();
  ui.grid.focus();
});

// ---- export -------------------------------------------------------------------------------------------

async function runExport(format) {
  if (exporting) return;
  exporting = true;
  const { signal } = load.controller;
  showStatus(`Exporting ${format.toUpperCase()}…`);
  try {
    const { size } = await exportEvents(format, apiParams(state, range), {
      signal, onProgress: (size) => showStatus(`Exporting ${format.toUpperCase()}… ${bytes(size)}`),
    });
    showStatus(`Exported ${bytes(size)} as audit-log.${format}.`);
  } catch (error) {
    failed(error);
  } finally {
    exporting = false;
  }
}

ui.exportCsv.addEventListener("click", () => runExport("csv"));
ui.exportNdjson.addEventListener("click", () => runExport("ndjson"));

// ---- keyboard -----------------------------------------------------------------------------------------

document.addEventListener("keydown", (key) => {
  if (ui.viewer.hidden || ui.detail.open || key.ctrlKey || key.metaKey || key.altKey) return;
  const typing = key.target.closest("input, select, textarea, button, a, summary, [contenteditable]");
  if (key.key === "/" && !(typing && key.target.matches("input, textarea"))) {
    key.preventDefault();
    $("f-q").focus();
    $("f-q").select();
  } else if (!typing && (key.key === "j" || key.key === "k")) {
    key.preventDefault();
    table.move(key.key === "j" ? 1 : -1);
    ui.grid.focus({ preventScroll: true });
  } else if (!typing && key.key === "Enter" && table.selected) {
    key.preventDefault();
    openDetail(table.selected);
  }
});

// ---- start --------------------------------------------------------------------------------------------

if (NARROW.matches) ui.filterPanel.open = false;

if (session.key) showViewer();
else showSignIn();
