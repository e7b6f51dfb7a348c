// openai-node (npm `openai`) against corral-proxy's OpenAI-compatible /v1 API, with two
// simulated nodes behind it. Node "a" and node "b" share llama3.2 and all-minilm; gemma3 lives
// only on "a" and qwen3:8b only on "b".

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { Fleet, loadClients, waitFor } from './harness.mjs';

const { OpenAI } = await loadClients();

const kShared = ['llama3.2:latest', 'all-minilm:latest'];
const kOnlyA = 'gemma3:latest';
const kOnlyB = 'qwen3:8b';
const kMessages = [{ role: 'user', content: 'Why is the sky blue?' }];

// The proxy is open (no tokens in the snapshot), but the client insists on a key. No retries:
// every failure the tests provoke must reach the assertion as it happened.
function clientFor(fleet) {
  return new OpenAI({ baseURL: `${fleet.proxyUrl}/v1`, apiKey: 'corral-e2e', maxRetries: 0 });
}

async function collect(stream) {
  const chunks = [];
  for await (const chunk of stream) chunks.push(chunk);
  return chunks;
}

describe('openai-node through corral-proxy', { timeout: 60000 }, () => {
  let fleet;
  let openai;

  before(async () => {
    fleet = await Fleet.start({
      nodes: [
        { name: 'a', models: [...kShared, kOnlyA] },
        { name: 'b', models: [...kShared, kOnlyB] },
      ],
    });
    openai = clientFor(fleet);
  });
  after(async () => {
    await fleet?.stop();
  });
  const guarded = (body) => (t) => fleet.guard(body)(t);

  test('chat.completions.create without streaming', guarded(async () => {
    const res = await openai.chat.completions.create({ model: 'llama3.2', messages: kMessages });
    assert.equal(res.object, 'chat.completion');
    assert.equal(res.model, 'llama3.2');
    assert.equal(res.choices.length, 1);
    assert.equal(res.choices[0].message.role, 'assistant');
    assert.ok(res.choices[0].message.content.length > 0);
    assert.equal(res.choices[0].finish_reason, 'stop');
    assert.ok(res.usage.completion_tokens > 0);
    assert.equal(res.usage.total_tokens, res.usage.prompt_tokens + res.usage.completion_tokens);
  }));

  test('chat.completions.create streaming assembles the content', guarded(async () => {
    const whole = await openai.chat.completions.create({ model: 'llama3.2', messages: kMessages });
    const chunks = await collect(
        await openai.chat.completions.create({ model: 'llama3.2', messages: kMessages, stream: true }));
    assert.ok(chunks.length >= 3, `expected several chunks, got ${chunks.length}`);
    assert.ok(chunks.every((c) => c.object === 'chat.completion.chunk'));
    assert.equal(chunks[0].choices[0].delta.role, 'assistant');
    const content = chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('');
    assert.equal(content, whole.choices[0].message.content, 'the deltas add up to the answer');
    const reasons = chunks.map((c) => c.choices[0]?.finish_reason).filter(Boolean);
    assert.deepEqual(reasons, ['stop'], 'exactly one chunk finishes the answer');
    assert.ok(chunks.every((c) => !c.usage), 'no usage chunk unless asked for');
  }));

  test('stream_options.include_usage adds a final usage chunk', guarded(async () => {
    const chunks = await collect(await openai.chat.completions.create({
      model: kOnlyB,
      messages: kMessages,
      stream: true,
      stream_options: { include_usage: true },
    }));
    const last = chunks.at(-1);
    assert.deepEqual(last.choices, []);
    assert.ok(last.usage.completion_tokens > 0);
    assert.equal(last.usage.total_tokens, last.usage.prompt_tokens + last.usage.completion_tokens);
    assert.equal(chunks.at(-2).choices[0].finish_reason, 'stop');
  }));

  test('completions.create, with and without streaming', guarded(async () => {
    const res = await openai.completions.create({ model: 'llama3.2', prompt: 'Say hello' });
    assert.equal(res.object, 'text_completion');
    assert.ok(res.choices[0].text.length > 0);
    assert.equal(res.choices[0].finish_reason, 'stop');

    const chunks = await collect(
        await openai.completions.create({ model: kOnlyA, prompt: 'Say hello', stream: true }));
    assert.ok(chunks.length >= 2, `expected several chunks, got ${chunks.length}`);
    assert.ok(chunks.map((c) => c.choices[0]?.text ?? '').join('').length > 0);
    assert.equal(chunks.at(-1).choices[0].finish_reason, 'stop');
  }));

  test('embeddings.create (the client asks for base64 by default) and float', guarded(async () => {
    const res = await openai.embeddings.create({ model: 'all-minilm', input: ['first', 'second'] });
    assert.equal(res.object, 'list');
    assert.equal(res.data.length, 2);
    assert.deepEqual(res.data.map((d) => d.index), [0, 1]);
    const dims = res.data[0].embedding.length;
    assert.ok(dims > 0);
    assert.ok(res.data.every((d) => d.embedding.length === dims &&
                                    d.embedding.every((x) => Number.isFinite(x))));

    const float = await openai.embeddings.create(
        { model: 'all-minilm', input: 'first', encoding_format: 'float' });
    assert.equal(float.data.length, 1);
    assert.equal(float.data[0].embedding.length, dims);
  }));

  test('models.list merges both nodes', guarded(async () => {
    const ids = [];
    for await (const model of openai.models.list()) {
      assert.equal(model.object, 'model');
      assert.equal(model.owned_by, 'library');
      ids.push(model.id);
    }
    assert.deepEqual(ids.sort(), [...kShared, kOnlyA, kOnlyB].sort());
  }));

  test('an unknown model is a NotFoundError (404)', guarded(async () => {
    for (const call of [
      () => openai.chat.completions.create({ model: 'no-such-model', messages: kMessages }),
      () => openai.chat.completions.create({ model: 'no-such-model', messages: kMessages, stream: true }),
      () => openai.completions.create({ model: 'no-such-model', prompt: 'x' }),
      () => openai.embeddings.create({ model: 'no-such-model', input: 'x' }),
    ]) {
      await assert.rejects(call, (err) => {
        assert.ok(err instanceof OpenAI.NotFoundError, `expected NotFoundError, got ${err.stack}`);
        assert.equal(err.status, 404);
        assert.match(err.message, /no-such-model/);
        assert.match(err.message, /not found/);
        return true;
      });
    }
  }));

  test('aborting a stream via AbortController cancels the generation', guarded(async () => {
    await fleet.configureAll({ tokens: 3000, token_interval_ms: 10 });
    try {
      const cancelledBefore = await fleet.totalStat('cancelled');
      const controller = new AbortController();
      const stream = await openai.chat.completions.create(
          { model: 'llama3.2', messages: kMessages, stream: true }, { signal: controller.signal });
      // openai-node ends the iteration quietly when its own signal aborts the stream.
      let received = 0;
      for await (const chunk of stream) {
        assert.equal(chunk.choices[0].finish_reason, null, 'still running when aborted');
        if (++received === 2) controller.abort();
      }
      assert.equal(received, 2, 'nothing more is read after the abort');
      await waitFor(async () => (await fleet.totalStat('cancelled')) > cancelledBefore,
                    { timeoutMs: 10000, what: 'a node to report the generation cancelled' });
    } finally {
      await fleet.configureAll({ tokens: 6, token_interval_ms: 5 });
    }
  }));
});

describe('openai-node when a node dies mid-stream', { timeout: 60000 }, () => {
  let fleet;

  before(async () => {
    fleet = await Fleet.start({
      nodes: [{ name: 'x', models: ['llama3.2:latest'],
                args: ['--tokens', '3000', '--token-interval-ms', '10'] }],
    });
  });
  after(async () => {
    await fleet?.stop();
  });

  test('the client raises an APIError, not a quiet end', (t) => fleet.guard(async () => {
    const stream = await clientFor(fleet).chat.completions.create(
        { model: 'llama3.2', messages: kMessages, stream: true });
    let received = 0;
    await assert.rejects(async () => {
      for await (const chunk of stream) {
        assert.equal(chunk.choices[0]?.finish_reason ?? null, null, 'the answer must not finish');
        if (++received === 2) await fleet.node('x').kill();
      }
    }, (err) => {
      assert.ok(received >= 2, 'chunks arrived before the node died');
      // The proxy's `data: {"error": ...}` event is what makes the client raise APIError; a
      // stream that is merely cut off ends the loop without any error at all.
      assert.ok(err instanceof OpenAI.APIError, `expected APIError, got ${err.stack}`);
      return true;
    }, 'the stream ended without an error: a dead node looked like a finished answer');
  })(t));
});
