/**
 * SSRF protection: a webhook URL is chosen by a client, so the service must never be made to call its own
 * network (Redis, the metadata service at 169.254.169.254, an admin port on localhost) on that client's
 * behalf.
 *
 * Two layers:
 * - `validateWebhookUrl` at submission: the URL's form, and every address its host resolves to now.
 * - `guardedLookup` (and `checkLiteralHost`) at delivery, where the connection is made: a name may
 *   resolve to something else by then (DNS rebinding), so the addresses are checked again inside the
 *   socket's own lookup, and the socket connects only to the addresses that passed.
 *
 * Addresses are judged by a table of refused ranges below. IPv4-mapped IPv6 (::ffff:a.b.c.d) and the NAT64
 * well-known prefix (64:ff9b::/96) carry an IPv4 address and are judged as that address; any other IPv6
 * address outside global unicast 2000::/3 is refused.
 *
 * The allow list (WEBHOOK_ALLOWED_HOSTS) names hosts that are exempt: a listed name is not checked at all,
 * a listed IP is allowed whatever its range. Tests and private deployments use it.
 */
import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { isIP, type LookupFunction } from 'node:net';

/** Why an address is refused. */
export type RefusedRange =
  | 'unspecified'
  | 'loopback'
  | 'private'
  | 'link-local'
  | 'cgnat'
  | 'multicast'
  | 'broadcast'
  | 'reserved'
  | 'benchmarking'
  | 'documentation'
  | 'unique-local'
  | 'site-local'
  | 'nat64-local'
  | '6to4'
  | 'teredo'
  | 'not-global-unicast'
  | 'invalid';

export type AddressVerdict = { allowed: true } | { allowed: false; range: RefusedRange };

interface Range {
  bytes: Uint8Array;
  bits: number;
  range: RefusedRange;
}

// First match wins, so narrower ranges come before the wider ones holding them.
const V4_REFUSED: Range[] = [
  cidr('0.0.0.0/8', 'unspecified'),
  cidr('10.0.0.0/8', 'private'),
  cidr('100.64.0.0/10', 'cgnat'),
  cidr('127.0.0.0/8', 'loopback'),
  // Includes the cloud metadata service, 169.254.169.254.
  cidr('169.254.0.0/16', 'link-local'),
  cidr('172.16.0.0/12', 'private'),
  // IETF protocol assignments (DS-Lite, NAT64 discovery, ...): never a customer's server.
  cidr('192.0.0.0/24', 'reserved'),
  cidr('192.0.2.0/24', 'documentation'),
  // The 6to4 relay anycast prefix, deprecated.
  cidr('192.88.99.0/24', 'reserved'),
  cidr('192.168.0.0/16', 'private'),
  cidr('198.18.0.0/15', 'benchmarking'),
  cidr('198.51.100.0/24', 'documentation'),
  cidr('203.0.113.0/24', 'documentation'),
  cidr('224.0.0.0/4', 'multicast'),
  cidr('255.255.255.255/32', 'broadcast'),
  cidr('240.0.0.0/4', 'reserved'),
];

const V6_REFUSED: Range[] = [
  cidr('::/128', 'unspecified'),
  cidr('::1/128', 'loopback'),
  cidr('64:ff9b:1::/48', 'nat64-local'),
  // The rest of ::/8: IPv4-compatible (deprecated) and IPv4-translated addresses, all reserved.
  cidr('::/8', 'reserved'),
  cidr('100::/64', 'reserved'),
  // Teredo tunnels and the rest of the IETF protocol assignments (benchmarking 2001:2::/48, ORCHID).
  cidr('2001::/32', 'teredo'),
  cidr('2001:2::/48', 'benchmarking'),
  cidr('2001::/23', 'reserved'),
  cidr('2001:db8::/32', 'documentation'),
  // 6to4 embeds an IPv4 address that a relay would reach; refused rather than judged.
  cidr('2002::/16', '6to4'),
  cidr('3fff::/20', 'documentation'),
  cidr('fc00::/7', 'unique-local'),
  cidr('fe80::/10', 'link-local'),
  cidr('fec0::/10', 'site-local'),
  cidr('ff00::/8', 'multicast'),
];
const V6_GLOBAL_UNICAST = cidr('2000::/3', 'not-global-unicast');
const V6_MAPPED = cidr('::ffff:0:0/96', 'reserved');
const V6_NAT64 = cidr('64:ff9b::/96', 'reserved');

