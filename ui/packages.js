// Packages: the list, a version's page and the upload form.
import * as api from './api.js';
import { h, add, clear, link, route, when, bytes, badge, emptyState, errorBox, copyButton } from './dom.js';

const MANIFESTS_MAX = 100; // manifests fetched for the list (the newest version of each package)

function summary(manifest) {
  const artifacts = manifest.artifacts || [];
  return {
    type: manifest.type,
    platforms: artifacts.map((a) => a.platform).join(', '),
    size: artifacts.reduce((sum, a) => sum + (a.size || 0), 0),
  };
}

export async function list(main) {
  main.append(h('div', { class: 'title' }, h('h1', null, 'Packages'),
    h('a', { class: 'button primary', href: '#/packages/upload' }, 'Upload')));
  const body = h('div');
  main.append(body);
  const render = async (data) => {
    const pkgs = data.packages || [];
    if (!pkgs.length) {
      clear(body).append(emptyState('No packages yet.', 'Upload one here (', link('Upload', 'packages', 'upload'), ') or use pkgstore-push.'));
      return;
    }
    const rows = await Promise.all(pkgs.slice(0, MANIFESTS_MAX).map(async (p) => {
      const newest = p.versions[p.versions.length - 1];
      let info = { type: '', platforms: '', size: null };
      try { info = summary(await api.get(`/v1/packages/${api.seg(p.name)}/${api.seg(newest)}`)); } catch { /* shown empty */ }
      return h('tr', null,
        h('th', { scope: 'row' }, link(p.name, 'packages', p.name, newest)),
        h('td', null, info.type),
        h('td', null, p.versions.slice().reverse().map((v, i) => [i ? ' ' : '', link(v, 'packages', p.name, v)])),
        h('td', null, info.platforms),
        h('td', { class: 'num' }, bytes(info.size)));
    }));
    clear(body).append(h('div', { class: 'scroll' }, h('table', null,
      h('caption', null, `${pkgs.length} package${pkgs.length === 1 ? '' : 's'}; type, platforms and size of the newest version`),
      h('thead', null, h('tr', null, ['Name', 'Type', 'Versions', 'Platforms', 'Size'].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', null, rows))));
  };
  await render(await api.get('/v1/packages'));
  return {
    async refresh() {
      const { data, changed } = await api.request('GET', '/v1/packages');
      if (changed) await render(data);
    },
  };
}

export async function version(main, [name, ver]) {
  const base = `/v1/packages/${api.seg(name)}/${api.seg(ver)}`;
  const [manifest, sigs, policiesData, running] = await Promise.all([
    api.get(base),
    api.get(base + '/signatures').catch(() => null),
    api.get('/v1/policies'),
    api.get('/v1/agents' + api.q({ package: name, version: ver, limit: 20 })),
  ]);
  main.append(h('p', { class: 'crumbs' }, link('Packages', 'packages'), ' / ', name),
    h('h1', null, `${name} ${ver}`));

  const facts = h('dl', { class: 'facts' },
    h('dt', null, 'Type'), h('dd', null, manifest.type),
    h('dt', null, 'Created'), h('dd', null, when(manifest.created)),
    h('dt', null, 'Dependencies'), h('dd', { id: 'pkg-deps' }, (manifest.dependencies || []).length
      ? h('ul', { class: 'plain' }, manifest.dependencies.map((d) => h('li', null, link(d.name, 'packages', d.name), ' ', h('code', null, d.version))))
      : 'none'));
  if (sigs && sigs.manifest) add(facts, [h('dt', null, 'Manifest digest'), h('dd', null, h('code', { class: 'digest' }, sigs.manifest), ' ', copyButton(sigs.manifest, 'Copy the manifest digest'))]);
  const annotations = Object.entries(manifest.annotations || {});
  if (annotations.length) add(facts, [h('dt', null, 'Annotations'), h('dd', null, h('ul', { class: 'plain' }, annotations.map(([k, v]) => h('li', null, h('code', null, k), ' = ', String(v)))))]);
  main.append(h('section', { class: 'card' }, h('h2', null, 'Summary'), facts));

  main.append(h('section', { class: 'card' }, h('h2', null, 'Artifacts'), h('div', { class: 'scroll' }, h('table', null,
    h('thead', null, h('tr', null, ['Platform', 'Format', 'Entrypoint', 'Size', 'SHA-256'].map((t) => h('th', { scope: 'col' }, t)))),
    h('tbody', null, (manifest.artifacts || []).map((a) => h('tr', null,
      h('td', null, a.platform), h('td', null, a.format), h('td', null, a.entrypoint || ''),
      h('td', { class: 'num' }, bytes(a.size)),
      h('td', null, h('code', { class: 'digest' }, a.digest), ' ', copyButton(a.digest, `Copy the digest of ${a.platform}`)))))))));

  const signatures = (sigs && sigs.signatures) || [];
  const check = (sigs && sigs.check) || {};
  const states = check.states || [];
  const verdict = check.root_version == null
    ? h('p', { id: 'sig-verdict' }, badge('unchecked'), ' The server holds no root: signatures are not checked here (each agent checks them against its own).')
    : h('p', { id: 'sig-verdict' }, check.revoked ? [badge('revoked'), ' '] : null, badge(check.signed ? 'signed' : 'below threshold'),
      ` ${check.valid} valid of the ${check.threshold} root version ${check.root_version} needs`,
      check.root_pinned ? ' (the root the server enforces).' : ' (the newest root the server holds; not pinned with --trust-root).',
      check.revoked ? ' A revocation of this version is published: agents refuse it however it is signed.' : '');
  main.append(h('section', { class: 'card', id: 'pkg-signatures' }, h('h2', null, 'Signatures'), signatures.length
    ? [verdict, h('ul', { class: 'plain' }, signatures.map((s, i) => h('li', null, badge(states[i] || 'unchecked'), ' key ',
      h('code', { class: 'digest' }, (s && s.keyid) || '?'))))]
    : [check.revoked ? h('p', null, badge('revoked'), ' A revocation of this version is published.') : null,
      emptyState('Not signed.', 'Sign it with pkgstore-push --sign-key or pkgstore-sign.')]));

  const refs = (policiesData.policies || []).filter((p) => p.package === name && p.version === ver);
  main.append(h('section', { class: 'card', id: 'pkg-policies' }, h('h2', null, 'Policies'), refs.length
    ? h('ul', { class: 'plain' }, refs.map((p) => h('li', null, link(p.name, 'policies', p.name),
      ` — selector "${p.selector}", ${p.status ? p.status.nodes_total : '?'} nodes governed`)))
    : emptyState('No policy targets this version.', link('Create a policy', 'policies', 'new'), ' to roll it out.')));
  const fleetLink = h('a', { href: '#/fleet' + api.q({ version: ver, package: name }) }, 'see them in the fleet');
  main.append(h('section', { class: 'card', id: 'pkg-nodes' }, h('h2', null, 'Nodes running it'), running.total
    ? h('p', null, `${running.total} node${running.total === 1 ? '' : 's'}: `,
      running.nodes.map((n, i) => [i ? ', ' : '', link(n.id, 'fleet', n.id)]), running.next ? ' … (' : ' (', fleetLink, ')')
    : emptyState('No node reports running this version.', 'Nodes appear here once their agent reports it after an upgrade.')));
  main.append(h('section', { class: 'card' }, h('h2', null, 'Manifest'), h('pre', { class: 'json' }, JSON.stringify(manifest, null, 2))));
  return null;
}

const PLATFORMS = ['linux/amd64', 'linux/arm64', 'linux/arm/v7', 'darwin/arm64', 'windows/amd64', 'any'];

export async function uploadForm(main, _args, params) {
  main.append(h('p', { class: 'crumbs' }, link('Packages', 'packages'), ' / upload'), h('h1', null, 'Upload a package'));
  const field = (id, label, input, hint) => h('div', { class: 'field' }, h('label', { for: id }, label), input, hint ? h('small', { id: id + '-hint' }, hint) : null);
  const name = h('input', { id: 'up-name', name: 'name', required: true, pattern: '[a-z0-9][a-z0-9._\\-]*', autocomplete: 'off', value: params.get('name') || '' });
  const ver = h('input', { id: 'up-version', name: 'version', required: true, autocomplete: 'off', placeholder: '1.2.3' });
  const type = h('select', { id: 'up-type', name: 'type' }, h('option', { value: 'primary' }, 'primary (the collector)'), h('option', { value: 'addon' }, 'addon'));
  const platform = h('input', { id: 'up-platform', name: 'platform', required: true, list: 'platforms', value: 'linux/amd64', autocomplete: 'off' });
  const datalist = h('datalist', { id: 'platforms' }, PLATFORMS.map((p) => h('option', { value: p })));
  const format = h('select', { id: 'up-format', name: 'format' }, ['binary', 'tar', 'tar+gzip', 'tar+zstd', 'tar+xz', 'zip'].map((f) => h('option', { value: f }, f)));
  const entrypoint = h('input', { id: 'up-entrypoint', name: 'entrypoint', autocomplete: 'off', 'aria-describedby': 'up-entrypoint-hint' });
  const deps = h('textarea', { id: 'up-deps', name: 'dependencies', rows: 2, autocomplete: 'off', spellcheck: 'false', placeholder: 'otelcol-contrib >=0.90.0 <1.0.0', 'aria-describedby': 'up-deps-hint' });
  const force = h('input', { id: 'up-force', name: 'force', type: 'checkbox' });
  const file = h('input', { id: 'up-file', name: 'file', type: 'file', required: true });
  const drop = h('div', { class: 'drop', id: 'drop' }, h('p', null, 'Drop the binary or archive here, or '), h('label', { for: 'up-file', class: 'button' }, 'choose a file'), file,
    h('p', { class: 'muted', id: 'drop-file', 'aria-live': 'polite' }, 'No file chosen.'));
  const progress = h('progress', { id: 'up-progress', max: 100, value: 0, 'aria-label': 'Upload progress' });
  const progressText = h('span', { id: 'up-progress-text', class: 'muted' });
  const result = h('div', { id: 'up-result', 'aria-live': 'polite' });
  const submit = h('button', { type: 'submit', class: 'primary', id: 'up-submit' }, 'Upload');
  let chosen = null;
  const choose = (f) => {
    chosen = f || null;
    clear(drop.querySelector('#drop-file')).append(chosen ? `${chosen.name} (${bytes(chosen.size)})` : 'No file chosen.');
    if (chosen && !entrypoint.value && /\.(tar|tgz|zip|gz|zst|xz)/.test(chosen.name) === false) entrypoint.placeholder = name.value || '';
  };
  file.addEventListener('change', () => choose(file.files[0]));
  file.addEventListener('input', () => choose(file.files[0]));
  drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (e) => {
    e.preventDefault();
    drop.classList.remove('over');
    if (e.dataTransfer.files.length) choose(e.dataTransfer.files[0]);
  });
  const form = h('form', { class: 'card grid', id: 'upload', novalidate: true },
    field('up-name', 'Name', name), field('up-version', 'Version', ver), field('up-type', 'Type', type),
    field('up-platform', 'Platform', platform), datalist, field('up-format', 'Format', format),
    field('up-entrypoint', 'Entrypoint', entrypoint, 'The executable inside an archive, or the binary\'s name (default: the package name).'),
    field('up-deps', 'Dependencies', deps, 'One per line: a primary package\'s name and a version constraint (the name alone: any version).'),
    h('div', { class: 'field check' }, force, h('label', { for: 'up-force' }, 'Skip the dependency check')),
    h('div', { class: 'wide' }, drop),
    h('div', { class: 'wide progress-row' }, progress, ' ', progressText),
    h('div', { class: 'wide' }, submit), h('div', { class: 'wide' }, result));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clear(result);
    if (!chosen && file.files.length) choose(file.files[0]);
    if (!chosen) { result.append(errorBox({ message: 'Choose a file to upload.' })); return; }
    if (!form.checkValidity()) { form.reportValidity(); return; }
    submit.disabled = true;
    progress.value = 0;
    const path = `/v1/packages/${api.seg(name.value.trim())}/${api.seg(ver.value.trim())}` + api.q({
      platform: platform.value.trim(), type: type.value, format: format.value,
      entrypoint: entrypoint.value.trim(), force: force.checked ? '1' : '',
    }) + deps.value.split('\n').map((d) => d.trim()).filter(Boolean).map((d) => '&depends=' + encodeURIComponent(d)).join('');
    try {
      const manifest = await api.upload(path, chosen, (sent, total) => {
        progress.max = total || 1;
        progress.value = sent;
        progressText.textContent = `${bytes(sent)} of ${bytes(total)}`;
      });
      progressText.textContent = 'Stored.';
      const mine = (manifest.artifacts || []).find((a) => a.platform === platform.value.trim()) || (manifest.artifacts || [])[0] || {};
      result.append(h('div', { class: 'ok', role: 'status' },
        h('p', null, 'Uploaded ', link(`${manifest.name} ${manifest.version}`, 'packages', manifest.name, manifest.version), '. The server\'s SHA-256:'),
        h('p', null, h('code', { class: 'digest', id: 'up-digest' }, String(mine.digest || '').replace(/^sha256:/, '')), ' ', copyButton(String(mine.digest || ''), 'Copy the SHA-256'))));
    } catch (err) {
      progressText.textContent = 'Failed.';
      result.append(errorBox(err));
    } finally {
      submit.disabled = false;
    }
  });
  main.append(form);
  return null;
}

export { route };
