/**
 * The studio's browser: Debian's chromium (apt-get install chromium; .ci/run installs it), or the one
 * CHROMIUM_PATH names, driven by playwright-core. Screenshots go to a temporary folder, or to
 * docs/screenshots/ with SAVE_SCREENSHOTS=1 (`npm run screenshots`), so a test run leaves the tree as it was.
 */
import { existsSync, mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Browser, chromium, type Page } from 'playwright-core';
import { ROOT } from '../e2e/support';

const CANDIDATES = [process.env.CHROMIUM_PATH, '/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome'].filter((p): p is string => !!p);

export async function launchBrowser(): Promise<Browser> {
  const executablePath = CANDIDATES.find((p) => existsSync(p));
  if (!executablePath) throw new Error(`no Chromium found (looked at ${CANDIDATES.join(', ')}): apt-get install chromium, or set CHROMIUM_PATH`);
  // --no-sandbox: CI runs as root, where Chromium's sandbox cannot start
  return chromium.launch({ executablePath, args: ['--no-sandbox', '--disable-dev-shm-usage'] });
}

const SHOTS = process.env.SAVE_SCREENSHOTS === '1' ? join(ROOT, 'docs/screenshots') : mkdtempSync(join(tmpdir(), 'sdq-shots-'));
mkdirSync(SHOTS, { recursive: true });

export async function screenshot(page: Page, name: string): Promise<string> {
  const path = join(SHOTS, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  return path;
}

/** Pixels of an image on the page, read in the browser (the image is same-origin, so the canvas is not tainted). */
export async function pixelsOf(page: Page, imageName: string, points: [number, number][], nth = 0): Promise<number[][]> {
  const img = page.getByRole('img', { name: imageName, exact: true }).nth(nth);
  await img.evaluate((el: HTMLImageElement) => el.decode());
  return img.evaluate((el: HTMLImageElement, pts: [number, number][]) => {
    const canvas = document.createElement('canvas');
    canvas.width = el.naturalWidth;
    canvas.height = el.naturalHeight;
    const ctx = canvas.getContext('2d')!;
    ctx.drawImage(el, 0, 0);
    return pts.map(([x, y]) => [...ctx.getImageData(x, y, 1, 1).data.slice(0, 3)]);
  }, points);
}
