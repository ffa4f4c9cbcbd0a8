// The catalog: every card grouped by category, filtered by a search over ids, titles and
// descriptions.

import { get, problemBox } from './api.js';
import { h, fill, announce, slug } from './dom.js';

let query = '';

export function effectBadge(effect) {
  return h('span', { class: `badge effect-${slug(effect)}` }, effect);
}

export async function catalogView(main) {
  const search = h('input', {
    id: 'card-search', type: 'search', autocomplete: 'off', spellcheck: 'false',
    'aria-describedby': 'card-count', 'aria-controls': 'card-groups',
  });
  search.value = query;
  const count = h('p', { id: 'card-count', class: 'count' });
  const groups = h('div', { id: 'card-groups' });
  main.append(
    h('h2', { tabindex: '-1' }, 'Catalog'),
    h('div', { class: 'search' },
      h('label', { for: 'card-search' }, 'Search titles and descriptions'), search),
    count,
    groups,
  );
  const r = await get('/v1/cards');
  if (!r.ok) {
    groups.append(problemBox(r, 'The catalog could not be read'));
    return;
  }
  const cards = r.body.cards;
  const render = () => {
    const words = query.toLowerCase().split(/\s+/).filter(Boolean);
    const shown = cards.filter((c) => {
      const text = `${c.id} ${c.title} ${c.description}`.toLowerCase();
      return words.every((w) => text.includes(w));
    });
    const byCategory = new Map();
    for (const c of shown) {
      if (!byCategory.has(c.category)) byCategory.set(c.category, []);
      byCategory.get(c.category).push(c);
    }
    const categories = [...byCategory.keys()].sort((a, b) => a.localeCompare(b));
    fill(groups, categories.map((cat) => {
      const headingId = `cat-${slug(cat)}`;
      return h('section', { class: 'category', 'aria-labelledby': headingId },
        h('h3', { id: headingId }, cat),
        h('ul', { class: 'cards' }, byCategory.get(cat)
          .sort((a, b) => a.title.localeCompare(b.title))
          .map((c) => h('li', { class: 'card', 'data-card': c.id },
            h('div', { class: 'card-head' },
              h('a', { href: `#/cards/${encodeURIComponent(c.id)}`, class: 'card-title' }, c.title),
              effectBadge(c.effect),
              c.returns_secrets ? h('span', { class: 'badge secret' }, 'secrets') : null,
              c.result_sets.length ? h('span', { class: 'badge list' }, 'list') : null),
            h('p', { class: 'card-description' }, c.description)))));
    }));
    const text = words.length
      ? `${shown.length} of ${cards.length} cards match \u201c${query.trim()}\u201d`
      : `${cards.length} cards in ${categories.length} categories`;
    count.textContent = text;
    announce(text);
  };
  search.addEventListener('input', () => {
    query = search.value;
    render();
  });
  render();
  return null;
}
