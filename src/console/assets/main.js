// The console's entry point: the key form and the router (#/cards, #/cards/<id>, #/streams,
// #/connections). Each view draws into <main> and may return a function that stops it (the
// streams view polls).

import { apiKey } from './api.js';
import { catalogView } from './catalog.js';
import { cardView } from './card.js';
import { connectionsView } from './connections.js';
import { h, fill } from './dom.js';
import { streamsView } from './streams.js';

const main = document.getElementById('main');
let stop = null;
let generation = 0;

function showKeyState() {
  const set = Boolean(apiKey.get());
  document.getElementById('key-form').hidden = set;
  document.getElementById('key-set').hidden = !set;
}

function keyPrompt() {
  return h('section', { class: 'welcome', 'aria-labelledby': 'welcome-title' },
    h('h2', { id: 'welcome-title', tabindex: '-1' }, 'Paste an API key to start'),
    h('p', {}, 'The console calls the connector\u2019s API with one of its API keys '
      + '(KANDJI_CONNECTOR_API_KEYS; the demo prints one). Paste it in the API key field above.'),
    h('p', {}, 'The key stays in this browser tab only and is forgotten when the tab closes.'));
}

async function route() {
  if (stop) stop();
  stop = null;
  const mine = ++generation;
  const hash = location.hash.replace(/^#\/?/, '');
  const [section, ...rest] = hash.split('/');
  const name = section || 'cards';
  for (const a of document.querySelectorAll('nav a[data-section]')) {
    if (a.dataset.section === name) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  fill(main);
  if (!apiKey.get()) {
    main.append(keyPrompt());
    return;
  }
  let view;
  if (name === 'cards' && rest.length) view = cardView(main, decodeURIComponent(rest.join('/')));
  else if (name === 'streams') view = streamsView(main);
  else if (name === 'connections') view = connectionsView(main);
  else view = catalogView(main);
  const stopper = await view;
  if (mine !== generation) {
    if (typeof stopper === 'function') stopper();
    return;
  }
  if (typeof stopper === 'function') stop = stopper;
  main.querySelector('h2')?.focus({ preventScroll: true });
}

document.getElementById('key-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const input = document.getElementById('api-key');
  const key = input.value.trim();
  input.value = '';
  if (!key) return;
  apiKey.set(key);
  showKeyState();
  route();
});

document.getElementById('forget-key').addEventListener('click', () => {
  apiKey.clear();
  showKeyState();
  route();
  document.getElementById('api-key').focus();
});

window.addEventListener('hashchange', route);
showKeyState();
route();
