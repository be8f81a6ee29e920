import { DeckError } from "../core/index.ts";

/**
 * One deploy per app at a time. Work for the same app runs in arrival order; different apps run in
 * parallel. A caller that has to wait learns its position in line.
 */
export class AppQueue {
  /** Per app: the promise the next arrival waits for, and how many deploys hold or await the slot. */
  private readonly lines = new Map<string, { tail: Promise<void>; count: number }>();

  constructor(private readonly mode: "wait" | "refuse" = "wait") {}

  busy(app: string): boolean {
    return this.lines.has(app);
  }

  /** Resolves once no deploy is running or waiting (for a clean shutdown), or after `deadlineMs`. */
  async idle(deadlineMs: number): Promise<boolean> {
    const end = Date.now() + deadlineMs;
    while (this.lines.size > 0) {
      if (Date.now() >= end) return false;
      await new Promise((r) => setTimeout(r, 50));
    }
    return true;
  }

  async run<T>(app: string, onWait: (position: number) => void, work: () => Promise<T>): Promise<T> {
    const existing = this.lines.get(app);
    if (existing && this.mode === "refuse") {
      throw new DeckError("deploy_in_progress", `another deploy of ${app} is in progress; push again when it has finished`);
    }
    const line = existing ?? { tail: Promise.resolve(), count: 0 };
    this.lines.set(app, line);
    // Position 1 = next in line behind the deploy that is running now.
    if (line.count > 0) onWait(line.count);
    line.count += 1;
    const previous = line.tail;
    let done!: () => void;
    line.tail = new Promise<void>((r) => (done = r));
    await previous;
    try {
      return await work();
    } finally {
      line.count -= 1;
      if (line.count === 0) this.lines.delete(app);
      done();
    }
  }
}

/** Caps how many builds run at once across all apps. */
export class Semaphore {
  private active = 0;
  private readonly waiters: (() => void)[] = [];
  constructor(private readonly limit: number) {}

  get queued(): number {
    return this.waiters.length;
  }

  async acquire(onWait?: (position: number) => void): Promise<() => void> {
    if (this.active >= this.limit) {
      onWait?.(this.waiters.length + 1);
      await new Promise<void>((r) => this.waiters.push(r));
    } else {
      this.active += 1;
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.waiters.shift();
      if (next) next();
      else this.active -= 1;
    };
  }
}
