// The results table: every loaded event is kept in memory, only the rows in view (plus a margin) are in
// the DOM, so scrolling through 10,000 events costs the same as through 50. Rows are absolutely placed
// in a spacer as tall as all of them; row height comes from the stylesheet (--row-height).

import { el } from "./dom.js";
import { localTime } from "./format.js";

const OVERSCAN = 8; // rows rendered beyond each edge of the view, so a fast scroll shows no gap

/** The cells of one event, in column order: [text, class, title]. */
function cells(event) {
  const actor = event.actor_name || event.actor_id || "";
  const resource = [event.resource_type, event.resource_id].filter(Boolean).join(" ");
  const request = [event.method, event.path].filter(Boolean).join(" ");
  const outcome = event.outcome === "failure" ? "bad" : event.outcome === "success" ? "ok" : "";
  return [
    [localTime(event.created_at), "time", `${event.created_at} (UTC)`],
    [actor, "", null],
    [event.action, "", null],
    [resource, "", null],
    [event.outcome || "", `outcome ${outcome}`, null],
    [event.client_ip || "", "wide", null],
    [request, "wide", null],
    [event.status_code ?? "", "num", null],
  ];
}

export class EventTable {
  constructor(grid, scroller, spacer, { onOpen, onNearEnd, onScroll }) {
    this.grid = grid;
    this.scroller = scroller;
    this.spacer = spacer;
    this.onOpen = onOpen;
    this.onNearEnd = onNearEnd;
    this.onScroll = onScroll;
    this.rows = [];
    this.ids = new Set();
    this.active = -1;
    this.rendered = new Map(); // index -> row element
    this.frame = 0;
    scroller.addEventListener("scroll", () => this.schedule(), { passive: true });
    new ResizeObserver(() => this.schedule(true)).observe(scroller);
    scroller.addEventListener("click", (click) => {
      const row = click.target.closest("[data-index]");
      if (!row) return;
      this.select(Number(row.dataset.index));
      this.onOpen(this.rows[this.active]);
    });
  }

  get rowHeight() {
    return parseFloat(getComputedStyle(this.scroller).getPropertyValue("--row-height")) || 32;
  }

  get atTop() {
    return this.scroller.scrollTop < this.rowHeight / 2;
  }

  /** Forget every row (a new query). */
  reset() {
    this.rows = [];
    this.ids.clear();
    this.active = -1;
    this.grid.removeAttribute("aria-activedescendant");
    this.scroller.scrollTop = 0;
    this.redraw();
  }

  /** Add a page of events below the loaded ones; an event already shown is skipped. */
  append(events) {
    for (const event of events) {
      if (this.ids.has(event.id)) continue;
      this.ids.add(event.id);
      this.rows.push(event);
    }
    this.render();
  }

  /**
   * Put events where they belong in the newest-first order (live tail). ``complete`` says whether every
   * older event is loaded; if not, an event older than the last loaded row is left for paging to bring.
   */
  insert(events, complete) {
    const before = (a, b) => a.created_at > b.created_at || (a.created_at === b.created_at && a.id > b.id);
    const last = this.rows[this.rows.length - 1];
    const activeEvent = this.rows[this.active];
    let added = 0;
    for (const event of events) {
      if (this.ids.has(event.id) || (!complete && last && before(last, event))) continue;
      let low = 0;
      let high = this.rows.length;
      while (low < high) {
        const middle = (low + high) >> 1;
        if (before(this.rows[middle], event)) low = middle + 1;
        else high = middle;
      }
      this.rows.splice(low, 0, event);
      this.ids.add(event.id);
      added += 1;
    }
    if (activeEvent) this.active = this.rows.indexOf(activeEvent);
    this.redraw();
    return added;
  }

  /** Make row ``index`` the active one and scroll it into view. */
  select(index) {
    if (!this.rows.length) return;
    this.active = Math.max(0, Math.min(index, this.rows.length - 1));
    const height = this.rowHeight;
    const head = this.spacer.offsetTop; // the sticky header covers the first rows' place
    const top = this.active * height;
    if (top < this.scroller.scrollTop) this.scroller.scrollTop = top;
    else if (head + top + height > this.scroller.scrollTop + this.scroller.clientHeight) {
      this.scroller.scrollTop = head + top + height - this.scroller.clientHeight;
    }
    this.render();
    if (this.active >= this.rows.length - OVERSCAN) this.onNearEnd();
  }

  move(step) {
    this.select(this.active < 0 ? 0 : this.active + step);
  }

  get selected() {
    return this.rows[this.active];
  }

  schedule(remeasure = false) {
    if (remeasure) this.rendered.forEach((row) => row.remove()), this.rendered.clear();
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.render();
      this.onScroll();
    });
  }

  /** Re-place every row (indexes moved). */
  redraw() {
    this.rendered.forEach((row) => row.remove());
    this.rendered.clear();
    this.render();
  }

  render() {
    const height = this.rowHeight;
    this.spacer.style.height = `${this.rows.length * height}px`; // CSSOM, which the CSP allows (no style attribute)
    this.grid.setAttribute("aria-rowcount", String(this.rows.length + 1));
    const top = this.scroller.scrollTop - this.spacer.offsetTop;
    const first = Math.max(0, Math.floor(top / height) - OVERSCAN);
    const last = Math.min(this.rows.length - 1, Math.ceil((top + this.scroller.clientHeight) / height) + OVERSCAN);
    for (const [index, row] of this.rendered) {
      if (index < first || index > last) {
        row.remove();
        this.rendered.delete(index);
      }
    }
    for (let index = first; index <= last; index += 1) {
      let row = this.rendered.get(index);
      if (!row) {
        row = this.row(index);
        this.rendered.set(index, row);
        this.spacer.append(row);
      }
      const active = index === this.active;
      row.classList.toggle("active", active);
      row.setAttribute("aria-selected", String(active));
    }
    const activeRow = this.rendered.get(this.active);
    if (activeRow) this.grid.setAttribute("aria-activedescendant", activeRow.id);
    else this.grid.removeAttribute("aria-activedescendant");
    if (last >= this.rows.length - 1 - OVERSCAN) this.onNearEnd();
  }

  row(index) {
    const event = this.rows[index];
    const row = el("div", { role: "row", class: "row", id: `row-${index}`, "aria-rowindex": index + 2, "data-index": index });
    row.style.transform = `translateY(${index * this.rowHeight}px)`;
    for (const [text, kind, title] of cells(event)) {
      row.append(el("span", { role: "gridcell", class: kind || null, title }, text));
    }
    return row;
  }
}
