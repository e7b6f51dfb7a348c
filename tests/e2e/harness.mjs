// End-to-end harness: a small fleet of real processes on loopback for the npm client tests.
//
// A Fleet is two (or more) corral-sim nodes and one corral-proxy that routes between them from
// a snapshot file. The snapshot is built the way corral-control builds it: from what each node
// actually answers on /api/version, /api/tags and /api/ps, so the proxy sees real digests,
// sizes and the nodes' own /api/tags entries. Every process binds port 0 and reports its port
// through --port-file; every wait has a deadline. Fleet.stop() kills everything, and a process
// exit hook kills whatever a crashed test left behind.
//
// Binary paths come from CORRAL_PROXY_BIN and CORRAL_SIM_BIN (set by CTest). The npm clients
// are loaded with loadClients(), which fails with a clear message when node_modules is missing.
//
// Concurrency: one Fleet per test file, driven from node:test's single thread; nothing here is
// shared between files (each file is its own node process).

import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));

// Every child this process started and has not reaped yet, so an unexpected exit kills them too.
const liveChildren = new Set();
function killLiveChildren() {
  for (const child of liveChildren) {
    try {
      child.kill('SIGKILL');
    } catch {
      // Already gone.
    }
  }
}
process.on('exit', killLiveChildren);
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    killLiveChildren();
    process.exit(128 + (signal === 'SIGINT' ? 2 : 15));
  });
}

/** Imports the official clients, or explains how to install them. */
export async function loadClients() {
  if (!existsSync(join(here, 'node_modules', 'ollama')) ||
      !existsSync(join(here, 'node_modules', 'openai'))) {
    throw new Error(
        `the npm clients are not installed in ${join(here, 'node_modules')}: ` +
        'run scripts/install-e2e-deps.sh (or `make test`, which runs it) first');
  }
  const { Ollama } = await import('ollama');
  const { default: OpenAI } = await import('openai');
  return { Ollama, OpenAI };
}

function binaryFromEnv(variable) {
  const path = process.env[variable];
  if (!path) {
    throw new Error(`${variable} is not set: run the e2e tests through ctest, or export it ` +
                    'to the built binary (e.g. build/bin/corral-proxy)');
  }
  if (!existsSync(path)) throw new Error(`${variable}=${path} does not exist: build it first`);
  return path;
}

/**
 * Polls `predicate` (sync or async) until it returns a truthy value, which is returned.
 * Throws, naming `what`, when `timeoutMs` passes first. Errors from the predicate count as
 * "not yet" and the last one is reported on timeout.
 */
