/**
 * Monitoring's shared shapes: what an alert tells people (a notice), independent of the channel that
 * carries it (webhook in Alertmanager's format, Slack-compatible webhook, e-mail).
 */

/** One alert notice: a rule of an app started or stopped firing. */
export interface Notice {
  /**
   * Identifies the notice: queued twice under one key, it is sent once per channel. A rule's firing
   * and its resolution are two notices (two keys); a repeat of a firing alert is a new key.
   */
  key: string;
  status: "firing" | "resolved";
  orgId: number;
  /** The org's slug. */
  org: string;
  app: string;
  /** The deck host that saw it (the machine's name). */
  host: string;
  /** The rule, as users wrote or read it: `crash_loop`, `http_5xx > 5% for 5m`, `test`. */
  rule: string;
  /** What was observed, in words: `4 restarts in 5 min`, `7.2% of 1,200 requests`. */
  value: string;
  /** One line for a human: what happened to which app. */
  summary: string;
  /** ISO time the condition started (and ended, once resolved). */
  startsAt: string;
  endsAt?: string;
  /** What to run to look further (`ssh deck@HOST metrics APP --since 1h`). */
  command: string;
  /** Where to look further on the web, when deck knows its public URL. */
  url?: string;
}
