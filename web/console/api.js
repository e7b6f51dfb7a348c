// The console's client for corral-control's HTTP admin API (docs/http-api.md).
//
// Every call carries the admin token as `Authorization: Bearer`, and every failure becomes an
// ApiError whose message is the API's own `message` (the `{"code","status","message"}` error
// body), so the page can show the user exactly what the control plane said.
//
// Bodies are the proto messages' JSON form. The protobuf JSON parser accepts both the proto field
// names and their lowerCamelCase form, so requests use the proto names; answers are read through
// field(), which takes either spelling, since enums may come as names or numbers and 64-bit
// integers as strings.

/** An error the API answered (or a transport failure), with the API's message. */
export class ApiError extends Error {
  constructor(message, { httpStatus = 0, code = 0, status = '' } = {}) {
    super(message);
    this.name = 'ApiError';
    this.httpStatus = httpStatus;
    this.code = code;
    this.status = status;
  }
}

/** The value of a proto field under its proto name or its lowerCamelCase JSON name. */
export function field(obj, name, fallback = undefined) {
  if (obj == null) return fallback;
  if (obj[name] !== undefined) return obj[name];
  const camel = name.replace(/_([a-z0-9])/g, (_, c) => c.toUpperCase());
  if (obj[camel] !== undefined) return obj[camel];
  return fallback;
}

/** A numeric field (int64 and uint64 come as strings in proto JSON; absent means 0). */
export function num(obj, name) {
  const value = Number(field(obj, name, 0));
  return Number.isFinite(value) ? value : 0;
}

/** A repeated field, [] when absent. */
export function list(obj, name) {
  const value = field(obj, name, []);
  return Array.isArray(value) ? value : [];
}

/**
 * An enum field as its short lower-case name: ("ADMIN_STATE_DRAINING" or 2) -> "draining".
 * `names` lists the enum's value names in number order, with their common prefix.
 */
export function enumName(obj, name, names) {
  const value = field(obj, name, 0);
  const full = typeof value === 'number' ? (names[value] ?? names[0]) : String(value || names[0]);
  const prefix = names[0].slice(0, names[0].lastIndexOf('_') + 1);
  const short = full.startsWith(prefix) ? full.slice(prefix.length) : full;
  return short.toLowerCase();
}

export const ADMIN_STATES = ['ADMIN_STATE_UNSPECIFIED', 'ADMIN_STATE_ENABLED',
  'ADMIN_STATE_DRAINING', 'ADMIN_STATE_DISABLED'];
export const HEALTHS = ['HEALTH_UNKNOWN', 'HEALTH_HEALTHY', 'HEALTH_UNHEALTHY'];
export const STRATEGIES = ['STRATEGY_UNSPECIFIED', 'STRATEGY_LEAST_ACTIVE',
  'STRATEGY_LOWEST_LATENCY', 'STRATEGY_ROUND_ROBIN', 'STRATEGY_WEIGHTED', 'STRATEGY_PRIORITY'];

async function errorFrom(res) {
  const text = await res.text().catch(() => '');
  try {
    const body = JSON.parse(text);
    const message = body.message ?? body.error?.message ?? body.error;
    if (typeof message === 'string' && message) {
      return new ApiError(message, { httpStatus: res.status, code: body.code, status: body.status });
    }
  } catch {
    // Not the API's JSON error: fall through to the status line.
  }
  return new ApiError(text.trim() || `${res.status} ${res.statusText}`, { httpStatus: res.status });
}

/** The admin API at `base` (same origin by default), authenticated with `token`. */
export class Api {
  constructor(token, base = '') {
    this.token = token;
    this.base = base;
  }

  async request(method, path, body) {
    const headers = { Authorization: `Bearer ${this.token}`, Accept: 'application/json' };
    const init = { method, headers, cache: 'no-store' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let res;
    try {
      res = await fetch(this.base + path, init);
    } catch (err) {
      throw new ApiError(`the control plane did not answer (${err.message})`);
    }
    if (!res.ok) throw await errorFrom(res);
    const text = await res.text();
    return text ? JSON.parse(text) : {};
  }

  get(path) { return this.request('GET', path); }
  post(path, body = {}) { return this.request('POST', path, body); }
  put(path, body) { return this.request('PUT', path, body); }
  patch(path, body) { return this.request('PATCH', path, body); }
  del(path) { return this.request('DELETE', path); }

  /**
   * POST /v1/models:delete: `body` is a DeleteModelRequest ({model, node} or {model, all: true}).
   * Resolves with the DeleteModelResponse (one result per node, failures included); rejects with
   * the API's message when nothing could be deleted.
   */
  deleteModel(body) { return this.post('/v1/models:delete', body); }

  /**
   * POST /v1/models:pull, calling onProgress with each PullProgress line as it arrives.
   * Resolves when the stream ends; rejects with the API's message when the pull cannot start,
   * or when the stream carries an error object of its own.
   */
  async pull(body, onProgress, signal) {
    let res;
    try {
      res = await fetch(`${this.base}/v1/models:pull`, {
        method: 'POST',
        headers: {
          Authorization: `Bearer ${this.token}`,
          'Content-Type': 'application/json',
          Accept: 'application/x-ndjson',
        },
        body: JSON.stringify(body),
        cache: 'no-store',
        signal,
      });
    } catch (err) {
      throw new ApiError(`the control plane did not answer (${err.message})`);
    }
    if (!res.ok) throw await errorFrom(res);
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffered = '';
    let streamError = null;
    const handle = (line) => {
      if (!line.trim()) return;
      const msg = JSON.parse(line);
      // A gateway-style envelope ({"result": ...} / {"error": {...}}) or the message itself.
      if (msg.error && typeof msg.error === 'object') {
        streamError = new ApiError(msg.error.message ?? JSON.stringify(msg.error));
        return;
      }
      if (msg.code !== undefined && msg.message !== undefined && msg.node === undefined) {
        streamError = new ApiError(msg.message, { code: msg.code, status: msg.status });
        return;
      }
      onProgress(msg.result ?? msg);
    };
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffered += value;
      let newline;
      while ((newline = buffered.indexOf('\n')) >= 0) {
        handle(buffered.slice(0, newline));
        buffered = buffered.slice(newline + 1);
      }
    }
    handle(buffered);
    if (streamError) throw streamError;
  }
}
