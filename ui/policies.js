// Policies: the list, the editor with a live selector check, the rollout view.
import * as api from './api.js';
import { h, add, clear, link, when, badge, emptyState, errorBox, confirmAction } from './dom.js';

const PATH = (name) => `/v1/policies/${api.seg(name)}`;

export async function list(main) {
  main.append(h('div', { class: 'title' }, h('h1', null, 'Policies'),
    h('a', { class: 'button primary', href: '#/policies/new' }, 'New policy')));
  const body = h('div');
  main.append(body);
  const render = (data) => {
    const policies = data.policies || [];
    if (!policies.length) {
      clear(body).append(emptyState('No policies yet.', 'Upload a package, then ', link('create a policy', 'policies', 'new'), ' to roll it out to the nodes its selector matches.'));
      return;
    }
    clear(body).append(h('div', { class: 'scroll' }, h('table', null,
      h('thead', null, h('tr', null, ['Name', 'Selector', 'Package', 'Priority', 'Nodes', 'Upgraded', 'Failed'].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', null, policies.map((p) => {
        const c = (p.status && p.status.counts) || {};
        return h('tr', null,
          h('th', { scope: 'row' }, link(p.name, 'policies', p.name)),
          h('td', null, h('code', null, p.selector || '(every node)')),
          h('td', null, link(`${p.package} ${p.version}`, 'packages', p.package, p.version)),
          h('td', { class: 'num' }, p.priority),
          h('td', { class: 'num' }, p.status ? p.status.nodes_total : ''),
          h('td', { class: 'num' }, c.Upgraded || 0),
          h('td', { class: 'num' }, (c.UpgradeFailed || 0) + (c.RolledBack || 0) + (c.RollbackFailed || 0)));
      })))));
  };
  render(await api.get('/v1/policies'));
  return {
    async refresh() {
      const { data, changed } = await api.request('GET', '/v1/policies');
      if (changed) render(data);
    },
  };
}

// The selector is checked by the server: GET /v1/agents?selector=S&limit=1
// answers 400 with the position of the error, or the number of matches.
function selectorChecker(input, output) {
  let timer = null;
  let seq = 0;
  const check = async () => {
    const mine = ++seq;
    const value = input.value.trim();
    try {
      const data = await api.get('/v1/agents' + api.q({ selector: value, limit: 1 }));
      if (mine !== seq) return;
      input.removeAttribute('aria-invalid');
      output.className = 'hint good';
      output.textContent = `matches ${data.total} node${data.total === 1 ? '' : 's'}`;
    } catch (err) {
      if (mine !== seq) return;
      input.setAttribute('aria-invalid', 'true');
      output.className = 'hint bad';
      output.textContent = err.message;
    }
  };
  input.addEventListener('input', () => { clearTimeout(timer); timer = setTimeout(check, 250); });
  check();
}

function parseBatches(text) {
  const parts = text.split(',').map((s) => s.trim()).filter(Boolean);
  return parts.map((p) => (/^\d+$/.test(p) ? Number(p) : p));
}

