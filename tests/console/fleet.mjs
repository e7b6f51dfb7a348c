// The fleet the console test drives: a real corral-control (HTTP admin API on), real corral-sim
// nodes and one corral-proxy, as `make run` starts them, plus the server the browser loads the
// console from.
//
// Every process binds port 0 and reports its port through a port file; every wait has a deadline.
// Fleet.stop() ends everything, and a process exit hook kills whatever a failed test left behind.
//
// The console is served by corral-control itself at `/` of its HTTP listener (the assets
// embedded in the binary), same-origin with the API.
//
// Concurrency: used from one test file's single thread.

import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
export const consoleDir = join(here, '..', '..', 'web', 'console');

const liveChildren = new Set();
process.on('exit', () => {
  for (const child of liveChildren) {
    try {
      child.kill('SIGKILL');
    } catch {
      // Already gone.
    }
  }
});

/**
 * Polls `predicate` until it returns a truthy value, which is returned; throws naming `what`
 * when `timeoutMs` passes first (the predicate's last error counts as "not yet").
 */
export async function waitFor(predicate, { timeoutMs = 10000, intervalMs = 25, what = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  let lastError;
  for (;;) {
    try {
      const value = await predicate();
      if (value) return value;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() >= deadline) {
      const why = lastError ? ` (last error: ${lastError.message})` : '';
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${why}`);
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

export function binaryFromEnv(variable) {
  const path = process.env[variable];
  if (!path) {
    throw new Error(`${variable} is not set: run this test through ctest (ctest -R console), ` +
                    'or export it to the built binary');
  }
  if (!existsSync(path)) throw new Error(`${variable}=${path} does not exist: build it first`);
  return path;
}

/** One child process, its log and its port files. */
class Child {
  constructor(name, binary, args, dir) {
    this.name = name;
    this.logPath = join(dir, `${name}.log`);
    const log = openSync(this.logPath, 'w');
    this.process = spawn(binary, args, { stdio: ['ignore', log, log] });
    closeSync(log);
    this.exited = false;
    this.exitPromise = new Promise((resolve) => {
      this.process.on('exit', (code, signal) => {
        this.exited = true;
        this.exitStatus = signal ?? code;
        liveChildren.delete(this.process);
        resolve();
      });
    });
    this.process.on('error', (err) => {
      this.spawnError = err;
    });
    liveChildren.add(this.process);
  }

  async waitForPortFile(path, timeoutMs = 15000) {
    try {
      return await waitFor(() => {
        if (this.spawnError) throw new Error(`${this.name} did not start: ${this.spawnError.message}`);
        if (this.exited) throw new Error(`${this.name} exited (${this.exitStatus})`);
        if (!existsSync(path)) return 0;
        const port = Number.parseInt(readFileSync(path, 'utf8').trim(), 10);
        return port > 0 ? port : 0;
      }, { timeoutMs, what: `${this.name}'s port file ${path}` });
    } catch (err) {
      throw new Error(`${err.message}\n${this.logTail()}`);
    }
  }

  logTail(lines = 30) {
    try {
      const text = readFileSync(this.logPath, 'utf8').trimEnd().split('\n');
      return `--- last lines of ${this.name}'s log (${this.logPath}) ---\n${text.slice(-lines).join('\n')}`;
    } catch {
      return `(no log for ${this.name})`;
    }
  }

  async stop(timeoutMs = 5000) {
    if (this.exited) return;
    this.process.kill('SIGTERM');
    let timer;
    const late = new Promise((resolve) => {
      timer = setTimeout(resolve, timeoutMs, 'late');
    });
    const outcome = await Promise.race([this.exitPromise, late]);
    clearTimeout(timer);
    if (outcome === 'late') {
      this.process.kill('SIGKILL');
      await this.exitPromise;
    }
  }
}

// What corral-control should send with the console's files, as this server does: the page runs
// with no inline script or style and talks to its own origin only.
export const CONSOLE_HEADERS = {
  'Content-Security-Policy': "default-src 'none'; script-src 'self'; style-src 'self'; " +
      "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; " +
      "frame-ancestors 'none'",
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
  'Cache-Control': 'no-cache',
};

const CONTENT_TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
};

