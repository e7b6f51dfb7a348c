// ollama-js (npm `ollama`) against corral-proxy: every call the library makes, through the
// proxy only, with two simulated nodes behind it. Node "a" and node "b" share llama3.2 and
// all-minilm; gemma3 lives only on "a" and qwen3:8b only on "b".

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { Fleet, loadClients, waitFor } from './harness.mjs';

const { Ollama } = await loadClients();

const kShared = ['llama3.2:latest', 'all-minilm:latest'];
const kOnlyA = 'gemma3:latest';
const kOnlyB = 'qwen3:8b';
const kLongStream = { tokens: 3000, token_interval_ms: 10 };
const kShortStream = { tokens: 6, token_interval_ms: 5 };

async function collect(iterator) {
  const parts = [];
  for await (const part of iterator) parts.push(part);
  return parts;
}

// Expects `promise` to reject with ollama-js's ResponseError for an HTTP 404 "not found".
async function expectNotFound(promise, model) {
  await assert.rejects(promise, (err) => {
    assert.equal(err.name, 'ResponseError', `expected a ResponseError, got ${err.stack}`);
    assert.equal(err.status_code, 404);
    assert.match(err.error, /not found/);
    assert.ok(err.error.includes(model.split(':')[0]), `"${err.error}" should name ${model}`);
    return true;
  });
}

