import { describe, expect, it } from 'vitest';
import { DelimiterCounter } from '../src/uploads';

describe('DelimiterCounter', () => {
  const boundary = 'x-boundary-123';
  const parts = 5;
  const body = Buffer.concat([
    ...Array.from({ length: parts }, (_, i) => Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="f${i}"\r\n\r\n${'v'.repeat(i * 37)}\r\n`)),
    Buffer.from(`--${boundary}--\r\n`),
  ]);

  it.each([1, 2, 3, 7, 16, 17, 64, body.length])('counts every delimiter once whatever the chunk size (%i bytes)', (size) => {
    const counter = new DelimiterCounter(boundary);
    for (let at = 0; at < body.length; at += size) counter.push(body.subarray(at, at + size));
    // parts + the closing delimiter
    expect(counter.count).toBe(parts + 1);
  });
});
