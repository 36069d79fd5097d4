import { describe, expect, it } from 'vitest';
import { stoppedFollowing } from './remote.js';

describe('stoppedFollowing (Ctrl-C while following a run)', () => {
  it('names the commands that reach the run again, as the run stands', () => {
    expect(stoppedFollowing('R1', 'UNCONFIRMED')).toBe(
      'berth: stopped following; run R1 was waiting for confirmation (`berth runs show R1` says where it stands): `berth runs confirm R1` applies its plan, `berth runs discard R1` discards it',
    );
    expect(stoppedFollowing('R1', 'QUEUED')).toBe(
      'berth: stopped following; run R1 goes on (QUEUED): `berth runs logs R1 --follow` follows it again, `berth runs cancel R1` stops it',
    );
    expect(stoppedFollowing('R1', null)).toContain('run R1 goes on: `berth runs logs R1');
    expect(stoppedFollowing('R1', 'FINISHED')).toBe('berth: stopped following; run R1 is FINISHED');
  });
});
