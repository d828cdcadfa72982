// DOM helpers. Every value is added as a text node or an attribute set
// with setAttribute: nothing from the server is ever parsed as HTML.

export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') el.addEventListener(key.slice(2), value);
    else if (key === 'class') el.className = value;
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  add(el, children);
  return el;
}

export function add(el, children) {
  for (const child of [children].flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

// A link inside the console: each path segment is percent-encoded.
export function link(text, ...segments) {
  return h('a', { href: route(...segments) }, text);
}

export function route(...segments) {
  return '#/' + segments.map((s) => encodeURIComponent(String(s))).join('/');
}

const dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });

// An RFC 3339 time in the browser's zone, the original in a <time>.
export function when(iso) {
  if (!iso) return h('span', { class: 'muted' }, 'never');
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return String(iso);
  return h('time', { datetime: iso, title: iso }, dateFormat.format(date));
}

export function bytes(n) {
  if (typeof n !== 'number') return '';
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : String(n)) + ' ' + units[i];
}

// A state as a badge; the class is chosen from a fixed list, never taken
// from the value.
const STATE_CLASS = {
  Upgraded: 'good', Running: 'good', done: 'good',
  UpgradeFailed: 'bad', RolledBack: 'bad', RollbackFailed: 'bad', Incompatible: 'bad', aborted: 'bad',
  paused: 'warn', Pending: 'idle', Unknown: 'idle',
  valid: 'good', signed: 'good', 'bad signature': 'bad', malformed: 'bad', revoked: 'bad',
  'unknown key': 'warn', 'below threshold': 'warn', unchecked: 'idle',
};
export function badge(state) {
  const cls = STATE_CLASS[state] || 'busy';
  return h('span', { class: 'badge ' + cls }, state == null ? '—' : String(state));
}

export function emptyState(text, ...next) {
  return h('div', { class: 'empty', role: 'status' }, h('p', null, text), next.length ? h('p', null, ...next) : null);
}

export function errorBox(err) {
  const code = err && err.code ? err.code + ': ' : '';
  return h('div', { class: 'error', role: 'alert' }, code + (err && err.message ? err.message : String(err)));
}

export function copyButton(value, label) {
  const button = h('button', { type: 'button', class: 'small', 'aria-label': label || 'Copy ' + value }, 'Copy');
  button.addEventListener('click', async () => {
    try {
      await navigator.clipboard.writeText(value);
      button.textContent = 'Copied';
    } catch {
      button.textContent = 'Select and copy';
    }
    setTimeout(() => { button.textContent = 'Copy'; }, 1500);
  });
  return button;
}

// A modal confirmation built on <dialog>; resolves true or false.
export function confirmAction(title, text, action) {
  return new Promise((resolve) => {
    const dialog = h('dialog', { class: 'confirm', 'aria-labelledby': 'confirm-title' },
      h('h2', { id: 'confirm-title' }, title), h('p', null, text));
    const no = h('button', { type: 'button' }, 'Cancel');
    const yes = h('button', { type: 'button', class: 'primary danger' }, action);
    dialog.append(h('div', { class: 'actions' }, no, yes));
    const done = (answer) => { dialog.close(); dialog.remove(); resolve(answer); };
    no.addEventListener('click', () => done(false));
    yes.addEventListener('click', () => done(true));
    dialog.addEventListener('cancel', (e) => { e.preventDefault(); done(false); });
    document.body.append(dialog);
    dialog.showModal();
    no.focus();
  });
}
