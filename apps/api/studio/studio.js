// @ts-check
/**
 * sdq studio: one page on the public API. The key is kept in this browser's localStorage and sent only
 * in the Authorization header. Every text from the service is put on the page as text, never as HTML.
 */
import { Api, ApiError } from './api.js';
import { MaskPainter } from './mask-painter.js';

const KEY_STORAGE = 'sdq-studio-key';
const PAGE = 12;

/** @param {string} id */
const $ = (id) => /** @type {any} */ (document.getElementById(id));

/** @type {Api | undefined} */
let api;
/** @type {any[]} */
let engines = [];
/** The LoRA files of LORA_DIR (GET /v1/loras): each with the engines it fits. @type {{ name: string, engines: string[] }[]} */
let loraFiles = [];
let balance = NaN;
/** @type {string | null} */
let nextCursor = null;
/** The init image for image-to-image and masking: its bytes, and whether a mask is painted. */
/** @type {{ blob: Blob, width: number, height: number, masking: boolean } | undefined} */
let init;
/** @type {{ id: string, abort: AbortController } | undefined} */
let running;
const painter = new MaskPainter($('mask-canvas'));

// ---- the key -------------------------------------------------------------------------------------

/** Takes the key in the field; `quiet`: an empty field says nothing (it was only left, or pasted into). @param {boolean} quiet */
function useKey(quiet) {
  const key = $('api-key').value.trim();
  if (!key) {
    // (an empty field after a key was just taken on leaving it: nothing to say)
    if (!quiet && !api) $('key-status').textContent = 'Paste an API key first (npx sdq keys create ... prints one).';
    return;
  }
  localStorage.setItem(KEY_STORAGE, key);
  $('api-key').value = '';
  connect(key);
}
$('key-form').addEventListener('submit', (/** @type {Event} */ e) => {
  e.preventDefault();
  useKey(false);
});
// a pasted key is taken at once, and a typed one when the field is left: "Use key" is not a step to miss
$('api-key').addEventListener('paste', () => setTimeout(() => useKey(true), 0));
$('api-key').addEventListener('change', () => useKey(true));
$('forget-key').addEventListener('click', () => {
  localStorage.removeItem(KEY_STORAGE);
  api = undefined;
  $('balance').textContent = '-';
  $('gallery').replaceChildren();
  $('key-status').textContent = 'Key forgotten.';
  updateGenerate();
});

/** @param {string} key */
async function connect(key) {
  api = new Api(key);
  $('key-status').textContent = 'Checking the key...';
  try {
    await refreshBalance();
    engines = await api.engines();
    // the picker is an extra: a listing that fails leaves it hidden, not the studio unusable
    loraFiles = await api.loras().then((/** @type {any} */ r) => r.loras, () => []);
  } catch (err) {
    api = undefined;
    $('key-status').textContent = err instanceof ApiError && err.status === 401 ? 'This key is not valid (revoked, or mistyped): paste another.' : plain(err);
    updateGenerate();
    return;
  }
  $('key-status').textContent = 'Key in use (kept in this browser only).';
  fillEngines();
  updateGenerate();
  await loadGallery(true);
  priceSoon();
  animationPriceSoon();
}

async function refreshBalance() {
  if (!api) return;
  const { credits } = await api.balance();
  balance = credits;
  $('balance').textContent = `${formatCredits(credits)} credits`;
}

// ---- the form ------------------------------------------------------------------------------------

const generationEngines = () => engines.filter((e) => e.capabilities?.modes?.includes('text-to-image'));
const upscaleEngine = () => engines.find((e) => e.capabilities?.modes?.includes('upscale') && !e.alias_of);
const engineOf = (/** @type {string} */ id) => engines.find((e) => e.id === id);

function fillEngines() {
  const select = $('engine');
  const current = select.value;
  select.replaceChildren(...generationEngines().map((e) => new Option(e.alias_of ? `${e.id} (${e.alias_of})` : e.id, e.id)));
  if (current && engineOf(current)) select.value = current;
  engineChanged();
}

/** The sizes an engine takes: its allowed list, else multiples of its step within its limits. @param {any} caps */
function sizesOf(caps) {
  const sizes = caps.sizes;
  const native = { width: caps.native_width ?? 512, height: caps.native_height ?? 512 };
  if (sizes?.allowed?.length) {
    const pairs = sizes.allowed.map((/** @type {string} */ s) => s.split('x').map(Number));
    return { widths: [...new Set(pairs.map((/** @type {number[]} */ p) => p[0]))].sort((a, b) => a - b), heights: [...new Set(pairs.map((/** @type {number[]} */ p) => p[1]))].sort((a, b) => a - b), native };
  }
  const step = sizes?.step ?? 64;
  const min = sizes?.min_side ?? step;
  const maxSide = Math.min(2048, Math.floor((sizes?.max_pixels ?? 1048576) / min / step) * step);
  const sides = [];
  for (let s = min; s <= maxSide; s += step) sides.push(s);
  return { widths: sides, heights: sides, native };
}