export async function edit(main, [name]) {
  const existing = name ? await api.get(PATH(name) + '?nodes=0') : null;
  const packagesData = await api.get('/v1/packages');
  main.append(h('p', { class: 'crumbs' }, link('Policies', 'policies'), ' / ', name || 'new'),
    h('h1', null, name ? `Edit ${name}` : 'New policy'));
  const pkgs = packagesData.packages || [];
  if (!pkgs.length) {
    main.append(emptyState('There is no package to target yet.', link('Upload one', 'packages', 'upload'), ' first.'));
    return null;
  }
  const field = (id, label, input, hint) => h('div', { class: 'field' }, h('label', { for: id }, label), input, hint || null);
  const nameInput = h('input', { id: 'pol-name', required: true, pattern: '[A-Za-z0-9][A-Za-z0-9._\\-]*', autocomplete: 'off', value: name || '', readonly: name ? true : null });
  const selector = h('input', { id: 'pol-selector', autocomplete: 'off', spellcheck: 'false', value: existing ? existing.selector : '', placeholder: 'env=prod,canary=true', 'aria-describedby': 'pol-selector-check' });
  const check = h('output', { id: 'pol-selector-check', class: 'hint', for: 'pol-selector', 'aria-live': 'polite' });
  const pkg = h('select', { id: 'pol-package' }, pkgs.map((p) => h('option', { value: p.name }, p.name)));
  const ver = h('select', { id: 'pol-version' });
  const fillVersions = (selected) => {
    const p = pkgs.find((x) => x.name === pkg.value) || pkgs[0];
    clear(ver).append(...p.versions.slice().reverse().map((v) => h('option', { value: v }, v)));
    if (selected && p.versions.includes(selected)) ver.value = selected;
  };
  if (existing) pkg.value = existing.package;
  fillVersions(existing && existing.version);
  pkg.addEventListener('change', () => fillVersions());
  const priority = h('input', { id: 'pol-priority', type: 'number', step: 1, value: existing ? existing.priority : 0 });
  const strategy = (existing && existing.strategy) || {};
  const batches = h('input', { id: 'pol-batches', autocomplete: 'off', value: (strategy.batches || ['100%']).join(', '), 'aria-describedby': 'pol-batches-hint' });
  const soak = h('input', { id: 'pol-soak', type: 'number', min: 0, value: strategy.soak_s || 0 });
  const maxFailures = h('input', { id: 'pol-maxfail', autocomplete: 'off', value: strategy.max_failures == null ? '' : strategy.max_failures, placeholder: 'e.g. 10% or 2' });
  const status = h('div', { id: 'pol-status', 'aria-live': 'polite' });
  const submit = h('button', { type: 'submit', class: 'primary', id: 'pol-save' }, name ? 'Save' : 'Create');
  const form = h('form', { class: 'card grid', id: 'policy-form', novalidate: true },
    field('pol-name', 'Name', nameInput),
    h('div', { class: 'field wide' }, h('label', { for: 'pol-selector' }, 'Selector'), selector, check),
    field('pol-package', 'Package', pkg), field('pol-version', 'Version', ver),
    field('pol-priority', 'Priority', priority),
    field('pol-batches', 'Batches', batches, h('small', { id: 'pol-batches-hint' }, 'Comma-separated node counts or percentages, e.g. 1, 25%, 100%.')),
    field('pol-soak', 'Soak (seconds)', soak), field('pol-maxfail', 'Failures tolerated per batch', maxFailures),
    h('div', { class: 'wide' }, submit), h('div', { class: 'wide' }, status));
  selectorChecker(selector, check);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clear(status);
    if (!nameInput.value.trim()) { status.append(errorBox({ message: 'Give the policy a name.' })); nameInput.focus(); return; }
    const mf = maxFailures.value.trim();
    const body = {
      selector: selector.value.trim(), package: pkg.value, version: ver.value,
      priority: Number(priority.value) || 0,
      strategy: { ...(existing && existing.strategy ? existing.strategy : {}), batches: parseBatches(batches.value), soak_s: Number(soak.value) || 0, max_failures: mf === '' ? null : (/^\d+$/.test(mf) ? Number(mf) : mf) },
    };
    if (existing && existing.config) body.config = existing.config;
    submit.disabled = true;
    try {
      const saved = await api.put(PATH(nameInput.value.trim()), body);
      location.hash = '#/policies/' + encodeURIComponent(saved.name);
    } catch (err) {
      status.append(errorBox(err));
    } finally {
      submit.disabled = false;
    }
  });
  main.append(form);
  return null;
}

function batchBar(b, failures) {
  const total = b.nodes || b.planned_nodes || 0;
  const rolledBack = failures.filter((f) => f.batch === b.batch && f.status === 'RolledBack').length;
  const failed = Math.max(0, (b.failed || 0) - rolledBack);
  const parts = [['upgraded', b.done || 0], ['active', b.active || 0], ['failed', failed], ['rolledback', rolledBack]];
  const bar = h('div', { class: 'bar', role: 'img', 'aria-label': `batch ${b.batch}: ${parts.map(([k, n]) => `${n} ${k}`).join(', ')} of ${total}` });
  for (const [kind, n] of parts) {
    if (!n || !total) continue;
    const seg = h('span', { class: 'seg ' + kind, title: `${n} ${kind}` });
    seg.style.width = (100 * n / total).toFixed(2) + '%'; // CSSOM, allowed by style-src 'self'
    bar.append(seg);
  }
  return h('li', { class: 'batch', 'data-state': b.state },
    h('div', { class: 'batch-head' }, h('strong', null, `Batch ${b.batch}`), ` (${b.size}) `, badge(b.state),
      h('span', { class: 'muted' }, b.nodes != null
        ? ` ${b.done || 0} upgraded, ${b.active || 0} in progress, ${failed} failed, ${rolledBack} rolled back, ${b.pending || 0} pending of ${b.nodes}`
        : ` about ${b.planned_nodes ?? '?'} nodes`)),
    bar);
}

