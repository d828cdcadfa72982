// The console's shell: sign-in, the hash router and the polling loop.
import * as api from './api.js';
import { h, clear, errorBox } from './dom.js';
import * as packages from './packages.js';
import * as policies from './policies.js';
import * as fleet from './fleet.js';

const main = document.getElementById('main');
const nav = document.getElementById('nav');
const POLL_MS = 5000;          // a gentle rate; 304s cost the server little
let pollTimer = null;
let current = null;            // {refresh, leave} of the view on screen
let shown = 0;                 // counts show() calls: a view whose show was overtaken is dropped

const ROUTES = [
  [/^packages$/, packages.list],
  [/^packages\/upload$/, packages.uploadForm],
  [/^packages\/([^/]+)\/([^/]+)$/, packages.version],
  [/^policies$/, policies.list],
  [/^policies\/new$/, policies.edit],
  [/^policies\/([^/]+)\/edit$/, policies.edit],
  [/^policies\/([^/]+)$/, policies.rollout],
  [/^fleet$/, fleet.list],
  [/^fleet\/([^/]+)$/, fleet.node],
];

function parseHash() {
  const raw = location.hash.replace(/^#\/?/, '');
  const [path, query = ''] = raw.split('?');
  return { path: path || 'fleet', params: new URLSearchParams(query) };
}

function setNav(path) {
  for (const a of nav.querySelectorAll('a[data-section]')) {
    if (path.startsWith(a.dataset.section)) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

function leaveView() {
  stopPolling();
  if (current && current.leave) current.leave();
  current = null;
}

async function show() {
  const mine = ++shown;
  const hash = location.hash;
  leaveView();
  if (!api.signedIn()) return showSignIn();
  document.body.classList.remove('signed-out');
  const { path, params } = parseHash();
  setNav(path);
  clear(main);
  for (const [pattern, view] of ROUTES) {
    const m = path.match(pattern);
    if (!m) continue;
    const args = m.slice(1).map(decodeURIComponent);
    // the view's own container: what it adds after an await, once a newer
    // show() has cleared main, goes nowhere
    const root = h('div', { class: 'view' });
    main.append(root);
    let shownView = null;
    try {
      shownView = await view(root, args, params) || null;
    } catch (err) {
      clear(root).append(errorBox(err));
    }
    // another hash change (or a sign-out) came while this view loaded: the
    // newer show() owns main and the polling
    if (mine !== shown) {
      if (shownView && shownView.leave) shownView.leave();
      return;
    }
    current = shownView;
    const heading = main.querySelector('h1');
    if (heading) { heading.tabIndex = -1; heading.focus({ preventScroll: true }); document.title = heading.textContent + ' · pkgstore'; }
    main.dataset.shown = hash; // the page for this hash is complete (tests wait for it)
    startPolling();
    return;
  }
  main.append(h('h1', null, 'Not found'), h('p', null, 'No such page. ', h('a', { href: '#/fleet' }, 'Go to the fleet')));
  main.dataset.shown = hash;
}

// One polling loop, for the view on screen: a tick that finds another view
// (it was replaced while a refresh was in flight) ends its loop.
function startPolling() {
  if (!current || !current.refresh) return;
  const view = current;
  const tick = async () => {
    if (current !== view) return;
    if (document.visibilityState === 'visible') {
      try { await view.refresh(); } catch (err) { if (err.status !== 401) console.warn('refresh:', err.message); }
    }
    if (current === view) pollTimer = setTimeout(tick, POLL_MS);
  };
  pollTimer = setTimeout(tick, POLL_MS);
}

function stopPolling() {
  if (pollTimer) clearTimeout(pollTimer);
  pollTimer = null;
}

function showSignIn(message) {
  shown++;
  leaveView();
  document.body.classList.add('signed-out');
  setNav('');
  clear(main);
  const token = h('input', { id: 'token', name: 'token', type: 'password', autocomplete: 'current-password', required: true, spellcheck: 'false' });
  const status = h('p', { class: 'form-status', role: 'status', 'aria-live': 'polite' }, message || '');
  const button = h('button', { type: 'submit', class: 'primary' }, 'Sign in');
  const form = h('form', { class: 'signin card', id: 'signin' },
    h('h1', null, 'Sign in'),
    h('p', null, 'Paste the admin token (the file STORE.admin-token pkgstored writes on its first start). It is exchanged for a session and is not kept by this page.'),
    h('label', { for: 'token' }, 'Admin token'), token, button, status);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    button.disabled = true;
    status.textContent = 'Signing in…';
    try {
      await api.signIn(token.value.trim());
      token.value = '';
      if (!location.hash || location.hash === '#/signin') location.hash = '#/fleet';
      else show();
    } catch (err) {
      status.textContent = '';
      status.append(errorBox(err));
    } finally {
      button.disabled = false;
    }
  });
  main.append(form);
  token.focus();
}

document.getElementById('signout').addEventListener('click', async () => {
  stopPolling();
  try { await api.signOut(); } catch (err) { console.warn('sign-out:', err.message); }
  showSignIn('Signed out.');
});

// "Skip to content" moves the focus: following its #main would route to a
// page named "main", which does not exist.
document.querySelector('a.skip').addEventListener('click', (e) => {
  e.preventDefault();
  main.focus();
});

api.onUnauthorized(() => showSignIn('Your session has ended; sign in again.'));
window.addEventListener('hashchange', () => show());
document.addEventListener('visibilitychange', () => {
  if (document.visibilityState === 'visible' && current && current.refresh) current.refresh().catch(() => {});
});

(async () => {
  try {
    await api.resume();
  } catch (err) {
    clear(main).append(errorBox(err));
    return;
  }
  show();
})();