function engineChanged() {
  const engine = engineOf($('engine').value);
  if (!engine) return;
  const caps = engine.capabilities;
  const modes = caps.modes.join(', ');
  const workers = caps.workers === 0 ? ' No worker serves it right now.' : '';
  $('engine-about').textContent = `${engine.description}. Does ${modes}; native size ${caps.native_width}x${caps.native_height}.${workers}`;
  const { widths, heights, native } = sizesOf(caps);
  for (const [id, sides, wanted] of /** @type {[string, number[], number][]} */ ([['width', widths, native.width], ['height', heights, native.height]])) {
    const select = $(id);
    const keep = Number(select.value);
    select.replaceChildren(...sides.map((s) => new Option(String(s), String(s))));
    select.value = String(sides.includes(keep) ? keep : sides.includes(wanted) ? wanted : sides[0]);
  }
  limitSizes();
  const sampler = $('sampler');
  const keep = sampler.value;
  sampler.replaceChildren(...(caps.samplers ?? []).map((/** @type {string} */ s) => new Option(s, s)));
  sampler.value = (caps.samplers ?? []).includes(keep) ? keep : caps.defaults.sampler ?? caps.samplers?.[0] ?? '';
  fillLoras();
  if (caps.defaults.steps && !$('steps').dataset.touched) $('steps').value = String(caps.defaults.steps);
  if (caps.defaults.cfg_scale !== null && caps.defaults.cfg_scale !== undefined && !$('cfg-scale').dataset.touched) $('cfg-scale').value = String(caps.defaults.cfg_scale);
  priceSoon();
}
$('engine').addEventListener('change', engineChanged);

// ---- LoRAs: the files that fit the engine, each added with a weight slider -------------------------------

/** The picker offers the LoRAs that fit the engine; one that does not is taken off the list. */
function fillLoras() {
  const engine = engineOf($('engine').value);
  const id = engine?.alias_of ?? engine?.id;
  const fitting = loraFiles.filter((l) => l.engines.includes(id));
  $('lora-pick').replaceChildren(...fitting.map((l) => new Option(l.name, l.name)));
  for (const row of [...$('loras').children]) if (!fitting.some((l) => l.name === row.dataset.name)) row.remove();
  $('loras-field').hidden = fitting.length === 0;
}

/** A LoRA on the list with its weight (-1 to 2 here; the API takes -4 to 4). @param {string} name @param {number} weight */
function addLora(name, weight = 1) {
  if ([...$('loras').children].some((row) => row.dataset.name === name)) return;
  const row = document.createElement('li');
  row.dataset.name = name;
  const id = `lora-weight-${$('loras').children.length}-${name.replace(/[^\w-]/g, '_')}`;
  const label = document.createElement('label');
  label.htmlFor = id;
  label.textContent = `${name} weight`;
  const range = document.createElement('input');
  Object.assign(range, { type: 'range', id, min: '-1', max: '2', step: '0.05' });
  range.value = String(weight);
  const value = document.createElement('output');
  value.htmlFor.add(id);
  value.textContent = range.value;
  range.addEventListener('input', () => {
    value.textContent = range.value;
    changed();
  });
  const remove = document.createElement('button');
  remove.type = 'button';
  remove.textContent = 'Remove';
  remove.setAttribute('aria-label', `Remove LoRA ${name}`);
  remove.addEventListener('click', () => {
    row.remove();
    changed();
  });
  row.append(label, range, value, remove);
  $('loras').append(row);
}
$('add-lora').addEventListener('click', () => {
  if (!$('lora-pick').value) return;
  addLora($('lora-pick').value);
  changed();
});

/** Each side offers only what fits the engine's pixel limit with the other side as it is. */
function limitSizes() {
  const engine = engineOf($('engine').value);
  const maxPixels = engine?.capabilities.sizes?.max_pixels;
  if (!maxPixels || engine.capabilities.sizes?.allowed?.length) return;
  for (const [id, other] of [['width', 'height'], ['height', 'width']]) {
    const across = Number($(other).value);
    for (const option of /** @type {HTMLOptionElement[]} */ ([...$(id).options])) option.disabled = Number(option.value) * across > maxPixels;
  }
}
$('width').addEventListener('change', limitSizes);
$('height').addEventListener('change', limitSizes);
for (const id of ['steps', 'cfg-scale']) $(id).addEventListener('input', () => ($(id).dataset.touched = '1'));
// a change clears what was said about the last request, and prices the new one
const changed = () => {
  clearFieldErrors();
  priceSoon();
  animationPriceSoon();
};
for (const id of ['prompt', 'negative-prompt', 'engine', 'width', 'height', 'steps', 'cfg-scale', 'sampler', 'seed', 'samples', 'strength']) {
  $(id).addEventListener('input', changed);
  $(id).addEventListener('change', changed);
}
$('strength').addEventListener('input', () => ($('strength-value').textContent = $('strength').value));