/** A control plane, its nodes and a proxy, in a temporary directory. */
export class Fleet {
  constructor() {
    this.dir = mkdtempSync(join(tmpdir(), 'corral-console-'));
    this.dataDir = join(this.dir, 'data');
    this.children = [];
    this.sims = new Map();
  }

  async startControl() {
    const child = new Child('corral-control', binaryFromEnv('CORRAL_CONTROL_BIN'), [
      '--listen', '127.0.0.1:0', '--port-file', join(this.dir, 'control.port'),
      '--http-listen', '127.0.0.1:0', '--http-port-file', join(this.dir, 'control-http.port'),
      '--data-dir', this.dataDir, '--probe-interval-ms', '500', '--no-discovery',
    ], this.dir);
    this.children.push(child);
    this.control = child;
    this.grpcPort = await child.waitForPortFile(join(this.dir, 'control.port'));
    this.httpPort = await child.waitForPortFile(join(this.dir, 'control-http.port'));
    this.adminToken = await waitFor(() => {
      const path = join(this.dataDir, 'admin.token');
      return existsSync(path) && readFileSync(path, 'utf8').trim();
    }, { timeoutMs: 5000, what: 'admin.token in the data dir' });
  }

  get apiBase() {
    return `http://127.0.0.1:${this.httpPort}`;
  }

  /** Calls the admin API; resolves to the parsed JSON, rejects with the API's message. */
  async api(method, path, body) {
    const res = await fetch(this.apiBase + path, {
      method,
      headers: { Authorization: `Bearer ${this.adminToken}`, 'Content-Type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    const json = text ? JSON.parse(text) : {};
    if (!res.ok) {
      const err = new Error(json.message ?? text);
      err.httpStatus = res.status;
      err.body = json;
      throw err;
    }
    return json;
  }

  async startSim(name, models) {
    const portFile = join(this.dir, `${name}.port`);
    const child = new Child(name, binaryFromEnv('CORRAL_SIM_BIN'), [
      '--listen', '127.0.0.1:0', '--port-file', portFile, '--models', models,
      '--pull-interval-ms', '80',
    ], this.dir);
    this.children.push(child);
    const port = await child.waitForPortFile(portFile);
    const url = `http://127.0.0.1:${port}`;
    this.sims.set(name, url);
    return url;
  }

  async startProxy(id) {
    const portFile = join(this.dir, `${id}.port`);
    const child = new Child(id, binaryFromEnv('CORRAL_PROXY_BIN'), [
      '--listen', '127.0.0.1:0', '--port-file', portFile, '--control', `127.0.0.1:${this.grpcPort}`,
      '--control-token-file', join(this.dataDir, 'proxy.token'),
      '--snapshot', join(this.dir, `${id}.snapshot.json`), '--id', id,
    ], this.dir);
    this.children.push(child);
    this.proxyPort = await child.waitForPortFile(portFile);
  }

  /** Where the browser loads the console: the control plane's `/`. */
  async consoleUrl() {
    const res = await fetch(`${this.apiBase}/`).catch(() => null);
    const text = res && res.ok ? await res.text() : '';
    if (text.includes('id="sign-in-form"')) {
      const policy = res.headers.get('content-security-policy') ?? '';
      if (!policy.includes("script-src 'self'")) {
        throw new Error(`corral-control serves the console without its Content-Security-Policy ('${policy}')`);
      }
      this.consoleSource = 'corral-control';
      return `${this.apiBase}/`;
    }
    throw new Error(`corral-control does not serve the console at ${this.apiBase}/ (status ${res ? res.status : 'none'})`);
  }

  logTails() {
    return this.children.map((c) => c.logTail()).join('\n');
  }

  async stop({ keep = false } = {}) {
    await Promise.all(this.children.map((c) => c.stop()));
    if (!keep) rmSync(this.dir, { recursive: true, force: true });
  }
}
