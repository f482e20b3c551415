// Building the page from data without ever parsing it as HTML.
//
// Every value that comes from an event (or from any API answer) reaches the page through el()'s text
// children or setText(): both end in Node.textContent / Text nodes, never innerHTML, outerHTML,
// insertAdjacentHTML or document.write. Attributes go through setAttribute, and el() refuses event-handler
// attributes (on*) and raw href/src: a link is made by link(), whose target is always a URL of this page.

const FORBIDDEN_ATTRIBUTE = /^(on|href$|src$|srcdoc$|formaction$|action$|style$)/i;

/** An element with attributes and children (strings become Text nodes; null/undefined are skipped). */
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (FORBIDDEN_ATTRIBUTE.test(name)) throw new Error(`el(): attribute ${name} is not set this way`);
    if (name === "class") node.className = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  append(node, children);
  return node;
}

/** Append strings (as text) and nodes. */
export function append(node, children) {
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** Replace an element's content with text. */
export function setText(node, text) {
  node.textContent = text === undefined || text === null ? "" : String(text);
}

/** An SVG element (attributes set with setAttribute; no text from events ever goes into one unescaped). */
export function svg(tag, attributes = {}, ...children) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (FORBIDDEN_ATTRIBUTE.test(name)) throw new Error(`svg(): attribute ${name} is not set this way`);
    node.setAttribute(name, String(value));
  }
  append(node, children);
  return node;
}

/**
 * A link to this page with the given query parameters. The href is built from this page's own URL, so
 * whatever an event holds it can only ever become a parameter value - never a javascript: or other URL.
 */
export function link(params, text, attributes = {}) {
  const target = new URL(location.pathname, location.href);
  for (const [name, value] of Object.entries(params)) target.searchParams.set(name, value);
  if (target.origin !== location.origin || !/^https?:$/.test(target.protocol)) throw new Error("link(): not this page");
  const node = el("a", attributes, text);
  node.href = target.pathname + target.search;
  return node;
}