/** The request the form describes, in Stability's v1 fields. */
function request() {
  const prompts = [{ text: $('prompt').value, weight: 1 }];
  const negative = $('negative-prompt').value.trim();
  if (negative) prompts.push({ text: negative, weight: -1 });
  /** @type {Record<string, unknown>} */
  const body = {
    text_prompts: prompts,
    width: Number($('width').value),
    height: Number($('height').value),
    steps: Number($('steps').value),
    cfg_scale: Number($('cfg-scale').value),
    samples: Number($('samples').value),
    seed: Number($('seed').value),
  };
  if ($('sampler').value) body.sampler = $('sampler').value;
  const loras = [...$('loras').children].map((row) => ({ name: row.dataset.name, weight: Number(row.querySelector('input').value) }));
  if (loras.length) body.loras = loras;
  return body;
}

/** The mode and body to send: JSON for text-to-image; multipart with the init image (and mask) otherwise. */
async function submission() {
  const body = request();
  if (!init) return { mode: /** @type {const} */ ('text-to-image'), body };
  const form = new FormData();
  const { text_prompts, width: _w, height: _h, ...rest } = body;
  /** @type {{ text: string, weight: number }[]} */ (text_prompts).forEach((p, i) => {
    form.append(`text_prompts[${i}][text]`, p.text);
    form.append(`text_prompts[${i}][weight]`, String(p.weight));
  });
  // loras goes as the JSON array multipart takes
  for (const [k, v] of Object.entries(rest)) form.append(k, typeof v === 'object' ? JSON.stringify(v) : String(v));
  form.append('init_image', init.blob, 'init.png');
  if (init.masking) {
    form.append('mask_source', 'MASK_IMAGE_WHITE');
    form.append('mask_image', await painter.toMask(), 'mask.png');
    return { mode: /** @type {const} */ ('image-to-image/masking'), body: form };
  }
  form.append('image_strength', $('strength').value);
  return { mode: /** @type {const} */ ('image-to-image'), body: form };
}

// The price comes from the API's dry run, a moment after the last change.
/** @type {ReturnType<typeof setTimeout> | undefined} */
let priceTimer;
let priceSeq = 0;
/** @type {{ affordable: boolean, credits: number } | undefined} */
let price;
function priceSoon() {
  clearTimeout(priceTimer);
  priceTimer = setTimeout(priceNow, 250);
}
async function priceNow() {
  if (!api || !$('engine').value) return;
  const seq = ++priceSeq;
  // the API refuses an empty prompt: nothing to price yet
  if (!$('prompt').value.trim()) {
    price = undefined;
    $('cost').textContent = '-';
    updateGenerate();
    return;
  }
  try {
    const { mode, body } = await submission();
    const dry = await api.generate($('engine').value, mode, body, { dryRun: true });
    if (seq !== priceSeq) return;
    price = { affordable: dry.affordable, credits: dry.credits };
    balance = dry.balance;
    $('balance').textContent = `${formatCredits(dry.balance)} credits`;
    $('cost').textContent = `${formatCredits(dry.credits)} credits (${dry.samples} image${dry.samples === 1 ? '' : 's'} at ${formatCredits(dry.credits_per_image)})`;
  } catch (err) {
    if (seq !== priceSeq) return;
    price = undefined;
    $('cost').textContent = '-';
    showError(err, 'generate-error');
  }
  updateGenerate();
}

function updateGenerate() {
  const button = $('generate');
  let reason = '';
  if (!api) reason = 'Enter an API key first.';
  else if (running) reason = 'A job is running: wait for it or cancel it.';
  else if (!$('prompt').value.trim()) reason = 'Write a prompt first.';
  else if (price && !price.affordable) reason = `Not enough credits: this costs ${formatCredits(price.credits)}, the balance is ${formatCredits(balance)}.`;
  button.disabled = reason !== '';
  $('generate-reason').textContent = reason;
  // the Animate button waits on the same key and running job
  updateAnimate();
}
$('prompt').addEventListener('input', updateGenerate);

