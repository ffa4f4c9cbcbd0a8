// A card's page: what it does, its inputs, options, result sets and outputs (all from its
// schemas), and "Try it": a form built from those schemas, Preview (the dry run: the request
// Kandji would get, nothing sent) and Run (with a typed confirmation for destructive cards).

import { get, post, fieldErrors, problemBox, lastConnection } from './api.js';
import { effectBadge } from './catalog.js';
import { h, fill, on, announce, show } from './dom.js';
import { field, fieldsTable, outputsTable, properties } from './schema.js';

export async function cardView(main, id) {
  const r = await get(`/v1/cards/${encodeURIComponent(id)}`);
  main.append(h('p', { class: 'back' }, h('a', { href: '#/cards' }, '\u2190 Catalog')));
  if (!r.ok) {
    main.append(h('h2', { tabindex: '-1' }, id), problemBox(r, 'This card could not be read'));
    return null;
  }
  const card = r.body;
  const labels = new Map(card.result_sets.map((rs) => [rs.id, rs.label]));
  main.append(
    h('h2', { id: 'card-title', tabindex: '-1' }, card.title),
    h('p', { class: 'meta' },
      h('code', { class: 'card-id' }, card.id), ' ',
      h('span', { class: 'badge' }, card.category), ' ',
      effectBadge(card.effect), ' ',
      h('span', { class: 'badge' }, card.idempotent ? 'idempotent' : 'not idempotent'),
      card.returns_secrets ? [' ', h('span', { class: 'badge secret' }, 'returns secrets')] : null),
    h('p', { id: 'card-description', class: 'description' }, card.description),
    h('section', { class: 'doc', 'aria-label': 'Inputs' }, fieldsTable('Inputs', card.input_schema)),
    h('section', { class: 'doc', 'aria-label': 'Options' }, fieldsTable('Options', card.options_schema, labels)),
    card.result_sets.length
      ? h('section', { class: 'doc', 'aria-labelledby': 'result-sets-title' },
        h('h3', { id: 'result-sets-title' }, 'Result sets'),
        h('ul', {}, card.result_sets.map((rs) => h('li', {}, rs.label, ' ', h('code', {}, rs.id),
          rs.kind === 'stream' ? ' \u2014 streams every record to a helper flow' : ' \u2014 records in the answer'))))
      : null,
    h('section', { class: 'doc', 'aria-label': 'Outputs' }, outputsTable(card.output_schema, card.result_sets)),
  );
  main.append(await tryIt(card, labels));
  return null;
}

async function connectionField() {
  const r = await get('/v1/connections');
  const help = h('p', { id: 'connection-help', class: 'help' });
  const error = h('p', { id: 'connection-error', class: 'field-error' });
  let control;
  if (r.ok && r.body.connections.length) {
    control = h('select', { id: 'connection' },
      r.body.connections.map((c) => h('option', { value: c.id }, `${c.name} (${c.id})`)));
    const last = lastConnection.get();
    if (last && r.body.connections.some((c) => c.id === last)) control.value = last;
    help.textContent = 'The Kandji tenant the card runs against.';
  } else {
    control = h('input', { id: 'connection', type: 'text', autocomplete: 'off', spellcheck: 'false' });
    control.value = lastConnection.get() ?? '';
    help.textContent = r.ok
      ? 'No connection yet: add one under Connections, or paste a connection id.'
      : 'This key cannot list connections (that needs the admin scope): paste a connection id.';
  }
  control.setAttribute('aria-describedby', 'connection-help connection-error');
  control.setAttribute('required', '');
  return {
    el: h('div', { class: 'field', 'data-field': 'connection' },
      h('label', { for: 'connection' }, 'Connection', h('span', { class: 'required' }, ' (required)')),
      control, help, error),
    value: () => control.value.trim(),
    setError(messages) {
      error.textContent = messages.join('; ');
      if (messages.length) control.setAttribute('aria-invalid', 'true');
      else control.removeAttribute('aria-invalid');
    },
  };
}

function helperFlowFields() {
  const url = field('helper', 'url', {
    title: 'Helper flow URL', type: 'string',
    description: 'Each record is POSTed here (https; other targets only where the operator allows them).',
  }, true);
  const secret = field('helper', 'secret', {
    title: 'Signing secret', type: 'string',
    description: 'Optional Standard Webhooks secret (whsec_\u2026): every callback is signed with it.',
  }, false);
  secret.control.setAttribute('type', 'password');
  const state = field('helper', 'state', {
    title: 'State', type: 'object', description: 'Optional JSON passed back with every record.',
  }, false);
  const limit = field('helper', 'record_limit', {
    title: 'Record limit', type: 'integer', description: 'Optional: stop after this many records (empty: every record).',
  }, false);
  return { url, secret, state, limit };
}

