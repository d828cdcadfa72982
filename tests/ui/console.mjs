// Drives the pkgstore console in headless Chromium through the seed flow
// (tests/e2e/ui_console.t starts the server and the agents and sets the
// environment). Prints one line per check, "ok - ..." or "not ok - ...",
// and "# ..." for diagnostics; the .t numbers them. Every wait is for a
// state on the page, bounded by WAIT_MS.
import puppeteer from 'puppeteer-core';
import fs from 'node:fs';
import path from 'node:path';

const env = (k) => { const v = process.env[k]; if (!v) { console.log(`not ok - environment: ${k} is not set`); process.exit(1); } return v; };
const URL0 = env('UI_URL');                 // http://127.0.0.1:PORT
const TOKEN = fs.readFileSync(env('ADMIN_TOKEN_FILE'), 'utf8').trim();
const SHOTS = env('UI_SHOTS');              // directory for the screenshots
const V2 = env('UI_V2');                    // files to upload
const V2_SHA = env('UI_V2_SHA');
const V3 = env('UI_V3');
const CANARY = env('UI_CANARY_NODE');       // node labelled canary=true
const NODES = Number(env('UI_NODES'));      // nodes labelled env=test
const XSS_NODE = env('UI_XSS_NODE');        // node whose status message is markup
const XSS_PKG = env('UI_XSS_PKG');          // "NAME/VERSION" with a markup annotation
const WAIT_MS = Number(process.env.UI_WAIT_MS || 60000);
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

let failed = 0;
const ok = (cond, name) => { if (!cond) failed++; console.log(`${cond ? 'ok' : 'not ok'} - ${name}`); return cond; };
const diag = (s) => console.log('# ' + String(s).replace(/\n/g, '\n# '));

const origin = new URL(URL0).origin;
const consoleErrors = [];
const foreign = [];
const dialogs = [];
fs.mkdirSync(SHOTS, { recursive: true });

const browser = await puppeteer.launch({
  executablePath: CHROMIUM,
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-dev-shm-usage'],
});
const page = await browser.newPage();
await page.setViewport({ width: 1280, height: 800 });
page.setDefaultTimeout(WAIT_MS);
// The console's polling loops: timers of its POLL_MS (5 s) still pending.
await page.evaluateOnNewDocument(() => {
  const pending = new Set();
  const set = window.setTimeout, cancel = window.clearTimeout;
  window.setTimeout = (fn, ms, ...rest) => {
    const id = set(() => { pending.delete(id); fn(...rest); }, ms);
    if (ms === 5000) pending.add(id);
    return id;
  };
  window.clearTimeout = (id) => { pending.delete(id); cancel(id); };
  window.__pollLoops = () => pending.size;
});
// Chromium logs each 4xx answer as a console error; these are the answers
// the flow provokes on purpose (no session yet, a wrong token, a bad
// selector, a refused upload). Any other error fails the test.
const EXPECTED = [[401, /\/v1\/session$/], [400, /\/v1\/agents\?selector=/], [409, /\/v1\/packages\//]];
page.on('console', (m) => {
  if (m.type() !== 'error') return;
  const status = Number((m.text().match(/status of (\d+)/) || [])[1]);
  const url = (m.location() && m.location().url) || '';
  if (status && EXPECTED.some(([st, re]) => st === status && re.test(url))) return;
  consoleErrors.push(m.text() + (url ? ' (' + url + ')' : ''));
});
page.on('pageerror', (e) => consoleErrors.push('page error: ' + e.message));
page.on('dialog', async (d) => { dialogs.push(d.message()); await d.dismiss(); });
page.on('request', (r) => {
  const u = r.url();
  if (u.startsWith('data:')) return;
  if (new URL(u).origin !== origin) foreign.push(u);
});

const step = async (name, fn) => {
  try { await fn(); ok(true, name); } catch (err) {
    ok(false, name);
    diag(err.stack || err);
    try { diag('page: ' + (await page.$eval('main', (m) => m.innerText)).slice(0, 1500)); } catch { /* no page */ }
    try { await page.screenshot({ path: path.join(SHOTS, 'failure-' + name.replace(/[^a-z0-9]+/gi, '-') + '.png') }); } catch { /* no page */ }
  }
};
// Route to hash and wait until its page is complete (app.js marks main with
// the hash it finished showing; the hashchange event itself comes later).
const go = async (hash) => {
  const shown = await page.evaluate((h) => { location.hash = h; return location.hash; }, hash);
  await page.waitForFunction((h) => document.querySelector('main').dataset.shown === h, { polling: 100 }, shown);
};
const text = (sel) => page.$eval(sel, (e) => e.textContent);
const waitText = (sel, re) => page.waitForFunction((s, src) => {
  const e = document.querySelector(s);
  return e && new RegExp(src).test(e.textContent);
}, { polling: 200 }, sel, re.source);
const shot = async (name) => {
  await page.setViewport({ width: 1280, height: 800 });
  await page.screenshot({ path: path.join(SHOTS, `${name}-1280.png`) });
  await page.setViewport({ width: 390, height: 844 }); // no isMobile: puppeteer would reload the page
  await page.screenshot({ path: path.join(SHOTS, `${name}-390.png`), fullPage: true });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  if (overflow > 1) diag(`${name}: the page is ${overflow} px wider than 390 px`);
  await page.setViewport({ width: 1280, height: 800 });
  return overflow;
};
const fill = async (sel, value) => {
  await page.$eval(sel, (e) => { e.value = ''; });
  await page.type(sel, value);
};
const xssFired = () => page.evaluate(() => window.__xss !== undefined || document.querySelectorAll('[onerror]').length > 0);
const narrow = [];

// 1. the console is served, and the server has sessions
const res = await page.goto(URL0 + '/', { waitUntil: 'domcontentloaded' }).catch((e) => ({ error: e }));
if (!ok(res && !res.error && res.ok() && page.url().startsWith(URL0 + '/ui/'), 'GET / leads to the console at /ui/')) {
  diag(`the server at ${URL0} does not serve the console at /ui/ (status ${res && res.status ? res.status() : res.error}): ` +
       'its static files and /v1/session come with the console server side (issue 14)');
  await browser.close();
  process.exit(1);
}
const csp = res.headers()['content-security-policy'] || '';
ok(/script-src 'self'/.test(csp) && /frame-ancestors 'none'/.test(csp) && res.headers()['x-content-type-options'] === 'nosniff',
  'the console is served with its CSP and nosniff');

await step('sign in with the admin token', async () => {
  await page.waitForSelector('#signin');
  if (!narrow.length) narrow.push(['signin', await shot('signin')]);
  await page.type('#token', 'not-the-token');
  await page.click('#signin button[type=submit]');
  await page.waitForSelector('#signin .error');
  await fill('#token', TOKEN);
  await page.click('#signin button[type=submit]');
  await page.waitForSelector('#fleet-table');
  const stored = await page.evaluate(() => JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage }) + document.cookie);
  if (stored.includes(TOKEN)) throw new Error('the admin token is in the page storage or a script-visible cookie');
});
narrow.push(['fleet', await shot('fleet')]);

