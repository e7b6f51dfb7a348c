// Corral's web console: the operator's view of the fleet over the HTTP admin API (api.js).
//
// One page, five views (fleet, models, strategy, proxies, tokens) chosen by the URL's hash. The
// admin token lives in sessionStorage, so it is gone with the tab. Every two seconds the page
// reads the fleet again and updates the tables in place, cell by cell: a cell is rewritten only
// when its content changed, and the forms are never rebuilt, so a refresh neither loses what the
// operator is typing nor the keyboard focus on a row's buttons.

import { ADMIN_STATES, Api, ApiError, HEALTHS, STRATEGIES, enumName, field, list, num } from './api.js';

const REFRESH_MS = 2000;
const TOKEN_KEY = 'corral.adminToken';
const VIEWS = ['fleet', 'models', 'strategy', 'proxies', 'tokens'];

const $ = (selector, root = document) => root.querySelector(selector);

let api = null;
let refreshTimer = 0;
let refreshing = null;
let pulling = false;
// The latest answers of the API, each replaced whole on every refresh.
const data = { state: null, proxies: null, models: null, tokens: null };
// The node being edited (its NodeInfo when the edit started), or null when the form adds one.
let editing = null;
// The strategy form holds the operator's edits: a refresh does not overwrite it until saved.
let strategyDirty = false;

// ---- formatting ----

function esc(value) {
  return String(value ?? '').replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function bytes(n) {
  if (!n) return '0 B';
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) {
    n /= 1000;
    i += 1;
  }
  return `${n >= 100 || i === 0 ? Math.round(n) : n.toFixed(1)} ${units[i]}`;
}

function time(rfc3339) {
  if (!rfc3339) return '—';
  const d = new Date(rfc3339);
  return Number.isNaN(d.getTime()) ? esc(rfc3339) : esc(d.toLocaleTimeString());
}