async function tryIt(card, labels) {
  const connection = await connectionField();
  const inputs = properties(card.input_schema).map(([n, p, req]) => field('input', n, p, req));
  const options = properties(card.options_schema).map(([n, p, req]) => field('option', n, p, req, labels));
  const helper = helperFlowFields();
  const helperSet = h('fieldset', { class: 'helper-flow', hidden: true },
    h('legend', {}, 'Stream delivery'),
    [helper.url, helper.secret, helper.state, helper.limit].map((f) => f.el));
  const resultSet = options.find((f) => f.name === 'result_set');
  const kindOf = (rsId) => card.result_sets.find((rs) => rs.id === rsId)?.kind;
  const streaming = () => kindOf(resultSet?.read().value) === 'stream';
  const syncHelper = () => { helperSet.hidden = !streaming(); };
  if (resultSet) on(resultSet.control, 'change', syncHelper);
  syncHelper();

  const previewArea = h('section', { id: 'preview-area', class: 'result', 'aria-live': 'polite', 'aria-label': 'Preview' });
  const result = h('section', { id: 'result', class: 'result', 'aria-live': 'polite', 'aria-label': 'Result' });
  const previewButton = h('button', { type: 'submit', id: 'preview-button' }, 'Preview');
  const runButton = h('button', { type: 'button', id: 'run-button', class: card.effect === 'destructive' ? 'danger' : null }, 'Run');
  const confirm = h('div', { id: 'confirm', class: 'confirm', hidden: true });

  const all = [
    ...inputs.map((f) => ['inputs', f]),
    ...options.map((f) => ['options', f]),
    ['options.helper_flow', helper.url], ['options.helper_flow', helper.secret],
    ['options.helper_flow', helper.state], ['options', helper.limit],
  ];
  const clearErrors = () => {
    connection.setError([]);
    for (const [, f] of all) f.setError([]);
  };

  /** The invoke body from the form, or null (with the fields' messages) when it cannot be read. */
  const body = () => {
    clearErrors();
    let bad = false;
    const read = (fields) => {
      const out = {};
      for (const f of fields) {
        const { value, error } = f.read();
        if (error) {
          f.setError([error]);
          bad = true;
        } else if (value !== undefined) {
          out[f.name] = value;
        }
      }
      return out;
    };
    const b = { connection: connection.value(), inputs: read(inputs), options: read(options) };
    if (streaming()) {
      const flow = read([helper.url, helper.secret, helper.state]);
      if (Object.keys(flow).length) b.options.helper_flow = flow;
      const { record_limit: limit } = read([helper.limit]);
      if (limit !== undefined) b.options.record_limit = limit;
    }
    if (bad) {
      fill(result, h('div', { class: 'problem', role: 'alert' }, h('p', { class: 'problem-title' }, 'Some fields cannot be read: see the messages next to them.')));
      return null;
    }
    if (b.connection) lastConnection.set(b.connection);
    return b;
  };

  /** Shows the server's field errors next to their fields. */
  const markErrors = (resp) => {
    const errors = fieldErrors(resp);
    connection.setError(errors.get('connection') ?? []);
    for (const [scope, f] of all) {
      const own = errors.get(`${scope}.${f.name}`) ?? [];
      // A problem with the helper flow as a whole (e.g. missing) shows at its URL.
      const flow = f === helper.url ? errors.get('options.helper_flow') ?? [] : [];
      f.setError([...own, ...flow]);
    }
  };

  const doPreview = async () => {
    const b = body();
    if (!b) return;
    fill(result);
    fill(previewArea, h('p', { class: 'busy' }, 'Preparing the preview\u2026'));
    const r = await post(`/v1/cards/${encodeURIComponent(card.id)}/preview`, b);
    markErrors(r);
    if (!r.ok) {
      fill(previewArea, problemBox(r, 'Preview refused'));
      return;
    }
    fill(previewArea, previewView(r.body));
    announce(`Preview ready: ${r.body.requests.length} request${r.body.requests.length === 1 ? '' : 's'} planned, nothing sent.`);
  };

  const doRun = async () => {
    const b = body();
    if (!b) return;
    confirm.hidden = true;
    fill(result, h('p', { class: 'busy' }, `Running ${card.title}\u2026`));
    const r = await post(`/v1/cards/${encodeURIComponent(card.id)}/invoke`, b);
    markErrors(r);
    if (r.status === 202) {
      fill(result, streamStarted(r.body));
      announce('Stream started.');
      return;
    }
    if (!r.ok) {
      fill(result, problemBox(r, 'Run refused'));
      return;
    }
    const view = runView(card, r.body.outputs, r.ms);
    fill(result, view);
    announce(`Ran ${card.title}: Kandji answered ${r.body.outputs.status_code}.`);
    view.append(await budgetLine(b.connection));
  };

  const askConfirmation = () => {
    const input = h('input', { id: 'confirm-text', type: 'text', autocomplete: 'off', spellcheck: 'false', 'aria-describedby': 'confirm-why' });
    const go = h('button', { type: 'button', id: 'confirm-run', class: 'danger', disabled: true }, `Run ${card.title}`);
    const cancel = h('button', { type: 'button', id: 'confirm-cancel' }, 'Cancel');
    const matches = () => input.value.trim() === card.id;
    on(input, 'input', () => { go.disabled = !matches(); });
    on(input, 'keydown', (e) => {
      if (e.key === 'Enter') {
        e.preventDefault();
        if (matches()) doRun();
      } else if (e.key === 'Escape') {
        confirm.hidden = true;
        runButton.focus();
      }
    });
    on(go, 'click', () => { if (matches()) doRun(); });
    on(cancel, 'click', () => { confirm.hidden = true; runButton.focus(); });
    fill(confirm,
      h('p', { id: 'confirm-why' }, h('strong', {}, `${card.title} is destructive.`),
        ' It acts on the real tenant of this connection and cannot be undone from here. Preview it first to see exactly what Kandji will get.'),
      h('label', { for: 'confirm-text' }, 'Type ', h('code', {}, card.id), ' to confirm'),
      input,
      h('div', { class: 'actions' }, go, cancel));
    confirm.hidden = false;
    input.focus();
  };

  on(runButton, 'click', () => {
    if (card.effect === 'destructive') askConfirmation();
    else doRun();
  });
  const form = h('form', { id: 'try-form', novalidate: true, autocomplete: 'off' },
    h('fieldset', {}, h('legend', {}, 'Connection'), connection.el),
    inputs.length ? h('fieldset', {}, h('legend', {}, 'Inputs'), inputs.map((f) => f.el)) : null,
    options.length ? h('fieldset', {}, h('legend', {}, 'Options'), options.map((f) => f.el)) : null,
    helperSet,
    h('div', { class: 'actions' }, previewButton, runButton,
      h('span', { class: 'help' }, 'Preview sends nothing to Kandji.')),
    confirm);
  on(form, 'submit', (e) => {
    e.preventDefault();
    doPreview();
  });
  return h('section', { class: 'try', 'aria-labelledby': 'try-title' },
    h('h3', { id: 'try-title' }, 'Try it'), form, previewArea, result);
}

