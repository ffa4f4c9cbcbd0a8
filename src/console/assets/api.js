// Calls to the connector's /v1 API with the pasted key. The key lives in this tab's
// sessionStorage only: never in a URL, a cookie or persistent storage.

import { h } from './dom.js';

const KEY = 'kandji-connector.api-key';
const CONNECTION = 'kandji-connector.connection';

export const apiKey = {
  get: () => sessionStorage.getItem(KEY),
  set: (k) => sessionStorage.setItem(KEY, k),
  clear: () => sessionStorage.removeItem(KEY),
};

/** The connection last picked in this tab. */
export const lastConnection = {
  get: () => sessionStorage.getItem(CONNECTION),
  set: (id) => sessionStorage.setItem(CONNECTION, id),
};

/**
 * One call: `{status, ok, body, ms}`. `body` is the parsed JSON (a problem for errors); status
 * 0 when the connector could not be reached.
 */
export async function call(method, path, body) {
  const headers = { Accept: 'application/json' };
  const key = apiKey.get();
  if (key) headers.Authorization = `Bearer ${key}`;
  const init = { method, headers, cache: 'no-store', credentials: 'omit', redirect: 'error' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const started = performance.now();
  try {
    const resp = await fetch(path, init);
    const text = await resp.text();
    const ms = Math.round(performance.now() - started);
    let parsed = null;
    if (text) {
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = text;
      }
    }
    return { status: resp.status, ok: resp.ok, body: parsed, ms };
  } catch (e) {
    return {
      status: 0,
      ok: false,
      body: { title: 'The connector could not be reached', detail: String(e) },
      ms: Math.round(performance.now() - started),
    };
  }
}

export const get = (path) => call('GET', path);
export const post = (path, body) => call('POST', path, body);
export const del = (path) => call('DELETE', path);

/** The field errors of a problem, by `loc` joined with '.'. */
export function fieldErrors(resp) {
  const out = new Map();
  for (const e of resp?.body?.errors ?? []) {
    const loc = (e.loc ?? []).join('.');
    out.set(loc, [...(out.get(loc) ?? []), e.msg]);
  }
  return out;
}

/** A problem answer as an alert box: title, detail and each offending field. */
export function problemBox(resp, context) {
  const b = resp.body && typeof resp.body === 'object' ? resp.body : { detail: resp.body };
  const title = resp.status === 401
    ? 'The API key was refused'
    : (b.title ?? `HTTP ${resp.status}`);
  const errors = b.errors ?? [];
  return h('div', { class: 'problem', role: 'alert' },
    h('p', { class: 'problem-title' }, context ? `${context}: ` : '', title,
      resp.status ? h('span', { class: 'status' }, ` (${resp.status})`) : null),
    b.detail && !errors.length ? h('p', {}, b.detail) : null,
    errors.length
      ? h('ul', {}, errors.map((e) => h('li', {},
        h('code', {}, (e.loc ?? []).join('.')), ': ', e.msg)))
      : null,
    resp.status === 401 ? h('p', {}, 'Paste a valid key above.') : null,
    resp.status === 403 ? h('p', {}, 'This key lacks the scope this needs.') : null);
}