/** A canonical model key as Ollama displays it: the default registry and namespace left out. */
function displayModel(key) {
  return key.replace(/^registry\.ollama\.ai\//, '').replace(/^library\//, '');
}

function badge(text, kind) {
  return `<span class="badge ${esc(kind)}">${esc(text)}</span>`;
}

// ---- errors and notices ----

function message(err) {
  return err instanceof ApiError || err instanceof Error ? err.message : String(err);
}

/** Shows `err` in the form's error line (or the page's notice); null clears it. */
function showError(form, err) {
  const target = (form && $('[data-error]', form)) || $('#notice');
  target.textContent = err ? message(err) : '';
}

function signedOutBy(err) {
  return err instanceof ApiError && err.httpStatus === 401;
}

// ---- tables updated in place ----

/**
 * Makes `tbody` hold one row per item, in order, keyed by keyOf(item). cellsOf(item) gives each
 * cell's HTML; the first cell is the row's header. Rows and cells that did not change are left
 * alone, so focus and selection in them survive.
 */
function syncRows(tbody, items, keyOf, cellsOf) {
  const headers = [...tbody.closest('table').tHead.rows[0].cells].map((th) => th.textContent.trim());
  const existing = new Map([...tbody.rows].map((row) => [row.dataset.key, row]));
  let previous = null;
  for (const item of items) {
    const key = keyOf(item);
    let row = existing.get(key);
    if (row) {
      existing.delete(key);
    } else {
      row = document.createElement('tr');
      row.dataset.key = key;
    }
    cellsOf(item).forEach((html, i) => {
      let cell = row.cells[i];
      if (!cell) {
        cell = document.createElement(i === 0 ? 'th' : 'td');
        if (i === 0) cell.scope = 'row';
        // The column's name, shown beside the value where a narrow screen stacks the cells.
        if (headers[i]) cell.dataset.label = headers[i];
        row.appendChild(cell);
      }
      if (cell.dataset.html !== html) {
        cell.innerHTML = html;
        cell.dataset.html = html;
      }
    });
    const wanted = previous ? previous.nextSibling : tbody.firstChild;
    if (wanted !== row) tbody.insertBefore(row, wanted);
    previous = row;
  }
  for (const row of existing.values()) row.remove();
}

// ---- the fleet ----

/** In flight and waiting per node and model, summed over the connected proxies' reports. */
function loadByNodeModel() {
  const byNode = new Map();
  for (const proxy of list(data.proxies, 'proxies')) {
    if (!field(proxy, 'connected', false)) continue;
    for (const load of list(proxy, 'nodes')) {
      const node = field(load, 'node', '');
      if (!byNode.has(node)) byNode.set(node, new Map());
      const models = byNode.get(node);
      for (const m of list(load, 'models')) {
        const key = field(m, 'model', '');
        const sum = models.get(key) ?? { inFlight: 0, waiting: 0 };
        sum.inFlight += num(m, 'in_flight');
        sum.waiting += num(m, 'waiting');
        models.set(key, sum);
      }
    }
  }
  return byNode;
}

function nodeCells(info, loads) {
  const node = field(info, 'node', {});
  const name = field(node, 'name', '');
  const health = enumName(node, 'health', HEALTHS);
  const admin = enumName(node, 'admin_state', ADMIN_STATES);
  const pool = { healthy: ['active', 'ok'], unhealthy: ['standby', 'bad'] }[health] ??
      ['not probed yet', 'unknown'];
  const error = field(info, 'last_error', '');
  const latency = num(node, 'latency_ms');
  const models = [...(loads.get(name) ?? new Map())]
      .filter(([, l]) => l.inFlight || l.waiting)
      .map(([m, l]) => `<li>${esc(displayModel(m))}: ${l.inFlight}${l.waiting ? ` (+${l.waiting} waiting)` : ''}</li>`);
  const loaded = list(node, 'loaded_models').map((m) => {
    const vram = num(m, 'size_vram');
    return `<li>${esc(field(m, 'name', ''))} <span class="muted">${bytes(vram || num(m, 'size'))}` +
        `${vram ? ' VRAM' : ''}</span></li>`;
  });
  const button = (action, label, show = true) => show
      ? `<button type="button" class="small${action === 'remove' ? ' danger' : ' secondary'}" ` +
        `data-action="${action}" data-node="${esc(name)}" aria-label="${esc(label)} ${esc(name)}">` +
        `${esc(label)}</button>`
      : '';
  return [
    `<span class="node-name">${esc(name)}</span><br><span class="muted">${esc(field(node, 'url', ''))}</span>`,
    `${badge(pool[0], pool[1])}${error ? `<br><span class="muted" title="${esc(error)}">${esc(error)}</span>` : ''}`,
    badge(admin, admin === 'enabled' ? 'ok' : admin === 'draining' ? 'warn' : 'bad'),
    latency ? `${latency.toFixed(latency < 10 ? 1 : 0)} ms` : '—',
    String(num(info, 'in_flight')),
    models.length ? `<ul class="plain">${models.join('')}</ul>` : '<span class="muted">—</span>',
    loaded.length ? `<ul class="plain">${loaded.join('')}</ul>` : '<span class="muted">none</span>',
    esc(field(node, 'version', '')) || '—',
    `<div class="row-actions">${button('edit', 'Edit')}${button('drain', 'Drain', admin === 'enabled')}` +
        `${button('enable', 'Enable', admin !== 'enabled')}${button('disable', 'Disable', admin !== 'disabled')}` +
        `${button('remove', 'Remove')}</div>`,
  ];
}

function renderFleet() {
  const nodes = list(data.state, 'nodes');
  const loads = loadByNodeModel();
  syncRows($('#nodes-table tbody'), nodes, (info) => field(field(info, 'node', {}), 'name', ''),
      (info) => nodeCells(info, loads));
  $('#nodes-empty').hidden = nodes.length > 0;
  const healthy = nodes.filter((i) => enumName(field(i, 'node', {}), 'health', HEALTHS) === 'healthy').length;
  const strategy = enumName(field(data.state, 'strategy', {}), 'strategy', STRATEGIES);
  $('#fleet-summary').textContent = `${nodes.length} node${nodes.length === 1 ? '' : 's'}, ` +
      `${healthy} healthy · snapshot v${num(data.state, 'snapshot_version')} · strategy ` +
      `${strategy === 'unspecified' ? 'least_active' : strategy}`;
  renderPullTargets(nodes);
}

function nodeByName(name) {
  return list(data.state, 'nodes').find((i) => field(field(i, 'node', {}), 'name', '') === name);
}

function parseLabels(text) {
  const labels = {};
  for (const part of text.split(',').map((s) => s.trim()).filter(Boolean)) {
    const eq = part.indexOf('=');
    if (eq <= 0) throw new ApiError(`label "${part}" is not KEY=VALUE`);
    labels[part.slice(0, eq).trim()] = part.slice(eq + 1).trim();
  }
  return labels;
}

const NODE_NUMBERS = ['priority', 'weight', 'max_parallel', 'num_parallel', 'max_memory_gb'];

function startEdit(name) {
  const info = nodeByName(name);
  if (!info) return;
  editing = info;
  const node = field(info, 'node', {});
  const form = $('#node-form');
  form.elements.name.value = name;
  form.elements.name.readOnly = true;
  form.elements.url.value = field(node, 'url', '');
  for (const key of NODE_NUMBERS) {
    const value = num(node, key);
    form.elements[key].value = value ? String(value) : '';
  }
  form.elements.labels.value = Object.entries(field(node, 'labels', {}))
      .map(([k, v]) => `${k}=${v}`).join(', ');
  $('#node-form-title').textContent = `Edit node ${name}`;
  $('#node-submit').textContent = 'Save changes';
  $('#node-cancel').hidden = false;
  showError(form, null);
  form.scrollIntoView({ block: 'nearest' });
  form.elements.url.focus();
}

function endEdit() {
  editing = null;
  const form = $('#node-form');
  form.reset();
  form.elements.name.readOnly = false;
  $('#node-form-title').textContent = 'Add a node';
  $('#node-submit').textContent = 'Add node';
  $('#node-cancel').hidden = true;
}

async function submitNode(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const values = Object.fromEntries(new FormData(form));
  showError(form, null);
  try {
    const labels = parseLabels(values.labels ?? '');
    if (editing) {
      // Only what changed: UpdateNodeRequest treats every present field as a change.
      const node = field(editing, 'node', {});
      const name = field(node, 'name', '');
      const body = {};
      if (values.url.trim() !== field(node, 'url', '')) body.url = values.url.trim();
      for (const key of NODE_NUMBERS) {
        const value = Number(values[key] || 0);
        if (value !== num(node, key)) body[key] = value;
      }
      const before = field(node, 'labels', {});
      const setLabels = Object.fromEntries(Object.entries(labels).filter(([k, v]) => before[k] !== v));
      const removeLabels = Object.keys(before).filter((k) => !(k in labels));
      if (Object.keys(setLabels).length) body.set_labels = setLabels;
      if (removeLabels.length) body.remove_labels = removeLabels;
      await api.patch(`/v1/nodes/${encodeURIComponent(name)}`, body);
      endEdit();
    } else {
      const body = { name: values.name.trim(), url: values.url.trim(), labels };
      for (const key of NODE_NUMBERS) {
        if (values[key]) body[key] = Number(values[key]);
      }
      await api.post('/v1/nodes', body);
      form.reset();
    }
    await refresh();
  } catch (err) {
    if (signedOutBy(err)) return signOut(err.message);
    showError(form, err);
  }
}

async function nodeAction(action, name) {
  if (action === 'edit') return startEdit(name);
  showError(null, null);
  try {
    if (action === 'remove') {
      if (!window.confirm(`Remove node ${name} from the fleet?`)) return;
      if (editing && field(field(editing, 'node', {}), 'name', '') === name) endEdit();
      await api.del(`/v1/nodes/${encodeURIComponent(name)}`);
    } else {
      await api.post(`/v1/nodes/${encodeURIComponent(name)}:${action}`);
    }
    await refresh();
    // The pressed button was redrawn (or its row removed): keep the keyboard user in place.
    if (document.activeElement === document.body) {
      const next = $(`#nodes-table button[data-action="edit"][data-node="${CSS.escape(name)}"]`) ??
          $('#node-form input[name="name"]');
      next.focus();
    }
  } catch (err) {
    if (signedOutBy(err)) return signOut(err.message);
    showError(null, err);
  }
}

// ---- models and pulls ----

/** A model's delete button: from `node`, or from every node that lists it when `node` is ''. */
function deleteButton(model, node) {
  const label = node ? `Delete ${model} from ${node}` : `Delete ${model} from every node`;
  return `<button type="button" class="small danger" data-action="delete-model" ` +
      `data-model="${esc(model)}" data-node="${esc(node)}" aria-label="${esc(label)}">` +
      `${node ? 'Delete' : 'From every node'}</button>`;
}

function renderModels() {
  const models = list(data.models, 'models');
  syncRows($('#models-table tbody'), models, (m) => field(m, 'name', ''), (m) => {
    const name = field(m, 'name', '');
    const where = list(m, 'locations').map((l) => {
      const node = field(l, 'node', '');
      const vram = num(l, 'size_vram');
      const loaded = field(l, 'loaded', false)
          ? ` ${badge(vram ? `loaded, ${bytes(vram)} VRAM` : 'loaded', 'ok')}` : '';
      return `<li data-node="${esc(node)}">${esc(node)} <span class="muted">${bytes(num(l, 'size'))}</span>` +
          `${loaded} ${deleteButton(name, node)}</li>`;
    });
    return [esc(name), `<ul class="plain">${where.join('')}</ul>`, deleteButton(name, '')];
  });
  $('#models-empty').hidden = models.length > 0;
}

/**
 * Deletes `model` from `node` (or from every node that lists it when `node` is ''), once the
 * operator confirms. The model list follows on the refresh: the control plane re-reads each
 * node's models right after a delete.
 */
async function deleteModel(model, node) {
  const where = node || 'every node that has it';
  if (!window.confirm(`Delete ${model} from ${where}? Its files are removed from the node's disk.`)) {
    return;
  }
  $('#delete-error').textContent = '';
  $('#delete-status').textContent = `Deleting ${model} from ${where}…`;
  try {
    const answer = await api.deleteModel(node ? { model, node } : { model, all: true });
    const results = list(answer, 'results');
    const done = results.filter((r) => field(r, 'ok', false)).map((r) => field(r, 'node', ''));
    const failed = results.filter((r) => !field(r, 'ok', false))
        .map((r) => `${field(r, 'node', '')}: ${field(r, 'error', '')}`);
    $('#delete-status').textContent = `Deleted ${model} from ${done.join(', ')}.`;
    $('#delete-error').textContent = failed.length ? `Not deleted on ${failed.join('; ')}` : '';
  } catch (err) {
    if (signedOutBy(err)) return signOut(err.message);
    $('#delete-status').textContent = '';
    $('#delete-error').textContent = message(err);
  }
  await refresh();
}

function renderPullTargets(nodes) {
  const select = $('#pull-form').elements.target;
  const names = nodes.map((i) => field(field(i, 'node', {}), 'name', ''));
  const have = [...select.options].slice(1).map((o) => o.value);
  if (have.join('\n') === names.join('\n')) return;
  const chosen = select.value;
  select.length = 1;
  for (const name of names) select.add(new Option(name, name));
  select.value = names.includes(chosen) ? chosen : '';
}

/** One node's line in the pull's progress list, created on its first message. */
function progressItem(node) {
  const listEl = $('#pull-progress');
  let item = [...listEl.children].find((li) => li.dataset.node === node);
  if (!item) {
    item = document.createElement('li');
    item.dataset.node = node;
    item.dataset.percent = '0';
    item.layers = new Map();
    const id = `pull-${listEl.children.length}`;
    item.innerHTML = `<label for="${id}">${esc(node)}</label>` +
        `<progress id="${id}" max="100" value="0"></progress>` +
        '<span class="percent">0%</span><span class="pull-state muted"></span>';
    listEl.appendChild(item);
  }
  return item;
}

function showProgress(p) {
  const item = progressItem(field(p, 'node', ''));
  const digest = field(p, 'digest', '');
  const total = num(p, 'total');
  if (digest && total) item.layers.set(digest, { total, completed: num(p, 'completed') });
  let sum = 0;
  let done = 0;
  for (const layer of item.layers.values()) {
    sum += layer.total;
    done += Math.min(layer.completed, layer.total);
  }
  let percent = sum ? Math.floor((done * 100) / sum) : 0;
  const error = field(p, 'error', '');
  let state = field(p, 'status', '');
  if (field(p, 'done', false)) {
    if (error) {
      item.classList.add('failed');
      state = `failed: ${error}`;
    } else {
      percent = 100;
      state = 'done';
    }
    item.dataset.done = 'true';
  }
  item.dataset.percent = String(percent);
  $('progress', item).value = percent;
  $('.percent', item).textContent = `${percent}%`;
  $('.pull-state', item).textContent = state;
}

async function submitPull(event) {
  event.preventDefault();
  if (pulling) return;
  const form = event.currentTarget;
  const model = form.elements.model.value.trim();
  const target = form.elements.target.value;
  showError(form, null);
  $('#pull-progress').replaceChildren();
  $('#pull-status').textContent = `Pulling ${model} onto ${target || 'every enabled node'}…`;
  if (target) progressItem(target);
  delete form.dataset.result;
  pulling = true;
  $('#pull-submit').disabled = true;
  try {
    await api.pull(target ? { model, node: target } : { model, all: true }, showProgress);
    const failed = $('#pull-progress').querySelectorAll('.failed').length;
    $('#pull-status').textContent = failed
        ? `Pull of ${model} ended: ${failed} node${failed === 1 ? '' : 's'} failed.`
        : `Pulled ${model}.`;
    form.dataset.result = failed ? 'failed' : 'done';
  } catch (err) {
    if (signedOutBy(err)) return signOut(err.message);
    $('#pull-status').textContent = '';
    form.dataset.result = 'failed';
    showError(form, err);
  } finally {
    pulling = false;
    $('#pull-submit').disabled = false;
  }
  refresh();
}

// ---- strategy and policies ----

const STRATEGY_NUMBERS = {
  retry: ['max_attempts', 'eject_after_failures', 'eject_base_ms', 'eject_max_ms'],
  timeouts: ['connect_ms', 'first_byte_ms', 'idle_ms'],
  queue: ['max_length', 'max_wait_ms'],
};

function fillStrategy(config) {
  const form = $('#strategy-form');
  const strategy = field(config, 'strategy', 0);
  const name = typeof strategy === 'number' ? STRATEGIES[strategy] : strategy;
  form.elements.strategy.value = name && name !== 'STRATEGY_UNSPECIFIED' ? name : 'STRATEGY_LEAST_ACTIVE';
  for (const [group, keys] of Object.entries(STRATEGY_NUMBERS)) {
    const values = field(config, group, {});
    for (const key of keys) {
      const value = num(values, key);
      form.elements[`${group}.${key}`].value = value ? String(value) : '';
    }
  }
  form.elements['queue.disabled'].checked = Boolean(field(field(config, 'queue', {}), 'disabled', false));
}

function renderStrategy() {
  const config = field(data.state, 'strategy', {});
  if (!strategyDirty) fillStrategy(config);
  const rules = [];
  const placement = list(config, 'placement').map((r) => {
    const labels = Object.entries(field(r, 'labels', {})).map(([k, v]) => `${k}=${v}`);
    const to = [...list(r, 'nodes'), ...labels].join(', ') || 'nowhere';
    return `<li><code>${esc(field(r, 'pattern', ''))}</code> → ${esc(to)} ` +
        `${badge(field(r, 'hard', false) ? 'hard' : 'soft', 'unknown')}</li>`;
  });
  const aliases = list(config, 'aliases').map((a) =>
    `<li><code>${esc(field(a, 'alias', ''))}</code> → <code>${esc(field(a, 'target', ''))}</code></li>`);
  const memory = list(config, 'model_memory').map((m) =>
    `<li><code>${esc(field(m, 'pattern', ''))}</code>: ${num(m, 'memory_gb')} GB</li>`);
  for (const [title, items] of [['Placement', placement], ['Aliases', aliases], ['Model memory', memory]]) {
    rules.push(`<dt>${title}</dt><dd>${items.length ? `<ul class="plain">${items.join('')}</ul>` : '<span class="muted">none</span>'}</dd>`);
  }
  const html = rules.join('');
  const dl = $('#rules');
  if (dl.dataset.html !== html) {
    dl.innerHTML = html;
    dl.dataset.html = html;
  }
}

async function submitStrategy(event) {
  event.preventDefault();
  const form = event.currentTarget;
  showError(form, null);
  $('[data-status]', form).textContent = '';
  const body = { strategy: form.elements.strategy.value };
  for (const [group, keys] of Object.entries(STRATEGY_NUMBERS)) {
    body[group] = {};
    for (const key of keys) body[group][key] = Number(form.elements[`${group}.${key}`].value || 0);
  }
  body.queue.disabled = form.elements['queue.disabled'].checked;
  try {
    const saved = await api.put('/v1/strategy', body);
    strategyDirty = false;
    fillStrategy(saved);
    $('[data-status]', form).textContent = 'Saved: every proxy gets it with the next snapshot.';
    await refresh();
  } catch (err) {
    if (signedOutBy(err)) return signOut(err.message);
    showError(form, err);
  }
}

// ---- proxies ----

function renderProxies() {
  const current = num(data.proxies, 'snapshot_version');
  const proxies = list(data.proxies, 'proxies');
  syncRows($('#proxies-table tbody'), proxies, (p) => field(p, 'id', ''), (p) => {
    const applied = num(p, 'applied_version');
    const rejected = num(p, 'rejected_version');
    const connected = field(p, 'connected', false);
    return [
      esc(field(p, 'id', '')),
      badge(connected ? 'connected' : 'gone', connected ? 'ok' : 'bad'),
      applied === current ? `v${applied} ${badge('current', 'ok')}` : `v${applied} ${badge(`behind v${current}`, 'warn')}`,
      rejected ? `v${rejected}: ${esc(field(p, 'rejected_reason', ''))}` : '<span class="muted">—</span>',
      esc(field(p, 'peer', '')) || '—',
      time(field(p, 'last_report_at', '')),
    ];
  });
  $('#proxies-empty').hidden = proxies.length > 0;
  const connected = proxies.filter((p) => field(p, 'connected', false)).length;
  $('#proxies-summary').textContent =
      `${connected} connected · current snapshot v${current}`;
}

// ---- tokens ----

function renderTokens() {
  const tokens = list(data.tokens, 'tokens');
  syncRows($('#tokens-table tbody'), tokens, (t) => field(t, 'name', ''), (t) => {
    const name = field(t, 'name', '');
    const models = list(t, 'models');
    return [
      esc(name),
      models.length ? esc(models.join(', ')) : '<span class="muted">all models</span>',
      `<code>${esc(field(t, 'sha256_hex', '').slice(0, 12))}…</code>`,
      `<button type="button" class="small danger" data-action="revoke" data-token="${esc(name)}" ` +
          `aria-label="Revoke ${esc(name)}">Revoke</button>`,
    ];
  });
  $('#tokens-empty').hidden = tokens.length > 0;
  let policy = 'Closed: every inference request needs one of these tokens.';
  if (field(data.tokens, 'open', false)) {
    policy = 'Open: the proxies serve inference without a token, as Ollama does. Creating a token closes the fleet.';
  } else if (!tokens.length) {
    policy = 'Closed with no token: the proxies refuse every inference request until a token is ' +
        'created (corralctl token require off opens the fleet again).';
  }
  $('#tokens-policy').textContent = policy;
}

async function submitToken(event) {
  event.preventDefault();
  const form = event.currentTarget;
  showError(form, null);
  const name = form.elements.name.value.trim();
  const models = form.elements.models.value.split(',').map((s) => s.trim()).filter(Boolean);
  try {
    const created = await api.post('/v1/tokens', { name, models });
    form.reset();
    const box = $('#secret-box');
    $('[data-name]', box).textContent = name;
    $('#secret-text').textContent = field(created, 'token_text', '');
    $('#secret-copy').textContent = 'Copy';
    box.hidden = false;
    box.focus();
    await refresh();
  } catch (err) {
    if (signedOutBy(err)) return signOut(err.message);
    showError(form, err);
  }
}

function hideSecret() {
  $('#secret-text').textContent = '';
  $('#secret-box').hidden = true;
  $('#token-form').elements.name.focus();
}

async function revokeToken(name) {
  if (!window.confirm(`Revoke token ${name}? Clients using it are refused from the next snapshot on.`)) return;
  showError(null, null);
  try {
    await api.del(`/v1/tokens/${encodeURIComponent(name)}`);
    await refresh();
    if (document.activeElement === document.body) $('#token-form').elements.name.focus();
  } catch (err) {
    if (signedOutBy(err)) return signOut(err.message);
    showError(null, err);
  }
}

// ---- views and the refresh loop ----

function currentView() {
  const view = location.hash.slice(1);
  return VIEWS.includes(view) ? view : 'fleet';
}

function showView() {
  const view = currentView();
  for (const section of document.querySelectorAll('section[data-view]')) {
    section.hidden = section.dataset.view !== view;
  }
  for (const link of document.querySelectorAll('nav a')) {
    if (link.dataset.view === view) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  render();
  refresh();
}

function render() {
  if (data.state) {
    renderFleet();
    renderStrategy();
  }
  if (data.proxies) renderProxies();
  if (data.models) renderModels();
  if (data.tokens) renderTokens();
}

async function load() {
  const view = currentView();
  const [state, proxies] = await Promise.all([api.get('/v1/state'), api.get('/v1/proxies')]);
  data.state = state;
  data.proxies = proxies;
  if (view === 'models') data.models = await api.get('/v1/models');
  if (view === 'tokens') data.tokens = await api.get('/v1/tokens');
}

/** Reads the fleet now (joining a read already under way) and redraws. */
function refresh() {
  if (!api) return Promise.resolve();
  if (refreshing) return refreshing.then(() => refresh());
  clearTimeout(refreshTimer);
  const live = $('#live');
  if (document.hidden) {
    // A tab in the background asks nothing; it reads the fleet again when shown.
    refreshTimer = setTimeout(refresh, REFRESH_MS);
    return Promise.resolve();
  }
  refreshing = load().then(() => {
    render();
    live.textContent = `Live · updated ${new Date().toLocaleTimeString()}`;
    live.classList.remove('stale');
  }, (err) => {
    if (signedOutBy(err)) return signOut(err.message);
    live.textContent = `Not updating: ${message(err)}`;
    live.classList.add('stale');
  }).finally(() => {
    refreshing = null;
    if (api) refreshTimer = setTimeout(refresh, REFRESH_MS);
  });
  return refreshing;
}

// ---- signing in and out ----

function startApp(token) {
  api = new Api(token);
  $('#sign-in').hidden = true;
  $('#app').hidden = false;
  $('#live').hidden = false;
  $('#sign-out').hidden = false;
  showView();
}

function signOut(why = '') {
  api = null;
  clearTimeout(refreshTimer);
  sessionStorage.removeItem(TOKEN_KEY);
  for (const key of Object.keys(data)) data[key] = null;
  for (const tbody of document.querySelectorAll('#app tbody')) tbody.replaceChildren();
  hideSecret();
  endEdit();
  $('#app').hidden = true;
  $('#live').hidden = true;
  $('#sign-out').hidden = true;
  $('#sign-in').hidden = false;
  $('#sign-in-error').textContent = why;
  $('#token-input').value = '';
  $('#token-input').focus();
}

async function submitSignIn(event) {
  event.preventDefault();
  const token = $('#token-input').value.trim();
  const error = $('#sign-in-error');
  error.textContent = '';
  if (!token) {
    error.textContent = 'Enter the admin token.';
    return;
  }
  try {
    await new Api(token).get('/v1/state');
  } catch (err) {
    error.textContent = message(err);
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  $('#token-input').value = '';
  startApp(token);
}

function wire() {
  $('#sign-in-form').addEventListener('submit', submitSignIn);
  $('#sign-out').addEventListener('click', () => signOut());
  $('#node-form').addEventListener('submit', submitNode);
  $('#node-cancel').addEventListener('click', endEdit);
  $('#nodes-table').addEventListener('click', (event) => {
    const button = event.target.closest('button[data-action]');
    if (button) nodeAction(button.dataset.action, button.dataset.node);
  });
  $('#pull-form').addEventListener('submit', submitPull);
  $('#models-table').addEventListener('click', (event) => {
    const button = event.target.closest('button[data-action="delete-model"]');
    if (button) deleteModel(button.dataset.model, button.dataset.node);
  });
  $('#strategy-form').addEventListener('submit', submitStrategy);
  $('#strategy-form').addEventListener('input', () => { strategyDirty = true; });
  $('#strategy-reset').addEventListener('click', () => {
    strategyDirty = false;
    showError($('#strategy-form'), null);
    renderStrategy();
  });
  $('#token-form').addEventListener('submit', submitToken);
  // A form cleared is a fresh start: the last action's error goes with it.
  for (const form of document.querySelectorAll('form')) {
    form.addEventListener('reset', () => showError(form, null));
  }
  $('#tokens-table').addEventListener('click', (event) => {
    const button = event.target.closest('button[data-action="revoke"]');
    if (button) revokeToken(button.dataset.token);
  });
  $('#secret-copy').addEventListener('click', async () => {
    try {
      await navigator.clipboard.writeText($('#secret-text').textContent);
      $('#secret-copy').textContent = 'Copied';
    } catch {
      // Clipboard refused (not a secure context): select the text for a manual copy.
      getSelection().selectAllChildren($('#secret-text'));
    }
  });
  $('#secret-done').addEventListener('click', hideSecret);
  window.addEventListener('hashchange', showView);
  document.addEventListener('visibilitychange', () => {
    if (!document.hidden) refresh();
  });

  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) startApp(token);
  else $('#token-input').focus();
}

wire();
