/**
 * Prompt moderation at the door (PROMPT_BLOCKLIST_FILE): words, phrases and regular expressions, matched
 * in every dialect's prompt fields after LoRA tags come out (negative prompts excepted), refused before
 * any hold in each dialect's own shape (OpenAI's SDK sees content_policy_violation), the term never said
 * to the client and logged for the operator with the account; the file read again on SIGHUP; a file that
 * was set but cannot be read stops the API.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import OpenAI from 'openai';
import { pino } from 'pino';
import Replicate from 'replicate';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer } from '../../apps/api/src/app';
import { parseConfig } from '../../apps/api/src/config';
import { startTestRedis, type TestRedis } from '../support/redis';
import { accountWith, authed, balanceOf, MODELS_DIR, type Service, startService } from './support';

const TERMS = ['# the operator\'s list', 'forbidden', 'purple   elephant', '/secret-?word\\d+/', 'green-objects', ''].join('\n');

let redis: TestRedis;
let service: Service;
let dir: string;
let key: string;
const lines: Record<string, unknown>[] = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sdq-blocklist-'));
  writeFileSync(join(dir, 'blocklist.txt'), TERMS);
  redis = await startTestRedis();
  const sink = new Writable({
    write(chunk, _enc, done) {
      for (const line of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  // no worker: every request here is refused at the door or priced by a dry run
  service = await startService(redis, { env: { PROMPT_BLOCKLIST_FILE: join(dir, 'blocklist.txt'), REQUIRE_WORKER: 'false' }, logger: pino({ level: 'info' }, sink) });
  key = await accountWith(service, 'moderated', 10);
}, 60_000);
afterAll(async () => {
  await service?.close();
  await redis?.close();
  rmSync(dir, { recursive: true, force: true });
});

const v1 = (text: string, extra: Record<string, unknown> = {}) =>
  fetch(`${service.url}/v1/generation/tiny-sd/text-to-image?dry_run=true`, { method: 'POST', headers: authed(key, { 'content-type': 'application/json' }), body: JSON.stringify({ text_prompts: [{ text }], steps: 10, ...extra }) });

describe('the prompt blocklist', () => {
  it('words on word boundaries in any case, phrases across white space, regular expressions; negative prompts and LoRA tags are not held against it', async () => {
    const before = await balanceOf(service, key);
    for (const text of ['a forbidden circle', 'a FORBIDDEN circle', 'a purple elephant', 'a purple\nelephant on blue', 'secretword42', 'the secret-word7 circle', 'a green-objects circle']) {
      const res = await v1(text);
      const body = (await res.json()) as { name: string; message: string };
      expect([text, res.status, body.name]).toEqual([text, 400, 'content_moderated']);
      // the term is never said back: it would teach evasion
      expect(body.message).not.toMatch(/forbidden|purple|elephant|secret|green-objects/i);
    }
    for (const text of ['a forbiddenly circle', 'a purple circle and an elephant', 'secretword', '<lora:green-objects:0.5> a red circle']) {
      const res = await v1(text);
      expect([text, res.status]).toEqual([text, 200]);
    }
    expect((await v1('a red circle', { text_prompts: [{ text: 'a red circle' }, { text: 'forbidden', weight: -1 }] })).status).toBe(200);
    expect(await balanceOf(service, key)).toBe(before);
  });

  it('the operator sees the term and the account in the log', async () => {
    await v1('a forbidden square');
    const line = lines.find((l) => l.msg === 'prompt refused: it matches a term of PROMPT_BLOCKLIST_FILE' && l.term === 'forbidden');
    expect(line).toMatchObject({ term: 'forbidden', account_id: expect.any(String) });
  });

  it('every dialect refuses in its own shape: v2beta content_moderation, OpenAI content_policy_violation through its SDK, A1111, Replicate, fal, animations', async () => {
    const form = new FormData();
    form.append('prompt', 'a purple elephant');
    const v2 = await fetch(`${service.url}/v2beta/stable-image/generate/core`, { method: 'POST', headers: authed(key, { accept: 'application/json' }), body: form });
    expect(v2.status).toBe(400);
    expect(await v2.json()).toMatchObject({ name: 'content_moderation', errors: [expect.stringContaining('content moderation')] });

    const openai = new OpenAI({ apiKey: key, baseURL: `${service.url}/v1` });
    const refused = await openai.images.generate({ model: 'tiny-sd', prompt: 'a forbidden circle', size: '256x256' }).catch((err: unknown) => err);
    expect(refused).toBeInstanceOf(OpenAI.BadRequestError);
    expect(refused).toMatchObject({ status: 400, code: 'content_policy_violation' });

    const a1111 = await fetch(`${service.url}/sdapi/v1/txt2img`, { method: 'POST', headers: authed(key, { 'content-type': 'application/json' }), body: JSON.stringify({ prompt: 'secretword9 on blue', negative_prompt: 'forbidden' }) });
    expect(a1111.status).toBe(400);
    expect(await a1111.json()).toMatchObject({ error: 'content_moderated' });

    const replicate = new Replicate({ auth: key, baseUrl: `${service.url}/replicate/v1` });
    const error = await replicate.predictions.create({ model: 'sdq/tiny-sd', input: { prompt: 'a forbidden circle' } }).catch((err: unknown) => err as Error);
    expect(String((error as Error).message)).toMatch(/status 400/);
    expect(String((error as Error).message)).toMatch(/content_moderated/);

    const fal = await fetch(`${service.url}/fal/sdq/tiny-sd`, { method: 'POST', headers: authed(key, { 'content-type': 'application/json' }), body: JSON.stringify({ prompt: 'a forbidden circle' }) });
    expect(fal.status).toBe(400);
    expect(await fal.json()).toMatchObject({ code: 'content_moderated' });

    const animation = await fetch(`${service.url}/v1/generation/tiny-sd/animation`, {
      method: 'POST',
      headers: authed(key, { 'content-type': 'application/json' }),
      body: JSON.stringify({ keyframes: [{ frame: 0, text_prompts: [{ text: 'a red circle' }] }, { frame: 3, text_prompts: [{ text: 'a forbidden circle' }] }], frames: 4 }),
    });
    expect(animation.status).toBe(400);
    expect(((await animation.json()) as { name: string }).name).toBe('content_moderated');
  });

  it('is read again on SIGHUP', async () => {
    expect((await v1('a zebra on blue')).status).toBe(200);
    writeFileSync(join(dir, 'blocklist.txt'), `${TERMS}\nzebra\n`);
    process.emit('SIGHUP');
    expect((await v1('a zebra on blue')).status).toBe(400);
    // a file gone keeps the list in force, and says so to the operator
    rmSync(join(dir, 'blocklist.txt'));
    process.emit('SIGHUP');
    expect((await v1('a zebra on blue')).status).toBe(400);
    expect(lines.some((l) => String(l.msg).includes('could not be read') && String(l.msg).includes('stays in force'))).toBe(true);
    writeFileSync(join(dir, 'blocklist.txt'), TERMS);
  });

  it('a file that was set but cannot be read stops the API at start, naming it', async () => {
    const config = parseConfig({ REDIS_URL: redis.url, QUEUE_PREFIX: `${redis.prefix}-x`, MODELS_DIR, PORT: '0', HOST: '127.0.0.1', PROMPT_BLOCKLIST_FILE: join(dir, 'missing.txt'), LOG_LEVEL: 'silent' });
    await expect(startServer(config, { logger: pino({ level: 'silent' }) })).rejects.toThrow(/PROMPT_BLOCKLIST_FILE .*missing\.txt could not be read \(ENOENT\)/);
  });
});
