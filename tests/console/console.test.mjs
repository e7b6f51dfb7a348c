// The web console in a real browser: Debian's chromium, headless, driven by puppeteer-core, against
// a real corral-control, two corral-sim nodes registered as `make run` registers them, and a
// corral-proxy. Each step waits for what the page shows, with a deadline; the first step that
// fails fails the test and the steps after it are skipped.
//
// CORRAL_CONSOLE_SCREENSHOTS=DIR writes the screenshots there (docs/console/ for docs/console.md);
// without it they go to the test's temporary directory, removed at the end unless a step failed.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';

import { Fleet, waitFor } from './fleet.mjs';

const chromium = process.env.CORRAL_CHROMIUM ?? '/usr/bin/chromium';
const STEP_MS = 15000;

let fleet;
let browser;
let page;
let consoleUrl;
let shotsDir;
let failed = false;
// Aborts the requests held in flight on the gated sims.
const inflight = new AbortController();
const pageErrors = [];

async function loadPuppeteer() {
  try {
    return (await import('puppeteer-core')).default;
  } catch (err) {
    throw new Error('puppeteer-core is not installed in tests/console/node_modules: run ' +
                    `scripts/install-e2e-deps.sh (or \`make test\`, which runs it) first (${err.message})`);
  }
}

async function shot(name) {
  await page.screenshot({ path: join(shotsDir, `${name}.png`), fullPage: true });
}

/** Waits until `fn` (run in the page with `args`) returns a truthy value. */
function until(fn, what, ...args) {
  return page.waitForFunction(fn, { timeout: STEP_MS, polling: 50 }, ...args).catch((err) => {
    throw new Error(`timed out waiting for ${what}: ${err.message}`);
  });
}

function rowText(table, key) {
  return page.$eval(`#${table} tbody tr[data-key="${key}"]`, (row) => row.innerText).catch(() => null);
}

async function go(view) {
  await page.evaluate((v) => { location.hash = v; }, view);
  await until((v) => !document.querySelector(`#view-${v}`).hidden, `the ${view} view`, view);
}

/** Clicks `selector` once it is on the page and visible (a refresh may still be drawing it). */
async function press(selector) {
  const element = await page.waitForSelector(selector, { visible: true, timeout: STEP_MS }).catch((err) => {
    throw new Error(`no ${selector} to click: ${err.message}`);
  });
  await element.click();
}

async function fill(selector, value) {
  await page.waitForSelector(selector, { visible: true, timeout: STEP_MS });
  await page.$eval(selector, (el) => { el.value = ''; });
  await page.type(selector, value);
}

/** A step of the walk through the console; skipped once an earlier one failed. */
function step(name, body) {
  test(name, async (t) => {
    if (failed) {
      t.skip('an earlier step failed');
      return;
    }
    try {
      await body();
      assert.deepEqual(pageErrors, [], 'the page threw');
    } catch (err) {
      failed = true;
      if (page) await shot(`failed-${name.replace(/\W+/g, '-')}`).catch(() => {});
      throw err;
    }
  });
}

before(async () => {
  if (!existsSync(chromium)) {
    throw new Error(`${chromium} is missing: install Debian's chromium (scripts/install-e2e-deps.sh does)`);
  }
  const puppeteer = await loadPuppeteer();
  fleet = new Fleet();
  shotsDir = process.env.CORRAL_CONSOLE_SCREENSHOTS || join(fleet.dir, 'screenshots');
  mkdirSync(shotsDir, { recursive: true });
  try {
    const sims = await Promise.all([
      fleet.startSim('sim-1', 'llama3.2:latest,qwen3:8b,all-minilm:latest'),
      fleet.startSim('sim-2', 'llama3.2:latest,mistral:latest'),
      fleet.startControl(),
    ]);
    await fleet.api('POST', '/v1/nodes', { name: 'sim-1', url: sims[0] });
    await fleet.api('POST', '/v1/nodes', { name: 'sim-2', url: sims[1] });
    await fleet.startProxy('proxy-1');
    consoleUrl = await fleet.consoleUrl();
    console.log(`console served by ${fleet.consoleSource} at ${consoleUrl}`);
    browser = await puppeteer.launch({
      executablePath: chromium,
      headless: true,
      userDataDir: join(fleet.dir, 'chromium-profile'),
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync',
        '--disable-dev-shm-usage'],
    });
    page = await browser.newPage();
    page.on('pageerror', (err) => pageErrors.push(err.message));
    // A script, style or request the Content-Security-Policy blocks fails the step it happens in.
    await page.exposeFunction('reportCspViolation', (what) => pageErrors.push(what));
    await page.evaluateOnNewDocument(() => {
      document.addEventListener('securitypolicyviolation', (e) => {
        window.reportCspViolation(`CSP blocked ${e.blockedURI || 'inline'} (${e.violatedDirective})`);
      });
    });
    page.on('dialog', (dialog) => dialog.accept());
    await page.setViewport({ width: 1280, height: 800 });
  } catch (err) {
    failed = true;
    throw new Error(`${err.message}\n${fleet.logTails()}`);
  }
});