export async function waitFor(predicate, { timeoutMs = 10000, intervalMs = 20, what = 'condition' } = {}) {
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

/** One child process with its log file and port file. */
class Child {
  constructor(name, binary, args, dir) {
    this.name = name;
    this.logPath = join(dir, `${name}.log`);
    this.portFile = join(dir, `${name}.port`);
    const log = openSync(this.logPath, 'w');
    this.process = spawn(binary, [...args, '--port-file', this.portFile],
                         { stdio: ['ignore', log, log] });
    closeSync(log);
    this.exited = false;
    this.exitCode = null;
    this.exitSignal = null;
    this.exitPromise = new Promise((resolve) => {
      this.process.on('exit', (code, signal) => {
        this.exited = true;
        this.exitCode = code;
        this.exitSignal = signal;
        liveChildren.delete(this.process);
        resolve();
      });
    });
    this.process.on('error', (err) => {
      this.spawnError = err;
    });
    liveChildren.add(this.process);
  }

  async waitForPort(timeoutMs = 15000) {
    this.port = await waitFor(() => {
      if (this.spawnError) throw new Error(`${this.name} did not start: ${this.spawnError.message}`);
      if (this.exited) {
        throw new Error(`${this.name} exited (code ${this.exitCode}, signal ${this.exitSignal}) ` +
                        `before writing its port file:\n${this.logTail()}`);
      }
      if (!existsSync(this.portFile)) return 0;
      const port = Number.parseInt(readFileSync(this.portFile, 'utf8').trim(), 10);
      return port > 0 ? port : 0;
    }, { timeoutMs, what: `${this.name}'s port file` }).catch((err) => {
      if (this.exited || this.spawnError) throw err;
      throw new Error(`${err.message}\n${this.logTail()}`);
    });
    return this.port;
  }

  logTail(lines = 40) {
    try {
      const text = readFileSync(this.logPath, 'utf8').trimEnd().split('\n');
      return `--- last lines of ${this.name}'s log (${this.logPath}) ---\n` +
             text.slice(-lines).join('\n');
    } catch {
      return `(no log for ${this.name})`;
    }
  }

  /** Sends `signal` and waits for the exit; SIGKILL if it outlives `timeoutMs`. */
  async stop(signal = 'SIGTERM', timeoutMs = 5000) {
    if (this.exited) return;
    this.process.kill(signal);
    let timer;
    const deadline = new Promise((resolve) => {
      timer = setTimeout(resolve, timeoutMs, 'timeout');
    });
    const outcome = await Promise.race([this.exitPromise, deadline]);
    clearTimeout(timer);  // a pending timer would hold the test process open
    if (outcome === 'timeout') {
      this.process.kill('SIGKILL');
      await this.exitPromise;
    }
  }
}

/** A simulated Ollama node. */
export class SimNode {
  constructor(name, models, child) {
    this.name = name;
    this.models = models;
    this.child = child;
  }

  get url() {
    return `http://127.0.0.1:${this.child.port}`;
  }

  async getJson(path) {
    const res = await fetch(`${this.url}${path}`);
    if (!res.ok) throw new Error(`${this.name} GET ${path}: ${res.status} ${await res.text()}`);
    return res.json();
  }

  /** GET /_sim/stats: requests per path, cancelled/completed generations, loaded models. */
  stats() {
    return this.getJson('/_sim/stats');
  }

  /** POST /_sim/config with a patch (tokens, token_interval_ms, fail, ...). */
  async configure(patch) {
    const res = await fetch(`${this.url}/_sim/config`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(patch),
    });
    if (!res.ok) throw new Error(`${this.name} /_sim/config: ${res.status} ${await res.text()}`);
    return res.json();
  }

  /** Requests the node has seen on `path` so far. */
  async requestCount(path) {
    return (await this.stats()).requests?.[path] ?? 0;
  }

  /** Kills the node without warning, the way a crashed or unplugged machine goes away. */
  kill() {
    return this.child.stop('SIGKILL');
  }
}

// Settings that keep each answer short and each cold load quick, while still streaming for
// real (paced tokens, held headers). Tests that need long streams reconfigure a node.
const kDefaultSimArgs = ['--tokens', '6', '--token-interval-ms', '5', '--load-delay-ms', '30',
                         '--num-parallel', '4', '--pull-interval-ms', '5'];

export class Fleet {
  /**
   * Starts the nodes, writes a snapshot of them, starts the proxy.
   * @param {{nodes: {name: string, models: string[], args?: string[]}[], strategy?: string,
   *          proxyArgs?: string[]}} spec
   */
  static async start(spec) {
    const fleet = new Fleet();
    try {
      await fleet.#start(spec);
    } catch (err) {
      await fleet.stop();
      throw err;
    }
    return fleet;
  }

  constructor() {
    this.dir = mkdtempSync(join(tmpdir(), 'corral-e2e-'));
    this.children = [];
    /** @type {Map<string, SimNode>} */
    this.nodes = new Map();
  }

  async #start({ nodes, strategy = 'STRATEGY_LEAST_ACTIVE', proxyArgs = [] }) {
    const simBin = binaryFromEnv('CORRAL_SIM_BIN');
    const proxyBin = binaryFromEnv('CORRAL_PROXY_BIN');
    for (const spec of nodes) {
      const child = new Child(`sim-${spec.name}`, simBin,
                              ['--listen', '127.0.0.1:0', '--models', spec.models.join(','),
                               ...kDefaultSimArgs, ...(spec.args ?? [])], this.dir);
      this.children.push(child);
      this.nodes.set(spec.name, new SimNode(spec.name, spec.models, child));
    }
    await Promise.all(this.children.map((c) => c.waitForPort()));

