import { describe, expect, it } from 'vitest';
import { OutageNotice } from './outage.js';

describe('OutageNotice', () => {
  it('says the first failure, then once a minute with a count, then the recovery once', () => {
    const said: string[] = [];
    let now = 1_000_000;
    const notice = new OutageNotice(
      (line) => said.push(line),
      'lease from the server',
      'every 2 s',
      60_000,
      () => now,
    );
    notice.succeeded();
    expect(said).toEqual([]);
    expect(notice.ongoing).toBe(false);
    notice.failed('cannot reach the berth server at http://h:1 (ECONNREFUSED)');
    // 29 more failures within the minute: nothing more said.
    for (let i = 0; i < 29; i += 1) {
      now += 2000;
      notice.failed('cannot reach the berth server at http://h:1 (ECONNREFUSED)');
    }
    expect(said).toEqual([
      'cannot lease from the server: cannot reach the berth server at http://h:1 (ECONNREFUSED); trying again every 2 s (said again once a minute while it lasts)',
    ]);
    now += 2000;
    notice.failed('cannot reach the berth server at http://h:1 (ECONNREFUSED)');
    expect(said[1]).toBe(
      'still cannot lease from the server after 31 attempts over 60 s: cannot reach the berth server at http://h:1 (ECONNREFUSED)',
    );
    expect(notice.ongoing).toBe(true);
    now += 5000;
    notice.succeeded();
    notice.succeeded();
    expect(said.slice(2)).toEqual([
      'the server answers again: could not lease from the server for 65 s (31 failed attempt(s))',
    ]);
    // A new outage is said from its first failure again.
    notice.failed('x');
    expect(said).toHaveLength(4);
    expect(said[3]).toMatch(/^cannot lease from the server: x;/);
  });
});
