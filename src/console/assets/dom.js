// Building the page with DOM calls only. Every value (from Kandji, a card file or the user)
// becomes a text node or an attribute value, never markup: there is no HTML parsing anywhere
// in the console (and the Content-Security-Policy requires Trusted Types with no policy, so an
// HTML sink would throw).

/** An element: `h('a', {href: '#/cards'}, 'Catalog')`. Attributes named on… are refused. */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs ?? {})) {
    if (value === null || value === undefined || value === false) continue;
    if (/^on/i.test(name)) throw new Error(`no event-handler attributes (${name})`);
    if (name === 'class') el.className = value;
    else el.setAttribute(name, value === true ? '' : String(value));
  }
  add(el, children);
  return el;
}

/** Appends children: nodes as they are, anything else as text; null and false are skipped. */
export function add(el, children) {
  for (const child of [children].flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** Replaces an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  return add(el, children);
}

/** Listens and returns the element, for chaining in builders. */
export function on(el, event, handler) {
  el.addEventListener(event, handler);
  return el;
}

/** Says something to screen readers (the polite live region). */
export function announce(text) {
  const region = document.getElementById('announce');
  if (region) region.textContent = text;
}

/** A stable, valid id fragment for any text. */
export function slug(text) {
  return String(text).replace(/[^A-Za-z0-9_-]/g, (c) => `_${c.charCodeAt(0).toString(16)}_`);
}

/** A JSON value as readable text (strings as they are). */
export function show(value) {
  if (value === null || value === undefined) return '—';
  if (typeof value === 'string') return value;
  if (typeof value === 'object') return JSON.stringify(value, null, 2);
  return String(value);
}

/** A date-time as the browser's locale shows it, with the original in a title. */
export function when(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  return h('time', { datetime: iso, title: iso }, d.toLocaleString());
}
