// A card's JSON Schemas as a designer reads them (tables of inputs, options and outputs) and
// as a form (one labelled control per property, read back into JSON values).

import { h, show, slug } from './dom.js';

/** The JSON types a property allows, `null` aside. */
export function types(p) {
  const t = p?.type;
  return (Array.isArray(t) ? t : t ? [t] : []).filter((x) => x !== 'null');
}

export function typeText(p) {
  const text = types(p)
    .map((t) => (t === 'array' && p.items && types(p.items).length ? `list of ${typeText(p.items)}` : t))
    .join(' or ') || 'any';
  return p.format ? `${text} (${p.format})` : text;
}

/** [name, property, required] of an object schema, in the schema's order. */
export function properties(schema) {
  const required = new Set(schema?.required ?? []);
  return Object.entries(schema?.properties ?? {}).map(([name, p]) => [name, p, required.has(name)]);
}

/** The table of an input or options schema. `labels` names enum values (result sets). */
export function fieldsTable(caption, schema, labels) {
  const rows = properties(schema);
  if (!rows.length) return h('p', { class: 'none' }, `No ${caption.toLowerCase()}.`);
  return h('table', { class: 'schema' },
    h('caption', {}, caption),
    h('thead', {}, h('tr', {},
      ['Label', 'Name', 'Type', 'Required', 'Choices', 'Description'].map((c) => h('th', { scope: 'col' }, c)))),
    h('tbody', {}, rows.map(([name, p, required]) => h('tr', {},
      h('th', { scope: 'row' }, p.title ?? name),
      h('td', {}, h('code', {}, name)),
      h('td', {}, typeText(p)),
      h('td', {}, required ? 'required' : 'optional'),
      h('td', {}, p.enum ? p.enum.map((v) => labels?.get(v) ?? show(v)).join(', ')
        : Array.isArray(p.examples) ? `any, e.g. ${p.examples.map(show).join(', ')}` : '—'),
      h('td', {}, p.description ?? '',
        p.default !== undefined ? h('span', { class: 'default' }, ` Default: ${show(p.default)}.`) : null)))));
}

/** The table of an output schema, nested groups and record fields included. */
export function outputsTable(schema, resultSets) {
  const labels = new Map(resultSets.map((r) => [r.id, r.label]));
  const rows = [];
  const walk = (props, path, depth) => {
    for (const [name, p] of Object.entries(props ?? {})) {
      const notes = [];
      if (p['x-secret']) notes.push('secret');
      if (p['x-result-sets']) notes.push(`only for ${p['x-result-sets'].map((r) => labels.get(r) ?? r).join(', ')}`);
      if (p['x-when']) {
        const w = p['x-when'];
        notes.push(w.option ? `only when ${w.option} is ${show(w.equals)}` : `only when ${w.present} is given`);
      }
      rows.push(h('tr', { class: depth ? 'nested' : null },
        h('th', { scope: 'row' }, depth ? h('span', { class: 'indent', 'aria-hidden': 'true' }, '\u21b3 '.padStart(depth * 2 + 2, '\u00a0')) : null, p.title ?? name),
        h('td', {}, h('code', {}, [...path, name].join('.'))),
        h('td', {}, typeText(p)),
        h('td', {}, notes.join('; ')),
        h('td', {}, p.description ?? '')));
      if (depth < 3) {
        if (p.properties) walk(p.properties, [...path, name], depth + 1);
        else if (p.items?.properties) walk(p.items.properties, [...path, `${name}[]`], depth + 1);
      }
    }
  };
  walk(schema?.properties, [], 0);
  return h('table', { class: 'schema' },
    h('caption', {}, 'Outputs'),
    h('thead', {}, h('tr', {},
      ['Label', 'Name', 'Type', 'Shown', 'Description'].map((c) => h('th', { scope: 'col' }, c)))),
    h('tbody', {}, rows));
}

function kindOf(p) {
  if (Array.isArray(p.enum)) return 'enum';
  const ts = types(p);
  if (ts.length !== 1) return 'json';
  const [t] = ts;
  if (t === 'boolean' || t === 'string') return t;
  if (t === 'integer' || t === 'number') return 'number';
  if (t === 'array') {
    const item = types(p.items ?? {});
    if (item.length === 1 && ['string', 'integer', 'number'].includes(item[0])) return 'list';
  }
  return 'json';
}

