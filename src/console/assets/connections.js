// Connections: the registered Kandji tenants with each one's budget and inventory state, and a
// form to add one (the token is sent once and never shown again).

import { get, post, fieldErrors, problemBox } from './api.js';
import { h, fill, on, announce, when } from './dom.js';
import { field } from './schema.js';

function inventoryText(inv) {
  if (!inv) return 'off';
  const parts = [`${inv.state}, ${inv.devices.toLocaleString()} devices`];
  if (inv.current_sync) parts.push(`syncing: ${inv.current_sync.devices.toLocaleString()} read`);
  if (inv.last_sync) parts.push(`last sync ${inv.last_sync.duration_ms.toLocaleString()} ms, ${inv.last_sync.kandji_calls} Kandji calls`);
  if (!inv.kandji_available) parts.push('Kandji unavailable');
  if (inv.last_error) parts.push(`error: ${inv.last_error}`);
  return parts.join('; ');
}

export async function connectionsView(main) {
  const list = h('div', { id: 'connection-list' });
  const status = h('div', { 'aria-live': 'polite' });
  main.append(h('h2', { tabindex: '-1' }, 'Connections'), list, addForm(status, () => load(list)), status);
  await load(list);
  return null;
}

async function load(list) {
  const r = await get('/v1/connections');
  if (!r.ok) {
    fill(list, problemBox(r, 'The connections could not be read'),
      r.status === 403 ? h('p', {}, 'Connections are managed with a key that has the admin scope.') : null);
    return;
  }
  const conns = r.body.connections;
  if (!conns.length) {
    fill(list, h('p', {}, 'No connection yet: add one below.'));
    return;
  }
  const details = await Promise.all(conns.map((c) => get(`/v1/connections/${encodeURIComponent(c.id)}`)));
  fill(list, h('table', { class: 'connections', id: 'connections' },
    h('caption', {}, 'Kandji tenants'),
    h('thead', {}, h('tr', {}, ['Name', 'Id', 'API URL', 'Budget this hour', 'Inventory', 'Created']
      .map((c) => h('th', { scope: 'col' }, c)))),
    h('tbody', {}, conns.map((c, i) => {
      const d = details[i].ok ? details[i].body : null;
      const b = d?.budget;
      return h('tr', { 'data-connection': c.id },
        h('th', { scope: 'row' }, c.name),
        h('td', {}, h('code', {}, c.id)),
        h('td', {}, c.api_url),
        h('td', {}, b
          ? `${b.remaining_this_hour.toLocaleString()} of ${b.requests_per_hour.toLocaleString()} left (${b.used_last_hour.toLocaleString()} used)`
          : '\u2014'),
        h('td', {}, inventoryText(d?.inventory)),
        h('td', {}, when(c.created_at)));
    }))));
}

function addForm(status, reload) {
  const fields = {
    name: field('conn', 'name', { title: 'Name', type: 'string', description: 'A name for this tenant.' }, true),
    api_url: field('conn', 'api_url', {
      title: 'API URL', type: 'string',
      description: 'The tenant\u2019s API address, e.g. https://accuhive.api.kandji.io, or just the tenant\u2019s name.',
    }, true),
    api_token: field('conn', 'api_token', {
      title: 'API token', type: 'string',
      description: 'A Kandji API token with at least the Device list permission. Stored encrypted, never shown again.',
    }, true),
    requests_per_hour: field('conn', 'requests_per_hour', {
      title: 'Requests per hour', type: 'integer',
      description: 'Optional cap on this connection\u2019s requests to Kandji (empty: 10,000, Kandji\u2019s limit).',
    }, false),
    inventory_sync: field('conn', 'inventory_sync', {
      title: 'Inventory sync', type: 'boolean',
      description: 'Keep a device inventory for device-trust lookups.',
    }, false),
  };
  fields.api_token.control.setAttribute('type', 'password');
  const form = h('form', { id: 'connection-form', novalidate: true, autocomplete: 'off' },
    h('fieldset', {}, h('legend', {}, 'Add a connection'),
      Object.values(fields).map((f) => f.el),
      h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Add connection'),
        h('span', { class: 'help' }, 'The connector checks the URL and token with one read (GET /api/v1/devices?limit=1) before saving.'))));
  on(form, 'submit', async (e) => {
    e.preventDefault();
    const body = {};
    let bad = false;
    for (const [name, f] of Object.entries(fields)) {
      f.setError([]);
      const { value, error } = f.read();
      if (error) {
        f.setError([error]);
        bad = true;
      } else if (value !== undefined) {
        body[name] = value;
      }
    }
    if (bad) return;
    fill(status, h('p', { class: 'busy' }, 'Checking with Kandji\u2026'));
    const r = await post('/v1/connections', body);
    if (!r.ok) {
      const errors = fieldErrors(r);
      for (const [name, f] of Object.entries(fields)) f.setError(errors.get(name) ?? []);
      fill(status, problemBox(r, 'The connection was not added'));
      return;
    }
    for (const f of Object.values(fields)) {
      f.control.value = '';
    }
    fill(status, h('p', { class: 'good', role: 'status' }, 'Added ', h('strong', {}, r.body.name), ' (', h('code', {}, r.body.id), ').'));
    announce(`Connection ${r.body.name} added.`);
    await reload();
  });
  return form;
}
