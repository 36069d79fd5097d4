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

  it('passes every payload byte on, in order and on its stream, however the stream is cut', () => {
    const data = Buffer.concat([frame(1, 'hello '), frame(2, 'oops'), frame(1, 'world')]);
    for (let cut = 1; cut < data.length; cut += 1) {
      for (let cut2 = cut; cut2 < data.length; cut2 += 1) {
        const seen: [string, string][] = [];
        const demux = new StreamDemuxer((stream, payload) => {
          const last = seen.at(-1);
          // Pieces of one frame arrive one after another: join them to compare frames.
          if (last && last[0] === stream) last[1] += payload.toString();
          else seen.push([stream, payload.toString()]);
        });
        demux.write(data.subarray(0, cut));
        demux.write(data.subarray(cut, cut2));
        demux.write(data.subarray(cut2));
        expect(seen).toEqual([
          ['stdout', 'hello '],
          ['stderr', 'oops'],
          ['stdout', 'world'],
        ]);
        expect(demux.pendingBytes).toBe(0);
      }
    }
  });

  it('keeps a cut header as a copy, not a reference to the caller buffer', () => {
    const seen: string[] = [];
    const demux = new StreamDemuxer((_s, payload) => seen.push(payload.toString()));
    const chunk = frame(2, 'abcdef');
    demux.write(chunk.subarray(0, 5));
    chunk.fill(0, 0, 5);
    demux.write(frame(2, 'abcdef').subarray(5));
    expect(seen).toEqual(['abcdef']);
  });

  it('passes frames as views of the chunk they came in, joined frames moved together in it', () => {
    const chunk = Buffer.concat([frame(1, 'abc'), frame(1, 'de'), frame(2, 'f')]);
    const payloads: Buffer[] = [];
    new StreamDemuxer(
      (_s, payload) => payloads.push(Buffer.from(payload)) && payloads.push(payload),
    ).write(chunk);
    expect(payloads.filter((_, i) => i % 2 === 1).map((p) => p.buffer === chunk.buffer)).toEqual([
      true,
      true,
    ]);
    expect(payloads.filter((_, i) => i % 2 === 0).map((p) => p.toString())).toEqual(['abcde', 'f']);
  });

  it('joins the frames of one stream read in one chunk into one piece, in order', () => {
    const seen: string[] = [];
    const demux = new StreamDemuxer((stream, payload) =>
      seen.push(`${stream}:${payload.toString()}`),
    );
    const data = Buffer.concat([
      frame(1, 'a'),
      frame(1, 'b'),
      frame(1, 'c'),
      frame(2, 'x'),
      frame(2, 'y'),
      frame(1, 'd'),
    ]);
    demux.write(data);
    expect(seen).toEqual(['stdout:abc', 'stderr:xy', 'stdout:d']);
    seen.length = 0;
    // A header cut at the chunk's end: what came before it is passed on at once.
    demux.write(Buffer.concat([frame(1, 'ef'), frame(1, 'g')]).subarray(0, 15));
    expect(seen).toEqual(['stdout:ef']);
  });
});
