// ollama-js (npm `ollama`) given the base URL http://HOST/api/proxy, as users of the proxy
// Corral replaces configured their clients (docs/migrating.md): the library appends its usual
// paths (/api/chat, /api/tags, ...) to that URL and must work unchanged, while the nodes behind
// the proxy see only Ollama's own paths. Two simulated nodes share llama3.2 and all-minilm;
// gemma3 lives only on "a".

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { Fleet, loadClients } from './harness.mjs';

const { Ollama } = await loadClients();

const kShared = ['llama3.2:latest', 'all-minilm:latest'];
const kOnlyA = 'gemma3:latest';

async function collect(iterator) {
  const parts = [];
  for await (const part of iterator) parts.push(part);
  return parts;
}

describe('ollama-js with host http://HOST/api/proxy', { timeout: 60000 }, () => {
  let fleet;
  let ollama;

  before(async () => {
    fleet = await Fleet.start({
      nodes: [
        { name: 'a', models: [...kShared, kOnlyA] },
        { name: 'b', models: [...kShared] },
      ],
    });
    ollama = new Ollama({ host: `${fleet.proxyUrl}/api/proxy` });
  });
  after(async () => {
    await fleet?.stop();
  });
  const guarded = (body) => (t) => fleet.guard(body)(t);

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
    assert.ok(parts.slice(0, -1).every((p) => p.done === false));
    assert.equal(parts.at(-1).done, true);
    assert.ok(parts.map((p) => p.message.content).join('').length > 0);
  }));

  test('generate, streamed and not', guarded(async () => {
    const whole = await ollama.generate({ model: 'gemma3', prompt: 'Why is the sky blue?' });
    assert.equal(whole.done, true);
    assert.ok(whole.response.length > 0);
    const parts = await collect(
        await ollama.generate({ model: 'llama3.2', prompt: 'Why?', stream: true }));
    assert.equal(parts.at(-1).done, true);
  }));

  test('list gives the fleet\'s merged tags, as without the base URL', guarded(async () => {
    const res = await ollama.list();
    assert.deepEqual(res.models.map((m) => m.name).sort(), [...kShared, kOnlyA].sort());
    const plain = await new Ollama({ host: fleet.proxyUrl }).list();
    assert.deepEqual(res, plain);
  }));

  test('embed and show', guarded(async () => {
    const embedded = await ollama.embed({ model: 'all-minilm', input: ['one', 'two'] });
    assert.equal(embedded.embeddings.length, 2);
    const shown = await ollama.show({ model: 'gemma3' });
    assert.equal(shown.details.family, 'gemma3');
  }));

  test('the nodes saw Ollama\'s paths only', guarded(async () => {
    for (const name of ['a', 'b']) {
      const seen = Object.keys((await fleet.node(name).stats()).requests ?? {});
      assert.ok(seen.every((path) => !path.startsWith('/api/proxy')),
                `node ${name} saw ${JSON.stringify(seen)}`);
    }
    const chats = (await fleet.node('a').requestCount('/api/chat')) +
                  (await fleet.node('b').requestCount('/api/chat'));
    assert.equal(chats, 2, 'both chats reached a node as /api/chat');
  }));
});