export async function rollout(main, [name]) {
  const header = h('div');
  const body = h('div');
  main.append(h('p', { class: 'crumbs' }, link('Policies', 'policies'), ' / ', name), header, body);
  const act = async (action, text, payload) => {
    if (!await confirmAction(`${action[0].toUpperCase()}${action.slice(1)} the rollout of ${name}?`, text, action)) return;
    try {
      await api.post(`${PATH(name)}/${action}`, payload);
      await refresh(true);
    } catch (err) {
      body.prepend(errorBox(err));
    }
  };
  const render = (p, audit) => {
    const r = (p.status && p.status.rollout) || null;
    const c = (p.status && p.status.counts) || {};
    clear(header).append(h('div', { class: 'title' }, h('h1', null, `Policy ${p.name}`),
      h('a', { class: 'button', href: `#/policies/${encodeURIComponent(p.name)}/edit` }, 'Edit')),
    h('dl', { class: 'facts' },
      h('dt', null, 'Selector'), h('dd', null, h('code', null, p.selector || '(every node)')),
      h('dt', null, 'Package'), h('dd', null, link(`${p.package} ${p.version}`, 'packages', p.package, p.version)),
      h('dt', null, 'Nodes'), h('dd', null, `${p.status ? p.status.nodes_total : 0} governed, ${p.status ? p.status.nodes_matching : 0} matching — `,
        h('a', { href: '#/fleet?policy=' + encodeURIComponent(p.name) }, 'see them in the fleet')),
      h('dt', null, 'Updated'), h('dd', null, when(p.updated))));
    clear(body);
    const section = h('section', { class: 'card rollout', id: 'rollout' }, h('h2', null, 'Rollout'));
    body.append(section);
    if (!r) {
      section.append(h('p', null, 'No rollout is recorded for this policy yet.'));
    } else {
      add(section, [
        h('p', { class: 'rollout-state' }, 'State ', badge(r.state), r.version ? ` · version ${r.version}` : '',
          r.previous_version ? ` · previous ${r.previous_version}` : '', r.batch ? ` · batch ${r.batch} of ${r.batch_count}` : '',
          r.since ? [' · since ', when(r.since)] : ''),
        r.reason ? h('p', { class: 'reason warn-box', id: 'rollout-reason' }, (r.paused_by_threshold ? 'Paused automatically: ' : 'Reason: '), r.reason) : null,
      ]);
      const actions = h('div', { class: 'actions' });
      if (['running', 'soaking', 'starting'].includes(r.state)) actions.append(h('button', { type: 'button', onclick: () => act('pause', 'No further batch starts until it is resumed; nodes already offered the version keep it.') }, 'Pause'));
      if (r.state === 'paused') actions.append(h('button', { type: 'button', onclick: () => act('resume', 'The rollout continues from its current batch.') }, 'Resume'));
      if (!['done', 'aborted'].includes(r.state)) {
        actions.append(h('button', { type: 'button', class: 'danger', onclick: () => act('abort', 'No node is offered the version any more.') }, 'Abort'));
        if (r.previous_version) actions.append(h('button', { type: 'button', class: 'danger', onclick: () => act('abort', `The nodes that moved go back to ${r.previous_version}.`, { revert: true }) }, 'Abort and revert'));
      }
      section.append(actions);
      section.append(h('ol', { class: 'batches' }, (r.batches || []).map((b) => batchBar(b, r.failures || []))));
      if ((r.failures || []).length) {
        section.append(h('h3', null, 'Failed nodes'), h('ul', { class: 'plain failures' }, r.failures.map((f) =>
          h('li', null, link(f.node, 'fleet', f.node), ' ', badge(f.status), ` batch ${f.batch}: `, f.message || ''))));
      }
    }
    body.append(h('section', { class: 'card' }, h('h2', null, 'Node states'), h('ul', { class: 'counts' },
      Object.entries(c).filter(([, n]) => n).map(([state, n]) => h('li', null, badge(state), ` ${n}`)))));
    const entries = (audit && audit.entries) || [];
    body.append(h('section', { class: 'card' }, h('h2', null, 'Audit log'), entries.length
      ? h('ol', { class: 'timeline' }, entries.slice().reverse().map((e) => h('li', null, when(e.time), ' ', h('strong', null, e.action), ` ${e.version || ''} `, e.state ? badge(e.state) : '', e.reason ? h('div', { class: 'muted' }, e.reason) : null, h('div', { class: 'muted small' }, e.who))))
      : h('p', { class: 'muted' }, 'No entries yet.')));
  };
  let last = null;
  const refresh = async (force) => {
    const [p, audit] = await Promise.all([
      api.request('GET', PATH(name) + '?nodes=0'),
      api.request('GET', '/v1/audit' + api.q({ policy: name, limit: 50 })),
    ]);
    if (force || p.changed || audit.changed || !last) render(p.data, audit.data);
    last = p.data;
  };
  await refresh(true);
  return { refresh: () => refresh(false) };
}
