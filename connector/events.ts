// Resource activity events (DESIGN §4 step 8): one per connection with its outcome, batched and
// uploaded every couple of seconds. Bounded: under a long Controller outage the oldest are dropped
// (and counted) rather than growing without limit.
import type { Logger } from "../bunlib/log.ts";

export type Outcome = "success" | "dns_lookup_error" | "unable_to_connect" | "denied";

export interface ActivityEvent {
  time: string;
  principal_id: string;
  principal_type: "user" | "service_account";
  device_id: string;
  resource_id: string | null;
  destination: string;
  protocol: "tcp" | "udp";
  resolved_ip: string | null;
  outcome: Outcome;
  reason: string | null;
  bytes_sent: number;
  bytes_received: number;
  duration_ms: number;
  path: "relayed" | "direct";
}

const MAX_QUEUE = 10_000;
const BATCH = 500;

export class EventReporter {
  private queue: ActivityEvent[] = [];
  private dropped = 0;
  private timer: ReturnType<typeof setInterval> | undefined;
  private flushing = false;

  constructor(
    private readonly upload: (events: ActivityEvent[]) => Promise<unknown>,
    private readonly log: Logger,
    private readonly intervalMs = 2000,
    /** Told of every connection as it is reported (the metrics' counters). */
    private readonly observe: (event: ActivityEvent) => void = () => {},
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.flush(), this.intervalMs);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  report(event: ActivityEvent): void {
    this.observe(event);
    if (this.queue.length >= MAX_QUEUE) {
      this.queue.shift();
      this.dropped++;
    }
    this.queue.push(event);
    this.log.info("connection", {
      outcome: event.outcome,
      resource: event.resource_id ?? undefined,
      destination: event.destination,
      principal: event.principal_id,
      reason: event.reason ?? undefined,
    });
  }

  async flush(): Promise<void> {
    if (this.flushing || this.queue.length === 0) return;
    this.flushing = true;
    try {
      while (this.queue.length > 0) {
        const batch = this.queue.slice(0, BATCH);
        await this.upload(batch);
        this.queue.splice(0, batch.length);
      }
      if (this.dropped > 0) {
        this.log.warn("activity events were dropped while the controller was unreachable", {
          count: this.dropped,
        });
        this.dropped = 0;
      }
    } catch (err) {
      this.log.warn("could not upload activity events; will retry", { error: (err as Error).message });
    } finally {
      this.flushing = false;
    }
  }
}