after(async () => {
  inflight.abort();
  if (browser) await browser.close();
  if (failed && fleet) console.log(`kept for a look: ${fleet.dir}\n${fleet.logTails()}`);
  if (fleet) await fleet.stop({ keep: failed });
});

step('a wrong token is refused with the API message', async () => {
  await page.goto(consoleUrl, { waitUntil: 'load' });
  await page.waitForSelector('#token-input', { visible: true, timeout: STEP_MS });
  await shot('sign-in');
  await page.type('#token-input', 'not-the-token');
  await press('#sign-in-form button[type="submit"]');
  const expected = await fetch(`${fleet.apiBase}/v1/state`, { headers: { Authorization: 'Bearer not-the-token' } })
      .then((r) => r.json());
  await until((m) => document.querySelector('#sign-in-error').textContent === m,
      'the sign-in error', expected.message);
});

step('signs in and sees both nodes healthy', async () => {
  await fill('#token-input', fleet.adminToken);
  await press('#sign-in-form button[type="submit"]');
  await page.waitForSelector('#app', { visible: true, timeout: STEP_MS });
  const stored = await page.evaluate(() => [sessionStorage.length, localStorage.length]);
  assert.deepEqual(stored, [1, 0], 'the token is kept in sessionStorage only');
  for (const name of ['sim-1', 'sim-2']) {
    await until((n) => {
      const row = document.querySelector(`#nodes-table tbody tr[data-key="${n}"]`);
      return row && row.innerText.includes('active') && /\d ms/.test(row.innerText);
    }, `${name} in the active pool with a latency`, name);
  }
  const sim1 = await rowText('nodes-table', 'sim-1');
  assert.match(sim1, /enabled/);
  assert.match(sim1, new RegExp(fleet.sims.get('sim-1').replace(/[/.]/g, '\\$&')));
});

step('the live refresh keeps what is typed and where the focus is', async () => {
  await page.focus('#node-form input[name="url"]');
  await page.keyboard.type('http://half-typed');
  const first = await page.$eval('#live', (el) => el.textContent);
  await until((t) => document.querySelector('#live').textContent !== t, 'a refresh', first);
  const second = await page.$eval('#live', (el) => el.textContent);
  await until((t) => document.querySelector('#live').textContent !== t, 'another refresh', second);
  const kept = await page.evaluate(() => [document.activeElement.name, document.activeElement.value]);
  assert.deepEqual(kept, ['url', 'http://half-typed']);
  await fill('#node-form input[name="url"]', '');
});

step('adds a node and sees it appear', async () => {
  const url = await fleet.startSim('sim-3', 'llama3.2:latest');
  await fill('#node-form input[name="name"]', 'sim-3');
  await fill('#node-form input[name="url"]', url);
  await fill('#node-form input[name="labels"]', 'gpu=l4');
  await press('#node-submit');
  await until(() => {
    const row = document.querySelector('#nodes-table tbody tr[data-key="sim-3"]');
    return row && row.innerText.includes('active');
  }, 'sim-3 in the fleet, probed healthy');
  const node = await fleet.api('GET', '/v1/nodes/sim-3');
  assert.equal(JSON.stringify(node).includes('l4'), true, 'the label reached the registry');
});

