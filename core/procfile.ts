/** A Procfile maps process types to commands, one `type: command` per line (Heroku format). */
export type Procfile = Record<string, string>;

const LINE = /^([A-Za-z0-9_-]+):\s*(.+)$/;

export function parseProcfile(text: string): Procfile {
  const out: Procfile = {};
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (!line || line.startsWith("#")) continue;
    const m = LINE.exec(line);
    if (m) out[m[1]] = m[2].trim();
  }
  return out;
}

/** Process types that run continuously (everything except the one-shot `release`). */
export function runnableTypes(procfile: Procfile): string[] {
  return Object.keys(procfile).filter((t) => t !== "release");
}