$('generate-form').addEventListener('submit', async (/** @type {Event} */ e) => {
  e.preventDefault();
  updateGenerate();
  if (!api || $('generate').disabled) return;
  clearFieldErrors();
  try {
    const { mode, body } = await submission();
    const job = await api.generate($('engine').value, mode, body);
    await follow(job);
  } catch (err) {
    showError(err, 'generate-error');
    if (err instanceof ApiError && err.name === 'insufficient_balance') {
      // the balance moved since the price was shown (another client spent it): say so at the button
      await refreshBalance().catch(() => {});
      if (price) price.affordable = false;
      updateGenerate();
    }
  }
});


// ---- animations ----------------------------------------------------------------------------------

/** Adds a keyframe row: its frame, prompt and seed, each labelled for screen readers. */
let keyframeIds = 0;
function addKeyframe(/** @type {number} */ frame, text = '', seed = 0) {
  keyframeIds++;
  const tbody = $('keyframes');
  const n = tbody.children.length + 1;
  const row = document.createElement('tr');
  /** @param {string} label @param {HTMLInputElement} input */
  const cell = (label, input) => {
    // a visible label on each input (its column's name), and the keyframe's number for screen readers
    input.id = `keyframe-${keyframeIds}-${label}`;
    input.setAttribute('aria-label', `Keyframe ${n} ${label}`);
    const caption = Object.assign(document.createElement('label'), { htmlFor: input.id, textContent: label[0].toUpperCase() + label.slice(1), className: 'cell-label' });
    input.addEventListener('input', () => {
      clearFieldErrors();
      animationPriceSoon();
      updateAnimate();
    });
    const td = document.createElement('td');
    td.append(caption, input);
    return td;
  };
  const frameInput = Object.assign(document.createElement('input'), { type: 'number', min: '0', step: '1', value: String(frame), inputMode: 'numeric', className: 'frame' });
  const promptInput = Object.assign(document.createElement('input'), { type: 'text', value: text, className: 'prompt' });
  const seedInput = Object.assign(document.createElement('input'), { type: 'number', min: '0', max: '4294967295', step: '1', value: String(seed), inputMode: 'numeric', className: 'seed' });
  const remove = Object.assign(document.createElement('button'), { type: 'button', textContent: 'Remove' });
  remove.setAttribute('aria-label', `Remove keyframe ${n}`);
  remove.addEventListener('click', () => {
    row.remove();
    animationPriceSoon();
    updateAnimate();
  });
  const removeCell = document.createElement('td');
  removeCell.append(remove);
  row.append(cell('frame', frameInput), cell('prompt', promptInput), cell('seed', seedInput), removeCell);
  tbody.append(row);
  updateAnimate();
}
$('add-keyframe').addEventListener('click', () => {
  const rows = [...$('keyframes').children];
  const last = rows.length ? Number(rows[rows.length - 1].querySelector('.frame').value) : -1;
  addKeyframe(Math.min(last + 1, Number($('frames').value) - 1));
  /** @type {HTMLInputElement} */ ($('keyframes').lastElementChild.querySelector('.prompt')).focus();
});

/** The animation the panel describes: its keyframes, and the Generate form's engine and settings. */
function animationRequest() {
  const { text_prompts: _prompts, samples: _samples, seed: _seed, ...shared } = request();
  const negative = $('negative-prompt').value.trim();
  const keyframes = [...$('keyframes').children].map((row) => ({
    frame: Number(row.querySelector('.frame').value),
    text_prompts: [{ text: row.querySelector('.prompt').value, weight: 1 }, ...(negative ? [{ text: negative, weight: -1 }] : [])],
    seed: Number(row.querySelector('.seed').value),
  }));
  /** @type {Record<string, unknown>} */
  const body = { ...shared, keyframes, frames: Number($('frames').value), fps: Number($('fps').value), mode: $('anim-mode').value, format: $('anim-format').value, interpolation: $('interpolation').value };
  if (body.mode === 'feedback') body.strength = Number($('feedback-strength').value);
  return body;
}

const keyframesWritten = () => $('keyframes').children.length > 0 && [...$('keyframes').children].every((row) => row.querySelector('.prompt').value.trim());

