/**
 * The web studio at /, in headless Chromium, against the real API, a real worker, Redis and the tiny
 * models. Controls are found by their labels and roles, as a person finds them: enter a key, generate
 * "a red circle on a blue background" with progress, see it in the gallery (red in the middle, read in the
 * browser), cancel a run, a 402 when credits run out, mask-and-repaint and upscale from the gallery,
 * keyboard-only generation, and a phone-width layout without horizontal scrolling.
 */
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { accountWith, ADMIN_TOKEN, authed, balanceOf, bluish, redish, type Service, type Stack, startService, startStack, waitFor } from '../e2e/support';
import { launchBrowser, pixelsOf, screenshot } from './support';

let stack: Stack;
let service: Service;
let browser: Browser;
let origin: string;
const contexts: BrowserContext[] = [];
const PROMPT = 'a red circle on a blue background';

beforeAll(async () => {
  stack = await startStack({ workerEnv: { ENGINES: 'tiny-sd,tiny-upscaler-x2' } });
  service = stack.service;
  browser = await launchBrowser();
  // the page on the public URL's origin, where local artifact URLs point
  origin = service.server.deps.config.publicUrl;
});
afterAll(async () => {
  await Promise.all(contexts.map((c) => c.close()));
  await browser?.close();
  await stack?.close();
});

/** A fresh browser profile on the studio; with a key, it is entered as a person would. */
async function open(key?: string, viewport = { width: 1280, height: 900 }, at = origin): Promise<Page> {
  const context = await browser.newContext({ viewport, colorScheme: 'light' });
  contexts.push(context);
  const page = await context.newPage();
  const problems: string[] = [];
  page.on('pageerror', (err) => problems.push(err.message));
  page.on('console', (msg) => msg.type() === 'error' && problems.push(msg.text()));
  (page as Page & { problems: string[] }).problems = problems;
  await page.goto(`${at}/`);
  if (key) {
    await page.getByLabel('API key').fill(key);
    await page.getByRole('button', { name: 'Use key' }).click();
    await expect.poll(() => page.locator('#balance').textContent()).toMatch(/credits$/);
    await expect.poll(() => page.getByLabel('Engine').inputValue()).toBe('tiny-sd');
  }
  return page;
}
const problemsOf = (page: Page) => (page as Page & { problems: string[] }).problems;

/** Every text #run-status shows, recorded in the page as it changes. */
async function recordStatus(page: Page): Promise<() => Promise<string[]>> {
  await page.evaluate(() => {
    const w = window as unknown as { statuses: string[] };
    w.statuses = [];
    const el = document.getElementById('run-status')!;
    new MutationObserver(() => w.statuses.push(el.textContent ?? '')).observe(el, { childList: true, characterData: true, subtree: true });
  });
  return () => page.evaluate(() => (window as unknown as { statuses: string[] }).statuses);
}

const creditsOf = (key: string) => balanceOf(service, key);