step('shows the API message when a node name is taken', async () => {
  let expected;
  try {
    await fleet.api('POST', '/v1/nodes', { name: 'sim-1', url: 'http://127.0.0.1:9' });
    assert.fail('a duplicate node name was accepted');
  } catch (err) {
    assert.ok(err.httpStatus >= 400, err.message);
    expected = err.message;
  }
  await fill('#node-form input[name="name"]', 'sim-1');
  await fill('#node-form input[name="url"]', 'http://127.0.0.1:9');
  await press('#node-submit');
  await until((m) => document.querySelector('#node-form [data-error]').textContent === m,
      'the API message under the node form', expected);
  await page.$eval('#node-form', (form) => form.reset());
});

step('shows requests in flight per node and per model, and the models they loaded', async () => {
  // Gated sims hold every stream at its first token, so the requests stay in flight until aborted.
  for (const name of ['sim-1', 'sim-2']) {
    const res = await fetch(`${fleet.sims.get(name)}/_sim/config`, {
      method: 'POST', body: JSON.stringify({ gated: true }),
    });
    assert.ok(res.ok, `${name} /_sim/config: ${res.status}`);
  }
  for (const model of ['llama3.2', 'llama3.2', 'llama3.2', 'qwen3:8b']) {
    fetch(`http://127.0.0.1:${fleet.proxyPort}/api/generate`, {
      method: 'POST',
      body: JSON.stringify({ model, prompt: 'hello' }),
      signal: inflight.signal,
    }).then((res) => res.body?.cancel()).catch(() => {});
  }
  await until(() => {
    const text = document.querySelector('#nodes-table tbody tr[data-key="sim-1"]')?.innerText ?? '';
    return /qwen3:8b: 1/.test(text) && /llama3\.2:latest: 1/.test(text) &&
        /qwen3:8b\s+\S+ GB VRAM/.test(text);
  }, 'requests in flight per model, and qwen3:8b loaded, on sim-1');
});

step('drains the new node', async () => {
  await press('#nodes-table button[data-action="drain"][data-node="sim-3"]');
  await until(() => document.querySelector('#nodes-table tbody tr[data-key="sim-3"]')?.innerText.includes('draining'),
      'sim-3 draining');
  const focused = await page.evaluate(() => [document.activeElement.dataset.action, document.activeElement.dataset.node]);
  assert.deepEqual(focused, ['edit', 'sim-3'], 'the focus stays on the row whose button was redrawn');
  await shot('fleet');
});

step('edits the node: only what changed is sent', async () => {
  await press('#nodes-table button[data-action="edit"][data-node="sim-3"]');
  await until(() => document.querySelector('#node-form input[name="name"]').readOnly &&
      document.querySelector('#node-form input[name="labels"]').value === 'gpu=l4', 'the edit form filled');
  await fill('#node-form input[name="weight"]', '5');
  await fill('#node-form input[name="max_parallel"]', '4');
  await fill('#node-form input[name="labels"]', 'gpu=h100, zone=b');
  await press('#node-submit');
  await until(() => document.querySelector('#node-submit').textContent === 'Add node', 'the form back to adding');
  const info = await fleet.api('GET', '/v1/nodes/sim-3');
  assert.equal(info.node.weight, 5);
  assert.equal(info.node.max_parallel, 4);
  assert.deepEqual(info.node.labels, { gpu: 'h100', zone: 'b' });
  assert.equal(info.node.admin_state, 'ADMIN_STATE_DRAINING', 'an edit leaves the admin state alone');
});

step('is keyboard reachable', async () => {
  await page.focus('#sign-out');
  let reached = false;
  for (let i = 0; i < 12 && !reached; i += 1) {
    await page.keyboard.press('Tab');
    reached = await page.evaluate(() => document.activeElement?.textContent === 'Tokens');
  }
  assert.ok(reached, 'the Tokens link is reached with Tab');
  const outline = await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
  assert.notEqual(outline, 'none', 'the focused link shows its focus');
  await page.keyboard.press('Enter');
  await until(() => !document.querySelector('#view-tokens').hidden, 'the tokens view opened by keyboard');
});