describe('ollama-js through corral-proxy', { timeout: 60000 }, () => {
  let fleet;
  let ollama;

  before(async () => {
    fleet = await Fleet.start({
      nodes: [
        { name: 'a', models: [...kShared, kOnlyA] },
        { name: 'b', models: [...kShared, kOnlyB] },
      ],
    });
    ollama = new Ollama({ host: fleet.proxyUrl });
  });
  after(async () => {
    await fleet?.stop();
  });
  const guarded = (body) => (t) => fleet.guard(body)(t);

  test('generate without streaming returns one complete answer', guarded(async () => {
    const res = await ollama.generate({ model: 'llama3.2', prompt: 'Why is the sky blue?' });
    assert.equal(res.model, 'llama3.2', 'the model name is echoed as sent');
    assert.equal(res.done, true);
    assert.equal(res.done_reason, 'stop');
    assert.ok(res.response.length > 0, 'the answer has text');
    assert.ok(res.eval_count > 0);
  }));

  test('generate streams chunks until done', guarded(async () => {
    const parts = await collect(
        await ollama.generate({ model: 'llama3.2', prompt: 'Why is the sky blue?', stream: true }));
    assert.ok(parts.length >= 3, `expected several chunks, got ${parts.length}`);
    assert.ok(parts.slice(0, -1).every((p) => p.done === false));
    const last = parts.at(-1);
    assert.equal(last.done, true);
    assert.equal(last.done_reason, 'stop');
    assert.ok(parts.map((p) => p.response).join('').length > 0);
  }));

  test('chat without streaming returns the assistant message', guarded(async () => {
    const res = await ollama.chat({
      model: 'llama3.2',
      messages: [{ role: 'user', content: 'Hello there' }],
    });
    assert.equal(res.model, 'llama3.2');
    assert.equal(res.done, true);
    assert.equal(res.message.role, 'assistant');
    assert.ok(res.message.content.length > 0);
  }));

  test('chat streams message deltas until done', guarded(async () => {
    const parts = await collect(await ollama.chat({
      model: 'llama3.2',
      messages: [{ role: 'user', content: 'Hello there' }],
      stream: true,
    }));
    assert.ok(parts.length >= 3, `expected several chunks, got ${parts.length}`);
    assert.ok(parts.every((p) => p.message.role === 'assistant'));
    assert.equal(parts.at(-1).done, true);
    assert.ok(parts.map((p) => p.message.content).join('').length > 0);
  }));

  test('embed returns one vector per input', guarded(async () => {
    const res = await ollama.embed({ model: 'all-minilm', input: ['first text', 'second text'] });
    assert.equal(res.model, 'all-minilm');
    assert.equal(res.embeddings.length, 2);
    assert.ok(res.embeddings[0].length > 0);
    assert.equal(res.embeddings[0].length, res.embeddings[1].length);
    assert.ok(res.embeddings.flat().every((x) => typeof x === 'number'));
  }));

  test('embeddings (legacy) returns a vector', guarded(async () => {
    const res = await ollama.embeddings({ model: 'all-minilm', prompt: 'some text' });
    assert.ok(Array.isArray(res.embedding));
    assert.ok(res.embedding.length > 0);
    assert.ok(res.embedding.every((x) => typeof x === 'number'));
  }));

  test('list merges the tags of both nodes, with model and name set', guarded(async () => {
    const res = await ollama.list();
    const names = res.models.map((m) => m.name);
    assert.deepEqual([...names].sort(), [...kShared, kOnlyA, kOnlyB].sort(),
                     'each model once, from either node');
    for (const m of res.models) {
      assert.equal(m.model, m.name, `${m.name}: model and name are the same display form`);
      assert.match(m.digest, /^[0-9a-f]{64}$/);
      assert.ok(m.size > 0);
      assert.ok(m.details && typeof m.details.family === 'string', `${m.name} keeps its details`);
    }
  }));

  test('show answers for a model that only one node has', guarded(async () => {
    const res = await ollama.show({ model: 'gemma3' });
    assert.equal(res.details.family, 'gemma3');
    assert.ok(res.model_info && typeof res.model_info === 'object');
    assert.ok(Array.isArray(res.capabilities));
  }));

  test('a model on only one node is served by that node', guarded(async () => {
    const a = fleet.node('a');
    const b = fleet.node('b');
    const seen = { a: await a.requestCount('/api/generate'), b: await b.requestCount('/api/generate') };
    const onB = await ollama.generate({ model: kOnlyB, prompt: 'hi' });
    assert.equal(onB.done, true);
    const onA = await ollama.generate({ model: 'gemma3', prompt: 'hi' });
    assert.equal(onA.done, true);
    assert.equal(await b.requestCount('/api/generate'), seen.b + 1, `${kOnlyB} went to node b`);
    assert.equal(await a.requestCount('/api/generate'), seen.a + 1, 'gemma3 went to node a');
  }));

  test('ps lists what the nodes have loaded', guarded(async () => {
    // The proxy answers /api/ps from its snapshot, which the control plane's prober refreshes;
    // here the harness plays the prober once the model is loaded.
    await ollama.generate({ model: 'gemma3', prompt: 'hi' });
    await fleet.refreshSnapshot();
    const loaded = await waitFor(async () => {
      const res = await ollama.ps();
      return res.models.some((m) => m.name === kOnlyA) ? res : null;
    }, { timeoutMs: 10000, what: '/api/ps through the proxy to list gemma3:latest' });
    for (const m of loaded.models) {
      assert.equal(m.model, m.name);
      assert.ok(m.size > 0);
      assert.ok(!Number.isNaN(Date.parse(m.expires_at)), `${m.name}: expires_at parses`);
    }
  }));

  test('pull streams progress to success', guarded(async () => {
    const parts = await collect(await ollama.pull({ model: 'phi4', stream: true }));
    assert.equal(parts[0].status, 'pulling manifest');
    assert.equal(parts.at(-1).status, 'success');
    const layers = parts.filter((p) => p.digest);
    assert.ok(layers.length > 0, 'per-layer progress lines come through');
    assert.ok(layers.every((p) => p.digest.startsWith('sha256:') && p.total > 0));
  }));

  test('an unknown model is a ResponseError 404 "not found"', guarded(async () => {
    await expectNotFound(ollama.generate({ model: 'no-such-model', prompt: 'hi' }), 'no-such-model');
    await expectNotFound(ollama.chat({ model: 'no-such-model:7b', messages: [{ role: 'user', content: 'x' }] }), 'no-such-model');
    await expectNotFound(
        ollama.chat({ model: 'no-such-model', messages: [{ role: 'user', content: 'x' }], stream: true }),
        'no-such-model');
    await expectNotFound(ollama.embed({ model: 'no-such-model', input: 'x' }), 'no-such-model');
    await expectNotFound(ollama.show({ model: 'no-such-model' }), 'no-such-model');
  }));

  describe('aborting a stream cancels the generation on the node', () => {
    before(async () => fleet.configureAll(kLongStream));
    after(async () => fleet.configureAll(kShortStream));

    test('iterator.abort()', guarded(async () => {
      const cancelledBefore = await fleet.totalStat('cancelled');
      const stream = await ollama.generate({ model: 'llama3.2', prompt: 'tell a long story', stream: true });
      let received = 0;
      await assert.rejects(async () => {
        for await (const part of stream) {
          assert.equal(part.done, false, 'the long stream must still be running when aborted');
          if (++received === 2) stream.abort();
        }
      }, { name: 'AbortError' });
      await waitFor(async () => (await fleet.totalStat('cancelled')) > cancelledBefore,
                    { timeoutMs: 10000, what: 'a node to report the generation cancelled' });
    }));

    test('client.abort()', guarded(async () => {
      const cancelledBefore = await fleet.totalStat('cancelled');
      const client = new Ollama({ host: fleet.proxyUrl });
      const stream = await client.chat({
        model: kOnlyB,
        messages: [{ role: 'user', content: 'tell a long story' }],
        stream: true,
      });
      await assert.rejects(async () => {
        for await (const part of stream) {
          assert.equal(part.done, false, 'the long stream must still be running when aborted');
          client.abort();
        }
      }, { name: 'AbortError' });
      await waitFor(async () => (await fleet.node('b').stats()).cancelled > 0 &&
                                (await fleet.totalStat('cancelled')) > cancelledBefore,
                    { timeoutMs: 10000, what: 'node b to report the chat cancelled' });
    }));
  });
});