    this.strategy = strategy;
    this.snapshotVersion = 0;
    this.snapshotPath = join(this.dir, 'snapshot.json');
    await this.#writeSnapshot();

    this.proxy = new Child('proxy', proxyBin,
                           ['--listen', '127.0.0.1:0', '--snapshot', this.snapshotPath, ...proxyArgs],
                           this.dir);
    this.children.push(this.proxy);
    await this.proxy.waitForPort();
  }

  // Writes the next snapshot version atomically (temp file + rename), as the proxy's own
  // on-disk copy is written, so a reload never reads half a file.
  async #writeSnapshot() {
    const snapshot = await this.#snapshot(this.strategy, ++this.snapshotVersion);
    const temp = `${this.snapshotPath}.tmp`;
    writeFileSync(temp, JSON.stringify(snapshot, null, 2) + '\n');
    renameSync(temp, this.snapshotPath);
  }

  /**
   * Does what the control plane's prober does between two probes: reads every running node's
   * tags and loaded models again and hands the proxy a newer snapshot (SIGHUP reloads it).
   * Returns the new snapshot version.
   */
  async refreshSnapshot() {
    await this.#writeSnapshot();
    this.proxy.process.kill('SIGHUP');
    return this.snapshotVersion;
  }

  // The routing snapshot in protobuf's JSON form, from what the nodes report themselves.
  async #snapshot(strategy, version) {
    const nodes = [];
    for (const node of this.nodes.values()) {
      if (node.child.exited) continue;
      const [nodeVersion, tags, ps] = await Promise.all(
          [node.getJson('/api/version'), node.getJson('/api/tags'), node.getJson('/api/ps')]);
      nodes.push({
        name: node.name,
        url: node.url,
        adminState: 'ADMIN_STATE_ENABLED',
        health: 'HEALTH_HEALTHY',
        version: nodeVersion.version,
        models: tags.models.map((m) => ({
          name: m.name,
          size: String(m.size),
          digest: m.digest,
          modifiedAt: m.modified_at,
          rawJson: JSON.stringify(m),
        })),
        loadedModels: ps.models.map((m) => ({
          name: m.name,
          size: String(m.size),
          sizeVram: String(m.size_vram),
          expiresAt: m.expires_at,
          contextLength: String(m.context_length ?? 0),
          rawJson: JSON.stringify(m),
        })),
      });
    }
    return { version: String(version), strategy, nodes, createdAt: new Date().toISOString() };
  }

  /** Base URL of the proxy, what every client in the tests points at. */
  get proxyUrl() {
    return `http://127.0.0.1:${this.proxy.port}`;
  }

  node(name) {
    const node = this.nodes.get(name);
    if (!node) throw new Error(`no node named ${name}`);
    return node;
  }

  /** Sum of one /_sim/stats counter (e.g. "cancelled") over every node still running. */
  async totalStat(key) {
    let total = 0;
    for (const node of this.nodes.values()) {
      if (node.child.exited) continue;
      total += (await node.stats())[key] ?? 0;
    }
    return total;
  }

  /** Applies a /_sim/config patch to every running node. */
  async configureAll(patch) {
    await Promise.all([...this.nodes.values()].filter((n) => !n.child.exited)
                          .map((n) => n.configure(patch)));
  }

  /** The tail of every log, for a failing test's output. */
  logs() {
    return this.children.map((c) => c.logTail()).join('\n');
  }

  /**
   * Wraps a test body so that a failure marks the fleet: stop() then prints every process's
   * log, which is what the owner of a failing proxy or sim needs to see.
   */
  guard(body) {
    return async (t) => {
      try {
        return await body(t);
      } catch (err) {
        this.failed = true;
        throw err;
      }
    };
  }

  /** Stops the proxy, then the nodes; removes the temp dir unless CORRAL_E2E_KEEP is set. */
  async stop() {
    for (const child of [...this.children].reverse()) await child.stop();
    if (this.failed) console.error(this.logs());
    if (process.env.CORRAL_E2E_KEEP) {
      console.error(`corral e2e: kept logs and snapshot in ${this.dir}`);
    } else {
      rmSync(this.dir, { recursive: true, force: true });
    }
  }
}
