import { describe, expect, it } from 'vitest';
import { StreamDemuxer } from './stream-demux.js';

function frame(type: number, text: string): Buffer {
  const payload = Buffer.from(text);
  const header = Buffer.alloc(8);
  header[0] = type;
  header.writeUInt32BE(payload.length, 4);
  return Buffer.concat([header, payload]);
}

describe('StreamDemuxer', () => {
  it('splits stdout and stderr frames', () => {
    const seen: string[] = [];
    const demux = new StreamDemuxer((stream, payload) =>
      seen.push(`${stream}:${payload.toString()}`),
    );
    demux.write(Buffer.concat([frame(1, 'out'), frame(2, 'err')]));
    expect(seen).toEqual(['stdout:out', 'stderr:err']);
  });

  it('reassembles frames cut at every possible byte', () => {
    const data = Buffer.concat([frame(1, 'hello '), frame(2, 'oops'), frame(1, 'world')]);
    for (let cut = 1; cut < data.length; cut += 1) {
      const seen: string[] = [];
      const demux = new StreamDemuxer((stream, payload) =>
        seen.push(`${stream}:${payload.toString()}`),
      );
      demux.write(data.subarray(0, cut));
      demux.write(data.subarray(cut));
      expect(seen.join('|')).toBe('stdout:hello |stderr:oops|stdout:world');
      expect(demux.pendingBytes).toBe(0);
    }
  });

  it('does not keep a reference to the caller buffer', () => {
    const seen: string[] = [];
    const demux = new StreamDemuxer((_s, payload) => seen.push(payload.toString()));
    const chunk = frame(1, 'abcdef');
    demux.write(chunk.subarray(0, 10));
    chunk.fill(0, 0, 10);
    demux.write(frame(1, 'abcdef').subarray(10));
    expect(seen).toEqual(['abcdef']);
  });
});
