// Live tail: follows the changes feed (long polls, in ingest order) and reports the new events that match
// the view. The feed takes no filters, so each batch is checked against the view by the API itself: the
// listing with the view's filters, narrowed to the batch's time span, says which of the batch's ids match.
// Nothing of the filter grammar is re-implemented here.

import { ApiError, getJson } from "./api.js";

// Asked as "Prefer: wait=25", which the collector caps at its limits.max_wait (the wait parameter would be
// refused above it); 25 s stays under common proxy idle timeouts.
const WAIT = { Prefer: "wait=25" };
const PAGE = 200;
const MAX_MATCH_PAGES = 20;

function pause(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => { clearTimeout(timer); resolve(); }, { once: true });
  });
}

export class LiveTail {
  /**
   * ``view()`` returns {params, range} of the current view (the API's filters, and the resolved range in
   * ms); ``onEvents(events)`` gets the new matching events; ``onState(text)`` a status line;
   * ``onAuthError(error)`` a 401/403.
   */
  constructor({ view, onEvents, onState, onAuthError }) {
    Object.assign(this, { view, onEvents, onState, onAuthError });
    this.controller = null;
  }

  get running() {
    return this.controller !== null;
  }

  /** Follow from now on; ``knownSeq`` is the highest seq already on the page (a head start). */
  start(knownSeq) {
    this.stop();
    this.controller = new AbortController();
    this.follow(knownSeq, this.controller.signal);
  }

  stop() {
    if (this.controller) this.controller.abort();
    this.controller = null;
  }

  async follow(knownSeq, signal) {
    let after = null;
    let failures = 0;
    while (!signal.aborted) {
      try {
        if (after === null) after = await this.head(knownSeq, signal);
        this.onState("Live: following new events.");
        const page = await getJson("/v1/audit-log/changes", { after_seq: after, limit: PAGE }, { signal, headers: WAIT });
        after = page.next_after_seq;
        failures = 0;
        if (page.data.length) {
          const matching = await this.matching(page.data, signal);
          if (!signal.aborted && matching.length) this.onEvents(matching);
        }
      } catch (error) {
        if (signal.aborted || error.name === "AbortError") return;
        if (error instanceof ApiError && (error.status === 401 || error.status === 403)) {
          this.onAuthError(error);
          return;
        }
        failures += 1;
        const wait = error.retryAfter ? error.retryAfter * 1000 : Math.min(15000, 500 * 2 ** failures);
        this.onState(`Live: ${error.message} Retrying in ${Math.ceil(wait / 1000)} s.`);
        await pause(wait, signal);
      }
    }
  }

  /** The seq of the newest stored event: from a head start, walk the feed to its end without waiting. */
  async head(knownSeq, signal) {
    const newest = await getJson("/v1/audit-log", { limit: 1 }, { signal });
    let after = Math.max(knownSeq || 0, newest.data.length ? newest.data[0].seq : 0);
    for (;;) {
      const page = await getJson("/v1/audit-log/changes", { after_seq: after, limit: PAGE }, { signal });
      after = page.next_after_seq;
      if (!page.has_more) return after;
    }
  }

  /** Which events of ``batch`` the view shows, as the API answers for the view's filters. */
  async matching(batch, signal) {
    const { params, range } = this.view();
    const wanted = new Map(batch.map((event) => [event.id, event]));
    const times = batch.map((event) => Date.parse(event.created_at));
    const from = Math.max(Math.min(...times), range.from ?? -Infinity);
    const to = Math.min(Math.max(...times) + 1, range.to ?? Infinity);
    if (!(from < to)) return [];
    const found = [];
    let cursor = "";
    for (let page = 0; page < MAX_MATCH_PAGES; page += 1) {
      const answer = await getJson("/v1/audit-log", {
        ...params, from: new Date(from).toISOString(), to: new Date(to).toISOString(), order: "asc", limit: PAGE, cursor,
      }, { signal });
      for (const event of answer.data) if (wanted.has(event.id)) found.push(event);
      if (!answer.has_more || found.length === wanted.size) break;
      cursor = answer.next_cursor;
    }
    return found;
  }
}