/** @type {ReturnType<typeof setTimeout> | undefined} */
let animationPriceTimer;
let animationPriceSeq = 0;
/** @type {{ affordable: boolean, credits: number } | undefined} */
let animationPrice;
function animationPriceSoon() {
  clearTimeout(animationPriceTimer);
  animationPriceTimer = setTimeout(animationPriceNow, 250);
}
async function animationPriceNow() {
  if (!api || !$('engine').value) return;
  const seq = ++animationPriceSeq;
  if (!keyframesWritten()) {
    animationPrice = undefined;
    $('anim-cost').textContent = '-';
    updateAnimate();
    return;
  }
  try {
    const dry = await api.generate($('engine').value, 'animation', animationRequest(), { dryRun: true });
    if (seq !== animationPriceSeq) return;
    animationPrice = { affordable: dry.affordable, credits: dry.credits };
    $('anim-cost').textContent = `${formatCredits(dry.credits)} credits (${dry.samples} frames at ${formatCredits(dry.credits_per_image)})`;
  } catch (err) {
    if (seq !== animationPriceSeq) return;
    animationPrice = undefined;
    $('anim-cost').textContent = '-';
    showError(err, 'animate-error');
  }
  updateAnimate();
}

function updateAnimate() {
  let reason = '';
  if (!api) reason = 'Enter an API key first.';
  else if (running) reason = 'A job is running: wait for it or cancel it.';
  else if (!keyframesWritten()) reason = 'Write a prompt for every keyframe.';
  else if (animationPrice && !animationPrice.affordable) reason = `Not enough credits: this costs ${formatCredits(animationPrice.credits)}, the balance is ${formatCredits(balance)}.`;
  $('animate').disabled = reason !== '';
  $('animate-reason').textContent = reason;
}

for (const id of ['frames', 'fps', 'anim-mode', 'anim-format', 'interpolation', 'feedback-strength']) {
  $(id).addEventListener('input', changed);
  $(id).addEventListener('change', changed);
}
$('anim-mode').addEventListener('change', () => ($('feedback-strength-field').hidden = $('anim-mode').value !== 'feedback'));
$('feedback-strength').addEventListener('input', () => ($('feedback-strength-value').textContent = $('feedback-strength').value));

$('animate-form').addEventListener('submit', async (/** @type {Event} */ e) => {
  e.preventDefault();
  updateAnimate();
  if (!api || $('animate').disabled) return;
  clearFieldErrors();
  try {
    const job = await api.generate($('engine').value, 'animation', animationRequest());
    await follow(job);
  } catch (err) {
    showError(err, 'animate-error');
  }
});

/** Plays a finished animation in the panel: WebP and GIF as an image, MP4 as a video. @param {any} job */
function preview(job) {
  const file = job.artifacts[0];
  const video = file.content_type.startsWith('video/');
  const label = `Animation: ${(job.params?.animation?.keyframes ?? []).map((/** @type {any} */ k) => k.text_prompts[0]?.text).join(' to ')}`;
  $('anim-image').hidden = video;
  $('anim-video').hidden = !video;
  if (video) {
    $('anim-video').src = file.url;
    $('anim-video').setAttribute('aria-label', label);
  } else {
    $('anim-image').src = file.url;
    $('anim-image').alt = label;
  }
  $('anim-download').href = file.url;
  $('anim-download').download = `sdq-${job.id}.${file.content_type.split('/')[1]}`;
  $('anim-preview').hidden = false;
}

addKeyframe(0);
addKeyframe(11);

// ---- a running job -------------------------------------------------------------------------------

/** Shows a job's queue position, then its progress per step, until it ends. @param {any} job */
async function follow(job) {
  if (!api) return;
  const abort = new AbortController();
  running = { id: job.id, abort };
  updateGenerate();
  $('run').hidden = false;
  $('run-error').textContent = '';
  $('cancel').disabled = false;
  const progress = $('run-progress');
  progress.value = 0;
  progress.max = 1;
  const show = (/** @type {any} */ j) => {
    if (j.status === 'queued') $('run-status').textContent = `Queued: ${j.queue_position === 0 ? 'next in line' : `position ${(j.queue_position ?? 0) + 1} in the queue`}.`;
    else if (j.status === 'running') $('run-status').textContent = 'Running...';
  };
  show(job);
  // the queue position moves while the job waits: look again every second
  const poll = setInterval(async () => {
    try {
      const j = await api?.job(job.id);
      if (j?.status === 'queued') show(j);
    } catch {}
  }, 1000);
  let final;
  try {
    final = await api.follow(
      job.id,
      (event, data) => {
        if (event === 'queued' || event === 'started') show(data);
        if (event === 'progress') {
          progress.max = data.steps;
          progress.value = data.step;
          // an animation counts its frames too
          $('run-status').textContent = data.frames ? `Frame ${Math.min(data.frames_done + 1, data.frames)} of ${data.frames} (step ${data.step} of ${data.steps})` : `Step ${data.step} of ${data.steps}`;
        }
      },
      abort.signal,
    );
  } catch (err) {
    if (!abort.signal.aborted) $('run-error').textContent = plain(err);
  } finally {
    clearInterval(poll);
  }
  final ??= await api.job(job.id).catch(() => undefined);
  running = undefined;
  $('cancel').disabled = true;
  if (final?.status === 'succeeded' && final.kind === 'animation') {
    progress.value = progress.max;
    $('run-status').textContent = `Done: an animation of ${final.artifacts.length - 1} frames, ${formatCredits(final.credits_charged ?? 0)} credits.`;
    preview(final);
  } else if (final?.status === 'succeeded') {
    progress.value = progress.max;
    $('run-status').textContent = `Done: ${final.artifacts.length} image${final.artifacts.length === 1 ? '' : 's'}, ${formatCredits(final.credits_charged ?? 0)} credits.`;
  } else if (final?.status === 'canceled') {
    $('run-status').textContent = 'Canceled: nothing was charged.';
  } else if (final?.status === 'failed') {
    $('run-status').textContent = 'Failed.';
    $('run-error').textContent = final.error ? plainMessage(final.error.name, final.error.message) : 'The job failed.';
  }
  await refreshBalance().catch(() => {});
  await loadGallery(true);
  updateGenerate();
  priceSoon();
  animationPriceSoon();
}