await step('pages changed before they finish loading leave one page on screen and one polling loop', async () => {
  const [name, ver] = XSS_PKG.split('/');
  // the version page adds its sections after its requests, the fleet page
  // polls: both are overtaken by the policies page
  await page.evaluate((n, v) => {
    location.hash = `#/packages/${encodeURIComponent(n)}/${encodeURIComponent(v)}`;
    location.hash = '#/fleet?state=Pending';
    location.hash = '#/policies';
  }, name, ver);
  await page.waitForNetworkIdle({ idleTime: 300 });
  const headings = await page.$$eval('main h1', (hs) => hs.map((x) => x.textContent));
  if (headings.length !== 1 || headings[0] !== 'Policies') throw new Error('headings on screen: ' + JSON.stringify(headings));
  const loops = await page.evaluate(() => window.__pollLoops());
  if (loops !== 1) throw new Error(`${loops} polling loops`);
});

await step('the skip link moves the focus to the page and stays on it', async () => {
  await go('#/fleet');
  await page.waitForSelector('#fleet-table');
  await page.focus('a.skip');
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => document.activeElement && document.activeElement.id === 'main');
  const state = await page.evaluate(() => ({ hash: location.hash, table: !!document.querySelector('#fleet-table') }));
  if (state.hash !== '#/fleet' || !state.table) throw new Error('after the skip link: ' + JSON.stringify(state));
});

await step('upload v2 through the form and see its SHA-256', async () => {
  await go('#/packages/upload');
  await fill('#up-name', 'otelcol');
  await fill('#up-version', '2.0.0');
  const input = await page.$('#up-file');
  await input.uploadFile(V2);
  narrow.push(['upload', await shot('upload')]);
  await page.click('#up-submit');
  await page.waitForSelector('#up-digest');
  const shown = await text('#up-digest');
  const progress = await page.$eval('#up-progress', (p) => p.value === p.max && p.max > 1);
  if (shown !== V2_SHA) throw new Error(`shown ${shown}, expected ${V2_SHA}`);
  if (!progress) throw new Error('the progress bar did not reach the end');
  narrow.push(['upload-done', await shot('upload-done')]);
});