step('creates a token, shows its secret once, and revokes it', async () => {
  await fill('#token-form input[name="name"]', 'ci-bot');
  await press('#token-form button[type="submit"]');
  await page.waitForSelector('#secret-box', { visible: true, timeout: STEP_MS });
  const secret = await page.$eval('#secret-text', (el) => el.textContent);
  assert.ok(secret.length >= 32, `a secret is shown (${secret.length} characters)`);
  await until(() => document.querySelector('#tokens-table tbody tr[data-key="ci-bot"]'), 'ci-bot listed');
  const listed = await fleet.api('GET', '/v1/tokens');
  const stored = (listed.tokens ?? []).find((t) => t.name === 'ci-bot');
  assert.ok(stored, 'the API lists ci-bot');
  assert.equal(stored.sha256_hex ?? stored.sha256Hex, createHash('sha256').update(secret).digest('hex'),
      'the secret shown is the token the control plane stored');
  await shot('tokens');
  await press('#secret-done');
  await until(() => document.querySelector('#secret-box').hidden, 'the secret hidden');
  await page.reload({ waitUntil: 'load' });
  await until(() => document.querySelector('#tokens-table tbody tr[data-key="ci-bot"]'), 'ci-bot after a reload');
  const html = await page.content();
  assert.ok(!html.includes(secret), 'the secret is never shown again');
  await press('#tokens-table button[data-action="revoke"][data-token="ci-bot"]');
  await until(() => !document.querySelector('#tokens-table tbody tr[data-key="ci-bot"]'), 'ci-bot revoked');
  const after = await fleet.api('GET', '/v1/tokens');
  assert.equal((after.tokens ?? []).length, 0);
});

step('pulls a model onto every enabled node with progress to 100%', async () => {
  await go('models');
  await until(() => document.querySelector('#models-table tbody tr[data-key="llama3.2:latest"]'),
      'the model list');
  await fill('#pull-form input[name="model"]', 'mistral:latest');
  await page.select('#pull-form select[name="target"]', '');
  await press('#pull-submit');
  await until(() => {
    const items = [...document.querySelectorAll('#pull-progress li')];
    return items.length > 0 && items.some((li) => Number(li.dataset.percent) > 0 && li.dataset.percent !== '100');
  }, 'progress under way');
  await shot('pull');
  await until(() => document.querySelector('#pull-form').dataset.result, 'the pull to end');
  assert.equal(await page.$eval('#pull-form [data-error]', (el) => el.textContent), '');
  const items = await page.$$eval('#pull-progress li', (lis) => lis.map((li) =>
    [li.dataset.node, li.dataset.percent, li.querySelector('progress').value]));
  // sim-3 is draining: "every enabled node" is sim-1 and sim-2.
  assert.deepEqual(items.sort(), [['sim-1', '100', 100], ['sim-2', '100', 100]]);
  assert.equal(await page.$eval('#pull-form', (f) => f.dataset.result), 'done');
  await until(() => document.querySelector('#models-table tbody tr[data-key="mistral:latest"]')
      ?.innerText.includes('sim-1'), 'mistral listed on sim-1');
  await shot('models');
});

step('a pull that fails shows the node\'s error and the API message', async () => {
  await fill('#pull-form input[name="model"]', 'no-such-model:latest');
  await page.select('#pull-form select[name="target"]', 'sim-2');
  await press('#pull-submit');
  await until(() => document.querySelector('#pull-form').dataset.result === 'failed', 'the pull to fail');
  const item = await page.$eval('#pull-progress li', (li) => [li.dataset.node, li.className,
    li.querySelector('.pull-state').textContent]);
  assert.equal(item[0], 'sim-2');
  assert.equal(item[1], 'failed');
  assert.match(item[2], /^failed: .*file does not exist/);
  const shown = await page.$eval('#pull-form [data-error]', (el) => el.textContent);
  assert.match(shown, /sim-2/, 'the API\'s message names the node that failed');
});