$('cancel').addEventListener('click', async () => {
  if (!api || !running) return;
  $('cancel').disabled = true;
  // said before asking: the job's end (its events) may arrive before the answer, and has the last word
  $('run-status').textContent = 'Canceling...';
  try {
    await api.cancel(running.id);
  } catch (err) {
    $('run-error').textContent = plain(err);
    $('cancel').disabled = false;
  }
});

// ---- the gallery ---------------------------------------------------------------------------------

/** @param {boolean} fresh */
async function loadGallery(fresh) {
  if (!api) return;
  try {
    const page = await api.jobs(PAGE, fresh ? null : nextCursor);
    nextCursor = page.next_cursor;
    const cards = page.data.flatMap(cardsOf);
    if (fresh) $('gallery').replaceChildren(...cards);
    else $('gallery').append(...cards);
    $('more').hidden = !nextCursor;
    $('gallery-error').textContent = '';
  } catch (err) {
    $('gallery-error').textContent = plain(err);
  }
}
$('more').addEventListener('click', () => loadGallery(false));

/** One card per image of a job, or one for a job without images (running, failed, canceled). @param {any} job */
function cardsOf(job) {
  const params = job.params ?? {};
  const prompt = (params.text_prompts ?? []).filter((/** @type {any} */ p) => p.weight >= 0).map((/** @type {any} */ p) => p.text).join(', ');
  const make = (/** @type {any} */ artifact) => {
    const card = /** @type {HTMLElement} */ ($('card').content.firstElementChild.cloneNode(true));
    const q = (/** @type {string} */ sel) => /** @type {any} */ (card.querySelector(sel));
    const img = q('.picture');
    q('.seed').textContent = artifact ? String(artifact.seed) : params.seed ? String(params.seed) : 'random';
    q('.steps').textContent = params.steps ? String(params.steps) : '-';
    // no sampler asked: the engine's default ran
    q('.sampler').textContent = params.sampler ?? engineOf(job.engine)?.capabilities?.defaults?.sampler ?? '-';
    q('.charged').textContent = job.credits_charged === null ? 'open' : `${formatCredits(job.credits_charged)} credits`;
    const label = prompt || (job.kind === 'upscale' ? 'an upscaled image' : 'an image without a prompt');
    const actions = q('.card-actions');
    if (artifact && job.kind === 'animation') {
      const frames = job.params?.animation?.frames;
      const text = `an animation of ${frames} frames: ${(job.params?.animation?.keyframes ?? []).map((/** @type {any} */ k) => k.text_prompts[0]?.text).join(' to ')}`;
      if (artifact.content_type.startsWith('video/')) {
        const video = Object.assign(document.createElement('video'), { src: artifact.url, controls: true, loop: true, muted: true, className: 'picture' });
        video.setAttribute('aria-label', text);
        img.replaceWith(video);
      } else {
        img.src = artifact.url;
        img.alt = text;
      }
      const download = q('.download');
      download.href = artifact.url;
      download.download = `sdq-${job.id}.${artifact.content_type.split('/')[1]}`;
      download.setAttribute('aria-label', `Download ${text}`);
      actions.querySelectorAll('.use-init, .use-mask, .upscale').forEach((/** @type {Element} */ el) => el.remove());
    } else if (artifact) {
      if (artifact.content_filtered) q('.state').textContent = 'Filtered by the safety checker.';
      img.src = artifact.url;
      img.alt = label;
      img.width = artifact.width;
      img.height = artifact.height;
      const download = q('.download');
      download.href = artifact.url;
      download.download = `sdq-${job.id}-${artifact.seed}.${(artifact.content_type ?? 'image/png').split('/')[1]}`;
      download.setAttribute('aria-label', `Download ${label}`);
      for (const [sel, what] of [['.use-init', 'Use as init image'], ['.use-mask', 'Paint mask'], ['.upscale', 'Upscale'], ['.reuse', 'Reuse settings']]) q(sel).setAttribute('aria-label', `${what}: ${label}`);
      q('.use-init').addEventListener('click', () => useImage(artifact, false, card));
      q('.use-mask').addEventListener('click', () => useImage(artifact, true, card));
      q('.upscale').addEventListener('click', () => upscale(artifact, card));
      if (job.kind === 'upscale' || !upscaleEngine()) q('.upscale').remove();
    } else {
      img.hidden = true;
      actions.querySelectorAll('.download, .use-init, .use-mask, .upscale').forEach((/** @type {Element} */ el) => el.remove());
      q('.state').textContent = job.status === 'failed' && job.error ? `Failed: ${plainMessage(job.error.name, job.error.message)}` : `${job.status[0].toUpperCase()}${job.status.slice(1)}: ${label}`;
    }
    if (job.kind === 'upscale' || job.kind === 'animation' || !params.text_prompts) q('.reuse').remove();
    else q('.reuse').addEventListener('click', () => reuse(job));
    return card;
  };
  // an animation's frames are its artifacts too: the gallery shows the file
  const shown = job.kind === 'animation' ? job.artifacts.slice(0, 1) : job.artifacts;
  return shown.length ? shown.map(make) : [make(undefined)];
}