await step('an upload the server refuses shows the server\'s words', async () => {
  await fill('#up-version', '2.0.0');
  const input = await page.$('#up-file');
  await input.uploadFile(V3); // other bytes for a platform 2.0.0 already lists: 409 CONFLICT
  await page.click('#up-submit');
  await page.waitForSelector('#up-result .error');
  const msg = await text('#up-result .error');
  if (!/^CONFLICT: /.test(msg)) throw new Error('shown: ' + msg);
  diag('shown: ' + msg);
});

await step('an addon dropped on the form, with dependencies: an unmet one is refused in the server\'s words, met ones land in the manifest', async () => {
  await go('#/packages/upload');
  await fill('#up-name', 'sidecar');
  await fill('#up-version', '1.0.0');
  await page.select('#up-type', 'addon');
  await fill('#up-deps', 'otelcol >=9.0.0');
  // dropped on the drop zone, as a file dragged from the desktop is
  await page.evaluate(() => {
    const dt = new DataTransfer();
    dt.items.add(new File(['#!/bin/sh\necho sidecar\n'], 'sidecar.bin'));
    document.querySelector('#drop').dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
  });
  await waitText('#drop-file', /^sidecar\.bin \(/);
  await page.click('#up-submit');
  await page.waitForSelector('#up-result .error');
  const msg = await text('#up-result .error');
  if (!/^DEPENDENCY: /.test(msg)) throw new Error('shown: ' + msg);
  diag('shown: ' + msg);
  await fill('#up-deps', 'otelcol >=2.0.0 <3.0.0\nnotes');
  await page.click('#up-submit');
  await page.waitForSelector('#up-digest');
  await go('#/packages/sidecar/1.0.0');
  await waitText('#pkg-deps', /^otelcol >=2\.0\.0 <3\.0\.0notes \*$/);
});

await step('the packages list and the version page', async () => {
  await go('#/packages');
  await waitText('main table', /otelcol/);
  narrow.push(['packages', await shot('packages')]);
  await go('#/packages/otelcol/2.0.0');
  await waitText('main', new RegExp(V2_SHA));
  narrow.push(['version', await shot('version')]);
});

await step('create the canary policy, the selector checked as typed', async () => {
  await go('#/policies/new');
  await page.type('#pol-name', 'canary');
  await fill('#pol-selector', 'canary in (');
  await waitText('#pol-selector-check', /position/);
  diag('bad selector: ' + await text('#pol-selector-check'));
  await fill('#pol-selector', 'canary=true');
  await waitText('#pol-selector-check', /^matches 1 node$/);
  await page.select('#pol-package', 'otelcol');
  await page.select('#pol-version', '2.0.0');
  narrow.push(['policy-edit', await shot('policy-edit')]);
  await page.click('#pol-save');
  await page.waitForSelector('#rollout');
});

await step('the canary node reaches Upgraded in the fleet view', async () => {
  await go('#/fleet?selector=canary%3Dtrue');
  await page.waitForFunction((id) => {
    const row = document.querySelector(`tr[data-node="${id}"] td.rollout-state`);
    return row && row.textContent === 'Upgraded';
  }, { polling: 500 }, CANARY);
});

await step('widen the rollout to every test node; all reach Upgraded', async () => {
  await go('#/policies/canary/edit');
  await page.waitForSelector('#pol-selector');
  await fill('#pol-selector', 'env=test');
  await waitText('#pol-selector-check', new RegExp(`^matches ${NODES} nodes$`));
  await page.click('#pol-save');
  await page.waitForSelector('#rollout');
  await go('#/fleet?selector=env%3Dtest');
  await page.waitForFunction((n) => {
    const cells = [...document.querySelectorAll('#fleet-table td.rollout-state')];
    return cells.length === n && cells.every((c) => c.textContent === 'Upgraded');
  }, { polling: 500 }, NODES);
  narrow.push(['fleet-upgraded', await shot('fleet-upgraded')]);
});

await step('the fleet filters by version and last status on the server; the version page counts its nodes', async () => {
  await go('#/fleet?version=2.0.0');
  await waitText('#fleet-total', new RegExp(`^${NODES} nodes;`));
  await go('#/fleet?status=UpgradeFailed');
  await page.waitForFunction((id) => [...document.querySelectorAll('#fleet-table tbody tr')].map((r) => r.dataset.node).join() === id,
    { polling: 200 }, XSS_NODE);
  await go('#/packages/otelcol/2.0.0');
  await waitText('#pkg-nodes', new RegExp(`^Nodes running it${NODES} nodes: `));
});

await step('push a crashing v3: the rollout rolls back and pauses with its reason', async () => {
  await go('#/packages/upload');
  await fill('#up-name', 'otelcol');
  await fill('#up-version', '3.0.0');
  await (await page.$('#up-file')).uploadFile(V3);
  await page.click('#up-submit');
  await page.waitForSelector('#up-digest');
  await go('#/policies/canary/edit');
  await page.waitForSelector('#pol-version');
  await page.select('#pol-version', '3.0.0');
  await fill('#pol-batches', '1, 100%');
  await fill('#pol-maxfail', '0');
  await page.click('#pol-save');
  await page.waitForSelector('#rollout');
  await waitText('#rollout-reason', /failed/);
  diag('reason: ' + await text('#rollout-reason'));
  await page.waitForSelector('#rollout .failures .badge');
  const failures = await text('#rollout .failures');
  if (!/RolledBack/.test(failures)) throw new Error('failed nodes: ' + failures);
  narrow.push(['rollout-paused', await shot('rollout-paused')]);
});

await step('pause/resume/abort ask for a confirmation', async () => {
  const buttons = await page.$$eval('#rollout .actions button', (bs) => bs.map((b) => b.textContent));
  if (!buttons.includes('Resume')) throw new Error('buttons: ' + buttons.join(', '));
  await page.$$eval('#rollout .actions button', (bs) => bs.find((b) => b.textContent === 'Abort').click());
  await page.waitForSelector('dialog.confirm[open]');
  await page.$$eval('dialog.confirm button', (bs) => bs.find((b) => b.textContent === 'Cancel').click());
  await page.waitForFunction(() => !document.querySelector('dialog.confirm'));
});

await step('the node page shows the rollback in its history', async () => {
  await go('#/fleet/' + encodeURIComponent(CANARY));
  await waitText('#node-history', /RolledBack/);
  narrow.push(['node', await shot('node')]);
  await go('#/policies');
  await waitText('main table', /canary/);
  narrow.push(['policies', await shot('policies')]);
});

await step('markup from an agent and an uploader stays text; the signed version shows its signature valid', async () => {
  await go('#/fleet/' + encodeURIComponent(XSS_NODE));
  await waitText('#node-history', /<img src=x onerror=/);
  await go('#/fleet');
  await page.waitForSelector('#fleet-table');
  const [name, ver] = XSS_PKG.split('/');
  await go(`#/packages/${name}/${ver}`);
  await waitText('main', /<img src=x onerror=/);
  // signed by the test's root (ui_console.t): its state as the server checks it
  await waitText('#sig-verdict', /^signed 1 valid of the 1 root version 1 needs \(the newest root/);
  await waitText('#pkg-signatures li', /^valid key [0-9a-f]{64}$/);
  narrow.push(['version-signed', await shot('version-signed')]);
  // through an upload: a file name, and an entrypoint the server stores
  await go('#/packages/upload');
  await (await page.$('#up-file')).uploadFile(env('UI_XSS_FILE'));
  await waitText('#drop-file', /<img/);
  await fill('#up-name', 'markup');
  await fill('#up-version', '1.0.0');
  await fill('#up-entrypoint', '<img src=x onerror=window.__xss=3>');
  await page.click('#up-submit');
  await page.waitForSelector('#up-digest');
  await go('#/packages/markup/1.0.0');
  await waitText('main table', /<img src=x onerror=window.__xss=3>/);
  await new Promise((r) => setTimeout(r, 500)); // let a broken image fire its onerror, were there one
  if (await xssFired()) throw new Error('a handler ran or an element with onerror was created');
  if (dialogs.length) throw new Error('dialogs opened: ' + dialogs.join(' | '));
});

await step('sign out ends the session on the server', async () => {
  await page.click('#signout');
  await page.waitForSelector('#signin');
  const status = await page.evaluate(async () => (await fetch('/v1/session', { credentials: 'same-origin' })).status);
  if (status !== 401) throw new Error('GET /v1/session after sign-out: ' + status);
});

ok(foreign.length === 0, 'the pages request no host other than the server');
if (foreign.length) diag(foreign.join('\n'));
ok(consoleErrors.length === 0, 'no error in the browser console');
if (consoleErrors.length) diag(consoleErrors.join('\n'));
const wide = narrow.filter(([, o]) => o > 1).map(([n]) => n);
ok(wide.length === 0, 'every page fits 390 px without sideways scrolling');
if (wide.length) diag('wider than 390 px: ' + wide.join(', '));
await browser.close();
process.exit(failed ? 1 : 0);
