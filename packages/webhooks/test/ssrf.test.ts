/**
 * The address check as a pure function: nothing here opens a socket, and names are resolved by an
 * injected resolver (or /etc/hosts for `localhost`), never by DNS.
 */
import type { LookupAddress } from 'node:dns';
import { describe, expect, it, vi } from 'vitest';
import { checkAddress, guardedLookup, parseAllowList, SsrfRefusedError, validateWebhookUrl, type ResolveAll } from '../src/ssrf';

const refused: [string, string][] = [
  ['10.0.0.1', 'private'],
  ['10.255.255.255', 'private'],
  ['172.16.0.1', 'private'],
  ['172.31.255.254', 'private'],
  ['192.168.1.1', 'private'],
  ['100.64.0.1', 'cgnat'],
  ['100.127.255.255', 'cgnat'],
  ['169.254.169.254', 'link-local'],
  ['169.254.0.1', 'link-local'],
  ['127.0.0.1', 'loopback'],
  ['127.0.0.2', 'loopback'],
  ['0.0.0.0', 'unspecified'],
  ['0.1.2.3', 'unspecified'],
  ['224.0.0.1', 'multicast'],
  ['239.255.255.250', 'multicast'],
  ['255.255.255.255', 'broadcast'],
  ['240.0.0.1', 'reserved'],
  ['198.18.0.1', 'benchmarking'],
  ['198.19.255.255', 'benchmarking'],
  ['192.0.0.8', 'reserved'],
  ['192.0.2.1', 'documentation'],
  ['::1', 'loopback'],
  ['[::1]', 'loopback'],
  ['::', 'unspecified'],
  ['fc00::', 'unique-local'],
  ['fd12:3456::1', 'unique-local'],
  ['fe80::', 'link-local'],
  ['fe80::1%eth0', 'link-local'],
  ['fec0::1', 'site-local'],
  ['ff02::1', 'multicast'],
  // IPv4-mapped and NAT64 addresses are judged as the IPv4 address they carry, however written.
  ['::ffff:10.0.0.1', 'private'],
  ['::ffff:a00:1', 'private'],
  ['::ffff:127.0.0.1', 'loopback'],
  ['0:0:0:0:0:ffff:a9fe:a9fe', 'link-local'],
  ['64:ff9b::10.0.0.1', 'private'],
  ['64:ff9b::7f00:1', 'loopback'],
  ['64:ff9b:1::1', 'nat64-local'],
  ['::10.0.0.1', 'reserved'],
  ['2002:0a00:0001::1', '6to4'],
  ['2001:0:4136:e378::1', 'teredo'],
  ['2001:db8::1', 'documentation'],
  ['100::1', 'reserved'],
  ['not-an-ip', 'invalid'],
  ['256.1.1.1', 'invalid'],
];

const allowed = ['8.8.8.8', '1.1.1.1', '93.184.215.14', '172.32.0.1', '100.128.0.1', '2606:4700:4700::1111', '2001:4860:4860::8888', '::ffff:8.8.8.8', '64:ff9b::808:808'];

describe('checkAddress', () => {
  it.each(refused)('refuses %s (%s)', (ip, range) => {
    expect(checkAddress(ip)).toEqual({ allowed: false, range });
  });

  it.each(allowed)('allows the public address %s', (ip) => {
    expect(checkAddress(ip)).toEqual({ allowed: true });
  });

  it('honours the allow list, for that address only', () => {
    const allow = parseAllowList('10.0.0.5, [::1], localhost');
    expect(checkAddress('10.0.0.5', allow)).toEqual({ allowed: true });
    expect(checkAddress('10.0.0.6', allow)).toEqual({ allowed: false, range: 'private' });
    expect(checkAddress('::1', allow)).toEqual({ allowed: true });
    expect(checkAddress('0:0:0:0:0:0:0:1', allow)).toEqual({ allowed: true });
    // A mapped address is the IPv4 address it carries, for the allow list too.
    expect(checkAddress('::ffff:10.0.0.5', allow)).toEqual({ allowed: true });
    expect(checkAddress('127.0.0.1', allow)).toEqual({ allowed: false, range: 'loopback' });
    // Plain arrays work too.
    expect(checkAddress('192.168.0.1', ['192.168.0.1'])).toEqual({ allowed: true });
  });

  it('reads WEBHOOK_ALLOWED_HOSTS and refuses entries that are neither names nor IPs', () => {
    const allow = parseAllowList(' Hooks.Internal. ,127.0.0.2,, [::ffff:127.0.0.1] ');
    expect([...allow.names]).toEqual(['hooks.internal']);
    expect([...allow.addresses]).toEqual(['127.0.0.2', '0:0:0:0:0:ffff:7f00:1']);
    expect(() => parseAllowList('127.0.0.1:8080')).toThrow('invalid allowed host "127.0.0.1:8080"');
    expect(() => parseAllowList('http://x')).toThrow('without port or scheme');
    expect(parseAllowList(undefined).names.size).toBe(0);
  });
});

/** A resolver from a fixed table: tests never ask DNS. */
function fakeResolver(table: Record<string, string[]>): ResolveAll & { calls: string[] } {
  const calls: string[] = [];
  const resolve = async (host: string): Promise<LookupAddress[]> => {
    calls.push(host);
    const addresses = table[host];
    if (!addresses) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND' });
    return addresses.map((address) => ({ address, family: address.includes(':') ? 6 : 4 }));
  };
  return Object.assign(resolve, { calls });
}