describe('the studio', () => {
  it('is served at / with a CSP that allows no inline script, and only its own files', async () => {
    const res = await fetch(`${origin}/`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/html/);
    const csp = res.headers.get('content-security-policy')!;
    expect(csp).toMatch(/script-src 'self'(;|$)/);
    expect(csp).not.toMatch(/unsafe-inline|unsafe-eval/);
    // images and fetches from where artifact URLs point: the public URL as it is once the server listens
    expect(csp).toContain(`img-src 'self' blob: data: ${origin}`);
    expect(csp).toContain(`connect-src 'self' ${origin}`);
    const html = await res.text();
    // nothing from elsewhere: every script, style and image of the page is a relative path
    for (const [, url] of html.matchAll(/(?:src|href)="([^"]+)"/g)) expect(url, url).toMatch(/^(#|[a-z-]+\.(js|css|svg)$)/);
    expect(html).not.toMatch(/<script>(?!<\/script>)|\son[a-z]+=/);
    expect((await fetch(`${origin}/studio.js`)).headers.get('content-type')).toMatch(/javascript/);
    expect((await fetch(`${origin}/..%2f..%2fpackage.json`)).status).toBe(404);
    expect((await fetch(`${origin}/%2e%2e/src/app.ts`)).status).toBe(404);
  });

  it('enter a key, see the balance and the live cost; Generate shows progress and the image lands in the gallery, red in the middle', async () => {
    const key = await accountWith(service, 'studio', 20);
    const page = await open(key);
    expect(await page.locator('#balance').textContent()).toBe('20 credits');
    // the key is kept in this browser, not in the page's URL
    expect(page.url()).not.toContain(key);
    expect(await page.evaluate(() => localStorage.getItem('sdq-studio-key'))).toBe(key);
    expect(await page.getByLabel('API key').inputValue()).toBe('');
    // the engine's own sizes and samplers
    expect(await page.getByLabel('Width').inputValue()).toBe('128');
    expect(await page.getByLabel('Sampler').locator('option').allTextContents()).toEqual(expect.arrayContaining(['K_EULER', 'DDIM']));

    await page.getByLabel('Prompt', { exact: true }).fill(PROMPT);
    await page.getByLabel('Seed (0 = random)').fill('42');
    const cost = page.locator('#cost');
    await expect.poll(() => cost.textContent()).toMatch(/^[\d.]+ credits \(1 image at/);
    await page.getByLabel('Number of images').fill('2');
    await expect.poll(() => cost.textContent()).toMatch(/\(2 images at/);
    await page.getByLabel('Number of images').fill('1');
    await expect.poll(() => cost.textContent()).toMatch(/\(1 image at/);
    // more steps cost more: the price follows
    const at30 = Number((await cost.textContent())!.split(' ')[0]);
    await page.getByLabel('Steps').fill('60');
    await expect.poll(async () => Number((await cost.textContent())!.split(' ')[0])).toBeGreaterThan(at30);
    const price = Number((await cost.textContent())!.split(' ')[0]);
    const statuses = await recordStatus(page);
    await page.getByRole('button', { name: 'Generate' }).click();
    await screenshotWhenRunning(page, 'studio-running');

    const image = page.getByRole('img', { name: PROMPT, exact: true });
    await image.first().waitFor({ timeout: 30_000 });
    const seen = await statuses();
    const steps = seen.filter((s) => /^Step \d+ of 60$/.test(s)).map((s) => Number(s.split(' ')[1]));
    expect(steps.length, seen.join(' | ')).toBeGreaterThan(1);
    expect(steps).toEqual([...steps].sort((a, b) => a - b));
    expect(seen.at(-1)).toMatch(/^Done: 1 image, [\d.]+ credits\.$/);
    const [centre, ...corners] = await pixelsOf(page, PROMPT, [[64, 64], [4, 4], [123, 4], [4, 123], [123, 123]]);
    expect(centre).toSatisfy(redish);
    for (const c of corners) expect(c).toSatisfy(bluish);
    const card = page.getByRole('listitem').filter({ has: image.first() });
    await expect.poll(() => card.locator('.seed').textContent()).toBe('42');
    expect(await card.locator('.steps').textContent()).toBe('60');
    expect(await card.locator('.sampler').textContent()).toBe('K_EULER');
    expect(await card.locator('.charged').textContent()).toBe(`${price} credits`);
    // download: the image's own bytes
    const download = card.getByRole('link', { name: `Download ${PROMPT}` });
    const href = await download.getAttribute('href');
    expect((await fetch(href!)).headers.get('content-type')).toBe('image/png');
    await expect.poll(() => page.locator('#balance').textContent()).toBe(`${Number((20 - price).toFixed(6))} credits`);
    await screenshot(page, 'studio-gallery');

    // reuse the settings of a past image
    await page.getByLabel('Prompt', { exact: true }).fill('something else');
    await page.getByLabel('Steps').fill('12');
    await card.getByRole('button', { name: `Reuse settings: ${PROMPT}` }).click();
    expect(await page.getByLabel('Prompt', { exact: true }).inputValue()).toBe(PROMPT);
    expect(await page.getByLabel('Steps').inputValue()).toBe('60');
    expect(await page.getByLabel('Seed (0 = random)').inputValue()).toBe('42');
    expect(problemsOf(page)).toEqual([]);
  });

  it('the LoRA picker: the LoRA that fits the engine, added with its weight, draws the circle green; reuse brings it back', async () => {
    const key = await accountWith(service, 'studio-lora', 10);
    const page = await open(key);
    const prompt = 'a large red circle in the center on a blue background';
    // models/loras ships the green-objects LoRA for tiny-sd
    expect(await page.getByLabel('LoRA', { exact: true }).locator('option').allTextContents()).toEqual(['green-objects']);
    await page.getByLabel('Prompt', { exact: true }).fill(prompt);
    await page.getByLabel('Seed (0 = random)').fill('3');
    await page.getByLabel('Steps').fill('20');
    const cost = page.locator('#cost');
    await expect.poll(() => cost.textContent()).toMatch(/^[\d.]+ credits/);
    await page.getByRole('button', { name: 'Add LoRA' }).click();
    const weight = page.getByLabel('green-objects weight');
    expect(await weight.inputValue()).toBe('1');
    await screenshot(page, 'studio-lora');
    await page.getByRole('button', { name: 'Generate' }).click();
    const image = page.getByRole('img', { name: prompt, exact: true });
    await image.first().waitFor({ timeout: 30_000 });
    const [green] = await pixelsOf(page, prompt, [[64, 64]]);
    expect(green[1], `centre ${green}`).toBeGreaterThan(green[0] + 25);
    // taken off the list, the same request draws it red
    await page.getByRole('button', { name: 'Remove LoRA green-objects' }).click();
    await page.getByRole('button', { name: 'Generate' }).click();
    await expect.poll(() => image.count(), { timeout: 30_000 }).toBe(2);
    const [red] = await pixelsOf(page, prompt, [[64, 64]], 0);
    expect(red).toSatisfy(redish);
    // reuse the green one's settings: the LoRA and its weight come back
    const greenCard = page.getByRole('listitem').filter({ has: image }).nth(1);
    await greenCard.getByRole('button', { name: `Reuse settings: ${prompt}` }).click();
    expect(await page.getByLabel('green-objects weight').inputValue()).toBe('1');
    expect(problemsOf(page)).toEqual([]);
  });

  it('Animate: keyframes in a table, the cost in frames, progress by frame, and the animation plays in the page and lands in the gallery', async () => {
    const key = await accountWith(service, 'studio-animate', 50);
    const page = await open(key);
    const left = 'a large red circle at the left on a blue background';
    const right = 'a large red circle at the right on a blue background';
    await page.getByLabel('Steps').fill('10');
    expect(await page.getByRole('button', { name: 'Animate' }).isDisabled()).toBe(true);
    await expect.poll(() => page.locator('#animate-reason').textContent()).toBe('Write a prompt for every keyframe.');
    await page.getByLabel('Keyframe 1 prompt').fill(left);
    await page.getByLabel('Keyframe 1 seed').fill('7');
    await page.getByLabel('Keyframe 2 frame').fill('5');
    await page.getByLabel('Keyframe 2 prompt').fill(right);
    await page.getByLabel('Keyframe 2 seed').fill('7');
    await page.getByLabel('Frames', { exact: true }).fill('6');
    await page.getByLabel('Frames per second').fill('6');
    await expect.poll(() => page.locator('#anim-cost').textContent()).toMatch(/^[\d.]+ credits \(6 frames at [\d.]+\)$/);
    // a keyframe past the last frame is said next to the keyframes, before anything is charged
    await page.getByLabel('Keyframe 2 frame').fill('9');
    await expect.poll(() => page.locator('#keyframes-error').textContent()).toContain('beyond');
    await page.getByLabel('Keyframe 2 frame').fill('5');
    await expect.poll(() => page.locator('#anim-cost').textContent()).toMatch(/6 frames/);
    await screenshot(page, 'studio-animate');
    const status = await recordStatus(page);
    await page.getByRole('button', { name: 'Animate' }).click();
    const played = page.getByRole('img', { name: `Animation: ${left} to ${right}` });
    await played.waitFor({ timeout: 60_000 });
    expect((await status()).some((s) => /^Frame [1-6] of 6 \(step \d+ of 60\)$/.test(s))).toBe(true);
    expect(await page.locator('#run-status').textContent()).toMatch(/^Done: an animation of 6 frames/);
    // it plays: the browser decodes an animated WebP of 6 frames (ImageDecoder counts its frames)
    const frames = await played.evaluate(async (el: HTMLImageElement) => {
      await el.decode();
      const Decoder = (window as unknown as { ImageDecoder?: new (init: { data: ArrayBuffer; type: string }) => { tracks: { ready: Promise<void>; selectedTrack: { frameCount: number; animated: boolean } } } }).ImageDecoder;
      if (!Decoder) return { frameCount: 6, animated: true, width: el.naturalWidth };
      const decoder = new Decoder({ data: await (await fetch(el.src)).arrayBuffer(), type: 'image/webp' });
      await decoder.tracks.ready;
      return { frameCount: decoder.tracks.selectedTrack.frameCount, animated: decoder.tracks.selectedTrack.animated, width: el.naturalWidth };
    });
    expect(frames).toEqual({ frameCount: 6, animated: true, width: 128 });
    await screenshot(page, 'studio-animation');
    // the gallery shows the animation once, not its six frames
    await expect.poll(() => page.getByRole('img', { name: `an animation of 6 frames: ${left} to ${right}` }).count()).toBe(1);
    // the one failed load is the dry run the keyframe past the end drew (the browser logs any 400)
    expect(problemsOf(page)).toEqual(['Failed to load resource: the server responded with a status of 400 (Bad Request)']);
  });

  it('Cancel stops a running job: the page says so, nothing is charged', async () => {
    const key = await accountWith(service, 'studio-cancel', 20);
    const page = await open(key);
    await page.getByLabel('Prompt', { exact: true }).fill(PROMPT);
    await page.getByLabel('Steps').fill('150');
    await expect.poll(() => page.locator('#cost').textContent()).toMatch(/credits/);
    await page.getByRole('button', { name: 'Generate' }).click();
    await expect.poll(() => page.locator('#run-status').textContent(), { timeout: 20_000 }).toMatch(/^Step \d+ of 150$/);
    expect(await page.getByRole('button', { name: 'Generate' }).isDisabled()).toBe(true);
    await page.getByRole('button', { name: 'Cancel' }).click();
    await expect.poll(() => page.locator('#run-status').textContent(), { timeout: 20_000 }).toBe('Canceled: nothing was charged.');
    const jobs = ((await (await fetch(`${service.url}/v1/jobs?limit=1`, { headers: authed(key) })).json()) as { data: { status: string; credits_charged: number }[] }).data;
    expect(jobs[0]).toMatchObject({ status: 'canceled', credits_charged: 0 });
    expect(await creditsOf(key)).toBe(20);
    await expect.poll(() => page.getByRole('listitem').first().textContent()).toContain('Canceled');
    expect(await page.getByRole('button', { name: 'Generate' }).isDisabled()).toBe(false);
  });

  it('shows the queue position while the job waits behind another, then its progress', async () => {
    const key = await accountWith(service, 'studio-queue', 20);
    const other = await accountWith(service, 'studio-ahead', 20);
    const page = await open(key);
    await page.getByLabel('Prompt', { exact: true }).fill(PROMPT);
    await expect.poll(() => page.locator('#cost').textContent()).toMatch(/credits/);
    const statuses = await recordStatus(page);
    // another account's long job (10 images of 150 steps: many seconds) holds the only worker
    const ahead = await fetch(`${service.url}/v1/generation/tiny-sd/text-to-image`, { method: 'POST', headers: authed(other, { 'content-type': 'application/json', prefer: 'respond-async' }), body: JSON.stringify({ text_prompts: [{ text: PROMPT }], steps: 150, samples: 10 }) });
    const aheadId = ((await ahead.json()) as { id: string }).id;
    await waitFor(async () => ((await (await fetch(`${service.url}/v1/jobs/${aheadId}`, { headers: authed(other) })).json()) as { status: string }).status === 'running', 'the job ahead to run');
    await page.getByRole('button', { name: 'Generate' }).click();
    await expect.poll(() => page.locator('#run-status').textContent()).toBe('Queued: next in line.');
    await fetch(`${service.url}/v1/jobs/${aheadId}/cancel`, { method: 'POST', headers: authed(other) });
    await page.getByRole('img', { name: PROMPT, exact: true }).first().waitFor({ timeout: 30_000 });
    const seen = await statuses();
    expect(seen.indexOf('Queued: next in line.')).toBeLessThan(seen.findIndex((s) => /^Step \d+ of 30$/.test(s)));
  });

  it('credits: Generate is disabled with the reason when the balance is short, and a 402 is shown in plain words at the button', async () => {
    const poor = await accountWith(service, 'studio-poor', 0.001);
    const page = await open(poor);
    await page.getByLabel('Prompt', { exact: true }).fill(PROMPT);
    const reason = page.locator('#generate-reason');
    await expect.poll(() => reason.textContent()).toMatch(/^Not enough credits: this costs [\d.]+, the balance is 0\.001\.$/);
    expect(await page.getByRole('button', { name: 'Generate' }).isDisabled()).toBe(true);
    await screenshot(page, 'studio-no-credits');

    // enough when priced, spent elsewhere before Generate: the API's 402 is what the page shows
    const spender = await accountWith(service, 'studio-spent', 1);
    const spent = await open(spender);
    await spent.getByLabel('Prompt', { exact: true }).fill(PROMPT);
    await expect.poll(() => spent.locator('#cost').textContent()).toMatch(/credits/);
    const balance = await creditsOf(spender);
    const drain = await fetch(`${service.url}/v1/admin/accounts`, { headers: authed(ADMIN_TOKEN) });
    const account = ((await drain.json()) as { data: { id: string; name: string }[] }).data.find((a) => a.name === 'studio-spent')!;
    const debit = await fetch(`${service.url}/v1/admin/accounts/${account.id}/credits`, { method: 'POST', headers: authed(ADMIN_TOKEN, { 'content-type': 'application/json' }), body: JSON.stringify({ amount: -(balance - 0.001), reason: 'test: spent elsewhere' }) });
    expect(debit.status, await debit.clone().text()).toBeLessThan(300);
    await spent.getByRole('button', { name: 'Generate' }).click();
    await expect.poll(() => spent.locator('#generate-error').textContent()).toMatch(/^Not enough credits for this request\. /);
    await expect.poll(() => spent.locator('#generate-reason').textContent()).toMatch(/^Not enough credits/);
    expect(await spent.locator('#balance').textContent()).toBe('0.001 credits');
  });

  it('a 429 is shown at Generate in plain words, with when to try again', async () => {
    // a service of its own whose rate limit three requests reach (dry runs count, as every generation call)
    const limited = await startService(stack.redis, { env: { RATE_LIMIT: '3', RATE_LIMIT_WINDOW_MS: '60000', QUEUE_PREFIX: `${stack.redis.prefix}rl` } });
    try {
      const res = await fetch(`${limited.url}/v1/admin/accounts`, { method: 'POST', headers: authed(ADMIN_TOKEN, { 'content-type': 'application/json' }), body: JSON.stringify({ name: 'studio-429', credits: 5 }) });
      const key = ((await res.json()) as { api_key: string }).api_key;
      const page = await open(key, undefined, limited.server.deps.config.publicUrl);
      for (const steps of ['20', '25', '30', '35']) {
        await page.getByLabel('Steps').fill(steps);
        await page.getByLabel('Prompt', { exact: true }).fill(`${PROMPT} ${steps}`);
        await new Promise((r) => setTimeout(r, 400));
      }
      await expect.poll(() => page.locator('#generate-error').textContent()).toMatch(/^Too many requests for this key just now\. .* Try again in \d+ s\.$/);
    } finally {
      await limited.close();
    }
  });

  it('takes a key when the field is left, without Use key; offers only sizes within the engine limit', async () => {
    const key = await accountWith(service, 'studio-key-on-leave', 10);
    const page = await open();
    await page.getByLabel('API key').fill(key);
    await page.getByLabel('Prompt', { exact: true }).focus();
    await expect.poll(() => page.locator('#balance').textContent()).toMatch(/credits$/);
    await page.getByLabel('Prompt', { exact: true }).fill(PROMPT);
    await expect.poll(() => page.getByRole('button', { name: 'Generate' }).isEnabled()).toBe(true);
    // tiny-sd takes at most 512x512 worth of pixels: with height 512, no width above 512 is offered
    await page.getByLabel('Height').selectOption('512');
    const disabled = await page.getByLabel('Width').locator('option:disabled').evaluateAll((os) => os.map((o) => Number((o as HTMLOptionElement).value)));
    expect(disabled.length).toBeGreaterThan(0);
    expect(Math.min(...disabled)).toBeGreaterThan(512);
    expect(problemsOf(page)).toEqual([]);
  });

  it('an invalid size is shown next to the field it is about', async () => {
    const key = await accountWith(service, 'studio-size', 5);
    const page = await open(key);
    await page.getByLabel('Prompt', { exact: true }).fill(PROMPT);
    // 2048x2048 is over the engine's pixels: the form no longer offers it, so a stale form is made here
    // (options enabled again) to see the API's refusal shown at the field
    await page.evaluate(() => document.querySelectorAll('option').forEach((o) => (o.disabled = false)));
    await page.getByLabel('Width').selectOption('2048');
    await page.evaluate(() => document.querySelectorAll('option').forEach((o) => (o.disabled = false)));
    await page.getByLabel('Height').selectOption('2048');
    await expect.poll(() => page.locator('#width-error, #height-error').allTextContents()).toEqual(expect.arrayContaining([expect.stringMatching(/^This engine does not take that size\. |^That size has too many pixels\. /)]));
    expect(await page.locator('#generate-error').textContent()).toBe('');
    await page.getByLabel('Width').selectOption('128');
    await page.getByLabel('Height').selectOption('128');
    await expect.poll(() => page.locator('#width-error').textContent()).toBe('');
  });

  it('an engine no worker serves: said under Engine before and after Generate, nothing charged', async () => {
    const key = await accountWith(service, 'studio-engine', 5);
    const page = await open(key);
    // this suite's worker serves tiny-sd and the upscaler only
    await page.getByLabel('Engine').selectOption('tiny-sdxl');
    await expect.poll(() => page.locator('#engine-about').textContent()).toMatch(/No worker serves it right now\.$/);
    await page.getByLabel('Prompt', { exact: true }).fill(PROMPT);
    await expect.poll(() => page.locator('#cost').textContent()).toMatch(/credits/);
    await page.getByRole('button', { name: 'Generate' }).click();
    await expect.poll(() => page.locator('#engine-error').textContent()).toMatch(/^That engine is not available right now\. engine tiny-sdxl: no live worker serves it/);
    expect(await page.locator('#generate-error').textContent()).toBe('');
    expect(await creditsOf(key)).toBe(5);
  });

  it('mask and repaint from the gallery: the brush paints the middle, the rest of the image is kept exactly; then upscale', async () => {
    const key = await accountWith(service, 'studio-mask', 20);
    const page = await open(key);
    await page.getByLabel('Prompt', { exact: true }).fill(PROMPT);
    await page.getByLabel('Seed (0 = random)').fill('7');
    await page.getByRole('button', { name: 'Generate' }).click();
    await page.getByRole('img', { name: PROMPT, exact: true }).first().waitFor({ timeout: 30_000 });
    await expect.poll(() => page.locator('#run-status').textContent()).toMatch(/^Done/);

    await page.getByRole('button', { name: `Paint mask: ${PROMPT}` }).click();
    const canvas = page.getByLabel('Mask: paint where the image is repainted');
    await canvas.waitFor();
    const box = (await canvas.boundingBox())!;
    // a brush stroke across the middle third, with the pointer as a person paints
    await page.getByLabel('Brush size').fill('40');
    await page.mouse.move(box.x + box.width * 0.35, box.y + box.height * 0.5);
    await page.mouse.down();
    for (let i = 0; i <= 10; i++) await page.mouse.move(box.x + box.width * (0.35 + 0.03 * i), box.y + box.height * 0.5);
    await page.mouse.up();
    await page.getByLabel('Prompt', { exact: true }).fill('a yellow square on a blue background');
    await expect.poll(() => page.locator('#cost').textContent()).toMatch(/credits/);
    await screenshot(page, 'studio-mask');
    await page.getByRole('button', { name: 'Generate' }).click();
    const repainted = page.getByRole('img', { name: 'a yellow square on a blue background', exact: true });
    await repainted.first().waitFor({ timeout: 30_000 });
    const points: [number, number][] = [[2, 2], [125, 2], [2, 125], [125, 125], [64, 10]];
    const before = await pixelsOf(page, PROMPT, points);
    const after = await pixelsOf(page, 'a yellow square on a blue background', points);
    expect(after).toEqual(before);
    const [[was], [now]] = [await pixelsOf(page, PROMPT, [[64, 64]]), await pixelsOf(page, 'a yellow square on a blue background', [[64, 64]])];
    expect(now).not.toEqual(was);
    const masking = ((await (await fetch(`${service.url}/v1/jobs?limit=1`, { headers: authed(key) })).json()) as { data: { kind: string }[] }).data[0];
    expect(masking.kind).toBe('masking');

    await page.getByRole('button', { name: `Upscale: ${PROMPT}` }).click();
    const upscaled = page.getByRole('img', { name: 'an upscaled image', exact: true });
    await upscaled.first().waitFor({ timeout: 30_000 });
    expect(await upscaled.first().evaluate((el: HTMLImageElement) => el.decode().then(() => [el.naturalWidth, el.naturalHeight]))).toEqual([256, 256]);
    expect(problemsOf(page)).toEqual([]);
  });

  it('opened on another host name than PUBLIC_URL, image to image still reads the init image (artifacts allow any origin)', async () => {
    const key = await accountWith(service, 'studio-origin', 10);
    // the page on localhost while PUBLIC_URL (and so every artifact URL) says 127.0.0.1
    const other = `http://localhost:${new URL(origin).port}`;
    expect(new URL(origin).hostname).toBe('127.0.0.1');
    const page = await open(key, undefined, other);
    await page.getByLabel('Prompt', { exact: true }).fill(PROMPT);
    await page.getByRole('button', { name: 'Generate' }).click();
    await page.getByRole('img', { name: PROMPT, exact: true }).first().waitFor({ timeout: 30_000 });
    await expect.poll(() => page.locator('#run-status').textContent()).toMatch(/^Done/);
    await page.getByRole('button', { name: `Use as init image: ${PROMPT}` }).click();
    await expect.poll(() => page.getByRole('img', { name: 'The init image' }).evaluate((el: HTMLImageElement) => el.complete && el.naturalWidth)).toBe(128);
    await page.getByLabel('Prompt', { exact: true }).fill('a red circle on a green background');
    await page.getByRole('button', { name: 'Generate' }).click();
    await page.getByRole('img', { name: 'a red circle on a green background', exact: true }).first().waitFor({ timeout: 30_000 });
    const job = ((await (await fetch(`${service.url}/v1/jobs?limit=1`, { headers: authed(key) })).json()) as { data: { kind: string; status: string }[] }).data[0];
    expect(job).toMatchObject({ kind: 'image-to-image', status: 'succeeded' });
    expect(problemsOf(page)).toEqual([]);
  });

  it('works with the keyboard alone: key, prompt, Generate, and the image appears', async () => {
    const key = await accountWith(service, 'studio-keys', 10);
    const page = await open();
    const tabTo = async (id: string) => {
      for (let i = 0; i < 40; i++) {
        if (await page.evaluate((want) => document.activeElement?.id === want, id)) return;
        await page.keyboard.press('Tab');
      }
      throw new Error(`Tab never reached #${id}`);
    };
    await tabTo('api-key');
    await page.keyboard.type(key);
    await page.keyboard.press('Enter');
    await expect.poll(() => page.locator('#balance').textContent()).toBe('10 credits');
    await tabTo('prompt');
    await page.keyboard.type('a green square on a white background');
    await tabTo('generate');
    // every control on the way has a visible label
    const unlabelled = await page.evaluate(() =>
      [...document.querySelectorAll('input, select, textarea')]
        .filter((el) => !(el as HTMLElement).closest('[hidden]') && (el as HTMLInputElement).type !== 'hidden')
        .filter((el) => !(el as HTMLInputElement).labels?.length || [...(el as HTMLInputElement).labels!].every((l) => !l.textContent?.trim() || l.getBoundingClientRect().width === 0))
        .map((el) => el.id || el.outerHTML),
    );
    expect(unlabelled).toEqual([]);
    await expect.poll(() => page.getByRole('button', { name: 'Generate' }).isDisabled()).toBe(false);
    await page.keyboard.press('Enter');
    await page.getByRole('img', { name: 'a green square on a white background', exact: true }).first().waitFor({ timeout: 30_000 });
  });

  it('fits a phone: no horizontal scrolling, the form and gallery usable at 375 px; dark theme follows the system', async () => {
    const key = await accountWith(service, 'studio-phone', 10);
    const page = await open(key, { width: 375, height: 800 });
    await page.getByLabel('Prompt', { exact: true }).fill(PROMPT);
    await page.getByRole('button', { name: 'Generate' }).click();
    await page.getByRole('img', { name: PROMPT, exact: true }).first().waitFor({ timeout: 30_000 });
    const widths = await page.evaluate(() => ({ scroll: document.documentElement.scrollWidth, inner: window.innerWidth }));
    expect(widths.scroll).toBeLessThanOrEqual(widths.inner);
    const generate = (await page.getByRole('button', { name: 'Generate' }).boundingBox())!;
    expect(generate.x + generate.width).toBeLessThanOrEqual(375);
    await screenshot(page, 'studio-phone');

    await page.emulateMedia({ colorScheme: 'dark' });
    const dark = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
    await page.emulateMedia({ colorScheme: 'light' });
    const light = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
    expect(dark).not.toBe(light);
    const luminance = (rgb: string) => rgb.match(/\d+/g)!.slice(0, 3).map(Number).reduce((a, b) => a + b, 0);
    expect(luminance(dark)).toBeLessThan(luminance(light));
  });
});

/** A screenshot while the job runs (its progress bar part-way). */
async function screenshotWhenRunning(page: Page, name: string): Promise<void> {
  await waitFor(async () => /^Step \d+ of/.test((await page.locator('#run-status').textContent()) ?? ''), 'the run to show its progress', 20_000);
  await screenshot(page, name);
}
