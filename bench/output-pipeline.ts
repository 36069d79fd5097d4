/**
 * berth's own output pipeline, alone: engine frames in (recorded, in memory), through the
 * demultiplexer, `::add-mask` filtering, masking (on byte strings), the stored log and the human
 * view's time stamps, out to /dev/null. No engine, no job, no pipe reader: the CPU time berth
 * spends per 100 MB of output, steadier than bench/throughput.ts's rates on a shared machine.
 * BENCH_MB (default 200), BENCH_ROUNDS (default 5).
 */
import { mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { humanView } from '../src/cli/render.js';
import { StreamDemuxer } from '../src/executor/docker/stream-demux.js';
import { OutputLog } from '../src/launcher/output-log.js';
import { OutputMasking } from '../src/launcher/output-masking.js';

const megabytes = Number(process.env.BENCH_MB ?? 200);
const rounds = Number(process.env.BENCH_ROUNDS ?? 5);
const LINE =
  'terraform-like output line: aws_instance.web[3]: Still creating... [10s elapsed] hunter2\n';

/** Engine reads of 64 KiB, each holding frames of 16 KiB (a job writing through a pipe). */
function recordedStream(bytes: number): Buffer[] {
  const text = Buffer.from(LINE.repeat(Math.ceil(16384 / LINE.length))).subarray(0, 16384);
  const header = Buffer.alloc(8);
  header[0] = 1;
  header.writeUInt32BE(text.length, 4);
  const frame = Buffer.concat([header, text]);
  const all = Buffer.concat(Array.from({ length: 64 }, () => frame));
  const reads: Buffer[] = [];
  for (let sent = 0; sent < bytes; sent += 64 * text.length) {
    for (let at = 0; at < all.length; at += 65536) reads.push(all.subarray(at, at + 65536));
  }
  return reads;
}

function round(reads: Buffer[], dir: string): number {
  const fd = openSync('/dev/null', 'w');
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      writeSync(fd, chunk);
      done();
    },
  });
  const out = { stdout: sink, stderr: sink } as unknown as Parameters<typeof humanView>[0];
  const view = humanView(out);
  const log = new OutputLog(path.join(dir, 'output.log'), 4 * 1024 * 1024);
  const masking = new OutputMasking(['hunter2']);
  // As run-job.ts wires them: masked bytes to the stored log and to the view (RunDeps.output).
  const pipe = masking.forPhase((stream, bytes) => {
    log.append(bytes);
    view.output({ phase: 'task', stream, bytes, ts: new Date().toISOString() });
  });
  const demux = new StreamDemuxer((stream, payload) => pipe.write(stream, payload));
  const before = process.cpuUsage();
  // A fresh copy of each read, as the socket gives (the demultiplexer changes what it is given).
  for (const read of reads) demux.write(Buffer.from(read));
  pipe.end();
  const used = process.cpuUsage(before);
  return (used.user + used.system) / 1000;
}

const dir = mkdtempSync(path.join(tmpdir(), 'berth-bench-pipeline-'));
try {
  const reads = recordedStream(megabytes * 1024 * 1024);
  const figures: number[] = [];
  for (let i = 0; i < rounds; i += 1) figures.push((round(reads, dir) * 100) / megabytes);
  figures.sort((a, b) => a - b);
  console.log(
    `output pipeline alone, ${megabytes} MB: ${figures[Math.floor(rounds / 2)]!.toFixed(0)} ms CPU per 100 MB (median of ${rounds}; rounds ${figures.map((f) => f.toFixed(0)).join(', ')})`,
  );
} finally {
  rmSync(dir, { recursive: true, force: true });
}
