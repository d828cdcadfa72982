// Fleet: the server-paged node table and a node's page.
import * as api from './api.js';
import { h, clear, link, when, badge, emptyState, errorBox } from './dom.js';

const PAGE = 50;
const STATES = ['', 'Pending', 'Downloading', 'Verifying', 'Validating', 'Swapping', 'Monitoring', 'Upgraded',
  'UpgradeFailed', 'RolledBack', 'RollbackFailed', 'Incompatible', 'Unknown'];

function primary(node) {
  return (node.packages || []).find((p) => p.type === 'primary') || null; // what ?version= filters on
}

export async function list(main, _args, params) {
  const filters = {
    selector: params.get('selector') || '', policy: params.get('policy') || '', state: params.get('state') || '',
    package: params.get('package') || '', version: params.get('version') || '', status: params.get('status') || '',
  };
  const cursors = [''];   // the `after` of each page seen, for Previous
  let page = 0;
  main.append(h('h1', null, 'Fleet'));
  const field = (id, label, input) => h('div', { class: 'field' }, h('label', { for: id }, label), input);
  const selector = h('input', { id: 'f-selector', name: 'selector', value: filters.selector, placeholder: 'env=prod', autocomplete: 'off', spellcheck: 'false' });
  const policy = h('input', { id: 'f-policy', name: 'policy', value: filters.policy, autocomplete: 'off' });
  const state = h('select', { id: 'f-state', name: 'state' }, STATES.map((s) => h('option', { value: s }, s || 'any')));
  state.value = filters.state;
  const pkg = h('input', { id: 'f-package', name: 'package', value: filters.package, autocomplete: 'off', placeholder: 'the primary' });
  const version = h('input', { id: 'f-version', name: 'version', value: filters.version, autocomplete: 'off' });
  const status = h('select', { id: 'f-status', name: 'status' }, STATES.map((s) => h('option', { value: s }, s || 'any')));
  status.value = filters.status;
  const form = h('form', { class: 'filters', id: 'fleet-filters', role: 'search' },
    field('f-selector', 'Selector', selector), field('f-policy', 'Policy', policy), field('f-state', 'Rollout state', state),
    field('f-package', 'Package', pkg), field('f-version', 'Version', version), field('f-status', 'Last status', status),
    h('button', { type: 'submit', class: 'primary' }, 'Filter'));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const usp = new URLSearchParams();
    for (const [k, el] of Object.entries({ selector, policy, state, package: pkg, version, status })) if (el.value.trim()) usp.set(k, el.value.trim());
    const hash = '#/fleet' + (usp.toString() ? '?' + usp : '');
    if (location.hash === hash) location.reload(); else location.hash = hash;
  });
  const body = h('div', { id: 'fleet-body' });
  const pager = h('nav', { class: 'pager', 'aria-label': 'Pages' });
  main.append(form, body, pager);

  const path = () => '/v1/agents' + api.q({ limit: PAGE, after: cursors[page], ...filters });
  const render = (data) => {
    const nodes = data.nodes || [];
    clear(body);
    if (!data.total) {
      const any = Object.values(filters).some(Boolean);
      body.append(any ? emptyState('No node matches these filters.', 'Loosen the selector or clear the filters (', link('all nodes', 'fleet'), ').')
        : emptyState('No node has reported yet.', 'Start pkgstore-agent on a node with server.url pointing here; it appears after its first heartbeat.'));
    } else {
      body.append(h('p', { class: 'muted', id: 'fleet-total' }, `${data.total} node${data.total === 1 ? '' : 's'}; page ${page + 1}`),
        h('div', { class: 'scroll' }, h('table', { id: 'fleet-table' },
          h('thead', null, h('tr', null, ['Node', 'Labels', 'Platform', 'Version', 'Rollout', 'Last status', 'Last seen'].map((t) => h('th', { scope: 'col' }, t)))),
          h('tbody', null, nodes.map((n) => {
            const p = primary(n);
            return h('tr', { 'data-node': n.id },
              h('th', { scope: 'row' }, link(n.id, 'fleet', n.id)),
              h('td', null, Object.entries(n.labels || {}).map(([k, v]) => h('span', { class: 'label' }, `${k}=${v}`))),
              h('td', null, n.platform || ''),
              h('td', null, p ? p.version : ''),
              h('td', { class: 'rollout-state' }, n.rollout_state ? badge(n.rollout_state) : ''),
              h('td', null, n.last_status ? [badge(n.last_status.status), ' ', h('span', { class: 'msg' }, n.last_status.message || '')] : ''),
              h('td', null, when(n.last_seen)));
          })))));
    }
    clear(pager);
    const prev = h('button', { type: 'button', disabled: page === 0 }, 'Previous');
    const next = h('button', { type: 'button', disabled: !data.next }, 'Next');
    prev.addEventListener('click', () => { page--; load(); });
    next.addEventListener('click', () => { cursors[page + 1] = data.next; page++; load(); });
    pager.append(prev, next);
  };
  // Only the newest request renders: a poll of the old page answered after
  // Next or Previous must not paint it over the new one.
  let loads = 0;
  const load = async (onlyChanged) => {
    const mine = ++loads;
    try {
      const { data, changed } = await api.request('GET', path());
      if (mine === loads && (!onlyChanged || changed)) render(data);
    } catch (err) {
      if (mine === loads) clear(body).append(errorBox(err));
    }
  };
  await load(false);
  return { refresh: () => load(true) };
}

