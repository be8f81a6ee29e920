/** A React hook that loads data now, every `intervalMs`, and whenever `refreshKey` changes. */
import React from "react";

export interface Polled<T> { data: T | undefined; error: string | undefined; loadedAt: number | undefined }

export const REFRESH_MS = 5000;

export function usePoll<T>(load: () => Promise<T>, options: { intervalMs?: number; refreshKey?: unknown } = {}): Polled<T> {
  const [state, setState] = React.useState<Polled<T>>({ data: undefined, error: undefined, loadedAt: undefined });
  const loadRef = React.useRef(load);
  loadRef.current = load;
  React.useEffect(() => {
    let live = true;
    let running = false;
    const tick = async () => {
      // A slow deck gets one request at a time, not a pile of them.
      if (running) return;
      running = true;
      try {
        const data = await loadRef.current();
        if (live) setState({ data, error: undefined, loadedAt: Date.now() });
      } catch (err) {
        if (live) setState((s) => ({ ...s, error: err instanceof Error ? err.message : String(err) }));
      } finally {
        running = false;
      }
    };
    void tick();
    const timer = setInterval(() => void tick(), options.intervalMs ?? REFRESH_MS);
    return () => {
      live = false;
      clearInterval(timer);
    };
  }, [options.intervalMs, options.refreshKey]);
  return state;
}