const ROLES = {
  request: 'The request',
  first_page: 'The first page',
  lookup: 'Follow-up read',
  live_lookup: 'Live lookup',
};

function requestText(r) {
  const lines = [`${r.method} ${r.url}`, ...r.headers.map((x) => `${x.name}: ${x.value}`)];
  if (r.body) lines.push('', r.body.text);
  return lines.join('\n');
}

export function previewView(p) {
  const n = p.requests.length;
  return h('div', { class: 'preview', id: 'preview' },
    h('h4', {}, 'Preview: what Kandji would get'),
    h('p', { class: 'nothing-sent' }, n
      ? `Nothing was sent. Running the card sends ${n === 1 ? 'this request' : `these ${n} requests`}:`
      : 'Nothing was sent, and running the card would send nothing to Kandji now.'),
    p.requests.map((r, i) => h('figure', { class: 'request', 'data-role': r.role },
      h('figcaption', {}, `${i + 1}. ${ROLES[r.role] ?? r.role}`, r.lookup ? ` (${r.lookup})` : '',
        r.when !== 'always' ? ` \u2014 ${r.when}` : ''),
      h('pre', { class: 'http' }, h('code', {}, requestText(r))))),
    p.paging ? h('p', { class: 'paging' }, h('strong', {}, `Paging (${p.paging.style}): `), p.paging.continues) : null,
    p.resolver ? h('p', { class: 'resolver' }, h('strong', {}, 'Answer: '), p.resolver.answer_from) : null,
    p.stream
      ? h('p', { class: 'stream' }, h('strong', {}, 'Stream: '), 'running starts a stream that POSTs each record to ',
        h('code', {}, p.stream.delivers_to),
        p.stream.record_limit === null ? ' (every record).' : ` (at most ${p.stream.record_limit} records).`)
      : null,
    n ? h('p', { class: 'help' }, 'Every request also carries ', h('code', {}, p.credentials), '.') : null);
}

/** A secret, masked until its Show button is pressed. */
function masked(node) {
  const dots = h('span', { class: 'masked' }, '\u2022'.repeat(8));
  node.hidden = true;
  const toggle = h('button', { type: 'button', class: 'small', 'aria-pressed': 'false' }, 'Show');
  on(toggle, 'click', () => {
    const showing = toggle.getAttribute('aria-pressed') === 'true';
    toggle.setAttribute('aria-pressed', String(!showing));
    toggle.textContent = showing ? 'Show' : 'Hide';
    node.hidden = showing;
    dots.hidden = !showing;
  });
  return h('span', {}, dots, node, ' ', toggle);
}