const HINTS = {
  list: 'One value a line.',
  json: 'JSON.',
};

/**
 * A labelled control for one property. `read()` gives `{value}` (undefined: left out) or
 * `{error}`; `setError(messages)` shows the server's or the form's messages.
 */
export function field(prefix, name, p, required, labels) {
  const id = `${prefix}-${slug(name)}`;
  const kind = kindOf(p);
  let control;
  if (kind === 'enum' || kind === 'boolean') {
    const choices = kind === 'enum' ? p.enum : [true, false];
    const empty = required ? 'Choose\u2026' : '(not set)';
    control = h('select', { id },
      h('option', { value: '' }, empty),
      choices.map((v, i) => h('option', { value: String(i) }, labels?.get(v) ?? String(v))));
    control.dataset.kind = kind;
    if (p.default !== undefined) {
      const i = choices.findIndex((v) => v === p.default);
      if (i >= 0) control.value = String(i);
    } else if (required && kind === 'enum' && choices.length) {
      control.value = '0';
    }
    control.read = () => (control.value === '' ? {} : { value: choices[Number(control.value)] });
  } else if (kind === 'list' || kind === 'json') {
    control = h('textarea', { id, rows: kind === 'json' ? 4 : 3, spellcheck: 'false' });
    control.read = () => {
      const text = control.value.trim();
      if (!text) return {};
      if (kind === 'list') {
        const numeric = types(p.items)[0] !== 'string';
        const values = text.split('\n').map((l) => l.trim()).filter(Boolean);
        if (!numeric) return { value: values };
        const nums = values.map(Number);
        return nums.some(Number.isNaN) ? { error: 'one number a line' } : { value: nums };
      }
      try {
        return { value: JSON.parse(text) };
      } catch {
        return { error: 'is not valid JSON' };
      }
    };
  } else if (kind === 'number') {
    control = h('input', { id, type: 'number', inputmode: 'numeric', step: types(p)[0] === 'integer' ? '1' : 'any' });
    control.read = () => {
      if (control.value.trim() === '') return {};
      const n = Number(control.value);
      if (Number.isNaN(n)) return { error: 'is not a number' };
      if (types(p)[0] === 'integer' && !Number.isInteger(n)) return { error: 'must be a whole number' };
      return { value: n };
    };
  } else {
    control = h('input', { id, type: 'text', autocomplete: 'off', spellcheck: 'false' });
    control.read = () => (control.value === '' ? {} : { value: control.value });
  }
  // Suggested values of a free-text field (List Devices' Platform): offered, not imposed.
  const suggestions = kind === 'string' && Array.isArray(p.examples)
    ? h('datalist', { id: `${id}-suggestions` }, p.examples.map((v) => h('option', { value: String(v) })))
    : null;
  if (suggestions) control.setAttribute('list', suggestions.id);
  const helpId = `${id}-help`;
  const errorId = `${id}-error`;
  control.setAttribute('aria-describedby', `${helpId} ${errorId}`);
  if (required) {
    control.setAttribute('required', '');
    control.setAttribute('aria-required', 'true');
  }
  const help = [p.description, HINTS[kind], p.default !== undefined ? `Default: ${show(p.default)}.` : null]
    .filter(Boolean).join(' ');
  const error = h('p', { id: errorId, class: 'field-error' });
  const wrapper = h('div', { class: 'field', 'data-field': `${prefix}.${name}` },
    h('label', { for: id }, p.title ?? name,
      required ? h('span', { class: 'required' }, ' (required)') : null),
    control,
    suggestions,
    h('p', { id: helpId, class: 'help' }, help),
    error);
  return {
    name,
    el: wrapper,
    control,
    read: () => control.read(),
    setError(messages) {
      error.textContent = messages.length ? messages.join('; ') : '';
      if (messages.length) control.setAttribute('aria-invalid', 'true');
      else control.removeAttribute('aria-invalid');
    },
  };
}
