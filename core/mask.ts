/** Config values are shown masked unless revealed: enough to tell them apart, never the secret. */
export function maskValue(v: string): string {
  return v.length <= 4 ? "****" : `${v.slice(0, 2)}${"*".repeat(Math.min(8, v.length - 2))}`;
}
