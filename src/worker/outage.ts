/**
 * What the worker says while it cannot reach the server: the first failure (with the server's
 * address and the cause), then once a minute while it lasts (with a count), and once when the
 * server answers again. A lease retried every 2 s would otherwise say the same line 30 times a
 * minute and nothing when it ends.
 */
export class OutageNotice {
  private since: number | null = null;
  private lastSaid = 0;
  private failures = 0;

  constructor(
    private readonly say: (line: string) => void,
    /** What failed, as in "cannot lease from the server". */
    private readonly what: string,
    private readonly retryText: string,
    private readonly everyMs = 60_000,
    private readonly now: () => number = Date.now,
  ) {}

  /** A failure was said and no attempt has worked since. */
  get ongoing(): boolean {
    return this.since !== null;
  }

  /** One more failed attempt; said when it is the first, or a minute after the last said. */
  failed(why: string): void {
    const now = this.now();
    this.failures += 1;
    if (this.since === null) {
      this.since = now;
      this.lastSaid = now;
      this.say(
        `cannot ${this.what}: ${why}; trying again ${this.retryText} (said again once a minute while it lasts)`,
      );
      return;
    }
    if (now - this.lastSaid < this.everyMs) return;
    this.lastSaid = now;
    this.say(
      `still cannot ${this.what} after ${this.failures} attempts over ${this.lasted(now)}: ${why}`,
    );
  }

  /** An attempt worked: the end of an outage is said, once. */
  succeeded(): void {
    if (this.since === null) return;
    this.say(
      `the server answers again: could not ${this.what} for ${this.lasted(this.now())} (${this.failures} failed attempt(s))`,
    );
    this.since = null;
    this.failures = 0;
  }

  private lasted(now: number): string {
    const seconds = Math.round((now - (this.since ?? now)) / 1000);
    return seconds < 120 ? `${seconds} s` : `${Math.round(seconds / 60)} min`;
  }
}
