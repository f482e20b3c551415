// Events over the chosen time range, from the stats route, stacked by outcome or action. Dragging across
// the chart selects a time range (snapped outwards to whole buckets) and hands it to onSelect.

import { getJson } from "./api.js";
import { el, svg } from "./dom.js";
import { axisLabel, count } from "./format.js";

const MINUTE = 60e3;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
// The stats route's interval, as a duration it accepts and in ms: the smallest giving at most MAX_BARS.
const INTERVALS = [
  ["1m", MINUTE], ["2m", 2 * MINUTE], ["5m", 5 * MINUTE], ["10m", 10 * MINUTE], ["15m", 15 * MINUTE],
  ["30m", 30 * MINUTE], ["1h", HOUR], ["2h", 2 * HOUR], ["3h", 3 * HOUR], ["6h", 6 * HOUR], ["12h", 12 * HOUR],
  ["1d", DAY], ["2d", 2 * DAY], ["7d", 7 * DAY], ["14d", 14 * DAY], ["30d", 30 * DAY], ["90d", 90 * DAY],
  ["180d", 180 * DAY], ["366d", 366 * DAY],
];
const MAX_BARS = 90;
const MAX_KEYS = 7; // action groups beyond the 7 largest are drawn as one "other"
const HEIGHT = 140;
const AXIS = 18;

export function chooseInterval(spanMs) {
  return INTERVALS.find(([, ms]) => spanMs / ms <= MAX_BARS) || INTERVALS[INTERVALS.length - 1];
}

export class Histogram {
  constructor(container, { onSelect }) {
    this.container = container;
    this.onSelect = onSelect;
    this.legend = el("ul", { class: "legend" });
    this.view = null; // {from, to, interval} of the drawing, for mapping x to time
  }

  /**
   * Draw the counts of ``params`` (the API's filters) over [from, to) with buckets of a suitable size;
   * ``total`` in the returned value is the number of matching events in the range.
   */
  async load(params, from, to, group, signal) {
    const [interval, width] = chooseInterval(Math.max(to - from, MINUTE));
    const start = Math.floor(from / width) * width;
    const end = Math.ceil(to / width) * width || start + width;
    const stats = await getJson("/v1/audit-log/stats", { ...params, interval, group_by: group }, { signal });
    this.view = { from: start, to: Math.max(end, start + width), width, interval };
    return this.draw(stats.data, group);
  }

  draw(data, group) {
    const { from, to, width } = this.view;
    const buckets = new Map();
    const totals = new Map();
    let total = 0;
    for (const { bucket, key, count: n } of data) {
      const at = Date.parse(bucket);
      const name = key ?? "(none)";
      if (!buckets.has(at)) buckets.set(at, new Map());
      buckets.get(at).set(name, (buckets.get(at).get(name) || 0) + n);
      totals.set(name, (totals.get(name) || 0) + n);
      total += n;
    }
    const ranked = [...totals.entries()].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1));
    const rank = new Map(ranked.map(([name], index) => [name, index])); // the same stacking order in every bar
    const classOf = new Map();
    ranked.forEach(([name], index) => {
      if (group === "outcome") classOf.set(name, name === "failure" ? "k-failure" : name === "success" ? "k-success" : "k-none");
      else classOf.set(name, index < MAX_KEYS ? `k${index}` : "k-other");
    });
    const peak = Math.max(1, ...[...buckets.values()].map((keys) => [...keys.values()].reduce((a, b) => a + b, 0)));
    const chartWidth = Math.max(280, this.container.clientWidth || 600);
    const x = (ms) => ((ms - from) / (to - from)) * chartWidth;
    const bars = [];
    for (const [at, keys] of buckets) {
      let y = HEIGHT;
      const barWidth = Math.max(1, x(at + width) - x(at) - 1);
      for (const [name, n] of [...keys.entries()].sort((a, b) => rank.get(a[0]) - rank.get(b[0]))) {
        const h = (n / peak) * (HEIGHT - 16);
        y -= h;
        bars.push(svg("rect", { x: x(at), y, width: barWidth, height: h, class: classOf.get(name) },
          svg("title", {}, `${axisLabel(at, 0)}: ${name} ${count(n)}`)));
      }
    }
    const ticks = [from, from + (to - from) / 2, to].map((ms, index) =>
      svg("text", { x: x(ms), y: HEIGHT + 14, class: "tick", "text-anchor": ["start", "middle", "end"][index] },
        axisLabel(ms, to - from)));
    this.selection = svg("rect", { x: 0, y: 0, width: 0, height: HEIGHT, class: "selection" });
    const label = `${count(total)} events from ${axisLabel(from, to - from)} to ${axisLabel(to, to - from)}, ` +
      `in buckets of ${this.view.interval}`;
    this.chart = svg("svg", {
      viewBox: `0 0 ${chartWidth} ${HEIGHT + AXIS}`, width: "100%", height: HEIGHT + AXIS,
      preserveAspectRatio: "none", role: "img", "aria-label": label, class: "bars",
    }, svg("line", { x1: 0, x2: chartWidth, y1: HEIGHT, y2: HEIGHT, class: "axis" }), ...bars, ...ticks,
    svg("text", { x: 2, y: 10, class: "tick" }, `${count(peak)} per ${this.view.interval}`), this.selection);
    this.dragging(this.chart, chartWidth);
    this.legend.replaceChildren(...ranked.slice(0, MAX_KEYS).map(([name, n]) =>
      el("li", {}, el("span", { class: `swatch ${classOf.get(name)}`, "aria-hidden": "true" }), `${name} ${count(n)}`)));
    if (ranked.length > MAX_KEYS) {
      const rest = ranked.slice(MAX_KEYS).reduce((sum, [, n]) => sum + n, 0);
      this.legend.append(el("li", {}, el("span", { class: "swatch k-other", "aria-hidden": "true" }), `other ${count(rest)}`));
    }
    this.container.replaceChildren(this.chart, this.legend);
    return { total };
  }

  dragging(chart, chartWidth) {
    let start = null;
    const at = (pointer) => {
      const box = chart.getBoundingClientRect();
      return Math.max(0, Math.min(chartWidth, ((pointer.clientX - box.left) / box.width) * chartWidth));
    };
    const show = (a, b) => {
      this.selection.setAttribute("x", String(Math.min(a, b)));
      this.selection.setAttribute("width", String(Math.abs(b - a)));
    };
    chart.addEventListener("pointerdown", (pointer) => {
      if (pointer.button !== 0) return;
      start = at(pointer);
      chart.setPointerCapture(pointer.pointerId);
      show(start, start);
    });
    chart.addEventListener("pointermove", (pointer) => { if (start !== null) show(start, at(pointer)); });
    const finish = (pointer) => {
      if (start === null) return;
      const end = at(pointer);
      const [a, b] = [Math.min(start, end), Math.max(start, end)];
      start = null;
      show(0, 0);
      if (b - a < 4) return; // a click, not a drag
      const { from, to, width } = this.view;
      const time = (px) => from + (px / chartWidth) * (to - from);
      const selectedFrom = Math.floor(time(a) / width) * width;
      const selectedTo = Math.max(Math.ceil(time(b) / width) * width, selectedFrom + width);
      this.onSelect(selectedFrom, selectedTo);
    };
    chart.addEventListener("pointerup", finish);
    chart.addEventListener("pointercancel", () => { start = null; show(0, 0); });
  }
}