/** Fills the form with a past job's settings. @param {any} job */
function reuse(job) {
  const p = job.params;
  const engine = engineOf(job.engine) ? job.engine : $('engine').value;
  $('engine').value = engine;
  engineChanged();
  $('prompt').value = p.text_prompts.filter((/** @type {any} */ t) => t.weight >= 0).map((/** @type {any} */ t) => t.text).join(', ');
  $('negative-prompt').value = p.text_prompts.filter((/** @type {any} */ t) => t.weight < 0).map((/** @type {any} */ t) => t.text).join(', ');
  for (const [id, value] of [['width', p.width], ['height', p.height], ['steps', p.steps], ['cfg-scale', p.cfg_scale], ['seed', job.artifacts[0]?.seed ?? p.seed], ['samples', p.samples]]) {
    if (value !== undefined) $(id).value = String(value);
  }
  if (p.sampler) $('sampler').value = p.sampler;
  $('loras').replaceChildren();
  for (const l of p.loras ?? []) if ([...$('lora-pick').options].some((/** @type {HTMLOptionElement} */ o) => o.value === l.name)) addLora(l.name, l.weight);
  $('steps').dataset.touched = '1';
  $('cfg-scale').dataset.touched = '1';
  $('prompt').focus();
  updateGenerate();
  priceSoon();
}

/** Makes a gallery image the init image, for image-to-image or (masking) repainting inside a mask. */
async function useImage(/** @type {any} */ artifact, /** @type {boolean} */ masking, /** @type {HTMLElement} */ card) {
  const error = /** @type {HTMLElement} */ (card.querySelector('.card-error'));
  error.textContent = '';
  try {
    const blob = await readArtifact(artifact.url);
    init = { blob, width: artifact.width, height: artifact.height, masking };
  } catch (err) {
    error.textContent = plain(err);
    return;
  }
  const preview = $('init-preview');
  preview.src = URL.createObjectURL(init.blob);
  preview.alt = masking ? 'The image to repaint: paint the mask over it' : 'The init image';
  $('init').hidden = false;
  $('strength-field').hidden = masking;
  $('mask-tools').hidden = !masking;
  $('mask-canvas').hidden = !masking;
  if (masking) painter.reset(artifact.width, artifact.height);
  // the output has the init image's size
  setSelect('width', artifact.width);
  setSelect('height', artifact.height);
  $('width').disabled = $('height').disabled = true;
  $('init').scrollIntoView({ block: 'nearest' });
  (masking ? $('mask-canvas') : $('strength')).focus();
  updateGenerate();
  priceSoon();
}

/** A gallery image's bytes, from its signed URL. @param {string} url @returns {Promise<Blob>} */
async function readArtifact(url) {
  let res;
  try {
    res = await fetch(url);
  } catch {
    throw new Error(`The image could not be read from ${new URL(url).origin}: it is unreachable, or its storage does not allow this page (CORS).`);
  }
  if (!res.ok) throw new Error(`The image could not be read (HTTP ${res.status}): its link may have expired; reload the page.`);
  return res.blob();
}

