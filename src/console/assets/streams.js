// Streams: every stream this key may see, refreshed each second while the page is shown, with
// its progress (records delivered, pages read, failed deliveries), Cancel, and the failures.

import { get, del, problemBox } from './api.js';
import { h, fill, on, announce, when, show } from './dom.js';

const REFRESH_MS = 1000;

const COLUMNS = ['Stream', 'Card', 'Result set', 'State', 'Records delivered', 'Pages read',
  'Failed deliveries', 'Started', 'Finished', 'Error', 'Actions'];

export async function streamsView(main) {
  const status = h('p', { class: 'help', id: 'streams-status' }, 'Loading\u2026');
  const body = h('tbody', {});
  const table = h('table', { class: 'streams', id: 'streams' },
    h('caption', {}, 'Streams, newest first'),
    h('thead', {}, h('tr', {}, COLUMNS.map((c) => h('th', { scope: 'col' }, c)))),
    body);
  const failures = h('section', { id: 'failures', 'aria-live': 'polite', 'aria-label': 'Failures' });
  const problem = h('div', {});
  main.append(
    h('h2', { tabindex: '-1' }, 'Streams'),
    h('p', {}, 'A stream POSTs each record of a list card to a helper flow. Start one from a list card\u2019s page with a Stream result set.'),
    status, problem, h('div', { class: 'table-wrap' }, table), failures);

  const rows = new Map();
  const row = (s) => {
    let r = rows.get(s.id);
    if (!r) {
      const cells = Object.fromEntries(['id', 'card', 'result_set', 'state', 'record_count', 'pages_fetched',
        'failed_deliveries', 'started_at', 'finished_at', 'error', 'actions'].map((k) => [k, h('td', { 'data-col': k })]));
      cells.id = h('th', { scope: 'row', 'data-col': 'id' }, h('code', {}, s.id));
      cells.card.append(h('a', { href: `#/cards/${encodeURIComponent(s.card)}` }, s.card));
      cells.result_set.textContent = s.result_set;
      cells.started_at.append(when(s.started_at));
      const cancel = h('button', { type: 'button', class: 'danger small cancel' }, 'Cancel');
      cancel.setAttribute('aria-label', `Cancel stream ${s.id}`);
      on(cancel, 'click', async () => {
        cancel.disabled = true;
        const resp = await del(`/v1/streams/${encodeURIComponent(s.id)}`);
        if (!resp.ok) fill(problem, problemBox(resp, 'The stream could not be cancelled'));
        else announce(`Stream ${s.id} cancelled.`);
        refresh();
      });
      const failuresButton = h('button', { type: 'button', class: 'small failures-button' }, 'Failures');
      failuresButton.setAttribute('aria-label', `Failures of stream ${s.id}`);
      on(failuresButton, 'click', () => showFailures(failures, s.id));
      cells.actions.append(cancel, ' ', failuresButton);
      r = { tr: h('tr', { 'data-stream': s.id }, Object.values(cells)), cells, cancel };
      rows.set(s.id, r);
    }
    const c = r.cells;
    c.state.textContent = s.state;
    c.state.className = `state state-${s.state}`;
    c.record_count.textContent = s.record_count.toLocaleString();
    c.pages_fetched.textContent = s.pages_fetched.toLocaleString();
    c.failed_deliveries.textContent = s.failed_deliveries.toLocaleString();
    fill(c.finished_at, when(s.finished_at));
    c.error.textContent = s.error ?? '';
    r.cancel.hidden = s.state !== 'running';
    return r.tr;
  };

  let timer = null;
  let stopped = false;
  const refresh = async () => {
    const resp = await get('/v1/streams?limit=50');
    if (stopped) return;
    if (!resp.ok) {
      fill(problem, problemBox(resp, 'The streams could not be read'));
      return;
    }
    fill(problem);
    const streams = resp.body.streams;
    const trs = streams.map(row);
    // Rows are kept (not rebuilt) so that focus stays on a button across refreshes.
    trs.forEach((tr, i) => {
      if (body.children[i] !== tr) body.insertBefore(tr, body.children[i] ?? null);
    });
    while (body.children.length > trs.length) body.lastElementChild.remove();
    const running = streams.filter((s) => s.state === 'running').length;
    status.textContent = streams.length
      ? `${streams.length} stream${streams.length === 1 ? '' : 's'}, ${running} running; refreshed ${new Date().toLocaleTimeString()}.`
      : 'No stream yet.';
  };
  const tick = async () => {
    await refresh();
    if (!stopped) timer = setTimeout(tick, REFRESH_MS);
  };
  await tick();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

async function showFailures(section, id) {
  fill(section, h('p', { class: 'busy' }, 'Loading failures\u2026'));
  const resp = await get(`/v1/streams/${encodeURIComponent(id)}/failures`);
  if (!resp.ok) {
    fill(section, problemBox(resp, 'The failures could not be read'));
    return;
  }
  const list = resp.body.failures;
  fill(section,
    h('h3', { tabindex: '-1', id: 'failures-title' }, `Failures of ${id}`),
    list.length
      ? h('table', { class: 'failures' },
        h('caption', {}, 'Records the helper flow refused'),
        h('thead', {}, h('tr', {}, ['Record', 'Webhook id', 'Status', 'Error', 'Answer', 'Attempts', 'Failed at']
          .map((c) => h('th', { scope: 'col' }, c)))),
        h('tbody', {}, list.map((f) => h('tr', {},
          h('th', { scope: 'row' }, String(f.index)),
          h('td', {}, h('code', {}, f.webhook_id)),
          h('td', {}, show(f.status)),
          h('td', {}, f.error),
          h('td', {}, f.body ? h('pre', {}, h('code', {}, f.body)) : '\u2014'),
          h('td', {}, String(f.attempts)),
          h('td', {}, when(f.failed_at))))))
      : h('p', {}, 'No failed delivery.'),
    resp.body.next_after !== null ? h('p', { class: 'help' }, 'Showing the first page of failures.') : null);
  section.querySelector('h3')?.focus();
}
