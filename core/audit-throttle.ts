/**
 * A bound on audit rows anyone can cause without signing in (failed sign-ins over git or SSH): per
 * source, the first few failures of a minute are written one row each; the rest are counted, and the
 * next row written for that source says how many were left out. A cap across all sources keeps many
 * addresses together (an IPv6 range) from writing more than a few hundred rows a minute.
 */
export interface ThrottleDecision {
  write: boolean;
  /** Failures of this source not written since its last row (only when `write`). */
  suppressed: number;
}

interface Window { start: number; written: number; suppressed: number }

export class AuditThrottle {
  private readonly sources = new Map<string, Window>();
  private all: Window = { start: 0, written: 0, suppressed: 0 };

  constructor(
    private readonly perSource = 5,
    private readonly overall = 200,
    private readonly windowMs = 60_000,
    /** Sources remembered at most; older windows are forgotten first. */
    private readonly maxSources = 10_000,
  ) {}

  take(source: string, now = Date.now()): ThrottleDecision {
    if (now - this.all.start >= this.windowMs) this.all = { start: now, written: 0, suppressed: this.all.suppressed };
    let w = this.sources.get(source);
    if (!w || now - w.start >= this.windowMs) {
      const carried = w?.suppressed ?? 0;
      this.sources.delete(source);
      if (this.sources.size >= this.maxSources) this.forgetOldest(now);
      w = { start: now, written: 0, suppressed: carried };
      this.sources.set(source, w);
    }
    if (w.written >= this.perSource || this.all.written >= this.overall) {
      w.suppressed += 1;
      return { write: false, suppressed: 0 };
    }
    w.written += 1;
    this.all.written += 1;
    const suppressed = w.suppressed;
    w.suppressed = 0;
    return { write: true, suppressed };
  }

  private forgetOldest(now: number): void {
    for (const [key, w] of this.sources) {
      if (now - w.start >= this.windowMs || this.sources.size >= this.maxSources) this.sources.delete(key);
      if (this.sources.size < this.maxSources / 2) return;
    }
  }
}

/** The one throttle of this process for failed sign-ins over git and SSH, keyed "VIA:ADDRESS". */
export const failedSignIns = new AuditThrottle();
