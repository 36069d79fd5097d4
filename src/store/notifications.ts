/**
 * Signals between the server processes sharing one PostgreSQL: LISTEN/NOTIFY on one channel.
 * Each process keeps one dedicated connection that only listens (a pooled connection cannot: the
 * pool hands it to other queries and may close it), and sends through its ordinary pool, so a
 * signal is sent even while its own listener reconnects.
 *
 * A notification carries the sender's origin and one or more topics (`origin\ntopic\ntopic…`);
 * a process ignores its own (it woke its waiters itself). Topics sent in the same turn of the
 * event loop go in one notification. When the listening connection is lost, it reconnects with
 * backoff; while it is down `onResync` is called every `resyncMs`, and once more when it is back,
 * so that waiters look at the table again: a notification sent while nobody listened is lost.
 */
import { randomBytes } from 'node:crypto';
import type { Client } from 'pg';

export const CHANNEL = 'berth_signals';
/** PostgreSQL's limit is 8000 bytes per payload; topics beyond this go in the next one. */
const PAYLOAD_LIMIT = 7000;

export interface NotificationHandlers {
  /** A topic signalled by another process. */
  onTopic(topic: string): void;
  /** Signals may have been missed (connection lost, or just regained): look at the table. */
  onResync(): void;
  /** The listening connection was lost or could not be made (for the operator's log). */
  onTrouble?(message: string): void;
}

export interface NotificationOptions {
  /** Sends one payload on the channel (through the store's pool: `pg_notify`). */
  send(channel: string, payload: string): Promise<void>;
  /** While disconnected, how often waiters are told to look again (default 1 s). */
  resyncMs?: number;
  /** Longest pause between reconnection attempts (default 5 s). */
  maxBackoffMs?: number;
}

export class Notifications {
  readonly origin = randomBytes(8).toString('hex');
  private client: Client | null = null;
  private closed = false;
  private connected = false;
  private backoffMs = 100;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private resyncTimer: NodeJS.Timeout | undefined;
  private readonly outgoing = new Set<string>();
  private flushing = false;
  /** How many times the listening connection was (re)established (for tests and status). */
  connections = 0;

  private constructor(
    private readonly url: string,
    private readonly handlers: NotificationHandlers,
    private readonly options: NotificationOptions,
  ) {}

  /** Starts listening; resolves once the first connection listens (or throws if it cannot). */
  static async listen(
    url: string,
    handlers: NotificationHandlers,
    options: NotificationOptions,
  ): Promise<Notifications> {
    const notifications = new Notifications(url, handlers, options);
    await notifications.connect();
    return notifications;
  }

  /** Whether the listening connection is up now. */
  get listening(): boolean {
    return this.connected;
  }

  /** The PostgreSQL backend pid of the listening connection (tests cut it with pg_terminate_backend). */
  async backendPid(): Promise<number | null> {
    if (!this.client || !this.connected) return null;
    const result = await this.client.query<{ pid: number }>('select pg_backend_pid() as pid');
    return result.rows[0]?.pid ?? null;
  }

  /** Queues a topic for the other processes; sent at the end of this turn of the event loop. */
  publish(topic: string): void {
    if (this.closed) return;
    this.outgoing.add(topic);
    if (!this.flushing) {
      this.flushing = true;
      setImmediate(() => void this.flush());
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.reconnectTimer);
    clearInterval(this.resyncTimer);
    const client = this.client;
    this.client = null;
    this.connected = false;
    await client?.end().catch(() => undefined);
  }

  private async flush(): Promise<void> {
    this.flushing = false;
    const topics = [...this.outgoing];
    this.outgoing.clear();
    let payload = this.origin;
    for (const topic of topics) {
      if (payload.length + topic.length + 1 > PAYLOAD_LIMIT) {
        await this.sendSafely(payload);
        payload = this.origin;
      }
      payload += `\n${topic}`;
    }
    if (payload !== this.origin) await this.sendSafely(payload);
  }

  private async sendSafely(payload: string): Promise<void> {
    try {
      await this.options.send(CHANNEL, payload);
    } catch (err) {
      // The others miss this signal; their waits end on their own and look again.
      this.handlers.onTrouble?.(`could not signal the other servers: ${(err as Error).message}`);
    }
  }

  private async connect(): Promise<void> {
    const { default: pg } = await import('pg');
    const client = new pg.Client({ connectionString: this.url });
    client.on('notification', (message) => {
      if (message.channel !== CHANNEL || !message.payload) return;
      const [origin, ...topics] = message.payload.split('\n');
      if (origin === this.origin) return;
      for (const topic of topics) this.handlers.onTopic(topic);
    });
    // An idle connection's error comes as an event; without a listener it would end the process.
    client.on('error', (err) => this.lost(client, err.message));
    client.on('end', () => this.lost(client, 'the connection ended'));
    try {
      await client.connect();
      await client.query(`LISTEN ${CHANNEL}`);
    } catch (err) {
      client.removeAllListeners('end');
      await client.end().catch(() => undefined);
      throw err;
    }
    if (this.closed) {
      await client.end().catch(() => undefined);
      return;
    }
    this.client = client;
    this.connected = true;
    this.connections += 1;
    this.backoffMs = 100;
    clearInterval(this.resyncTimer);
    this.resyncTimer = undefined;
    // Whatever was signalled while nobody listened (or before this start) is looked at now.
    this.handlers.onResync();
  }

  private lost(client: Client, why: string): void {
    if (this.closed || this.client !== client) return;
    this.client = null;
    this.connected = false;
    client.removeAllListeners('end');
    void client.end().catch(() => undefined);
    this.handlers.onTrouble?.(
      `lost the PostgreSQL connection that listens for signals (${why}); reconnecting`,
    );
    this.resyncTimer ??= setInterval(() => this.handlers.onResync(), this.options.resyncMs ?? 1000);
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    if (this.closed) return;
    this.reconnectTimer = setTimeout(() => {
      this.connect().catch((err: unknown) => {
        this.handlers.onTrouble?.(
          `cannot listen for signals on PostgreSQL yet: ${(err as Error).message}`,
        );
        this.backoffMs = Math.min(this.backoffMs * 2, this.options.maxBackoffMs ?? 5000);
        this.scheduleReconnect();
      });
    }, this.backoffMs);
  }
}
