import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkLocalSignature, LocalStorage, S3Storage, StorageNotFoundError } from '../src/index';
import { startTestS3, type TestS3 } from '../../../test/support/s3';

describe('S3Storage against s3rver', () => {
  let s3: TestS3;
  let storage: S3Storage;
  beforeAll(async () => {
    s3 = await startTestS3();
    storage = new S3Storage({ bucket: s3.bucket, endpoint: s3.endpoint, forcePathStyle: true, credentials: s3.credentials });
  });
  afterAll(async () => {
    await storage.close();
    await s3.close();
  });

  it('puts, gets, presigns a URL that fetch can download, and deletes by prefix', async () => {
    await storage.check();
    await storage.put('generations/j1/0.png', Buffer.from('png bytes'), 'image/png');
    await storage.put('generations/j1/1.png', Buffer.from('more'), 'image/png');
    expect((await storage.get('generations/j1/0.png')).toString()).toBe('png bytes');

    const url = await storage.signedUrl('generations/j1/0.png', 60);
    expect(url).toContain('X-Amz-Signature');
    const res = await fetch(url);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('image/png');
    expect(Buffer.from(await res.arrayBuffer()).toString()).toBe('png bytes');

    // s3rver checks a presigned URL's expiry (not its V4 signature): one whose time has passed is refused.
    const expired = new URL(url);
    expired.searchParams.set('X-Amz-Date', '20200101T000000Z');
    expect((await fetch(expired)).status).toBe(403);

    expect(await storage.deletePrefix('generations/j1/')).toBe(2);
    await expect(storage.get('generations/j1/0.png')).rejects.toBeInstanceOf(StorageNotFoundError);
  });
});

describe('LocalStorage', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sdq-local-'));
  const storage = new LocalStorage({ dir, publicUrl: 'http://api.test', secret: 'k' });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('stores under the folder, refuses keys that escape it, deletes by prefix', async () => {
    await storage.put('generations/j/0.png', Buffer.from('x'), 'image/png');
    expect((await storage.get('generations/j/0.png')).toString()).toBe('x');
    await expect(storage.get('../etc/passwd')).rejects.toBeInstanceOf(StorageNotFoundError);
    await expect(storage.get('generations/j/missing.png')).rejects.toBeInstanceOf(StorageNotFoundError);
    expect(await storage.deletePrefix('generations/j/')).toBe(1);
    expect(await storage.list()).toEqual([]);
  });

  it('signs URLs that expire', async () => {
    const url = new URL(await storage.signedUrl('generations/j/0.png', 60));
    expect(url.pathname).toBe('/v1/artifacts/generations/j/0.png');
    const expires = url.searchParams.get('expires')!;
    const signature = url.searchParams.get('signature')!;
    expect(checkLocalSignature('k', 'generations/j/0.png', expires, signature)).toBeUndefined();
    expect(checkLocalSignature('k', 'generations/j/1.png', expires, signature)).toBe('invalid');
    expect(checkLocalSignature('other', 'generations/j/0.png', expires, signature)).toBe('invalid');
    expect(checkLocalSignature('k', 'generations/j/0.png', expires, undefined)).toBe('missing');
    expect(checkLocalSignature('k', 'generations/j/0.png', expires, signature, (Number(expires) + 1) * 1000)).toBe('expired');
  });

  it('accepts only the canonical form of a signature and its expiry', async () => {
    const url = new URL(await storage.signedUrl('generations/j/0.png', 60));
    const expires = url.searchParams.get('expires')!;
    const signature = url.searchParams.get('signature')!;
    const hex = `0x${Number(expires).toString(16)}`;
    for (const [e, s] of [
      [expires, signature.toUpperCase()],
      [expires, `${signature}zz`],
      [expires, `${signature}0`],
      [expires, ` ${signature}`],
      [hex, signature],
      [`+${expires}.0`, signature],
      [`${expires}.0`, signature],
      [`0${expires}`, signature],
      [`${expires} `, signature],
      [`${Number(expires) / 1000}e3`, signature],
    ]) {
      expect(checkLocalSignature('k', 'generations/j/0.png', e, s), `${e} ${s}`).toBe('invalid');
    }
  });
});
