import { createHmac, timingSafeEqual } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { generateSecret, secretKey, sign, signatureHeaders, verify } from '../src/signing';

/**
 * The Standard Webhooks algorithm written again from the specification, with node:crypto only, so the
 * package is checked against the specification and not against itself.
 */
function referenceVerify(secret: string, body: string, headers: Record<string, string>): boolean {
  const key = Buffer.from(secret.replace(/^whsec_/, ''), 'base64');
  const expected = createHmac('sha256', key).update(`${headers['webhook-id']}.${headers['webhook-timestamp']}.${body}`).digest();
  return headers['webhook-signature'].split(' ').some((part) => {
    const [version, signature] = part.split(',');
    const given = Buffer.from(signature ?? '', 'base64');
    return version === 'v1' && given.length === expected.length && timingSafeEqual(given, expected);
  });
}

describe('signing', () => {
  it('matches the example of the Standard Webhooks reference libraries', () => {
    const signature = sign('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', {
      id: 'msg_p5jXN8AQM9LWM0D4loKWxJek',
      timestamp: 1614265330,
      body: '{"test": 2432232314}',
    });
    expect(signature).toBe('v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=');
  });

  it('makes whsec_ secrets of 24 to 64 random bytes', () => {
    const secret = generateSecret();
    expect(secret).toMatch(/^whsec_[A-Za-z0-9+/]+=*$/);
    expect(secretKey(secret)).toHaveLength(32);
    expect(secretKey(generateSecret(24))).toHaveLength(24);
    expect(generateSecret()).not.toBe(secret);
    expect(() => generateSecret(16)).toThrow('24 to 64 bytes (got 16)');
  });

  it('never repeats a bad secret in its error', () => {
    expect(() => secretKey('sk-not-a-webhook-secret')).toThrow(/^webhook secret must start with whsec_$/);
    expect(() => secretKey('whsec_!!!!')).toThrow(/^webhook secret is not valid base64/);
  });

  it('signs headers that an independent implementation verifies, and a tampered body fails', () => {
    const secret = generateSecret();
    const body = JSON.stringify({ type: 'job.completed', data: { id: 'job_1' } });
    const headers = signatureHeaders({ id: 'msg_1', timestamp: 1_700_000_000, body }, [secret]);
    expect(headers['webhook-id']).toBe('msg_1');
    expect(headers['webhook-timestamp']).toBe('1700000000');
    expect(headers['webhook-signature']).toMatch(/^v1,[A-Za-z0-9+/]{43}=$/);
    expect(referenceVerify(secret, body, headers)).toBe(true);
    expect(referenceVerify(secret, body.replace('job_1', 'job_2'), headers)).toBe(false);
    expect(referenceVerify(generateSecret(), body, headers)).toBe(false);
    expect(referenceVerify(secret, body, { ...headers, 'webhook-id': 'msg_2' })).toBe(false);
    expect(referenceVerify(secret, body, { ...headers, 'webhook-timestamp': '1700000001' })).toBe(false);
  });

  it('signs with every secret during a rotation: each one verifies on its own', () => {
    const [current, previous] = [generateSecret(), generateSecret()];
    const body = '{"type":"job.started"}';
    const headers = signatureHeaders({ id: 'msg_r', timestamp: 1_700_000_000, body }, [current, previous]);
    expect(headers['webhook-signature'].split(' ')).toHaveLength(2);
    expect(referenceVerify(current, body, headers)).toBe(true);
    expect(referenceVerify(previous, body, headers)).toBe(true);
    expect(referenceVerify(generateSecret(), body, headers)).toBe(false);
    expect(referenceVerify(previous, `${body} `, headers)).toBe(false);
  });

  it('verify() checks signature and timestamp tolerance', () => {
    const [current, previous] = [generateSecret(), generateSecret()];
    const now = 1_700_000_000_000;
    const body = Buffer.from('{"a":1}');
    const headers = signatureHeaders({ id: 'msg_v', timestamp: now / 1000, body }, [current, previous]);
    expect(verify(current, body, headers, { now })).toBe(true);
    expect(verify(previous, body.toString(), headers, { now })).toBe(true);
    expect(verify(generateSecret(), body, headers, { now })).toBe(false);
    expect(verify(current, '{"a":2}', headers, { now })).toBe(false);
    // Five minutes either way by default, then refused (replays, badly skewed clocks).
    expect(verify(current, body, headers, { now: now + 299_000 })).toBe(true);
    expect(verify(current, body, headers, { now: now + 301_000 })).toBe(false);
    expect(verify(current, body, headers, { now: now - 301_000 })).toBe(false);
    expect(verify(current, body, headers, { now: now + 3_600_000, toleranceSeconds: 7200 })).toBe(true);
    expect(verify(current, body, { ...headers, 'webhook-signature': undefined }, { now })).toBe(false);
    expect(verify(current, body, { ...headers, 'webhook-timestamp': 'soon' }, { now })).toBe(false);
    expect(verify(current, body, { ...headers, 'webhook-signature': 'v2,abc v1' }, { now })).toBe(false);
  });
});