describe('validateWebhookUrl', () => {
  const resolveAll = fakeResolver({
    'hooks.example.com': ['93.184.215.14', '2606:2800:21f:cb07:6820:80da:af6b:8b2c'],
    'mixed.example.com': ['93.184.215.14', '10.0.0.7'],
    'metadata.example.com': ['169.254.169.254'],
  });

  it.each([
    ['ftp://hooks.example.com/x', 'unsupported_scheme', 'must use http or https (got ftp)'],
    ['javascript:alert(1)', 'unsupported_scheme', 'got javascript'],
    ['/relative/path', 'invalid_url', 'absolute http or https URL'],
    ['https://user:pa55@hooks.example.com/x', 'credentials', 'must not contain a user name or password'],
    ['https://token@hooks.example.com/x', 'credentials', 'must not contain'],
    [`https://hooks.example.com/${'a'.repeat(2100)}`, 'invalid_url', 'at most 2048 characters'],
    ['http://10.0.0.1/hook', 'refused_address', 'webhook host 10.0.0.1 is a private address'],
    ['http://169.254.169.254/latest/meta-data', 'refused_address', 'link-local'],
    ['http://[::1]:8080/', 'refused_address', 'loopback'],
    ['http://[::ffff:127.0.0.1]/', 'refused_address', 'loopback'],
    ['http://[fe80::1]/', 'refused_address', 'link-local'],
    // Other spellings of loopback that the URL parser turns into 127.0.0.1.
    ['http://2130706433/', 'refused_address', 'loopback'],
    ['http://0x7f.1/', 'refused_address', 'loopback'],
    ['http://0177.0.0.1/', 'refused_address', 'loopback'],
    ['http://mixed.example.com/hook', 'refused_address', 'mixed.example.com resolves to 10.0.0.7, a private address'],
    ['http://metadata.example.com/', 'refused_address', 'link-local'],
    ['http://nowhere.example.com/', 'unresolvable', 'could not be resolved'],
  ])('refuses %s', async (url, reason, message) => {
    const check = await validateWebhookUrl(url, undefined, { resolveAll });
    expect(check).toMatchObject({ ok: false, reason });
    if (!check.ok) {
      expect(check.message).toContain(message);
      // The message never repeats the URL's path, query or credentials.
      expect(check.message).not.toMatch(/pa55|token|meta-data|aaaa/);
    }
  });

  it('accepts http(s) URLs whose every address is public', async () => {
    for (const url of ['https://hooks.example.com/sdq?token=abc', 'http://hooks.example.com:8080/x', 'https://8.8.8.8/hook', 'https://[2606:4700:4700::1111]/']) {
      const check = await validateWebhookUrl(url, undefined, { resolveAll });
      expect(check.ok, url).toBe(true);
    }
  });

  it('does not resolve an allowed name, and allows a listed IP literal', async () => {
    const resolver = fakeResolver({});
    expect((await validateWebhookUrl('http://Internal.Hooks:9000/x', 'internal.hooks', { resolveAll: resolver })).ok).toBe(true);
    expect(resolver.calls).toEqual([]);
    expect((await validateWebhookUrl('http://10.1.2.3/x', '10.1.2.3', { resolveAll: resolver })).ok).toBe(true);
    expect((await validateWebhookUrl('http://10.1.2.4/x', '10.1.2.3', { resolveAll: resolver })).ok).toBe(false);
  });

  it('refuses localhost through the system resolver (/etc/hosts, no DNS query)', async () => {
    const check = await validateWebhookUrl('http://localhost:3000/hook');
    expect(check).toMatchObject({ ok: false, reason: 'refused_address' });
    expect((await validateWebhookUrl('http://localhost:3000/hook', 'localhost')).ok).toBe(true);
  });
});

describe('guardedLookup', () => {
  const lookupOnce = (lookup: ReturnType<typeof guardedLookup>, host: string, all: boolean) =>
    new Promise<{ err: Error | null; address: unknown; family?: number }>((resolve) => lookup(host, { all }, (err, address, family) => resolve({ err, address, family })));

  it('refuses a name when any of its addresses is refused, and passes the checked addresses on', async () => {
    const resolveAll = fakeResolver({ 'good.example': ['93.184.215.14'], 'rebound.example': ['93.184.215.14', '127.0.0.1'] });
    const lookup = guardedLookup(undefined, resolveAll);
    expect(await lookupOnce(lookup, 'good.example', false)).toEqual({ err: null, address: '93.184.215.14', family: 4 });
    expect(await lookupOnce(lookup, 'good.example', true)).toEqual({ err: null, address: [{ address: '93.184.215.14', family: 4 }], family: undefined });
    const { err } = await lookupOnce(lookup, 'rebound.example', true);
    expect(err).toBeInstanceOf(SsrfRefusedError);
    expect(err).toMatchObject({ code: 'ERR_SSRF_REFUSED', range: 'loopback', message: 'refused to connect to rebound.example (127.0.0.1): loopback address' });
    expect((await lookupOnce(guardedLookup('rebound.example', resolveAll), 'rebound.example', true)).err).toBeNull();
    expect((await lookupOnce(lookup, 'missing.example', true)).err).toMatchObject({ code: 'ENOTFOUND' });
  });

  it('uses the system resolver by default', async () => {
    const spy = vi.fn();
    const { err } = await lookupOnce(guardedLookup(), 'localhost', true);
    spy(err);
    expect(err).toBeInstanceOf(SsrfRefusedError);
  });
});