interface ParsedIp {
  version: 4 | 6;
  bytes: Uint8Array;
}

/** Parses an IPv4 or IPv6 address (brackets and a zone id allowed); undefined when it is not one. */
export function parseIp(text: string): ParsedIp | undefined {
  let s = text.trim();
  if (s.startsWith('[') && s.endsWith(']')) s = s.slice(1, -1);
  const zone = s.indexOf('%');
  if (zone !== -1) s = s.slice(0, zone);
  const version = isIP(s);
  if (version === 4) return { version: 4, bytes: Uint8Array.from(s.split('.').map(Number)) };
  if (version !== 6) return undefined;

  // A trailing dotted quad (::ffff:10.0.0.1) becomes two hex groups.
  if (s.includes('.')) {
    const at = s.lastIndexOf(':') + 1;
    const [a, b, c, d] = s.slice(at).split('.').map(Number);
    s = `${s.slice(0, at)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, tail] = s.split('::');
  const headGroups = head ? head.split(':') : [];
  const tailGroups = tail ? tail.split(':') : [];
  const groups = tail === undefined ? headGroups : [...headGroups, ...Array(8 - headGroups.length - tailGroups.length).fill('0'), ...tailGroups];
  const bytes = new Uint8Array(16);
  groups.forEach((g, i) => {
    const n = parseInt(g, 16);
    bytes[2 * i] = n >> 8;
    bytes[2 * i + 1] = n & 0xff;
  });
  return { version: 6, bytes };
}

function cidr(text: string, range: RefusedRange): Range {
  const [address, bits] = text.split('/');
  const parsed = parseIp(address);
  if (!parsed) throw new Error(`bad range in the SSRF table: ${text}`);
  return { bytes: parsed.bytes, bits: Number(bits), range };
}

function inRange(bytes: Uint8Array, { bytes: prefix, bits }: Range): boolean {
  if (bytes.length !== prefix.length) return false;
  const whole = bits >> 3;
  for (let i = 0; i < whole; i++) if (bytes[i] !== prefix[i]) return false;
  const rest = bits & 7;
  if (rest === 0) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return (bytes[whole] & mask) === (prefix[whole] & mask);
}

/** The IPv4 address an IPv6 one carries and must be judged as (mapped, NAT64), if any. */
function embeddedV4(ip: ParsedIp): ParsedIp | undefined {
  if (ip.version === 6 && (inRange(ip.bytes, V6_MAPPED) || inRange(ip.bytes, V6_NAT64))) return { version: 4, bytes: ip.bytes.slice(12) };
  return undefined;
}

function addressKey(ip: ParsedIp): string {
  if (ip.version === 4) return ip.bytes.join('.');
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((ip.bytes[i] << 8) | ip.bytes[i + 1]).toString(16));
  return groups.join(':');
}

// --- allow list -------------------------------------------------------------------------------------

/** Hosts exempt from the checks: names compared exactly (lower case), IPs by value. */
export interface AllowList {
  readonly names: ReadonlySet<string>;
  readonly addresses: ReadonlySet<string>;
}

export type AllowListInput = AllowList | string | readonly string[] | undefined;

const HOST_NAME = /^[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*$/;

/**
 * Reads a comma-separated list of host names and IPs (the form of WEBHOOK_ALLOWED_HOSTS); IPv6 with or
 * without brackets. Throws on an entry that is neither, naming it, so that a typo stops start-up.
 */
export function parseAllowList(input: AllowListInput): AllowList {
  if (input && typeof input === 'object' && 'names' in input) return input;
  const entries = typeof input === 'string' ? input.split(',') : (input ?? []);
  const names = new Set<string>();
  const addresses = new Set<string>();
  for (const raw of entries) {
    const entry = normalizeHost(raw);
    if (!entry) continue;
    const ip = parseIp(entry);
    if (ip) addresses.add(addressKey(ip));
    else if (HOST_NAME.test(entry)) names.add(entry);
    else throw new Error(`invalid allowed host ${JSON.stringify(raw.trim())}: expected a host name or an IP address, without port or scheme`);
  }
  return { names, addresses };
}

/** Lower case, no brackets, no trailing dot: the form hosts are compared in. */
function normalizeHost(host: string): string {
  let h = host.trim().toLowerCase();
  if (h.startsWith('[') && h.endsWith(']')) h = h.slice(1, -1);
  if (h.endsWith('.')) h = h.slice(0, -1);
  return h;
}

function isListed(ip: ParsedIp, allow: AllowList): boolean {
  if (allow.addresses.has(addressKey(ip))) return true;
  const v4 = embeddedV4(ip);
  return !!v4 && inRange(ip.bytes, V6_MAPPED) && allow.addresses.has(addressKey(v4));
}

// --- the address check ------------------------------------------------------------------------------

/**
 * Whether a connection to `ip` is allowed: refused when it lies in a loopback, private, link-local, CGNAT,
 * multicast, unspecified or otherwise special range, unless the allow list names it. IPv4-mapped IPv6 is
 * judged (and matched against the allow list) as its IPv4 address.
 */
export function checkAddress(ip: string, allowList?: AllowListInput): AddressVerdict {
  const parsed = parseIp(ip);
  if (!parsed) return { allowed: false, range: 'invalid' };
  if (isListed(parsed, parseAllowList(allowList))) return { allowed: true };

  const judged = embeddedV4(parsed) ?? parsed;
  const table = judged.version === 4 ? V4_REFUSED : V6_REFUSED;
  const refused = table.find((r) => inRange(judged.bytes, r));
  if (refused) return { allowed: false, range: refused.range };
  if (judged.version === 6 && !inRange(judged.bytes, V6_GLOBAL_UNICAST)) return { allowed: false, range: 'not-global-unicast' };
  return { allowed: true };
}

// --- at submission ----------------------------------------------------------------------------------

/** Resolves a name to all its addresses (node's dns.lookup by default; tests inject their own). */
export type ResolveAll = (hostname: string) => Promise<LookupAddress[]>;

export const systemResolveAll: ResolveAll = (hostname) =>
  new Promise((resolve, reject) => dnsLookup(hostname, { all: true }, (err, addresses) => (err ? reject(err) : resolve(addresses))));

export type WebhookUrlCheck =
  | { ok: true; url: URL }
  | { ok: false; reason: 'invalid_url' | 'unsupported_scheme' | 'credentials' | 'unresolvable' | 'refused_address'; message: string };

/** Longest webhook URL accepted. */
export const MAX_WEBHOOK_URL_LENGTH = 2048;

/**
 * Checks a webhook URL when a client submits it: http or https, a host, no user name or password, and
 * every address the host has now outside the refused ranges (a listed host is not resolved). Messages
 * name the host and the range but never repeat the URL, whose path or query may hold a token.
 */
export async function validateWebhookUrl(
  input: string,
  allowList?: AllowListInput,
  { resolveAll = systemResolveAll }: { resolveAll?: ResolveAll } = {},
): Promise<WebhookUrlCheck> {
  if (input.length > MAX_WEBHOOK_URL_LENGTH) {
    return { ok: false, reason: 'invalid_url', message: `webhook URL must be at most ${MAX_WEBHOOK_URL_LENGTH} characters (got ${input.length})` };
  }
  let url: URL;
  try {
    url = new URL(input);
  } catch {
    return { ok: false, reason: 'invalid_url', message: 'webhook must be an absolute http or https URL' };
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    return { ok: false, reason: 'unsupported_scheme', message: `webhook URL must use http or https (got ${url.protocol.replace(/:$/, '')})` };
  }
  if (url.username || url.password) return { ok: false, reason: 'credentials', message: 'webhook URL must not contain a user name or password' };
  const host = normalizeHost(url.hostname);
  if (!host) return { ok: false, reason: 'invalid_url', message: 'webhook URL must have a host' };

  const allow = parseAllowList(allowList);
  if (allow.names.has(host)) return { ok: true, url };
  if (parseIp(host)) {
    const verdict = checkAddress(host, allow);
    return verdict.allowed ? { ok: true, url } : refusedMessage(host, host, verdict.range);
  }

  let addresses: LookupAddress[];
  try {
    addresses = await resolveAll(host);
  } catch {
    addresses = [];
  }
  if (addresses.length === 0) return { ok: false, reason: 'unresolvable', message: `webhook host ${host} could not be resolved` };
  for (const { address } of addresses) {
    const verdict = checkAddress(address, allow);
    if (!verdict.allowed) return refusedMessage(host, address, verdict.range);
  }
  return { ok: true, url };
}

function refusedMessage(host: string, address: string, range: RefusedRange): WebhookUrlCheck {
  const where = host === address ? `webhook host ${host} is` : `webhook host ${host} resolves to ${address},`;
  // the operator's way out, named where the refusal is read (a receiver on this machine or network)
  return { ok: false, reason: 'refused_address', message: `${where} a ${range} address, which webhooks may not call (an operator allows it with WEBHOOK_ALLOWED_HOSTS=${host})` };
}

// --- at delivery ------------------------------------------------------------------------------------

/** The error a refused connection fails with; its message names the host and range, never the URL. */
export class SsrfRefusedError extends Error {
  readonly code = 'ERR_SSRF_REFUSED';
  constructor(
    readonly host: string,
    readonly address: string,
    readonly range: RefusedRange,
  ) {
    super(`refused to connect to ${host === address ? address : `${host} (${address})`}: ${range} address`);
    this.name = 'SsrfRefusedError';
  }
}

/**
 * Throws SsrfRefusedError when a URL's host is an IP literal that may not be called. Needed because node
 * connects to an IP literal without calling the socket's lookup.
 */
export function checkLiteralHost(hostname: string, allowList?: AllowListInput): void {
  const host = normalizeHost(hostname);
  if (!parseIp(host)) return;
  const verdict = checkAddress(host, allowList);
  if (!verdict.allowed) throw new SsrfRefusedError(host, host, verdict.range);
}

/**
 * A `lookup` for http.request / net.connect that resolves the name, refuses the connection if any address
 * is refused (unless the name is listed), and hands the socket exactly the addresses it checked, so what
 * is connected to is what was checked.
 */
export function guardedLookup(allowList?: AllowListInput, resolveAll: ResolveAll = systemResolveAll): LookupFunction {
  const allow = parseAllowList(allowList);
  return (hostname, options, callback) => {
    const host = normalizeHost(hostname);
    resolveAll(hostname).then(
      (found) => {
        const addresses = options.family === 4 || options.family === 6 ? found.filter((a) => a.family === options.family) : found;
        if (addresses.length === 0) {
          const err: NodeJS.ErrnoException = new Error(`no address found for ${host}`);
          err.code = 'ENOTFOUND';
          return callback(err, '');
        }
        if (!allow.names.has(host)) {
          for (const { address } of addresses) {
            const verdict = checkAddress(address, allow);
            if (!verdict.allowed) return callback(new SsrfRefusedError(host, address, verdict.range), '');
          }
        }
        if (options.all) callback(null, addresses);
        else callback(null, addresses[0].address, addresses[0].family);
      },
      (err: NodeJS.ErrnoException) => callback(err, ''),
    );
  };
}
