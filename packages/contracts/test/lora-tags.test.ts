/** A1111's `<lora:name:weight>` prompt tags, as every dialect's prompt text is read. */
import { describe, expect, it } from 'vitest';
import { extractLoraTags, LoraTagError } from '../src/lora-tags';

describe('LoRA tags in prompts', () => {
  it('takes the tags out of the text and returns the LoRAs they name', () => {
    expect(extractLoraTags('a red circle <lora:green-objects:0.8> on blue')).toEqual({ text: 'a red circle on blue', loras: [{ name: 'green-objects', weight: 0.8 }] });
    expect(extractLoraTags('<lora:green-objects>a red circle')).toEqual({ text: 'a red circle', loras: [{ name: 'green-objects', weight: 1 }] });
    expect(extractLoraTags('a cat')).toEqual({ text: 'a cat', loras: [] });
  });

  it('adds the weights of one LoRA named twice, as A1111 does', () => {
    expect(extractLoraTags('<lora:a:0.5> x <lora:a:0.25> <lora:b:-1>').loras).toEqual([{ name: 'a', weight: 0.75 }, { name: 'b', weight: -1 }]);
  });

  it('leaves text that is not a tag as it is', () => {
    expect(extractLoraTags('a <cat> and 3 < 4 > 2, <embedding> time: 12:30').text).toBe('a <cat> and 3 < 4 > 2, <embedding> time: 12:30');
  });

  it.each([
    ['<lora:x:abc>', /the weight must be a number/],
    ['<lora:x:>', /the weight must be a number/],
    ['<lora:x:5>', /from -4 to 4 \(x would be 5\)/],
    ['<lora:x:3> <lora:x:2>', /x would be 5/],
    ['<lora:../etc/passwd:1>', /is not a LoRA name/],
    ['<lora::1>', /is not a LoRA name/],
    ['<lora:x:1:0.5>', /separate text-encoder and UNet weights are not taken/],
    ['<hypernet:x:1>', /not hypernetworks/],
    ['<lyco:x:1>', /not LyCORIS tags/],
    [Array.from({ length: 9 }, (_, i) => `<lora:l${i}>`).join(' '), /at most 8 LoRAs/],
  ])('refuses %s', (prompt, reason) => {
    expect(() => extractLoraTags(prompt)).toThrow(LoraTagError);
    expect(() => extractLoraTags(prompt)).toThrow(reason);
  });
});
