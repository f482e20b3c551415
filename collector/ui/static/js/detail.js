// The event detail: every field of the event, its objects as formatted JSON, copy buttons, links to the
// events of the same actor, resource and address, and (once stored events carry it) its place in the
// tenant's tamper-evident chain.

import { getJson } from "./api.js";
import { el, link, setText } from "./dom.js";
import { invisibleCharacters, localTime } from "./format.js";

// The event's place in the tenant's tamper-evident chain comes from its own route (the event's shape is
// the API document's): position, hash, and the signed checkpoint that covers it, if one was made yet.
const INTEGRITY_PATH = (id) => `/v1/audit-log/${encodeURIComponent(id)}/integrity`;
const TIMES = new Set(["created_at", "received_at"]);

/** Text for a copy button's clipboard; navigator.clipboard needs a secure context, else a selection. */
async function copy(text) {
  if (navigator.clipboard && window.isSecureContext) {
    await navigator.clipboard.writeText(text);
    return;
  }
  const area = el("textarea", { class: "offscreen", "aria-hidden": "true" });
  area.value = text;
  document.body.append(area);
  area.select();
  document.execCommand("copy");
  area.remove();
}

function copyButton(label, text, announce) {
  const button = el("button", { type: "button", class: "copy" }, label);
  button.addEventListener("click", async () => {
    try {
      await copy(text);
      announce(`Copied ${label.replace(/^Copy /, "")}.`);
    } catch {
      announce("The browser refused to copy.");
    }
  });
  return button;
}

/** A value as text, with a warning when it holds characters that reorder or hide text. */
function valueNodes(name, value) {
  if (value === null || value === undefined || value === "") return [el("span", { class: "muted" }, "(none)")];
  const text = String(value);
  const nodes = [el("span", { class: "value" }, text)];
  if (TIMES.has(name)) nodes.push(el("span", { class: "muted" }, ` (${localTime(text)} local)`));
  const hidden = invisibleCharacters(text);
  if (hidden) nodes.push(el("span", { class: "warning" }, ` contains invisible or direction characters: ${hidden}`));
  return nodes;
}

/**
 * Fill ``body`` with ``event``. The "show events" links keep ``range`` (the view's time range
 * parameters) and filter on this event's value, matched literally (eq:). They are real links to this
 * page, so they open in a new tab too; followed in place, ``navigate(searchParams)`` is called.
 * ``announce`` tells the user (copy done).
 */
export function renderDetail(title, body, event, { range, navigate, announce }) {
  setText(title, `Event: ${event.action}`);
  const related = [];
  if (event.actor_id) related.push(link({ ...range, actor_id: `eq:${event.actor_id}` }, "Events by this actor"));
  if (event.resource_type || event.resource_id) {
    const params = { ...range };
    if (event.resource_type) params.resource_type = `eq:${event.resource_type}`;
    if (event.resource_id) params.resource_id = `eq:${event.resource_id}`;
    related.push(link(params, "Events on this resource"));
  }
  if (event.client_ip) related.push(link({ ...range, client_ip: event.client_ip }, "Events from this IP"));
  for (const anchor of related) {
    anchor.addEventListener("click", (click) => {
      if (click.ctrlKey || click.metaKey || click.shiftKey || click.button !== 0) return; // a new tab: the browser's
      click.preventDefault();
      navigate(new URL(anchor.href).searchParams);
    });
  }

  const fields = el("dl", { class: "fields event-fields" });
  const objects = [];
  for (const [name, value] of Object.entries(event)) {
    if (value !== null && typeof value === "object") objects.push([name, value]);
    else fields.append(el("dt", {}, name), el("dd", {}, valueNodes(name, value)));
  }
  const sections = objects.map(([name, value]) => {
    const json = JSON.stringify(value, null, 2);
    return el("section", { class: "object", "aria-label": name },
      el("div", { class: "object-head" }, el("h3", {}, name), copyButton(`Copy ${name}`, json, announce)),
      el("pre", { tabindex: "0" }, json));
  });

  const integritySection = el("section", { class: "integrity", "aria-label": "Integrity position" },
    el("h3", {}, "Integrity position"), el("p", { class: "muted" }, "Loading…"));
  showIntegrity(integritySection, event.id);

  const parts = [
    el("div", { class: "detail-actions" },
      copyButton("Copy id", event.id, announce),
      copyButton("Copy JSON", JSON.stringify(event, null, 2), announce)),
    related.length ? el("nav", { class: "related", "aria-label": "Related events" }, related) : null,
    fields,
    integritySection,
    ...sections,
  ];
  body.replaceChildren(...parts.filter(Boolean));
}

/** Fill ``section`` with the event's chain position, hash and covering checkpoint (or why there is none). */
async function showIntegrity(section, id) {
  const heading = section.firstChild;
  let rows;
  try {
    const { data } = await getJson(INTEGRITY_PATH(id));
    const checkpoint = data.checkpoint;
    rows = [
      ["position", data.position],
      ["hash", data.hash],
      ["checkpoint", checkpoint
        ? `position ${checkpoint.position}, signed ${localTime(checkpoint.time)} by key ${checkpoint.key_id}`
        : "not yet covered by a signed checkpoint (one is made within the checkpoint interval)"],
    ];
  } catch (error) {
    const why = error.status === 404 ? "not in the hash chain (stored with integrity off)" : error.message;
    section.replaceChildren(heading, el("p", { class: "muted" }, why));
    return;
  }
  section.replaceChildren(heading, el("dl", { class: "fields" },
    rows.flatMap(([name, value]) => [el("dt", {}, name), el("dd", {}, valueNodes(name, value))])));
}