export async function node(main, [id]) {
  const path = `/v1/agents/${api.seg(id)}`;
  const body = h('div');
  main.append(h('p', { class: 'crumbs' }, link('Fleet', 'fleet'), ' / ', id), body);
  const render = (n) => {
    clear(body).append(h('h1', null, `Node ${n.id}`),
      h('section', { class: 'card' }, h('h2', null, 'Node'), h('dl', { class: 'facts' },
        h('dt', null, 'Platform'), h('dd', null, n.platform || ''),
        h('dt', null, 'Agent'), h('dd', null, n.agent_version || ''),
        h('dt', null, 'Last seen'), h('dd', null, when(n.last_seen)),
        h('dt', null, 'Labels'), h('dd', { id: 'node-labels' }, Object.keys(n.labels || {}).length
          ? Object.entries(n.labels).map(([k, v]) => h('span', { class: 'label' }, `${k}=${v}`)) : 'none'),
        n.trust ? [h('dt', null, 'Trust'), h('dd', null, `root ${n.trust.root_version}, revocations ${n.trust.revocations}${n.trust.behind ? ' (behind)' : ''}`)] : null)),
      h('section', { class: 'card' }, h('h2', null, 'Packages'), (n.packages || []).length
        ? h('div', { class: 'scroll' }, h('table', null,
          h('thead', null, h('tr', null, ['Package', 'Type', 'Version', 'State', 'Digest'].map((t) => h('th', { scope: 'col' }, t)))),
          h('tbody', null, n.packages.map((p) => h('tr', null, h('td', null, p.name), h('td', null, p.type),
            h('td', null, link(p.version, 'packages', p.name, p.version)), h('td', null, badge(p.state)), h('td', null, h('code', { class: 'digest' }, p.digest || '')))))))
        : h('p', { class: 'muted' }, 'No package reported.')),
      h('section', { class: 'card' }, h('h2', null, 'Rollouts'), (n.rollout || []).length
        ? h('ul', { class: 'plain' }, n.rollout.map((r) => h('li', null, link(r.policy, 'policies', r.policy), ` ${r.package} ${r.version} `, badge(r.state))))
        : h('p', { class: 'muted' }, 'No policy governs this node. Create one whose selector matches its labels.')),
      h('section', { class: 'card' }, h('h2', null, 'History'), (n.history || []).length
        ? h('ol', { class: 'timeline', id: 'node-history' }, n.history.slice().reverse().map((e) => h('li', null,
          when(e.time), ' ', badge(e.status), ` ${e.package || ''} ${e.version || ''}`, e.message ? h('div', { class: 'msg' }, e.message) : null)))
        : h('p', { class: 'muted' }, 'No status reported yet.')));
  };
  const load = async (onlyChanged) => {
    const { data, changed } = await api.request('GET', path);
    if (!onlyChanged || changed) render(data);
  };
  await load(false);
  return { refresh: () => load(true) };
}