describe('ollama-js when a node dies mid-stream', { timeout: 60000 }, () => {
  let fleet;
  let ollama;

  before(async () => {
    // One node per model, so each scenario knows which node to kill.
    fleet = await Fleet.start({
      nodes: [
        { name: 'x', models: ['llama3.2:latest'], args: ['--tokens', '3000', '--token-interval-ms', '10'] },
        { name: 'y', models: ['qwen3:8b'], args: ['--tokens', '3000', '--token-interval-ms', '10'] },
      ],
    });
    ollama = new Ollama({ host: fleet.proxyUrl });
  });
  after(async () => {
    await fleet?.stop();
  });
  const guarded = (body) => (t) => fleet.guard(body)(t);

  // Streams from the node holding `model`, kills that node after the first chunks, and returns
  // the error the client raised (failing if the stream ended as if nothing had happened).
  async function streamThroughDyingNode(model, nodeName) {
    const stream = await ollama.generate({ model, prompt: 'tell a long story', stream: true });
    let received = 0;
    let finished = false;
    try {
      for await (const part of stream) {
        if (part.done) finished = true;
        if (++received === 2) await fleet.node(nodeName).kill();
      }
    } catch (err) {
      assert.ok(received >= 2, 'chunks arrived before the node died');
      assert.equal(finished, false);
      return err;
    }
    assert.fail(`the stream ended without an error after ${received} chunks ` +
                `(done chunk seen: ${finished}): a dead node looked like a success`);
  }

  test('the client throws instead of ending quietly', guarded(async () => {
    const err = await streamThroughDyingNode('llama3.2', 'x');
    assert.ok(err instanceof Error);
  }));

  test('the proxy ends the broken stream with an error line', guarded(async () => {
    // ollama-js throws its own "Did not receive done" when a stream is merely cut off; the
    // proxy is meant to say what happened in an {"error": ...} line, which becomes the message.
    const err = await streamThroughDyingNode('qwen3:8b', 'y');
    assert.doesNotMatch(err.message, /Did not receive done or success response/,
                        'the stream ended cleanly but without an {"error": ...} line');
    // A connection cut without the chunked terminator surfaces as fetch's TypeError
    // ("terminated"); only an error line becomes a plain Error with the proxy's message.
    assert.equal(err.name, 'Error', `expected the proxy's error line, got ${err.stack}`);
    assert.ok(err.message.length > 0);
  }));
});