const isRecord = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
const MAX_ROWS = 50;
const MAX_COLUMNS = 8;

/**
 * An output value as text: scalars as they are, a group as a table of its fields, a list of
 * records as a table (its first rows and columns), anything deeper as JSON text. `schema` is the
 * value's part of the output schema (titles, secrets); `path` names rows for tests and readers.
 */
function valueNode(value, schema, path, depth) {
  let node;
  if (value === null || typeof value !== 'object') {
    node = h('span', {}, show(value));
  } else if (Array.isArray(value) && value.every((v) => v === null || typeof v !== 'object')) {
    node = h('span', {}, value.length ? value.map(show).join(', ') : 'none (empty list)');
  } else if (Array.isArray(value) && depth < 2 && value.every(isRecord)) {
    node = recordsTable(value, schema?.items, path, depth);
  } else if (isRecord(value) && depth < 3) {
    node = h('table', { class: 'kv' }, h('tbody', {}, Object.entries(value).map(([k, v]) => {
      const sub = schema?.properties?.[k];
      return h('tr', { 'data-output': `${path}.${k}` },
        h('th', { scope: 'row' }, sub?.title ?? k),
        h('td', {}, valueNode(v, sub, `${path}.${k}`, depth + 1)));
    })));
  } else {
    node = h('pre', { class: 'json' }, h('code', {}, show(value)));
  }
  return schema?.['x-secret'] && value !== null ? masked(node) : node;
}

function recordsTable(records, schema, path, depth) {
  const columns = [];
  for (const r of records.slice(0, 20)) {
    for (const k of Object.keys(r)) if (!columns.includes(k) && columns.length < MAX_COLUMNS) columns.push(k);
  }
  const shown = records.slice(0, MAX_ROWS);
  return h('div', { class: 'table-wrap' }, h('table', { class: 'records' },
    h('caption', {}, `${records.length} record${records.length === 1 ? '' : 's'}`,
      records.length > shown.length ? ` (first ${shown.length} shown)` : '',
      columns.length < Object.keys(records[0] ?? {}).length ? `; first ${columns.length} fields` : ''),
    h('thead', {}, h('tr', {}, columns.map((c) => h('th', { scope: 'col' }, schema?.properties?.[c]?.title ?? c)))),
    h('tbody', {}, shown.map((r, i) => h('tr', { 'data-output': `${path}.${i}` },
      columns.map((c) => h('td', {}, isRecord(r[c]) || Array.isArray(r[c])
        ? h('code', {}, JSON.stringify(r[c]))
        : valueNode(r[c], schema?.properties?.[c], `${path}.${i}.${c}`, depth + 2))))))));
}

function runView(card, outputs, ms) {
  const props = card.output_schema?.properties ?? {};
  const status = outputs.status_code;
  const ok = status >= 200 && status < 300;
  return h('div', { class: 'run', id: 'run-result' },
    h('h4', {}, 'Result'),
    h('p', { class: `summary ${ok ? 'good' : 'bad'}` },
      'Kandji answered ', h('strong', { id: 'kandji-status' }, String(status)),
      outputs.error ? [': ', h('span', { class: 'kandji-error' }, outputs.error)] : null,
      ` \u2014 ${ms} ms`),
    h('table', { class: 'outputs', id: 'outputs' },
      h('caption', {}, 'Outputs'),
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Output'), h('th', { scope: 'col' }, 'Value'))),
      h('tbody', {}, Object.entries(outputs).map(([k, v]) => h('tr', { 'data-output': k },
        h('th', { scope: 'row' }, props[k]?.title ?? k, ' ', h('code', {}, k)),
        h('td', {}, valueNode(v, props[k], k, 0)))))));
}

async function budgetLine(connection) {
  const r = await get(`/v1/connections/${encodeURIComponent(connection)}`);
  if (!r.ok) {
    return h('p', { class: 'budget help' }, 'Budget: not shown (reading a connection needs the admin scope).');
  }
  const b = r.body.budget;
  return h('p', { class: 'budget', id: 'budget' },
    `Budget: ${b.remaining_this_hour.toLocaleString()} of ${b.requests_per_hour.toLocaleString()} requests left this hour on ${r.body.name}.`);
}

function streamStarted(s) {
  return h('div', { class: 'run', id: 'stream-started' },
    h('h4', {}, 'Stream started'),
    h('p', {}, 'Stream ', h('code', {}, s.stream_id), ' is running. ',
      h('a', { href: '#/streams' }, 'Follow its progress in Streams'), '.'));
}
