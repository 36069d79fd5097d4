/** A hostile server's answer: 64 KiB chunks for as long as the client reads, never an end. */
import type { ServerResponse } from 'node:http';

export function writeEndlessly(
  res: ServerResponse,
  onChunk: (bytes: number) => void = () => {},
): void {
  const chunk = Buffer.alloc(64 * 1024, 'x');
  const more = (): void => {
    while (!res.destroyed && res.write(chunk)) onChunk(chunk.length);
    if (!res.destroyed) res.once('drain', more);
  };
  more();
}