/** @param {string} id @param {number} value */
function setSelect(id, value) {
  const select = $(id);
  if (![...select.options].some((/** @type {HTMLOptionElement} */ o) => o.value === String(value))) select.append(new Option(String(value), String(value)));
  select.value = String(value);
}

$('clear-init').addEventListener('click', () => {
  init = undefined;
  $('init').hidden = true;
  $('width').disabled = $('height').disabled = false;
  engineChanged();
  updateGenerate();
  $('prompt').focus();
});
$('clear-mask').addEventListener('click', () => painter.clear());
$('brush-size').addEventListener('input', () => (painter.size = Number($('brush-size').value)));
for (const radio of document.querySelectorAll('input[name="tool"]')) radio.addEventListener('change', (/** @type {any} */ e) => (painter.tool = e.target.value));

/** Upscales a gallery image with the first upscale engine, by its own factor. */
async function upscale(/** @type {any} */ artifact, /** @type {HTMLElement} */ card) {
  const engine = upscaleEngine();
  const error = /** @type {HTMLElement} */ (card.querySelector('.card-error'));
  error.textContent = '';
  if (!api || !engine || running) {
    error.textContent = running ? 'A job is running: wait for it or cancel it.' : 'No upscale engine here.';
    return;
  }
  try {
    const blob = await readArtifact(artifact.url);
    const form = new FormData();
    form.append('image', blob, 'image.png');
    const job = await api.generate(engine.id, 'image-to-image/upscale', form);
    await follow(job);
  } catch (err) {
    error.textContent = plain(err);
  }
}

// ---- errors in plain words -----------------------------------------------------------------------

/** The form field an API error is about, by the field its message names. */
const FIELD_OF = /** @type {Record<string, string>} */ ({
  text_prompts: 'prompt',
  width: 'width',
  height: 'height',
  steps: 'steps',
  cfg_scale: 'cfg-scale',
  sampler: 'sampler',
  loras: 'loras',
  keyframes: 'keyframes',
  frames: 'frames',
  format: 'format',
  seed: 'seed',
  samples: 'samples',
  engine: 'engine',
  init_image: 'init',
  mask_image: 'init',
});
const PLAIN = /** @type {Record<string, string>} */ ({
  insufficient_balance: 'Not enough credits for this request.',
  rate_limited: 'Too many requests for this key just now.',
  too_many_active_jobs: 'This account has as many jobs running as it may.',
  invalid_height_or_width: 'This engine does not take that size.',
  invalid_pixel_count: 'That size has too many pixels.',
  engine_unavailable: 'That engine is not available right now.',
  invalid_lora: 'That LoRA cannot be used.',
  invalid_keyframes: 'The keyframes need fixing.',
  unsupported_format: 'That format cannot be written here.',
  unauthorized: 'The API key is not valid.',
  permission_denied: 'This key may not do that.',
  service_unavailable: 'The service is busy or restarting.',
});

/** @param {string} name @param {string} message */
function plainMessage(name, message) {
  const lead = PLAIN[name];
  return lead ? `${lead} ${message}` : message;
}

/** @param {unknown} err */
function plain(err) {
  if (err instanceof ApiError) {
    const retry = err.retryAfter ? ` Try again in ${err.retryAfter} s.` : '';
    return `${plainMessage(err.name, err.message)}${retry}`;
  }
  return err instanceof Error ? err.message : String(err);
}

/** Shows an error next to the field it names, else next to the button. @param {unknown} err @param {string} fallback */
function showError(err, fallback) {
  const field = err instanceof ApiError && err.field ? FIELD_OF[err.field] : err instanceof ApiError && err.name === 'engine_unavailable' ? 'engine' : undefined;
  const target = field ? $(`${field}-error`) : $(fallback);
  target.textContent = plain(err);
  if (field) $(field === 'init' ? 'init' : field === 'format' ? 'anim-format' : field).setAttribute('aria-invalid', 'true');
}

function clearFieldErrors() {
  for (const el of document.querySelectorAll('#generate-form .error, #animate-form .error')) el.textContent = '';
  for (const el of document.querySelectorAll('[aria-invalid]')) el.removeAttribute('aria-invalid');
}

/** Credits as the API shows them: decimals, no trailing noise. @param {number} credits */
function formatCredits(credits) {
  return Number(credits.toFixed(6)).toString();
}

// ---- start ---------------------------------------------------------------------------------------

updateGenerate();
const saved = localStorage.getItem(KEY_STORAGE);
if (saved) connect(saved);