step('deletes a model from one node and sees it gone from that node only', async () => {
  const row = '#models-table tbody tr[data-key="mistral:latest"]';
  await until((r) => document.querySelector(`${r} li[data-node="sim-1"]`), 'mistral on sim-1', row);
  // The confirmation is accepted by the page's dialog handler.
  await press(`${row} li[data-node="sim-1"] button[data-action="delete-model"]`);
  await until(() => document.querySelector('#delete-status').textContent.includes('Deleted'),
      'the delete to end');
  assert.equal(await page.$eval('#delete-error', (el) => el.textContent), '');
  await until((r) => {
    const nodes = [...document.querySelectorAll(`${r} li[data-node]`)].map((li) => li.dataset.node);
    return nodes.length === 1 && nodes[0] === 'sim-2';
  }, 'mistral listed on sim-2 only', row);
  const models = await fleet.api('GET', '/v1/models');
  const mistral = models.models.find((m) => m.name === 'mistral:latest');
  assert.deepEqual(mistral.locations.map((l) => l.node), ['sim-2']);
});

step('a delete the node refuses shows the API message', async () => {
  // sim-1 no longer has mistral: a button still naming it (as a stale page would) gets the
  // node's own "not found" through the API.
  await page.evaluate(() => {
    const button = document.querySelector(
        '#models-table tbody tr[data-key="mistral:latest"] li[data-node="sim-2"] button');
    button.dataset.node = 'sim-1';
    button.click();
  });
  await until(() => document.querySelector('#delete-error').textContent, 'the error shown');
  assert.match(await page.$eval('#delete-error', (el) => el.textContent), /sim-1.*not found/);
  const models = await fleet.api('GET', '/v1/models');
  const mistral = models.models.find((m) => m.name === 'mistral:latest');
  assert.deepEqual(mistral.locations.map((l) => l.node), ['sim-2'], 'nothing else was deleted');
});

step('changes the strategy and its policies', async () => {
  await go('strategy');
  await page.select('#strategy-form select[name="strategy"]', 'STRATEGY_ROUND_ROBIN');
  await fill('#strategy-form input[name="retry.max_attempts"]', '2');
  await fill('#strategy-form input[name="queue.max_wait_ms"]', '10000');
  await press('#strategy-form button[type="submit"]');
  await until(() => document.querySelector('#strategy-form [data-status]').textContent, 'saved');
  const saved = JSON.stringify(await fleet.api('GET', '/v1/strategy'));
  assert.match(saved, /ROUND_ROBIN|round_robin|"strategy":3/);
  assert.match(saved, /10000/);
  await shot('strategy');
});

step('lists the proxy with the snapshot it applied', async () => {
  await go('proxies');
  await until(() => {
    const row = document.querySelector('#proxies-table tbody tr[data-key="proxy-1"]');
    return row && row.innerText.includes('connected') && row.innerText.includes('current');
  }, 'proxy-1 connected on the current snapshot');
  await shot('proxies');
});

step('fits a phone-width screen', async () => {
  await page.setViewport({ width: 390, height: 844, isMobile: true, hasTouch: true });
  await go('fleet');
  await until(() => document.querySelector('#nodes-table tbody tr[data-key="sim-3"]'), 'the fleet');
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `the page does not scroll sideways (${overflow} px too wide)`);
  await shot('fleet-phone');
});

step('enables, disables and removes a node', async () => {
  await page.setViewport({ width: 1280, height: 800 });  // leaving mobile emulation reloads the page
  const row = '#nodes-table tbody tr[data-key="sim-3"]';
  await press(`${row} button[data-action="enable"]`);
  await until((r) => document.querySelector(r)?.innerText.includes('enabled'), 'sim-3 enabled', row);
  await press(`${row} button[data-action="disable"]`);
  await until((r) => document.querySelector(r)?.innerText.includes('disabled'), 'sim-3 disabled', row);
  await press(`${row} button[data-action="remove"]`);
  await until((r) => !document.querySelector(r), 'sim-3 gone', row);
  const nodes = await fleet.api('GET', '/v1/nodes');
  assert.deepEqual(nodes.nodes.map((i) => i.node.name).sort(), ['sim-1', 'sim-2']);
});

step('signs out and forgets the token', async () => {
  await press('#sign-out');
  await page.waitForSelector('#token-input', { visible: true, timeout: STEP_MS });
  assert.equal(await page.evaluate(() => sessionStorage.length), 0);
  await page.reload({ waitUntil: 'load' });
  await page.waitForSelector('#token-input', { visible: true, timeout: STEP_MS });
  assert.equal(await page.$eval('#app', (el) => el.hidden), true, 'a reload asks for the token again');
});
